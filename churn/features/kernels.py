"""The catalogue's order aggregates in one pass over the orders as they are stored (the fast engine).

`churn.features` defines every order feature in SQL; that SQL is the definition, and the tests
check this module against it. Grouping 30M orders by customer (a sort, or ~30 FILTER clauses
per cutoff) costs more than the rest of the daily run together, so the order aggregates are
computed here without grouping or sorting the orders:

1. DuckDB streams the orders *in the order they are stored* (only the needed columns, days as
   integers, money in integer millionths), reading ahead in a thread of its own (`_Reader`);
2. compiled loops (`churn.features.loops`, numba) number each batch's customers in order of
   first appearance, in a table keyed by two independent 64-bit hashes of the id, and keep a
   128-byte row of running totals per customer and cutoff (`Totals`): counts and spend per
   *band* of age T - day (0-29, 30-89, 90-179, 180-359, 360-364, 365+ days; a window is a run of
   bands), the 365-day totals, the largest order, and the last purchase occasion with the gap
   before it. An order opens an occasion when it is valid and its day is later than the
   customer's previous occasion, which is why each customer's orders must come in date order:
   exports usually are (orders are appended as they happen); the numbering loop checks it, and
   otherwise the orders are streamed again sorted by day. The next batch is numbered while the
   previous one is added to the totals in a worker thread (both loops release the GIL);
3. the customers are put in id order (DuckDB's ORDER BY over the distinct ids only), and
   `loops.features` turns each population customer's totals into the aggregates in the float64
   steps numpy would take on the same integers.

Money is summed in integer millionths, so sums are exact and do not depend on the order of
their terms: two runs give the same bits whatever the number of threads or the input order,
and the same bits as the engine before this one (which sorted the orders). `Unsupported` tells
the caller to use the SQL engine instead: when two ids share the first hash (about 1 in 10^7 at
2M customers), an order has no customer id, or a valid order's numbers are outside the
contract or the integers' range (see MAX_MONEY: a missing, NaN or negative amount, fractional
items, more than 10^9 in one order). Amounts are rounded to a millionth of the unit. Two ids
would be merged only if both hashes agreed (about 1 in 10^26).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

log = logging.getLogger(__name__)

# Bits of the per-order flags (set in SQL only on valid orders, but for VALID itself).
# OUT_OF_RANGE: a coupon flag other than 0/1 (see MAX_MONEY for the numbers' own range).
VALID, COUPON_USED, COUPON_KNOWN, OUT_OF_RANGE = 1, 2, 4, 8
# Band edges in days of age (T - day): band b holds ages [EDGES[b], EDGES[b + 1]), the last one
# 365 days and older. `_band` is the compiled twin of this table.
EDGES = (0, 30, 90, 180, 360, 365)
N_BANDS = len(EDGES)
# A window is a run of bands: 30 days is band 0; 90 days 0-1; 180 days 0-2; 365 days 0-4; all
# history 0-5; the 90 days before the last 90 band 2; the 180 before the last 180 band 3.
# Money is summed in whole millionths of the currency unit (exact integer sums), so an amount is
# rounded to a millionth. A valid order's amount and discount must lie in [0, MAX_MONEY]
# millionths and its n_items in [0, MAX_ITEMS] (the contract asks amount >= 0 and discount >= 0;
# the stream gives -1 for what cannot be read exactly, see `_select`), else the pass stops and
# the SQL engine answers; so does a customer's band total past SUM_LIMIT millionths, or items
# past ITEMS_LIMIT: no sum can wrap around (six bands and the discount stay below 2^63).
MONEY_SCALE = 1_000_000
MAX_MONEY, MAX_ITEMS = 1_000_000_000 * MONEY_SCALE, 1_000_000  # millionths; items
SUM_LIMIT, ITEMS_LIMIT = 1 << 60, 1 << 30
# Orders per streamed batch: bounds memory (a batch is about 40 MB) whatever the size of the data.
BATCH_ROWS = 1 << 20
NO_DAY = np.iinfo(np.int32).min  # earlier than any day

# The catalogue's order aggregates this module computes (a test checks they cover the catalogue).
KERNELS = ("recency_days", "tenure_days", "orders_all", "spend_all",
           "orders_30d", "spend_30d", "orders_90d", "spend_90d", "orders_180d", "spend_180d",
           "orders_365d", "spend_365d", "orders_prev_90d", "spend_prev_90d", "orders_prev_180d",
           "gap_mean_days", "gap_std_days", "gap_last_days", "max_order_value_365d",
           "discount_share_365d", "coupon_share_365d", "items_per_order_365d", "returns_share_365d")

# The per-customer totals at one cutoff: one 128-byte row of 16 int64 slots per customer (two
# cache lines: adding an order to random customers' totals is bound by memory reads, so every
# total an order touches sits in the same row). Slots as int64 ...
SPEND = 0  # ... 0-5: spend of valid orders per band (millionths)
DISCOUNT_365, TOP_365, GAP2 = 6, 7, 8  # 365-day discount (millionths); largest order; sum of squared gaps
# ... and as int32 (the row's slots 9-15 read as 14 int32):
ITEMS_365, FIRST_OCC = 18, 19  # 365-day items; day of the first occasion
OCC = 20  # 20-25: purchase occasions per band
VALID_365, ROWS_365, KNOWN_365, USED_365 = 26, 27, 28, 29  # 365-day valid orders, all orders, coupon known, coupon used
LAST_OCC, LAST_GAP = 30, 31  # day of the last occasion up to t; days before it from the previous one (0 on the first)
SLOTS = 16
# Every total starts at 0 (a new customer's row is all zeros): the last occasion's day is kept as
# day + DAY_OFFSET (0: none yet), and the largest order is set by the year's first valid order.
DAY_OFFSET = 1 << 30


class Unsupported(Exception):
    """This data set is outside what the fast engine handles: use the SQL engine for it."""


class HashCollision(Unsupported):
    """Two customer ids share a 64-bit hash."""


class _Unordered(Exception):
    """The stream's days went down: the orders are not stored in date order."""


