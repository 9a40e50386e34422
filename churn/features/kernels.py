"""The order features of the catalogue computed on orders sorted once by customer and day (the fast engine).

`churn.features` defines every order feature in SQL; that SQL is the definition, and the tests
check this module against it. Grouping 30M orders by customer in SQL with ~30 FILTER clauses
costs more than the rest of the daily run together, so the order aggregates are computed here:

1. DuckDB scans the orders once (only the needed columns, days as integers, a 64-bit hash of
   the customer id) and sorts them by (customer hash, day): each customer's orders are then one
   contiguous run, in date order;
2. at a cutoff T each order falls in a *band* of its age T - day (0-29, 30-89, 90-179, 180-359,
   360-364, 365+ days, or after T). Within a customer's run the bands are contiguous too, so one
   `np.add.reduceat` per quantity sums every (customer, band) segment in a single sequential
   pass, and a window is a sum of neighbouring bands;
3. a purchase occasion is the first valid order of a (customer, day); the gap before it is its
   day minus the previous occasion's day, both read off the sorted run once and packed into one
   integer, so that the last occasion before any cutoff (and its gap) is one max per segment.

Money is summed in integer millionths, so sums are exact and do not depend on the order of
their terms: two runs give the same bits whatever the number of threads. The customer ids come
from a separate DISTINCT. `Unsupported` tells the caller to use the SQL engine instead: when two
ids share a hash (about 1 in 10^7 at 2M customers) or a customer has 2^21 orders in one band.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

# Band edges in days of age (T - day): a row's band is how many edges its age reaches, so band 0
# is after T, band 1 the last 30 days, ..., band 6 365 days and older.
EDGES = (0, 30, 90, 180, 360, 365)
N_BANDS = len(EDGES) + 1
# The bands [lo, hi) that make each window.
WINDOW_BANDS = {30: (1, 2), 90: (1, 3), 180: (1, 4), 365: (1, 6), "all": (1, 7), "prev_90": (3, 4),
                "prev_180": (4, 5)}
# Bits of the per-order flags.
VALID, COUPON_USED, COUPON_KNOWN, OCCASION = 1, 2, 4, 8
# 0/1 counts packed in one integer per order, FIELD_BITS each: a segment (one customer's orders
# in one band) never holds 2^21 orders. COUNTS_WORD maps an order's flags to its packed word.
FIELD_BITS = 21
COUNTS_WORD = np.array([bool(f & VALID) + (bool(f & OCCASION) << FIELD_BITS) + (bool(f & COUPON_USED) << 2 * FIELD_BITS)
                        for f in range(16)], dtype=np.int64)
KNOWN_WORD = np.array([bool(f & COUPON_KNOWN) for f in range(16)], dtype=np.int32)
# Money is summed in whole millionths of the currency unit (exact integer sums).
MONEY_SCALE = 1_000_000
# An occasion's day (counted from the first day in the data) and the gap before it, packed in one
# integer so that one max finds the last occasion and its gap: 15 bits each while the data spans
# less than 2^15 days (90 years), else 31 bits each in 64-bit integers.
SHORT_SPAN_BITS, LONG_SPAN_BITS = 15, 31

# At most this many orders per part of the customers computed at once (bounds the temporaries).
PART_ROWS = 1_000_000

# The catalogue's order aggregates this module computes (a test checks they cover the catalogue).
KERNELS = ("recency_days", "tenure_days", "orders_all", "spend_all",
           "orders_30d", "spend_30d", "orders_90d", "spend_90d", "orders_180d", "spend_180d",
           "orders_365d", "spend_365d", "orders_prev_90d", "spend_prev_90d", "orders_prev_180d",
           "gap_mean_days", "gap_std_days", "gap_last_days", "max_order_value_365d",
           "discount_share_365d", "coupon_share_365d", "items_per_order_365d", "returns_share_365d")


class Unsupported(Exception):
    """This data set is outside what the fast engine handles: use the SQL engine for it."""


class HashCollision(Unsupported):
    """Two customer ids share a 64-bit hash."""


@dataclass
class SortedOrders:
    """Orders up to the last cutoff sorted by (customer, day); per-order values ready to sum.

    Customers are numbered 0..n-1 in sorted order; `starts` is each customer's first row. Amounts and discounts (in millionths, see `_money`) and items are 0 on
    returned or cancelled orders;
    On an occasion's row, `occ_key` packs its day (from `day0`) and the days since the customer's
    previous occasion (`gap_bits` bits each; 0 on a customer's first) and `gap2` is that gap
    squared; both are -1 and 0 on other rows.
    """

    n_customers: int
    starts: np.ndarray
    day: np.ndarray
    flags: np.ndarray
    amount: np.ndarray
    discount: np.ndarray | None
    n_items: np.ndarray | None
    occ_key: np.ndarray
    gap2: np.ndarray
    gap_bits: int
    day0: int
    first_day: np.ndarray  # each customer's first valid day (whatever the cutoff, it is the first)
    has_coupon: bool

    def part(self, first: int, last: int) -> SortedOrders:
        """Customers first..last-1 and their orders (views, no copies)."""
        r0 = int(self.starts[first]) if first < self.n_customers else len(self.day)
        r1 = int(self.starts[last]) if last < self.n_customers else len(self.day)
        rows = slice(r0, r1)
        return replace(self, n_customers=last - first, starts=self.starts[first:last] - r0, day=self.day[rows],
                       flags=self.flags[rows], amount=self.amount[rows], occ_key=self.occ_key[rows],
                       gap2=self.gap2[rows], first_day=self.first_day[first:last],
                       discount=None if self.discount is None else self.discount[rows],
                       n_items=None if self.n_items is None else self.n_items[rows])


def _parts(starts: np.ndarray, n_rows: int, k: int) -> list[tuple[int, int]]:
    """Split the customers into at most k runs of about equal numbers of orders: (first, last) pairs."""
    cuts = np.unique(np.searchsorted(starts, np.linspace(0, n_rows, k + 1)[1:-1]))
    bounds = [0, *(int(c) for c in cuts if 0 < c < len(starts)), len(starts)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a] or [(0, 0)]


def load_sorted(con: duckdb.DuckDBPyConnection, orders_view: str, last_day: int, columns: set[str],
                pool: ThreadPoolExecutor | None = None) -> tuple[SortedOrders, pa.Array, np.ndarray]:
    """Scan `orders_view` (customer_id, day, amount, valid and optional columns) sorted by (customer hash, day).

    Returns the orders, the customers' ids and each customer's rank in order of id.
    """
    select = ["hash(customer_id) AS h", "day", f"{_money('amount')} AS amount",
              f"valid::UTINYINT * {VALID}"
              + (f" + (valid AND coalesce(coupon_used, FALSE))::UTINYINT * {COUPON_USED}"
                 f" + (valid AND coupon_used IS NOT NULL)::UTINYINT * {COUPON_KNOWN}" if "coupon_used" in columns else "")
              + " AS flags"]
    select += [f"{_money('discount')} AS discount"] if "discount" in columns else []
    select += ["CASE WHEN valid THEN coalesce(n_items, 0) ELSE 0 END::INTEGER AS n_items"] if "n_items" in columns else []
    arrays = con.execute(f"SELECT {', '.join(select)} FROM {orders_view} WHERE day <= {int(last_day)} "
                         f"ORDER BY h, day").fetchnumpy()
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    h = arrays.pop("h")
    new = np.empty(len(h), dtype=bool)
    new[:1] = True
    np.not_equal(h[1:], h[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    # The ids query runs in DuckDB (no GIL) while numpy prepares the orders below.
    ids_args = (con, orders_view, last_day, h[starts])
    ids_job = pool.submit(_ids_by_hash, *ids_args) if pool else None
    del h
    day = arrays.pop("day").astype(np.int32, copy=False)
    day0 = int(day.min()) if len(day) else 0
    bits = SHORT_SPAN_BITS if len(day) == 0 or int(day.max()) - day0 < 2 ** SHORT_SPAN_BITS else LONG_SPAN_BITS
    dtype = np.int32 if bits == SHORT_SPAN_BITS else np.int64
    orders = SortedOrders(n_customers=len(starts), starts=starts, day=day,
                          flags=arrays.pop("flags").astype(np.uint8, copy=False), amount=arrays["amount"],
                          discount=arrays.get("discount"), n_items=arrays.get("n_items"),
                          occ_key=np.full(len(day), -1, dtype=dtype), gap2=np.zeros(len(day), dtype=dtype),
                          gap_bits=bits, day0=day0, first_day=np.zeros(len(starts), dtype=np.int32),
                          has_coupon="coupon_used" in columns)

    def prepare(first: int, last: int) -> None:
        part = orders.part(first, last)
        r0 = int(starts[first]) if first < len(starts) else len(day)
        cust = np.cumsum(new[r0:r0 + len(part.day)], dtype=np.int32) - 1
        valid = (part.flags & VALID).astype(bool)
        part.flags |= _occasions(cust, part.day, valid) * np.uint8(OCCASION)  # views: fills `orders`
        _occasion_keys(cust, part.day, part.flags, day0, bits, part.occ_key, part.gap2)
        if len(part.day):
            part.first_day[:] = np.minimum.reduceat(np.where(valid, part.day, np.iinfo(np.int32).max), part.starts)

    chunks = _parts(starts, len(day), pool._max_workers if pool else 1)
    list(pool.map(lambda c: prepare(*c), chunks)) if pool else [prepare(*c) for c in chunks]
    ids, rank = ids_job.result() if ids_job else _ids_by_hash(*ids_args)
    return orders, ids, rank


def _money(column: str) -> str:
    """A money column of valid orders in whole millionths (0 on returned or cancelled orders).

    Integer sums are exact, so they do not depend on the order of the terms: the sort may leave
    a customer's orders of one day in any order and a rerun still gives the same bits.
    """
    return f"CASE WHEN valid THEN round(coalesce({column}, 0) * {MONEY_SCALE})::BIGINT ELSE 0 END"


def _ids_by_hash(con: duckdb.DuckDBPyConnection, orders_view: str, last_day: int,
                 hashes: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """The customer id of each of `hashes` (sorted, distinct), and each one's rank in order of id.

    Raises HashCollision if two ids share a hash.
    """
    pairs = con.sql(f"SELECT hash(customer_id) AS h, customer_id::VARCHAR AS customer_id FROM "
                    f"(SELECT DISTINCT customer_id FROM {orders_view} WHERE day <= {int(last_day)}) "
                    f"ORDER BY customer_id").to_arrow_table()
    h = pairs.column("h").to_numpy()
    rank = np.argsort(h)  # customer c (in hash order) is pair rank[c], the rank[c]-th id
    if len(h) != len(hashes) or not np.array_equal(h[rank], hashes):
        raise HashCollision(f"{len(h):,} customer ids but {len(np.unique(h)):,} distinct hashes")
    return pairs.column("customer_id").combine_chunks().take(rank), rank


def _occasions(cust: np.ndarray, day: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """1 on the first valid order of each (customer, day): a purchase occasion."""
    rows = np.flatnonzero(valid)
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (cust[rows[1:]] != cust[rows[:-1]]) | (day[rows[1:]] != day[rows[:-1]])
    occ = np.zeros(len(day), dtype=np.uint8)
    occ[rows[first]] = 1
    return occ


def _occasion_keys(cust: np.ndarray, day: np.ndarray, flags: np.ndarray, day0: int, bits: int,
                   key: np.ndarray, gap2: np.ndarray) -> None:
    """Fill each occasion's packed (day - day0, gap) `key` and its squared gap `gap2` (other rows keep -1 and 0)."""
    rows = np.flatnonzero(flags & OCCASION)
    gap = np.zeros(len(rows), dtype=key.dtype)
    gap[1:] = np.where(cust[rows[1:]] == cust[rows[:-1]], day[rows[1:]] - day[rows[:-1]], 0)
    key[rows] = ((day[rows] - day0).astype(key.dtype) << bits) | gap
    gap2[rows] = gap * gap


def _bands(day: np.ndarray, t: int) -> np.ndarray:
    """Each row's band of age t - day (0: after t; 1: 0-29 days; ...; 6: 365 days and older)."""
    band = np.zeros(len(day), dtype=np.int8)
    for edge in EDGES:
        band += day <= t - edge
    return band


class _Segments:
    """The (customer, band) segments of the sorted orders at one cutoff, and sums over them.

    Sums come back as band-major tables: `table[b]` holds every customer's sum over band b.
    """

    def __init__(self, orders: SortedOrders, t: int):
        self.n = orders.n_customers
        band = _bands(orders.day, t)
        start = np.empty(len(band), dtype=bool)
        start[:1] = True
        np.not_equal(band[1:], band[:-1], out=start[1:])
        start[orders.starts] = True
        self.starts = np.flatnonzero(start)
        # A segment's customer: how many customers start at or before it, minus one.
        first_of_customer = np.zeros(len(band), dtype=bool)
        first_of_customer[orders.starts] = True
        customer = np.cumsum(first_of_customer[self.starts]) - 1
        self.slot = band[self.starts].astype(np.int64) * self.n + customer

    def table(self, per_segment: np.ndarray, fill: float = 0) -> np.ndarray:
        """An N_BANDS x n table of per-segment values (`fill` where a customer has no rows in a band)."""
        out = np.full(N_BANDS * self.n, fill, dtype=np.result_type(per_segment.dtype, np.min_scalar_type(fill)))
        out[self.slot] = per_segment
        return out.reshape(N_BANDS, self.n)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Sums in the values' own dtype (no copy of the orders): callers pick one wide enough."""
        if len(values) == 0:
            return self.table(np.zeros(0, dtype=values.dtype))
        return self.table(np.add.reduceat(values, self.starts))

    def max(self, values: np.ndarray, fill: float) -> np.ndarray:
        if len(values) == 0:
            return self.table(np.zeros(0, dtype=values.dtype), fill)
        return self.table(np.maximum.reduceat(values, self.starts), fill)


def _window(table: np.ndarray, window: object) -> np.ndarray:
    """Each customer's sum over the bands of `window` (a key of WINDOW_BANDS)."""
    lo, hi = WINDOW_BANDS[window]
    return table[lo:hi].sum(axis=0)


def _unpack(word: np.ndarray, field: int) -> np.ndarray:
    """Field `field` (0, 1, 2) of a table of packed counts (see FIELD_BITS)."""
    return (word >> (FIELD_BITS * field)) & ((1 << FIELD_BITS) - 1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (SQL's nullif)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1), np.nan)


def aggregates(orders: SortedOrders, t: int, lookback_days: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The order aggregates of the population at cutoff day `t` (the customers who bought in the lookback).

    Returns the population's customer numbers and their aggregates, in that order.
    """
    seg = _Segments(orders, t)
    flags = orders.flags
    # Three 0/1 counts in one integer per order, summed in one pass: valid, occasion, coupon used.
    lengths = np.diff(np.append(seg.starts, len(flags))).astype(np.int64)
    if len(lengths) and lengths.max() >= 1 << FIELD_BITS:
        raise Unsupported(f"a customer has {int(lengths.max()):,} orders in one window band (packed counts "
                          f"hold {(1 << FIELD_BITS) - 1:,})")
    counts = seg.sum(COUNTS_WORD[flags])
    # The last occasion up to t: the largest packed (day, gap) key over bands 1-6.
    last_key = seg.max(orders.occ_key, -1)[1:].max(axis=0).astype(np.int64)
    last = (last_key >> orders.gap_bits) + orders.day0
    in_population = (_window(_unpack(counts, 1), "all") > 0) & (last > t - lookback_days)
    keep = np.flatnonzero(in_population)
    # From here on, tables hold the population only (a full table is 7 x customers).
    counts = counts[:, keep]
    valid_count, occ, used = _unpack(counts, 0), _unpack(counts, 1), _unpack(counts, 2)
    del counts
    last, last_key, first = last[keep], last_key[keep], orders.first_day[keep]
    spend = seg.sum(orders.amount)[:, keep]  # millionths: window sums of these whole numbers are exact
    rows = seg.table(lengths)[:, keep]
    n_occ = _window(occ, "all")
    k = n_occ - 1  # gaps: one fewer than occasions
    # int32 is wide enough: a customer's squared gaps add up to at most (last - first)^2 < 2^30.
    squares = _window(seg.sum(orders.gap2)[:, keep].astype(np.int64), "all")
    total = (last - first).astype(np.float64)  # the gaps telescope to last - first
    with np.errstate(divide="ignore", invalid="ignore"):
        # Whole-day gaps: k * sum of squares - total^2 is an exact integer before the division.
        var = np.where(k >= 2, (k * squares - total * total) / np.maximum(k * (k - 1), 1), np.nan)
        out: dict[str, np.ndarray] = {
            "recency_days": (t - last).astype(np.float64),
            "tenure_days": (t - first).astype(np.float64),
            "orders_all": n_occ,
            "spend_all": _window(spend, "all") / MONEY_SCALE,
        }
        for w in (30, 90, 180, 365):
            out[f"orders_{w}d"] = _window(occ, w)
            out[f"spend_{w}d"] = _window(spend, w) / MONEY_SCALE
        out["orders_prev_90d"] = _window(occ, "prev_90")
        out["spend_prev_90d"] = _window(spend, "prev_90") / MONEY_SCALE
        out["orders_prev_180d"] = _window(occ, "prev_180")
        del occ
        out["gap_mean_days"] = np.where(k >= 1, total / np.maximum(k, 1), np.nan)
        out["gap_std_days"] = np.sqrt(np.maximum(var, 0.0))
        out["gap_last_days"] = np.where(k >= 1, last_key & ((1 << orders.gap_bits) - 1), np.nan)
    valid_year = _window(valid_count, 365)
    top = seg.max(orders.amount, -np.inf)[1:6, keep].max(axis=0)  # invalid orders count 0: see valid_year
    out["max_order_value_365d"] = np.where(valid_year > 0, top / MONEY_SCALE, np.nan)
    if orders.discount is not None:
        discount = _window(seg.sum(orders.discount)[:, keep], 365)
        out["discount_share_365d"] = _ratio(discount, _window(spend, 365) + discount)
    if orders.has_coupon:
        known = _window(seg.sum(KNOWN_WORD[flags])[:, keep], 365)
        out["coupon_share_365d"] = _ratio(_window(used, 365), known)
    if orders.n_items is not None:
        items = seg.sum(orders.n_items)[:, keep].astype(np.int64)  # int32 per (customer, band): < 2^31 items
        out["items_per_order_365d"] = _ratio(_window(items, 365), valid_year)
    del spend
    out["returns_share_365d"] = _ratio(_window(rows, 365) - valid_year, _window(rows, 365))
    return keep, out


def build(con: duckdb.DuckDBPyConnection, orders_view: str, days: Sequence[int], lookback_days: int,
          columns: set[str], threads: int = 1) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """Order aggregates at every cutoff day, one row per (t, customer_id) in the population, in that order.

    Returns the customer ids and a dict of columns (`t` and one per aggregate). With `threads` > 1
    the customers are split into that many parts, and parts and cutoffs run side by side
    (numpy releases the GIL in its loops).
    """
    with ThreadPoolExecutor(threads) if threads > 1 else nullcontext() as pool:
        orders, ids, rank = load_sorted(con, orders_view, max(days), columns, pool)
        # Parts of at most PART_ROWS orders: fewer temporaries alive at once, whatever the threads.
        chunks = _parts(orders.starts, len(orders.day), max(threads, -(-len(orders.day) // PART_ROWS)))
        tasks = [(t, first, last) for t in sorted(days) for first, last in chunks]

        def run(task: tuple[int, int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            t, first, last = task
            keep, out = aggregates(orders.part(first, last), t, lookback_days)
            return keep + first, out

        results = list(pool.map(run, tasks)) if pool else [run(task) for task in tasks]
    orders = None  # frees the sorted orders (the closure above shares this name) before the final sort
    keep = np.concatenate([k for k, _ in results])
    # Each cutoff's population in order of customer id (ranks of different cutoffs never mix).
    t_of_row = np.concatenate([np.full(len(k), task[0], dtype=np.int32) for task, (k, _) in zip(tasks, results)])
    order = np.lexsort((rank[keep], t_of_row))
    out = {"t": t_of_row[order]}
    for name in list(results[0][1]):
        out[name] = np.concatenate([o.pop(name) for _, o in results])[order]
    return pd.Series(ids.take(keep[order]), dtype="str"), out


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