@dataclass
class Totals:
    """Running totals of every customer at one cutoff day `t`: `rows` (customers x SLOTS int64)
    and `rows32`, the same memory read as int32 (see the slot constants).

    Bands are of age t - day (see EDGES); the largest order is of the year's valid orders; an
    occasion is the first valid order of a customer's day. All zeros: no orders.
    """

    t: int
    rows: np.ndarray
    rows32: np.ndarray
    ready: int = 0  # rows zeroed so far (see `make_ready`)

    @classmethod
    def empty(cls, t: int, n: int) -> Totals:
        """Room for n customers, none of it zeroed yet."""
        # Rows aligned to 128 bytes, so that a row is exactly two cache lines.
        buffer = np.empty(n * SLOTS + SLOTS, np.int64)
        skip = (-buffer.ctypes.data % 128) // 8
        rows = buffer[skip:skip + n * SLOTS].reshape(n, SLOTS)
        return cls(t=int(t), rows=rows, rows32=rows.view(np.int32))

    def make_ready(self, n: int) -> None:
        """Zero the rows up to n (new customers start at zero).

        Rows are zeroed as the customers come, in runs: writing zeros over fresh memory in order
        costs a quarter of what the page faults of `np.zeros` memory cost when random customers
        first touch it (measured: 0.11 s against 0.44 s for 256 MB), and rows never used are
        never touched.
        """
        if n > self.ready:
            self.rows[self.ready:n] = 0
            self.ready = n

    def grown(self, n: int) -> Totals:
        """The same totals with room for n customers (n >= the current number)."""
        bigger = Totals.empty(self.t, n)
        bigger.rows[:self.ready] = self.rows[:self.ready]
        bigger.ready = self.ready
        return bigger


# The customer table: open addressing on the first 64-bit hash of the id (`loops.hashes`), one
# 16-byte row per customer: (hash, then as int32: the second hash's low 32 bits, number + 1); a
# number + 1 of 0 marks an empty row. Four rows to a cache line, and rows are only read once
# written: looking up 30M orders' customers is bound by these reads.
TABLE_COLUMNS, SECOND, NUMBER = 2, 2, 3

def empty_table(size: int) -> tuple[np.ndarray, np.ndarray]:
    """An empty customer table of `size` rows (a power of two) and its int32 view."""
    # Zeros written in order, not np.zeros: the random inserts touch every page anyway (see
    # `Totals.make_ready`). A new customer's row is filled in by `loops.number`.
    table = np.empty((size, TABLE_COLUMNS), np.int64)
    table.fill(0)
    return table, table.view(np.int32)



# --- the stream ---------------------------------------------------------------------------------

def _select(columns: set[str], kinds: dict[str, str]) -> list[str]:
    """The streamed columns: customer id, day, money in millionths, flags, optional columns.

    A valid order's amount, discount and n_items are -1 when they cannot be read exactly (missing,
    NaN, infinite, fractional items, beyond BIGINT or INTEGER): with negative values, they are out
    of range for `loops.accumulate`, which stops the pass. TRY_CAST, not a range check in SQL:
    DuckDB 2.0 folds `isnan(x)` and comparisons on x from a Parquet file's statistics, which leave
    NaN out. `kinds`: the SQL type of each column of the orders view.
    """
    select = ["customer_id::VARCHAR AS id", "day", f"{_money('amount', kinds.get('amount', 'DOUBLE'))} AS amount"]
    flags = f"valid::UTINYINT * {VALID}"
    if "coupon_used" in columns:
        used = "coupon_used"
        if kinds.get("coupon_used", "BOOLEAN") != "BOOLEAN":  # 0/1 of any type, read as the SQL's coupon_used::DOUBLE
            used = "coupon_used::DOUBLE = 1"
            flags += f" + (valid AND NOT coalesce(coupon_used::DOUBLE IN (0, 1), TRUE))::UTINYINT * {OUT_OF_RANGE}"
        flags += (f" + (valid AND coalesce({used}, FALSE))::UTINYINT * {COUPON_USED}"
                  f" + (valid AND coupon_used IS NOT NULL)::UTINYINT * {COUPON_KNOWN}")
    select.append(f"{flags} AS flags")
    if "discount" in columns:
        select.append(f"{_money('discount', kinds.get('discount', 'DOUBLE'))} AS discount")
    if "n_items" in columns:
        whole = ("n_items" if kinds.get("n_items", "BIGINT") in _INTEGERS else
                 "CASE WHEN TRY_CAST(n_items AS DOUBLE) = floor(TRY_CAST(n_items AS DOUBLE)) THEN TRY_CAST(n_items AS DOUBLE) END")
        select.append(f"CASE WHEN valid THEN coalesce(TRY_CAST({whole} AS INTEGER), -1) ELSE 0 END AS n_items")
    return select


def _text_is_identity(kind: str) -> bool:
    """Whether ids of this SQL type are equal exactly when their text (`::VARCHAR`) is: the loops
    number customers by the text. Not so for floats (0.0 and -0.0 are equal) or intervals
    ('1 month' and '30 days')."""
    exact = {"VARCHAR", "BLOB", "BOOLEAN", "UUID", "DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS",
             "TIMESTAMP WITH TIME ZONE"} | _INTEGERS
    return kind in exact or kind.startswith(("DECIMAL(", "ENUM(", "VARCHAR COLLATE"))


_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}


def _money(column: str, kind: str) -> str:
    """A money column of valid orders in whole millionths (0 on the others; -1 when it cannot be read).

    Read as the SQL engine reads money (`TRY_CAST(x AS DECIMAL(38,6))`): a DOUBLE as
    round(x * 10^6), which gives the same integers and costs less; any other type (integers,
    float32, decimals, text) through DECIMAL(18,6), exact. Integer sums are exact, so they do not
    depend on the order of the terms: a rerun, another thread count or another input order gives
    the same bits.
    """
    scaled = (f"round({column} * {MONEY_SCALE})" if kind == "DOUBLE"
              else f"TRY_CAST({column} AS DECIMAL(18,6))::DECIMAL(38,6) * {MONEY_SCALE}")
    return f"CASE WHEN valid THEN coalesce(TRY_CAST({scaled} AS BIGINT), -1) ELSE 0 END"


class _Reader:
    """The rows of `sql` as Arrow batches, read by DuckDB in a thread of its own while the caller works.

    Started on entering (`with`): the thread fills a queue of up to `ahead` batches, so scanning
    (DuckDB's threads) overlaps the caller's loops and, at the start, loading the compiled loops.
    Leaving the `with` early (an exception) stops the thread.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, sql: str, ahead: int):
        self.con, self.sql = con, sql
        self.batches: queue.Queue = queue.Queue(maxsize=ahead)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="churn-orders-stream", daemon=True)

    def _read(self) -> None:
        try:
            for batch in self.con.sql(self.sql).to_arrow_reader(BATCH_ROWS):
                if self.stop.is_set():
                    break
                self.batches.put(batch)
        except BaseException as exc:  # handed to the caller
            self.batches.put(exc)
        finally:
            self.batches.put(None)

    def __enter__(self) -> _Reader:
        self.thread.start()
        return self

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while (item := self.batches.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                self.batches.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()


@dataclass
class Pass:
    """What one pass over the orders gives: every customer's totals at each cutoff day (in the
    order given) and the customers' ids (as VARCHAR), both indexed by customer number (order of
    first appearance)."""

    sums: list[Totals]
    ids: pa.Array


# Customers' rows zeroed at a time (see `Totals.make_ready`): 8 MB per cutoff.
READY_ROWS = 1 << 16
# Batches DuckDB may read ahead (about 40 MB each): while the compiled loops load at the start
# (about 1 s: DuckDB reads about half the 30M orders meanwhile) and while the caller is busy.
READ_AHEAD = 16


def totals(con: duckdb.DuckDBPyConnection, orders_view: str, days: Sequence[int], columns: set[str],
           kinds: dict[str, str], threads: int = 1) -> Pass:
    """Every customer's running totals at each cutoff day, from one pass over the orders.

    Streams the orders as stored; if a customer's orders are not in date order, streams them
    again sorted by day. `kinds`: the SQL type of each column of the view. A batch's orders are
    added to the totals in `threads` worker threads
    (at least one) while the next batch is numbered. Raises HashCollision or Unsupported (see the
    module's docstring).
    """
    base = f"SELECT {', '.join(_select(columns, kinds))} FROM {orders_view} WHERE day <= {int(max(days))}"
    # preserve_insertion_order: DuckDB streams the rows in the order they are stored.
    previous = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = true")
    try:
        for sql in (base, f"{base} ORDER BY day"):
            with ThreadPoolExecutor(max(1, threads), thread_name_prefix="churn-totals") as pool, \
                    _Reader(con, sql, READ_AHEAD) as reader:
                numbering = _Numbering(days, pool)
                numbering.warm_up(columns)  # while DuckDB reads the first batches
                try:
                    for batch in reader:
                        numbering.add(batch)
                    return numbering.result()
                except _Unordered:
                    log.info("the orders are not in date order per customer: streaming them sorted by day")
                finally:
                    numbering.wait(quiet=True)
    finally:
        con.execute(f"SET preserve_insertion_order = {str(previous).lower()}")
    raise AssertionError("orders sorted by day are in date order")  # pragma: no cover


def _string_buffers(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets and bytes of a string array, for the compiled loops. Raises Unsupported on NULL ids."""
    if ids.null_count:
        raise Unsupported("some orders have no customer id")
    if ids.type not in (pa.string(), pa.large_string()):
        ids = ids.cast(pa.large_string())
    _, offsets, data = ids.buffers()
    width = np.int32 if ids.type == pa.string() else np.int64
    offsets = np.frombuffer(offsets, dtype=width)[ids.offset:ids.offset + len(ids) + 1]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    for array in (offsets, data):  # read-only whatever the source: one compiled loop for all
        array.setflags(write=False)
    return offsets, data


class _Numbering:
    """One pass's state: the customer table, the totals at each cutoff, the ids seen so far.

    `add` numbers a batch's customers (in this thread) and hands the batch to the pool to add to
    the totals, one batch in flight: the next batch is numbered meanwhile.
    """

    def __init__(self, days: Sequence[int], pool: ThreadPoolExecutor, capacity: int = 1 << 16):
        self.pool, self.capacity, self.count = pool, capacity, 0
        self.sums = [Totals.empty(t, capacity) for t in days]
        self.table, self.table32 = empty_table(2 * capacity)
        self.ids: list[pa.Array] = []
        self.pending: list = []
        self.last_day = NO_DAY  # the stream's latest day so far (its days must not go down)

    def warm_up(self, columns: set[str]) -> None:
        """Load every compiled loop for this data's column types, on a two-order batch of its own."""
        from churn.features import loops

        fields = {"id": pa.array(["a", "b"]), "day": pa.array([0, 1], pa.int32()), "amount": pa.array([1, 2], pa.int64()),
                  "flags": pa.array([VALID, 0], pa.uint8())}
        if "discount" in columns:
            fields["discount"] = pa.array([0, 0], pa.int64())
        if "n_items" in columns:
            fields["n_items"] = pa.array([1, 0], pa.int32())
        trial = _Numbering([1], self.pool, capacity=4)
        trial.add(pa.RecordBatch.from_pydict(fields))
        loops.rehash(trial.table, 16)
        aggregates(trial.result().sums[0], 365, columns, np.arange(2))

    def add(self, batch: pa.RecordBatch) -> None:
        from churn.features import loops

        column = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        arrays = {name: np.asarray(array.to_numpy(zero_copy_only=False)) for name, array in column.items() if name != "id"}
        if len(arrays["day"]) and not -DAY_OFFSET < int(arrays["day"].min()) <= int(arrays["day"].max()) < DAY_OFFSET:
            raise Unsupported("order dates more than 2.9 million years from 1970")  # the totals keep day + DAY_OFFSET
        day, flags = arrays["day"].astype(np.int32, copy=False), arrays["flags"].astype(np.uint8, copy=False)
        h, second = np.empty(len(day), np.int64), np.empty(len(day), np.int64)
        loops.hashes(*_string_buffers(column["id"]), h, second)
        customer, new_rows = np.empty(len(day), np.int32), np.empty(len(day), np.int64)
        status, n_new, i = 2, 0, 0
        while status == 2:
            ready = min(s.ready for s in self.sums)
            status, self.count, n_new, i, self.last_day = loops.number(
                i, h, second, day, self.table, self.table32, self.count, ready, customer, new_rows, n_new, self.last_day)
            if status == 2:  # room for more customers
                self.wait()  # the totals may move or be zeroed
                if 2 * (self.count + 1) > len(self.table):
                    self.table, self.table32 = loops.rehash(self.table, 2 * len(self.table))
                if self.count >= self.capacity:  # four times as much: fewer moves
                    self.capacity *= 4
                    self.sums = [s.grown(self.capacity) for s in self.sums]
                for s in self.sums:
                    s.make_ready(min(self.capacity, self.count + READY_ROWS))
        if status == 1:
            raise _Unordered
        if status == 3:
            raise HashCollision("two customer ids share a 64-bit hash")
        self.ids.append(column["id"].take(pa.array(new_rows[:n_new])))
        orders = (customer, day, flags, arrays["amount"], arrays.get("discount", _EMPTY64),
                  arrays.get("n_items", _EMPTY32).astype(np.int32, copy=False))
        self.wait()  # one batch in flight: the previous one's totals are done
        self.pending = [self.pool.submit(loops.accumulate, s.t, *orders, s.rows, s.rows32) for s in self.sums]

    def wait(self, quiet: bool = False) -> None:
        """Wait for the batch being added; its first error is raised unless `quiet` (already failing).

        Raises Unsupported when an order is out of range (see OUT_OF_RANGE and SUM_LIMIT).
        """
        pending, self.pending = self.pending, []
        for future in pending:
            error = future.exception()
            if error is not None and not quiet:
                raise error
        codes = {future.result() for future in pending} if not quiet else set()
        if 1 in codes:
            raise Unsupported("a valid order has a missing, negative or non-finite amount or discount, n_items not "
                              f"a whole number up to {MAX_ITEMS:,}, a coupon_used other than 0/1, or more than "
                              f"{MAX_MONEY // MONEY_SCALE:,} in one order")
        if 2 in codes:
            raise Unsupported("a customer's totals pass the range of the fast engine's integers")

    def result(self) -> Pass:
        self.wait()
        n = self.count
        ids = pa.concat_arrays(self.ids) if self.ids else pa.array([], pa.string())
        return Pass([replace(s, rows=s.rows[:n], rows32=s.rows32[:n]) for s in self.sums], ids)


_EMPTY64, _EMPTY32 = np.zeros(0, np.int64), np.zeros(0, np.int32)


# --- the features -------------------------------------------------------------------------------

# The aggregates `loops.features` writes, in its rows' order, and the column each needs.
NEEDS = {"discount_share_365d": "discount", "coupon_share_365d": "coupon_used", "items_per_order_365d": "n_items"}


def aggregates(s: Totals, lookback_days: int, columns: set[str], order: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The order aggregates of the population at cutoff day `s.t` (customers who bought in the lookback).

    `order`: the customer numbers in the order wanted. Returns the population's customer numbers
    (in that order) and their aggregates (float64, NaN where the SQL gives NULL), in that order.
    """
    from churn.features import loops

    keep, out = np.empty(len(order), np.int64), np.empty((len(KERNELS), len(order)), np.float64)
    m = loops.features(s.t, lookback_days, order, s.rows, s.rows32, keep, out)
    return keep[:m], {name: out[j, :m] for j, name in enumerate(KERNELS) if NEEDS.get(name, "orders") in columns | {"orders"}}


def _id_order(con: duckdb.DuckDBPyConnection, ids: pa.Array, kind: str) -> np.ndarray:
    """The customer numbers in order of id, as SQL's ORDER BY customer_id sorts them (in the id's own type `kind`)."""
    key = "id" if kind == "VARCHAR" else f"CAST(id AS {kind})"
    con.register("churn_ids", pa.table({"id": ids, "i": np.arange(len(ids))}))
    try:
        return np.asarray(con.execute(f"SELECT i FROM churn_ids ORDER BY {key}").fetchnumpy()["i"])
    finally:
        con.unregister("churn_ids")


def build(con: duckdb.DuckDBPyConnection, orders_view: str, days: Sequence[int], lookback_days: int,
          columns: set[str], threads: int = 1) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """Order aggregates at every cutoff day, one row per (t, customer_id) in the population, in that order.

    Returns the customer ids and a dict of columns (`t` and one per aggregate). `threads`: how many
    threads add up the totals and compute the aggregates (the loops and numpy release the GIL).
    Raises Unsupported (see the module's docstring).
    """
    days = sorted(days)
    # Days are int32: a lookback beyond 2^40 days takes every order, below -2^40 none (numba's int64).
    lookback_days = int(min(max(lookback_days, -(1 << 40)), 1 << 40))
    kinds = {r[0]: r[1] for r in con.execute(f"DESCRIBE {orders_view}").fetchall()}
    if not _text_is_identity(kinds["customer_id"]):
        raise Unsupported(f"customer ids of type {kinds['customer_id']}: equal ids may differ as text")
    got = totals(con, orders_view, days, columns, kinds, threads)
    order = _id_order(con, got.ids, kinds["customer_id"])
    # Each cutoff's population in parts of the customers (in id order), side by side; a cutoff's
    # totals are let go as soon as its aggregates are out.
    parts = np.array_split(order, max(1, threads))
    results: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    cutoff_of: list[int] = []
    with ThreadPoolExecutor(threads) if threads > 1 else nullcontext() as pool:
        while got.sums:
            s = got.sums.pop(0)

            def one(part: np.ndarray, s: Totals = s) -> tuple[np.ndarray, dict[str, np.ndarray]]:
                return aggregates(s, lookback_days, columns, part)

            results += list(pool.map(one, parts)) if pool else [one(part) for part in parts]
            cutoff_of += [s.t] * len(parts)
            del s
    keep = np.concatenate([k for k, _ in results])
    out = {"t": np.concatenate([np.full(len(k), t, dtype=np.int32) for t, (k, _) in zip(cutoff_of, results)])}
    for name in list(results[0][1]):
        out[name] = np.concatenate([o.pop(name) for _, o in results])
    return pd.Series(got.ids.take(keep), dtype="str"), out


def quintile_scores(t: np.ndarray, values: np.ndarray, descending: bool, bins: int) -> np.ndarray:
    """The catalogue's `least(bins, 1 + floor(bins * percent_rank() OVER (PARTITION BY t ORDER BY values)))`.

    `t` and `values`: one row per (cutoff, customer), grouped by cutoff (`t` sorted); `values`
    without NaN (SQL would sort NULLs last: the caller leaves such columns to the SQL).
    percent_rank is (rank - 1) / (n - 1), tied values sharing their lowest rank, 0 when a cutoff
    has a single customer: the same float64 steps as DuckDB's, so the scores agree to the bit.
    Returns the scores as floats (1.0 .. bins).
    """
    out = np.empty(len(values), dtype=np.float64)
    bounds = np.flatnonzero(np.diff(t)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(t)]):
        key = -values[lo:hi] if descending else values[lo:hi]
        order = np.argsort(key)
        ranked = key[order]
        # rank - 1 with ties sharing the lowest rank: the position where each run of equal values starts.
        starts = np.ones(len(ranked), dtype=bool)
        np.not_equal(ranked[1:], ranked[:-1], out=starts[1:])
        below = np.maximum.accumulate(np.where(starts, np.arange(len(ranked)), 0)).astype(np.float64)
        rank = below / float(hi - lo - 1) if hi - lo > 1 else np.zeros(hi - lo)
        out[lo + order] = np.minimum(float(bins), 1.0 + np.floor(float(bins) * rank))
    return out
