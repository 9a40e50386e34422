"""The data contract: check a data directory table by table and return canonical tables.

Every table is described by a `TableSpec` in `TABLES`. `validate` reads a directory,
`validate_files` a given file per table (a directory's, or one partition's), `validate_tables`
checks frames already in memory; all return a `Dataset` whose columns have
canonical types and one written form (ids `str` in the form of `churn.data.spelling`, labels
such as event types normalised, order statuses canonical (`churn.data.statuses`), timestamps
`datetime64[us]` naive local times of the shop's zone (`[data] timezone`), dates at midnight,
amounts float64, counts Int64, flags bool) or raise one `ContractError` listing every problem,
one per line: file, column, rule, count and up to five offending rows (1-based data rows as in
the file, header excluded) with their values. Soft problems (exact duplicate rows, customers
missing from `customers`, unknown statuses, implausible timestamps) follow `ContractConfig`:
fail, or set the rows aside in `Dataset.quarantine`; customer ids that match no customer are
counted in `Dataset.unmatched`. Validation never writes anything (`churn.publish.files` writes
the quarantine beside a run's lists). `check_not_after` refuses data dated after the day of the run.

The checks are set-based SQL (DuckDB): every table is a view of its canonical columns and each
row's 0-based position in the file, and each rule is one query over it: repeated keys and
exact duplicate rows by sorting 64-bit hashes and comparing only the rows whose hashes repeat,
unknown customers and orphan items by anti-joins, the rest by filters (a Parquet key column
whose ids increase row by row is unique by that order, `churn.data.keys`, and is not sorted).
A Parquet file whose columns already have the canonical types is checked where it lies and stays there
(`churn.data.stored.StoredTable`): tens of millions of orders are validated without loading
them into pandas. CSV files, frames in memory and Parquet files with values to rewrite are
parsed in pandas first (`churn.data.parsing`), then checked by the same queries. Each file's
SHA-256 is computed once, in a thread beside the checks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn.config import ORDER_STATUSES, Config, ContractConfig
from churn.data import database, fingerprints, keys, parsing, privacy, spelling, statuses
from churn.data.io import SUFFIXES, NoFinalNewline, read_raw, table_path
from churn.data.stored import ROW, StoredTable, clear_sql, ident, literal, parquet_source, timestamp_literal
from churn.errors import ContractError

log = logging.getLogger(__name__)

__all__ = ["TABLES", "ColumnSpec", "TableSpec", "Dataset", "Unmatched", "validate", "validate_files",
           "validate_tables", "check_not_after"]

Kind = Literal["id", "label", "text", "timestamp", "date", "float", "int", "bool"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    required: bool = False
    allowed: frozenset[str] | None = None
    min: float | None = None

    @property
    def nullable(self) -> bool:
        # A bool column has no missing value once canonical, so an empty cell is a problem too.
        return not self.required and self.kind != "bool"


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    required: bool = False  # the file must exist
    key: str | None = None  # a column whose values must be unique
    customer_rows: bool = False  # customer_id must be in `customers` when that table exists

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)


def _col(name: str, kind: Kind, required: bool = False, **rules) -> ColumnSpec:
    return ColumnSpec(name, kind, required, **rules)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "orders",
            (
                _col("customer_id", "id", True),
                _col("order_id", "id", True),
                _col("order_ts", "timestamp", True),
                _col("amount", "float", True, min=0.0),
                _col("discount", "float", min=0.0),
                _col("coupon_used", "bool"),
                _col("n_items", "int"),
                _col("channel", "text"),
                _col("status", "label"),
            ),
            required=True,
            key="order_id",
            customer_rows=True,
        ),
        TableSpec(
            "order_items",
            (
                _col("order_id", "id", True),
                _col("product_id", "id", True),
                _col("category", "text"),
                _col("quantity", "int"),
                _col("amount", "float"),
            ),
        ),
        TableSpec(
            "customers",
            (
                _col("customer_id", "id", True),
                _col("signup_ts", "timestamp"),
                _col("region", "text"),
                _col("channel", "text"),
                _col("segment", "text"),
            ),
            key="customer_id",
        ),
        TableSpec(
            "events",
            (
                _col("customer_id", "id", True),
                _col("event_ts", "timestamp", True),
                _col("event_type", "label", True),
            ),
            customer_rows=True,
        ),
        TableSpec(
            "contacts",
            (
                _col("customer_id", "id", True),
                _col("list_date", "date", True),
                _col("action", "label", True),
                _col("arm", "label", True, allowed=frozenset({"treated", "holdout"})),
                _col("contacted_ts", "timestamp"),
                _col("outcome", "text"),
            ),
            customer_rows=True,
        ),
        TableSpec(
            "suppressions",
            (
                _col("customer_id", "id", True),
                _col("reason", "label", True, allowed=frozenset({"opt_out", "do_not_contact", "deleted", "complaint"})),
                _col("since", "date"),
            ),
        ),
    )
}

_SHOWN = 5  # offending rows quoted per problem


@dataclass(frozen=True)
class Unmatched:
    """Rows of a table whose customer_id matches no known customer (see `Dataset.unmatched`)."""

    rows: int  # rows with such an id
    customers: int  # distinct such ids
    first_ids: tuple[str, ...]  # the first few, in file order
    against: str  # the file the ids were looked up in: customers (when present), else orders
    handling: str  # "quarantined" (rows set aside) or "kept"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for a run manifest."""
        return {"rows": self.rows, "customers": self.customers, "first_ids": list(self.first_ids),
                "against": self.against, "handling": self.handling}

    def describe(self) -> str:
        """'3 rows (2 customer ids) match no customer in orders.csv, kept; first ids: '17', '18''."""
        ids = ", ".join(repr(i) for i in self.first_ids) + (", ..." if self.customers > len(self.first_ids) else "")
        return (f"{self.rows} row{'s' if self.rows != 1 else ''} ({self.customers} customer "
                f"id{'s' if self.customers != 1 else ''}) match{'es' if self.rows == 1 else ''} no customer in "
                f"{self.against}, "
                f"{self.handling}; first ids: {ids}")


def _table(name: str) -> property:
    """A Dataset attribute for table `name`: a pandas frame (a stored table is read once, on first use), or None."""

    def get(self: Dataset) -> pd.DataFrame | None:
        table = self._tables.get(name)
        if isinstance(table, StoredTable):
            table = self._tables[name] = table.frame()
        return table

    def set_(self: Dataset, value: pd.DataFrame | StoredTable | None) -> None:
        self._tables.pop(name, None)
        self._read.pop(name, None)
        if value is not None:
            self._tables[name] = value

    return property(get, set_, doc=f"The validated `{name}` table as a pandas frame (None when absent).")


class Dataset:
    """Validated tables with canonical dtypes; absent optional tables are None.

    `unmatched` says, per table (orders when a customers table exists, events, contacts,
    suppressions), how many rows name a customer_id that no known customer has: known
    customers are the `customers` table when present, else the customers in `orders`. Such
    rows are quarantined (orders, events, contacts, under `contract.unknown_customers`, when a
    customers table exists) or kept (a visitor who never bought; a suppression, which keeps
    applying should that customer appear). Nothing is dropped without being counted there.

    A table is a pandas frame or a `StoredTable` (a Parquet file checked where it lies). Reading
    an attribute (`dataset.orders`) gives a frame either way (a stored table is read once, on
    first use); `columns`, `column` and `register` read a stored table without loading it
    whole, which is how the daily run uses a large data set.
    """

    orders = _table("orders")
    order_items = _table("order_items")
    customers = _table("customers")
    events = _table("events")
    contacts = _table("contacts")
    suppressions = _table("suppressions")

    def __init__(self, orders: pd.DataFrame | StoredTable | None = None,
                 order_items: pd.DataFrame | StoredTable | None = None,
                 customers: pd.DataFrame | StoredTable | None = None,
                 events: pd.DataFrame | StoredTable | None = None,
                 contacts: pd.DataFrame | StoredTable | None = None,
                 suppressions: pd.DataFrame | StoredTable | None = None,
                 quarantine: dict[str, pd.DataFrame] | None = None, fingerprints: dict[str, str] | None = None,
                 row_counts: dict[str, int] | None = None, unmatched: dict[str, Unmatched] | None = None,
                 cleared: dict[str, dict[str, int]] | None = None, sources: dict[str, str] | None = None,
                 contact_details: dict[str, dict[str, int]] | None = None):
        given = {"orders": orders, "order_items": order_items, "customers": customers, "events": events,
                 "contacts": contacts, "suppressions": suppressions}
        self._tables: dict[str, pd.DataFrame | StoredTable] = {n: t for n, t in given.items() if t is not None}
        self._read: dict[str, dict[str, pd.Series]] = {}  # columns read from stored tables
        self.quarantine: dict[str, pd.DataFrame] = dict(quarantine or {})  # rows set aside, with file_row, reason
        self.fingerprints: dict[str, str] = dict(fingerprints or {})  # sha256 of each file read
        self.row_counts: dict[str, int] = dict(row_counts or {})  # rows kept per present table
        self.unmatched: dict[str, Unmatched] = dict(unmatched or {})  # per table, ids matching no customer
        # per table and column: implausible optional timestamps (e.g. signup_ts = 1900-01-01) set to
        # missing under the quarantine policy
        self.cleared: dict[str, dict[str, int]] = dict(cleared or {})
        self.sources: dict[str, str] = dict(sources or {})  # the file (or name) each table came from
        # per table and column: cells holding contact details removed under contact_details = "drop"
        # (a column named like one: its non-empty cells)
        self.contact_details: dict[str, dict[str, int]] = dict(contact_details or {})

    def names(self) -> list[str]:
        """The present tables' names, in the contract's order."""
        return [name for name in TABLES if name in self._tables]

    def tables(self) -> dict[str, pd.DataFrame]:
        """The present tables as pandas frames, by name (reads stored tables whole)."""
        return {name: getattr(self, name) for name in self.names()}

    def stored(self, name: str) -> bool:
        """True when table `name` is still in its Parquet file (not loaded into pandas)."""
        return isinstance(self._tables.get(name), StoredTable)

    def columns(self, name: str) -> list[str]:
        """The columns of table `name` (empty when absent), without reading it."""
        table = self._tables.get(name)
        if table is None:
            return []
        return list(table.columns) if isinstance(table, StoredTable) else [str(c) for c in table.columns]

    def column(self, name: str, column: str) -> pd.Series:
        """One column of table `name` as in its frame (index 0..n-1); a stored table's is read alone, once."""
        table = self._tables[name]
        if not isinstance(table, StoredTable):
            return table[column]
        read = self._read.setdefault(name, {})
        if column not in read:
            read[column] = table.column(column)
        return read[column]

    def register(self, con: duckdb.DuckDBPyConnection, names: tuple[str, ...] | None = None,
                 suffix: str = "") -> list[str]:
        """Make each present table (of `names`) a DuckDB relation `<name><suffix>` on `con`; return those registered.

        A stored table becomes a view over its file (only the columns a query reads are read), a
        frame is registered as it is.
        """
        done = []
        for name in names or tuple(TABLES):
            table = self._tables.get(name)
            if table is None:
                continue
            if isinstance(table, StoredTable):
                table.register(con, f"{name}{suffix}")
            else:
                con.register(f"{name}{suffix}", table)
            done.append(name)
        return done

    def customer_ids(self) -> set[str]:
        """Every customer id the data set holds: in any table (stored ones read by SQL) and in the quarantine."""
        ids: set[str] = set()
        for name in self.names():
            if "customer_id" not in self.columns(name):
                continue
            table = self._tables[name]
            values = table.distinct("customer_id") if isinstance(table, StoredTable) else table["customer_id"]
            ids.update(values.dropna().astype("str").unique())
        for rows in self.quarantine.values():
            if "customer_id" in rows:
                ids.update(rows["customer_id"].dropna().astype("str").unique())
        return ids

    def without_customers(self, customer_ids: set[str]) -> Dataset:
        """A copy without these customers' rows, in every table and the quarantine; their orders' items go too."""
        wanted = sorted(customer_ids)
        orders = self._tables.get("orders")
        if orders is None or "order_id" not in self.columns("orders"):
            order_ids: list[str] = []
        elif isinstance(orders, StoredTable):
            gone = orders.without("customer_id", wanted)
            order_ids = sorted(set(orders.rows(np.setdiff1d(gone.gone, orders.gone))["order_id"].dropna()))
        else:
            order_ids = sorted(set(orders.loc[orders["customer_id"].isin(wanted), "order_id"].dropna()))

        def drop(table: pd.DataFrame | StoredTable) -> pd.DataFrame | StoredTable:
            columns = table.columns
            column, values = ("customer_id", wanted) if "customer_id" in columns else ("order_id", order_ids)
            if column not in columns:
                return table
            if isinstance(table, StoredTable):
                return table.without(column, values)
            keep = ~table[column].isin(values)
            return table if keep.all() else table[keep].reset_index(drop=True)

        tables = {name: drop(table) for name, table in self._tables.items()}
        quarantine = {name: drop(rows) for name, rows in self.quarantine.items()}
        return Dataset(**tables, quarantine=quarantine, fingerprints=self.fingerprints,
                       row_counts=self.row_counts, unmatched=self.unmatched, cleared=self.cleared,
                       sources=self.sources, contact_details=self.contact_details)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_read"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._read = {}


# --- public entry points -------------------------------------------------------------------


def validate(data_dir: str | Path, config: Config | ContractConfig = ContractConfig()) -> Dataset:
    """Read every table file in `data_dir` and check it against the contract.

    `config`: the whole `Config` (its `[contract]` policies and `[data] timezone`, the shop's
    zone, to which timestamps with an offset are converted), or just a `ContractConfig` (the
    zone is then UTC).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ContractError(f"{data_dir}: data directory not found")
    problems: list[str] = []
    files: dict[str, Path] = {}
    for name, spec in TABLES.items():
        path = table_path(data_dir, name)
        if path is None:
            if spec.required:
                looked_for = ", ".join(f"{name}{suffix}" for suffix in SUFFIXES)
                problems.append(f"{name}: file not found in {data_dir} (looked for {looked_for})")
            continue
        files[name] = path
    return _validate_files(files, config, problems)


def _named_tables(names: Mapping[str, object], given: str) -> list[str]:
    """Problems with the table names a caller gave: names the contract does not know, orders missing."""
    problems = []
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        problems.append(f"unknown table(s) {', '.join(unknown)}; known tables: {', '.join(TABLES)}")
    if "orders" not in names:
        problems.append(f"orders: {given} not given (it is required)")
    return problems


def validate_files(files: Mapping[str, str | Path], config: Config | ContractConfig = ContractConfig()) -> Dataset:
    """Check one file per table (`{"orders": path, ...}`) against the contract; `config` as in `validate`.

    The files need not share a directory or be named after their table: e.g. one partition's
    files. Messages name each file by its name.
    """
    problems = _named_tables(files, "file")
    return _validate_files({name: Path(path) for name, path in files.items() if name in TABLES}, config, problems)


def validate_tables(
    tables: dict[str, pd.DataFrame],
    config: Config | ContractConfig = ContractConfig(),
    source: dict[str, str] | None = None,
    file_rows: dict[str, np.ndarray] | None = None,
) -> Dataset:
    """Check in-memory frames against the contract (no files, so no fingerprints); `config` as in `validate`.

    `file_rows` (per table, each row's 0-based position in its file) is for frames that are a
    part of a file, such as one partition of the Dask engine: messages and the quarantine then
    quote those file rows, and an empty part, or one whose rows were all set aside, is no
    problem here (the caller judges the whole file).
    """
    policy, timezone = _settings(config)
    problems = _named_tables(tables, "table")
    known = {name: frame for name, frame in tables.items() if name in TABLES}
    with _Run(policy, timezone, problems) as run:
        return run.check(known, {name: (source or {}).get(name, name) for name in known}, file_rows)


def check_not_after(dataset: Dataset, last_day: object) -> None:
    """Refuse data dated after `last_day`: raise one ContractError naming table, column and file rows.

    The contract cannot know what day it is; the edge that runs the pipeline does. Call this
    with the day the run happens (the clock, read at the edge, in the shop's zone): a timestamp
    later than the end of that day cannot be real (a placeholder or a clock error), and it
    would move "the last day of the data" to the future. Every timestamp and date column is
    checked but suppressions' `since` (a suppression applies whatever its date).
    """
    end = pd.Timestamp(last_day).normalize() + pd.Timedelta(days=1)
    problems = []
    for name in dataset.names():
        if name == "suppressions":
            continue
        present = dataset.columns(name)
        for column in TABLES[name].columns:
            if column.kind not in ("timestamp", "date") or column.name not in present:
                continue
            values = dataset.column(name, column.name)
            later = (values >= end).to_numpy(dtype=bool)
            if later.any():
                rows = _file_rows(dataset, name, later)
                problems.append(_rows(dataset.sources.get(name, name), column.name, rows,
                                      f"after {end.date() - pd.Timedelta(days=1)}, the day of the run",
                                      pd.Series(values[later].to_numpy(), index=rows)))
    if problems:
        raise ContractError("\n".join(problems) + "\nfix these dates at the source: data cannot come from the future")


def _validate_files(files: dict[str, Path], config: Config | ContractConfig, problems: list[str]) -> Dataset:
    """Probe or read each file, hash it in a thread beside the checks, and check the tables."""
    policy, timezone = _settings(config)
    hashing = ThreadPoolExecutor(1)
    try:
        hashes = {name: hashing.submit(fingerprints.sha256, path) for name, path in files.items()}
        in_pandas: set[str] = set()
        while True:
            try:
                dataset = _check_files(files, policy, timezone, list(problems), in_pandas)
            except _Rewrite as rewrite:  # a stored table has ids to rewrite after all: parse it in pandas
                in_pandas.add(rewrite.table)
                continue
            dataset.fingerprints = {name: hashes[name].result() for name in dataset.sources}
            return dataset
    finally:
        hashing.shutdown(wait=True, cancel_futures=True)


def _check_files(files: dict[str, Path], policy: ContractConfig, timezone: str, problems: list[str],
                 in_pandas: set[str]) -> Dataset:
    """One pass: each Parquet file probed (kept in place when it can be), the others read with pandas; then checked."""
    with _Run(policy, timezone, problems) as run:
        inputs: dict[str, pd.DataFrame | _Probe] = {}
        source: dict[str, str] = {}
        for name in TABLES:
            if name not in files:
                continue
            path = files[name]
            found = None
            if path.suffix == ".parquet" and name not in in_pandas:
                matched_later = "customers" in files and name in ("orders", "events", "contacts", "suppressions")
                found = _probe_parquet(run.con, name, path, policy, timezone, matched_later)
            if found is None:
                try:
                    found = read_raw(path)
                except NoFinalNewline as err:
                    problems.append(str(err))
                    continue
                except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException) as err:
                    problems.append(f"{path.name}: cannot be read ({err})")
                    continue
            inputs[name] = found
            source[name] = path.name
        return run.check(inputs, source)


class _Rewrite(Exception):
    """A table checked in place turns out to hold values the pandas parsers would rewrite: check it again in pandas."""

    def __init__(self, table: str):
        super().__init__(table)
        self.table = table


# --- the checks, in the order they run -----------------------------------------------------


@dataclass
class _Aside:
    """Rows set aside together: their file rows, the reason, and the columns cleared by then."""

    rows: np.ndarray
    reason: str
    cleared: tuple[str, ...]


@dataclass
class _Table:
    """One table while it is checked: DuckDB views `t_<name>` (every row, canonical) and `live_<name>`.

    `live_<name>` holds the rows no check has removed yet, with implausible optional timestamps
    cleared; both carry ROW, the 0-based file row. The rows are a pandas frame (parsed in
    pandas, indexed by file row) or a Parquet file read in place.
    """

    name: str
    source: str
    columns: list[str]
    n_rows: int
    frame: pd.DataFrame | None = None
    stored: StoredTable | None = None
    gone: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cleared: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=dict)
    unchecked: str | None = None  # a stored id column whose unmatched values are checked after the lookup
    key_hashes: str | None = None  # a stored table's key hashes, from its probe (see _probe_parquet)
    unique_key: bool = False  # a stored table's key holds each value once, as its probe found (see _probe_parquet)

    @property
    def spec(self) -> TableSpec:
        return TABLES[self.name]

    def _ranges(self) -> tuple[tuple[str, pd.Timestamp, pd.Timestamp], ...]:
        return tuple((column, low, high) for column, (low, high) in self.cleared.items())

    def rows(self, positions: np.ndarray) -> pd.DataFrame:
        """Rows in canonical form (nothing cleared), indexed by file row."""
        if self.stored is not None:
            return self.stored.rows(positions, cleared=())
        return self.frame.loc[positions]

    def clear(self, frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
        """`frame` with the implausible values of `columns` (cleared ones) set to missing."""
        for column in columns:
            low, high = self.cleared[column]
            values = frame[column]
            frame = frame.assign(**{column: values.mask((values < low) | (values >= high))})
        return frame

    def kept(self) -> pd.DataFrame | StoredTable:
        """The validated table: the rows kept, cleared columns cleared (a frame with index 0..n-1, or stored)."""
        if self.stored is not None:
            return self.stored.kept(self.gone, self._ranges())
        frame = self.frame
        if len(self.gone):
            frame = frame[~np.isin(frame.index.to_numpy(), self.gone)]
        return self.clear(frame, tuple(self.cleared)).reset_index(drop=True)


class _Run:
    """One validation: the tables as DuckDB views, the problems found, and the rows set aside."""

    def __init__(self, policy: ContractConfig, timezone: str, problems: list[str]):
        self.policy, self.timezone, self.problems = policy, timezone, problems
        self.con = database.connect(preserve_insertion_order=False)
        self.tables: dict[str, _Table] = {}
        self.quarantine: dict[str, list[_Aside]] = {}
        self.cleared: dict[str, dict[str, int]] = {}
        self.contact_details: dict[str, dict[str, int]] = {}  # per table and column: cells removed

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()

    def check(self, inputs: Mapping[str, pd.DataFrame | _Probe], source: dict[str, str],
              file_rows: Mapping[str, np.ndarray] | None = None) -> Dataset:
        """Run every rule family over the tables; raise one ContractError listing all problems.

        `file_rows`: per table given as a frame that is a part of its file (a partition), each
        row's 0-based position in the file (see `validate_tables`).
        """
        for name, spec in TABLES.items():
            if name not in inputs:
                continue
            given = inputs[name]
            if isinstance(given, _Probe):
                self._add_stored(name, given, source[name])
                continue
            removed: dict[str, int] = {}
            frame = _parse_table(spec, given, source[name], self.problems, self.timezone,
                                 (file_rows or {}).get(name), self.policy, removed)
            if removed:
                self.contact_details[name] = removed
            if name == "orders" and "status" in frame:
                frame = frame.assign(status=statuses.canonical(frame["status"], self.policy.statuses)[0])
            self._add_frame(name, frame, source[name], len(given))
        orders = self.tables.get("orders")
        order_ids = orders is not None and "order_id" in orders.columns
        if orders is not None and "status" in orders.columns:
            self._check_statuses(orders)
        for table in self.tables.values():
            self._check_plausible_dates(table)
        for table in self.tables.values():
            self._check_duplicates(table)
        self._check_order_items(order_ids)
        unmatched = self._match_customers()
        self._follow_orders()
        if file_rows is None:  # a part of a file (a partition): its caller judges the whole
            self._check_required_left()
        if self.problems:
            raise ContractError("\n".join(self.problems))
        return self._dataset(unmatched)

    # --- the tables as views -----------------------------------------------------------------

    def _add_frame(self, name: str, frame: pd.DataFrame, source: str, n_rows: int) -> None:
        """A table parsed in pandas (index: file row) becomes the view t_<name>."""
        table = _Table(name, source, [str(c) for c in frame.columns], n_rows, frame=frame)
        rows = frame.assign(**{ROW: frame.index.to_numpy(dtype=np.int64)})
        try:
            self.con.register(f"t_{name}", rows)
        except duckdb.Error:  # an extra column DuckDB cannot read from pandas: check it as text
            odd = [c for c in rows.columns if rows[c].dtype == object and c not in {s.name for s in table.spec.columns}]
            self.con.register(f"t_{name}", rows.astype({c: "str" for c in odd}))
        self.tables[name] = table
        self._refresh(table)

    def _add_stored(self, name: str, probe: _Probe, source: str) -> None:
        """A Parquet file checked in place: the view t_<name>, and the value rules its probe found broken."""
        stored, spec = probe.stored, TABLES[name]
        table = _Table(name, source, list(stored.columns), stored.n_rows, stored=stored, unchecked=probe.unchecked,
                       key_hashes=probe.key_hashes, unique_key=probe.unique_key)
        self.con.execute(f"CREATE VIEW t_{name} AS SELECT {', '.join(stored.expressions(with_row=True))} "
                         f"FROM {parquet_source(stored.path)}")
        self.tables[name] = table
        self._refresh(table)
        # The rules the pandas parse applies (_parse_table), in the same order.
        self.problems.extend(_check_columns(spec, list(stored.columns), source, self.policy))
        if spec.required and stored.n_rows == 0:
            self.problems.append(f"{source}: no data rows")
        for name_ in stored.columns:
            column = spec.column(name_)
            if column is None:
                continue
            c = ident(name_)
            if probe.counts.get(("empty", name_)):
                empty = self._flagged(f"SELECT {ROW} FROM t_{name} WHERE {c} IS NULL")
                self.problems.append(_rows(source, name_, empty.index, "empty"))
            if probe.counts.get(("min", name_)):
                low = self._flagged(f"SELECT {ROW}, {c} FROM t_{name} WHERE {c} < {column.min!r}")
                self.problems.append(_rows(source, name_, low.index, f"< {column.min:g}", low))
            if column.allowed is not None and probe.labels.get(name_, set()) - column.allowed:
                allowed = ", ".join(literal(v) for v in sorted(column.allowed))
                outside = self._flagged(f"SELECT {ROW}, {c} FROM t_{name} WHERE {c} IS NOT NULL AND {c} NOT IN ({allowed})")
                self.problems.append(_rows(source, name_, outside.index,
                                           f"not one of {', '.join(sorted(column.allowed))}", outside))

    def _refresh(self, table: _Table) -> None:
        """(Re)define live_<name>: the rows not removed, cleared columns cleared."""
        columns = [ROW] + [clear_sql(ident(c), *table.cleared[c]) + f" AS {ident(c)}" if c in table.cleared
                           else ident(c) for c in table.columns]
        where = ""
        if len(table.gone):
            self.con.register(f"gone_{table.name}", pa.table({ROW: table.gone}))
            where = f" WHERE {ROW} NOT IN (SELECT {ROW} FROM gone_{table.name})"
        self.con.execute(f"CREATE OR REPLACE VIEW live_{table.name} AS SELECT {', '.join(columns)} "
                         f"FROM t_{table.name}{where}")

    def _flagged(self, sql: str) -> pd.Series:
        """The rows a query returns, by file row (its first column): its second column's values, else True."""
        got = self.con.execute(sql).df()
        rows = got[ROW].to_numpy(dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        if got.shape[1] == 1:
            return pd.Series(True, index=rows[order])
        values = got.iloc[:, 1]
        return pd.Series(values.to_numpy()[order], index=rows[order], dtype=values.dtype)

    def _count(self, relation: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0])

    def _remove(self, table: _Table, rows: np.ndarray) -> None:
        table.gone = np.union1d(table.gone, np.asarray(rows, dtype=np.int64))
        self._refresh(table)

    def _soft(self, table: _Table, rows: np.ndarray, setting: str, reason: str, message: str) -> None:
        """Apply the policy `setting` to the rows; either way, later checks no longer see them."""
        if not len(rows):
            return
        if getattr(self.policy, setting) == "fail":
            hint = 'fix the file, or set it to "quarantine" to set these rows aside'
            self.problems.append(f'{message}; contract.{setting} is "fail": {hint}')
            self._remove(table, rows)
            return
        self._set_aside(table, rows, reason)

    def _set_aside(self, table: _Table, rows: np.ndarray, reason: str) -> None:
        """Move the rows to the quarantine, with the reason (and the columns cleared so far)."""
        rows = np.asarray(rows, dtype=np.int64)
        self.quarantine.setdefault(table.name, []).append(_Aside(rows, reason, tuple(table.cleared)))
        self._remove(table, rows)

    def _repeated(self, table: _Table, hashed: str) -> np.ndarray:
        """Rows of live_<name> whose 64-bit hash of `hashed` another row shares.

        The hashes alone are sorted and neighbours compared (no row numbers carried through the
        sort); only when some repeat are their rows looked up.
        """
        live = f"live_{table.name}"
        hashes = f"(SELECT hash({hashed}) AS h FROM {live})"
        if table.key_hashes and hashed == ident(table.spec.key or "") and not len(table.gone):
            hashes = table.key_hashes  # every row's, kept by the probe's scan
        repeated = self.con.execute(f"""SELECT DISTINCT h FROM (
                SELECT h, lag(h) OVER (ORDER BY h) AS before FROM {hashes})
            WHERE h = before""").df()["h"].to_numpy()
        if not len(repeated):
            return np.zeros(0, dtype=np.int64)
        self.con.register("repeated_hashes", pa.table({"h": np.asarray(repeated)}))
        return self._flagged(f"SELECT {ROW} FROM {live} WHERE hash({hashed}) IN (SELECT h FROM repeated_hashes)"
                             ).index.to_numpy()

    # --- the rule families -------------------------------------------------------------------

    def _check_statuses(self, orders: _Table) -> None:
        """Order statuses churn cannot map (`churn.data.statuses`) fail or go to quarantine."""
        known = ", ".join(literal(s) for s in ORDER_STATUSES)
        unknown = f"FROM live_orders WHERE status IS NOT NULL AND status NOT IN ({known})"
        counts = self.con.execute(f"SELECT status, count(*) {unknown} GROUP BY status").fetchall()
        if not counts:
            return
        counts = sorted(sorted(counts), key=lambda vc: -vc[1])  # most rows first, then by value
        values = ", ".join(f"{value!r} ({n} row{'s' if n != 1 else ''})" for value, n in counts[:10])
        values += ", ..." if len(counts) > 10 else ""
        example = counts[0][0]
        rows = self._flagged(f"SELECT {ROW}, status {unknown}")
        message = (_rows(orders.source, "status", rows.index, "with a status churn does not know", rows)
                   + f"; unknown values: {values}; say what each means in churn.toml, e.g. [contract.statuses] "
                     f'{example} = "cancelled" (one of {", ".join(ORDER_STATUSES)}: only completed orders are purchases)')
        self._soft(orders, rows.index.to_numpy(), "unknown_statuses", "unknown_status", message)

    def _check_plausible_dates(self, table: _Table) -> None:
        """Timestamps outside [contract] min_date .. max_date fail, or are set aside by policy.

        Outside that range are warehouse placeholders (9999-12-31, 1900-01-01, 1970-01-01) and
        typos. Under "quarantine", rows with such a required timestamp (an order's, an event's) go
        to the quarantine; an optional one (a signup date, a contact time) is set to missing, which
        is what such a placeholder means, and counted in `Dataset.cleared`.
        """
        low = pd.Timestamp(self.policy.min_date)
        high = pd.Timestamp(self.policy.max_date) + pd.Timedelta(days=1)
        span = f"outside {self.policy.min_date} .. {self.policy.max_date}"
        hint = "placeholders or typos; if these dates are real, widen [contract] min_date / max_date"
        for column in table.spec.columns:
            if column.kind not in ("timestamp", "date") or column.name not in table.columns:
                continue
            c = ident(column.name)
            outside = self._flagged(f"SELECT {ROW}, {c} FROM live_{table.name} "
                                    f"WHERE {c} < {timestamp_literal(low)} OR {c} >= {timestamp_literal(high)}")
            if outside.empty:
                continue
            message = _rows(table.source, column.name, outside.index, span, outside) + f"; {hint}"
            if column.required:
                self._soft(table, outside.index.to_numpy(), "implausible_timestamps", "implausible_timestamp", message)
            elif self.policy.implausible_timestamps == "fail":
                self.problems.append(f'{message}; contract.implausible_timestamps is "fail": fix the file, or set it '
                                     f'to "quarantine" to clear these cells')
            else:
                table.cleared[column.name] = (low, high)
                self._refresh(table)
                self.cleared.setdefault(table.name, {})[column.name] = len(outside)

    def _check_duplicates(self, table: _Table) -> None:
        """Exact duplicate rows (the first copy kept) fail or go to quarantine; then each key value on one row only.

        Two rows that are equal share every hash, so only rows whose hash repeats are compared
        exactly: of the key (order_id in orders, customer_id in customers) where the table has
        one (a row equal to another repeats its key), else of the whole row.
        """
        if not table.columns or table.n_rows - len(table.gone) < 2:
            return
        key = table.spec.key if table.spec.key in table.columns else None
        if key and table.unique_key:
            return  # every key value once in the file, so in the rows left too: no repeated key, no equal rows
        every = ", ".join(self._comparable(table))
        candidates = self._repeated(table, ident(key) if key else every)
        if not len(candidates):
            return
        self.con.register(f"candidates_{table.name}", pa.table({ROW: candidates}))
        among = f"{ROW} IN (SELECT {ROW} FROM candidates_{table.name})"
        dup = self._flagged(f"""SELECT {ROW} FROM (
                SELECT {ROW}, row_number() OVER (PARTITION BY {every} ORDER BY {ROW}) AS copy
                FROM live_{table.name} WHERE {among}) WHERE copy > 1""")
        message = _rows(table.source, None, dup.index, "", noun="exact duplicate row")
        self._soft(table, dup.index.to_numpy(), "duplicate_rows", "duplicate_row", message)
        if key:
            k = ident(key)
            repeated = self._flagged(f"""SELECT {ROW}, {k} FROM live_{table.name} WHERE {among} AND {k} IN (
                SELECT {k} FROM live_{table.name} WHERE {among} AND {k} IS NOT NULL GROUP BY {k} HAVING count(*) > 1)""")
            if not repeated.empty:
                self.problems.append(_rows(table.source, key, repeated.index, f"with a duplicate {key}", repeated))

    def _comparable(self, table: _Table) -> list[str]:
        """Each column as compared for duplicates: a float NaN is a missing value (as pandas sees it)."""
        types = dict(self.con.execute(f"SELECT column_name, column_type FROM (DESCRIBE live_{table.name})").fetchall())
        return [f"CASE WHEN isnan({ident(c)}) THEN NULL ELSE {ident(c)} END" if types.get(c) in ("DOUBLE", "FLOAT")
                else ident(c) for c in table.columns]

    def _check_order_items(self, order_ids: bool) -> None:
        """Every order_items row points at an order of the orders file (any of its rows, even set aside)."""
        items = self.tables.get("order_items")
        if items is None or not order_ids or "order_id" not in items.columns:
            return
        orphan = self._flagged(f"SELECT i.{ROW}, i.order_id FROM live_order_items i ANTI JOIN t_orders o "
                               f"ON i.order_id = o.order_id WHERE i.order_id IS NOT NULL")
        if not orphan.empty:
            rule = f"not in {self.tables['orders'].source}"
            self.problems.append(_rows(items.source, "order_id", orphan.index, rule, orphan))

    def _match_customers(self) -> dict[str, Unmatched]:
        """Look every table's customer_id up among the known customers; return what matched nothing.

        Known customers are the `customers` table when present, else the customers in `orders`.
        With a customers table, unknown orders, events and contacts fail or go to quarantine
        (`contract.unknown_customers`). Suppressions are kept and counted, or refused
        under `contract.unmatched_suppressions = "fail"`. Always an error, whatever the policy: ids
        that match a known customer once case, separators and leading zeros are ignored (two files
        spell ids differently), and orders, events or contacts none of whose rows is in the customers
        table (not the same ids: the policy would set the whole table aside). A suppression list may
        hold only people who never bought, so it is not refused for that; its unmatched ids are
        counted and logged as a warning.
        """
        customers = self.tables.get("customers")
        reference = "customers" if customers is not None else "orders"
        known = self.tables.get(reference)
        if known is None or "customer_id" not in known.columns:
            return {}
        unmatched = {}
        for name in ("orders", "events", "contacts", "suppressions"):
            table = self.tables.get(name)
            if name == reference or table is None or "customer_id" not in table.columns:
                continue
            ids = self._flagged(f"SELECT x.{ROW}, x.customer_id FROM live_{name} x ANTI JOIN live_{reference} k "
                                f"ON x.customer_id = k.customer_id WHERE x.customer_id IS NOT NULL")
            if ids.empty:
                continue
            if table.unchecked == "customer_id" and _to_rewrite(ids):
                raise _Rewrite(name)
            against = known.source
            loose = self._loosely_known(ids, reference)
            if loose.any():
                self.problems.append(_rows(
                    table.source, "customer_id", ids.index[loose],
                    f"not in {against} as written, but in it once case, separators and leading zeros are ignored", ids)
                    + "; the two files spell the same ids differently: export both with the same ids")
                continue
            if len(ids) == self._count(f"live_{name}") and customers is not None and name != "suppressions":
                first = self.con.execute(f"SELECT customer_id FROM live_{reference} WHERE customer_id IS NOT NULL "
                                         f"ORDER BY {ROW} LIMIT 3").fetchall()
                first = ", ".join(repr(row[0]) for row in first)
                self.problems.append(_rows(table.source, "customer_id", ids.index, f"not in {against}", ids)
                                     + f"; not one row matches, so these are not the same ids as in {against} "
                                       f"({first}, ...): export both with the same ids")
                continue
            quarantine = (customers is not None and name != "suppressions"
                          and self.policy.unknown_customers == "quarantine")
            unmatched[name] = _unmatched(ids, against, "quarantined" if quarantine else "kept")
            if name == "suppressions":
                if self.policy.unmatched_suppressions == "fail":
                    self.problems.append(_rows(table.source, "customer_id", ids.index, f"not in {against}", ids)
                                         + '; contract.unmatched_suppressions is "fail": fix the ids, or set it to '
                                           '"warn" to keep them (they still apply should these customers appear)')
                continue
            if customers is None:
                continue  # events or contacts of people who never bought: kept, counted
            message = _rows(table.source, "customer_id", ids.index, f"not in {against}", ids)
            self._soft(table, ids.index.to_numpy(), "unknown_customers", "unknown_customer", message)
        return unmatched

    def _loosely_known(self, ids: pd.Series, reference: str) -> np.ndarray:
        """True where an id matches a known id only loosely (case, separators, leading zeros ignored)."""
        known = self.con.execute(f"SELECT DISTINCT customer_id FROM live_{reference} WHERE customer_id IS NOT NULL"
                                 ).df()["customer_id"]
        loose_known = spelling.loose_ids(known.astype("str"))
        return _isin(spelling.loose_ids(ids.astype("str")), loose_known).to_numpy(dtype=bool)

    def _follow_orders(self) -> None:
        """The items of an order set aside go with it, with its reason: order_items never points at a missing order."""
        items, orders, gone = self.tables.get("order_items"), self.tables.get("orders"), self.quarantine.get("orders")
        if items is None or not gone or "order_id" not in items.columns or "order_id" not in orders.columns:
            return
        by_reason: dict[str, list[np.ndarray]] = {}
        for part in gone:
            by_reason.setdefault(part.reason, []).append(part.rows)
        for reason in sorted(by_reason):
            self.con.register("orders_gone", pa.table({ROW: np.concatenate(by_reason[reason])}))
            follow = self._flagged(f"""SELECT i.{ROW} FROM live_order_items i
                WHERE i.order_id IN (SELECT order_id FROM t_orders WHERE {ROW} IN (SELECT {ROW} FROM orders_gone))
                AND NOT EXISTS (SELECT 1 FROM live_orders o WHERE o.order_id = i.order_id)""")
            if len(follow):
                self._set_aside(items, follow.index.to_numpy(), reason)

    def _check_required_left(self) -> None:
        """A required table whose every row a policy set aside is an error, never an empty run."""
        for name, spec in TABLES.items():
            table = self.tables.get(name)
            if not spec.required or table is None or table.n_rows - len(table.gone) or not table.n_rows:
                continue
            parts = self.quarantine.get(name, [])
            reasons = pd.Series(np.repeat([p.reason for p in parts], [len(p.rows) for p in parts]),
                                dtype=object).value_counts()
            if not len(reasons):
                continue  # already reported as a problem
            why = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
            self.problems.append(f"{table.source}: all {table.n_rows} rows were set aside ({why}): nothing is "
                                 f"left to work with; see the quarantine, fix the file or the [contract] policy")

    def _dataset(self, unmatched: dict[str, Unmatched]) -> Dataset:
        """The validated tables, the quarantine (rows as they were when set aside, in file order), counts, logs."""
        quarantine = {}
        for name, parts in self.quarantine.items():
            table = self.tables[name]
            rows = table.rows(np.unique(np.concatenate([part.rows for part in parts])))
            frames = []
            for part in parts:
                frame = table.clear(rows.loc[part.rows], part.cleared)
                frame = frame.rename(columns={"file_row": "file_row_in_file", "reason": "reason_in_file"})
                frame.insert(0, "reason", part.reason)
                frame.insert(0, "file_row", frame.index + 1)
                frames.append(frame)
            quarantine[name] = pd.concat(frames).sort_values("file_row", kind="stable").reset_index(drop=True)
        for name, what in unmatched.items():
            (log.warning if name == "suppressions" else log.info)("%s: %s", self.tables[name].source, what.describe())
        for name, columns in self.cleared.items():
            for column, n in columns.items():
                log.warning("%s: column %s: %d implausible timestamp%s set to missing", self.tables[name].source,
                            column, n, "s" if n != 1 else "")
        return Dataset(**{name: table.kept() for name, table in self.tables.items()}, quarantine=quarantine,
                       row_counts={name: table.n_rows - len(table.gone) for name, table in self.tables.items()},
                       unmatched=unmatched, sources={name: table.source for name, table in self.tables.items()},
                       cleared=self.cleared, contact_details=self.contact_details)


# --- tables parsed in pandas ---------------------------------------------------------------


def _parse_table(spec: TableSpec, raw: pd.DataFrame, source: str, problems: list[str], timezone: str,
                 file_rows: np.ndarray | None = None, policy: ContractConfig = ContractConfig(),
                 removed: dict[str, int] | None = None) -> pd.DataFrame:
    """Column checks, then each known column parsed to its canonical type and its values checked.

    The index is kept as the 0-based position in the file (`file_rows` when the frame is a part
    of the file), so later messages quote file rows. Contact details (`churn.data.privacy`) are
    refused, or under `contract.contact_details = "drop"` removed: columns named like one, cells of
    optional text columns holding one; `removed` counts the cells per column.
    """
    raw = parsing.strip_names(raw)
    if file_rows is not None:
        raw = raw.set_axis(pd.Index(np.asarray(file_rows, dtype=np.int64)))
    problems.extend(_check_columns(spec, list(raw.columns), source, policy))
    removed = {} if removed is None else removed
    if policy.contact_details == "drop":
        named = [name for name in raw.columns if spec.column(name) is None and privacy.contact_column(name)]
        for name in named:
            removed[name] = int(raw[name].notna().sum())
        raw = raw.drop(columns=named)
    if spec.required and len(raw) == 0 and file_rows is None:
        problems.append(f"{source}: no data rows")
    parsed = {}
    for name in raw.columns:
        column = spec.column(name)
        if column is None:  # unknown columns travel as they are
            values = raw[name]
            if (pd.api.types.is_string_dtype(values) or values.dtype == object) and not privacy.contact_column(name):
                values = _contact_values(None, name, values, source, problems, policy, removed)
            parsed[name] = values
            continue
        values, unparsable = parsing.parse(column.kind, raw[name], timezone)
        if unparsable.any():
            problems.append(_rows(source, name, _where(unparsable), parsing.UNPARSABLE[column.kind], raw[name]))
        problems.extend(_check_values(column, values, unparsable, source))
        if column.kind in ("id", "label", "text"):  # looked at as written (a label's normal form has no "@")
            values = _contact_values(column, name, values, source, problems, policy, removed, raw[name])
        parsed[name] = values
    return pd.DataFrame(parsed, index=raw.index)


def _contact_values(column: ColumnSpec | None, name: str, values: pd.Series, source: str, problems: list[str],
                    policy: ContractConfig, removed: dict[str, int], written: pd.Series | None = None) -> pd.Series:
    """A text column's cells holding an e-mail address or a phone number: refused, or blanked under "drop".

    `values`: the parsed column; `written`: the cells as in the file (looked at), when they differ.

    Ids are looked at for e-mail addresses only (a numeric id may look like a phone number);
    ids and required columns are refused whatever the policy (a blank id or label breaks the row).
    """
    is_id = column is not None and column.kind == "id"
    written = values if written is None else written
    present = written.notna().to_numpy(dtype=bool)
    found = np.zeros(len(values), dtype=bool)
    if present.any():
        found[present] = privacy.masks(written[present].astype("str").to_numpy(), phones=not is_id)
    if not found.any():
        return values
    what = "an e-mail address" if is_id else "an e-mail address or a phone number"
    message = _rows(source, name, values.index[found], f"holding {what}") + (
        "; churn keeps no contact details")
    if is_id:
        problems.append(message + ": ids must not be contact details; export a pseudonymous customer number instead")
    elif column is not None and column.required:
        problems.append(message + ": remove them from the file")
    elif policy.contact_details == "fail":
        problems.append(message + ': remove them from the file, or set [contract] contact_details = "drop" to '
                                  'blank such cells (counted in the run manifest)')
    else:
        removed[name] = removed.get(name, 0) + int(found.sum())
        values = values.mask(pd.Series(found, index=values.index))
    return values


def _check_columns(spec: TableSpec, columns: list[str], source: str,
                   policy: ContractConfig = ContractConfig()) -> list[str]:
    """Required columns present; no column named like a contact detail (unless the policy drops them)."""
    problems = []
    missing = [c.name for c in spec.columns if c.required and c.name not in columns]
    if missing:
        s = "s" if len(missing) > 1 else ""
        found = ", ".join(columns) or "none"
        problems.append(f"{source}: missing required column{s} {', '.join(missing)} (columns found: {found})")
    if policy.contact_details == "fail":
        for name in columns:
            if spec.column(name) is None and privacy.contact_column(name):
                problems.append(
                    f"{source}: column {name}: looks like a contact detail; for privacy churn holds no names, "
                    f"e-mails, phones or addresses: remove the column from the file, or set [contract] "
                    f'contact_details = "drop" to leave it out (counted in the run manifest)'
                )
    return problems


def _check_values(column: ColumnSpec, values: pd.Series, unparsable: pd.Series, source: str) -> list[str]:
    """No empty cells where a value is needed; minimum and allowed values respected."""
    problems = []
    if not column.nullable:
        empty = values.isna() & ~unparsable
        if empty.any():
            problems.append(_rows(source, column.name, _where(empty), "empty"))
    if column.min is not None:
        low = values < column.min
        if low.any():
            problems.append(_rows(source, column.name, _where(low), f"< {column.min:g}", values))
    if column.allowed is not None:
        outside = values.notna() & ~values.isin(sorted(column.allowed))
        if outside.any():
            rule = f"not one of {', '.join(sorted(column.allowed))}"
            problems.append(_rows(source, column.name, _where(outside), rule, values))
    return problems


# --- Parquet files checked where they lie ----------------------------------------------------


@dataclass
class _Probe:
    """A Parquet file the contract checks in place: its canonical SQL, and what one scan of it found."""

    stored: StoredTable
    counts: dict[tuple[str, str], int]  # (rule, column) -> rows breaking it: "empty", "min"
    labels: dict[str, set[str]]  # label column -> the canonical values present
    unchecked: str | None = None  # an id column to check after the customer lookup (see _probe_parquet)
    key_hashes: str | None = None  # a temporary table of the key's hashes, one per file row, in file order
    unique_key: bool = False  # the key's ids increase row by row, so each is unique (`churn.data.keys`)


_MAX_LABELS = 10_000  # more distinct values than this in a label column: parse it in pandas
_INTEGERS = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"})


def _probe_parquet(con: duckdb.DuckDBPyConnection, name: str, path: Path, policy: ContractConfig, timezone: str,
                   matched_later: bool = False) -> _Probe | None:
    """What a look at a Parquet file finds, when the file can be checked where it lies; else None (parse it in pandas).

    It can when every contract column's values are already what the pandas parsers would make
    of them: ids as text with no surrounding space, no decimal point (`13482.0`) and no
    scientific notation among numbers (or as integers), naive timestamps (any unit), numbers,
    flags, labels of a few distinct spellings (mapped through `churn.data.spelling` and
    `churn.data.statuses`, value by value), text. Anything else (time zones, numbers as text,
    ids to rewrite, infinite amounts) is parsed in pandas, where the messages come from.

    Counts, minima and maxima come first, from the file's statistics where Parquet has them;
    then one scan for what statistics cannot tell (the last character of ids, decimal points,
    NaN). `matched_later`: the customer_id column will be looked up in a customers table, so it
    is not scanned here: an id that matches is a customer's canonical id, and the ones that do
    not are checked after the lookup (`_Run._match_customers`).
    """
    spec = TABLES[name]
    source = f"read_parquet({literal(str(path))})"
    try:
        schema = pq.read_schema(path)
        n_rows = pq.ParquetFile(path).metadata.num_rows
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except (OSError, pa.ArrowException, duckdb.Error):
        return None  # pandas reads it, or says why it cannot
    names = [str(row[0]) for row in described]
    columns = [n.strip() for n in names]
    index = (schema.pandas_metadata or {}).get("index_columns", [])
    if (names != schema.names or len(set(columns)) < len(columns) or "file_row_number" in names
            or any(isinstance(i, str) for i in index)):  # an index column: pandas reads it as the index
        return None
    if policy.contact_details == "drop" and any(spec.column(c) is None and privacy.contact_column(c) for c in columns):
        return None  # columns to leave out
    kinds: dict[str, str] = {}
    select: list[str] = []
    labels: dict[str, tuple[set[str], bool]] = {}
    contact: list[str] = []  # conditions: a contact detail in a text cell (see churn.data.privacy)
    for raw_name, column, row in zip(names, columns, described):
        spec_column, type_, raw = spec.column(column), str(row[1]), ident(raw_name)
        if spec_column is None:
            if type_ == "VARCHAR":
                contact.append(privacy.sql(raw))
            select.append(raw)
            continue
        if spec_column.kind == "text" and type_ == "VARCHAR":
            contact.append(privacy.sql(raw))
        if spec_column.kind == "label" and type_ == "VARCHAR":
            mapped = _label_sql(con, source, raw, name == "orders" and column == "status", policy)
            if mapped is None:
                return None
            expr, labels[column] = mapped[0], (mapped[1], mapped[2])
        else:
            expr = _canonical_sql(spec_column.kind, type_, raw)
        if expr is None:
            return None
        kinds[column] = spec_column.kind
        select.append(expr)
    types = {column: str(row[1]) for column, row in zip(columns, described)}
    raws = dict(zip(columns, names))
    # 1. What statistics answer: non-missing counts, and the least and greatest values.
    stats = ["count(*)"]
    for column, kind in kinds.items():
        raw = ident(raws[column])
        stats.append(f"count({raw})")
        if kind == "id" and types[column] == "VARCHAR" or spec.column(column).min is not None:
            stats += [f"min({raw})", f"max({raw})"]
        if kind == "float" and types[column] in ("DOUBLE", "FLOAT"):
            stats += [f"min({raw})", f"max({raw})"] if spec.column(column).min is None else []
    try:
        got = iter(con.execute(f"SELECT {', '.join(stats)} FROM {source}").fetchall()[0])
    except duckdb.Error:
        return None
    n = next(got)
    scan: list[tuple[tuple[str, str] | None, str]] = []  # (rule, column) or None for "must parse", condition
    counts: dict[tuple[str, str], int] = {}
    unique_key = False  # the key's ids increase row by row (`churn.data.keys`): each is unique
    for column, kind in kinds.items():
        spec_column, raw, type_ = spec.column(column), ident(raws[column]), types[column]
        present = next(got)
        low = high = None
        if kind == "id" and type_ == "VARCHAR" or spec_column.min is not None:
            low, high = next(got), next(got)
        if kind == "float" and type_ in ("DOUBLE", "FLOAT") and spec_column.min is None:
            low, high = next(got), next(got)
        if kind == "id" and type_ == "VARCHAR":
            # Anything the trimming or normal_ids would change: a first or last character that is
            # a space, a control or not ASCII (the first by the minimum and maximum), a decimal
            # point (`13482.0`); among numbers, an exponent (`1.3482E+04`).
            if present and (low < "!" or high >= "\x7f"):
                return None
            numbers = bool(present) and _numbers_first(path, raws[column])
            if column == spec.key and present == n:
                # One pass of its own (`churn.data.keys`): the same questions, and whether the ids
                # increase row by row, which proves them unique without the sort of their hashes.
                try:
                    found = keys.scan(path, raws[column], numbers)
                except (OSError, ValueError, KeyError, pa.ArrowException):  # Arrow cannot: the SQL below can
                    found = keys.KeyScan(rewrite=False, increasing=False)
                if found.rewrite:
                    return None
                unique_key = found.increasing
            if not unique_key or column != spec.key:
                if not (matched_later and column == "customer_id"):  # else checked after the lookup (_to_rewrite)
                    scan.append((None, f"reverse({raw}) < '!' OR reverse({raw}) >= chr(127) "
                                       f"OR contains({raw}, '.') OR {privacy.sql(raw, phones=False)}"))
                if numbers:
                    scan.append((None, f"contains({raw}, 'e') OR contains({raw}, 'E')"))
        if kind == "float" and type_ in ("DOUBLE", "FLOAT") and present:
            if low == float("-inf") or high == float("inf"):
                return None
            if high != high:  # NaN sorts last and may hide an infinity: look
                scan.append((None, f"isinf({raw})"))
        empty = n - present
        if not spec_column.nullable:
            if kind == "float" and type_ in ("DOUBLE", "FLOAT"):
                scan.append((("empty", column), f"{raw} IS NULL OR isnan({raw})"))
            elif kind == "label" and labels[column][1]:  # some spelling means nothing
                scan.append((("empty", column), f"({select[columns.index(column)]}) IS NULL"))
            else:
                counts["empty", column] = empty
        if spec_column.min is not None:
            if present and low < spec_column.min:
                scan.append((("min", column), f"{raw} < {spec_column.min!r}"))
            else:
                counts["min", column] = 0
    scan += [(None, condition) for condition in contact]
    # 2. One scan for the rest.
    # A text key (order_id, customer_id) not proven unique is read by this scan anyway: its hashes
    # are kept for the duplicate check (`_Run._repeated`), which then does not read the column again.
    key = (spec.key if kinds.get(spec.key or "") == "id" and types.get(spec.key or "") == "VARCHAR"
           and not unique_key else None)
    key_hashes = None
    if scan:
        try:
            if key is None:
                conditions = [f"count(*) FILTER (WHERE {condition})" for _, condition in scan]
                found = con.execute(f"SELECT {', '.join(conditions)} FROM {source}").fetchall()[0]
            else:
                key_hashes = f"key_hashes_{name}"
                flags = ", ".join(f"({condition}) AS c{i}" for i, (_, condition) in enumerate(scan))
                con.execute(f"CREATE OR REPLACE TEMP TABLE {key_hashes} AS SELECT hash({ident(raws[key])}) AS h, "
                            f"{flags} FROM {source}")
                conditions = [f"count(*) FILTER (WHERE c{i})" for i in range(len(scan))]
                found = con.execute(f"SELECT {', '.join(conditions)} FROM {key_hashes}").fetchall()[0]
        except duckdb.Error:
            return None
        for (rule, _), count in zip(scan, found):
            if rule is None and count:
                return None
            if rule is not None:
                counts[rule] = int(count)
    stored = StoredTable(name, path, tuple(columns), tuple(select), kinds, n_rows, timezone, dict(policy.statuses))
    return _Probe(stored, counts, {column: values for column, (values, _) in labels.items()},
                  "customer_id" if matched_later and kinds.get("customer_id") == "id" else None, key_hashes,
                  unique_key)


def _canonical_sql(kind: str, type_: str, raw: str) -> str | None:
    """The SQL giving a column's canonical values from its Parquet type, or None when pandas must parse it."""
    if kind == "id":
        return raw if type_ == "VARCHAR" else f"CAST({raw} AS VARCHAR)" if type_ in _INTEGERS else None
    if kind == "text":
        return raw if type_ == "VARCHAR" else None
    if kind in ("timestamp", "date"):
        if type_ == "TIMESTAMP_NS":  # to microseconds rounding down, as pandas' as_unit does
            ns = f"epoch_ns({raw})"
            ts = f"make_timestamp(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000)"
        elif type_ in ("TIMESTAMP", "TIMESTAMP_MS", "TIMESTAMP_S"):
            ts = f"CAST({raw} AS TIMESTAMP)"
        else:  # with a time zone, dates, text: pandas converts them
            return None
        return ts if kind == "timestamp" else f"date_trunc('day', {ts})"
    if kind == "float":
        if type_ in ("DOUBLE", "FLOAT"):
            return f"CASE WHEN isnan({raw}) THEN NULL ELSE CAST({raw} AS DOUBLE) END"
        return f"CAST({raw} AS DOUBLE)" if type_ in _INTEGERS else None
    if kind == "int":
        return f"CAST({raw} AS BIGINT)" if type_ in _INTEGERS else None
    if kind == "bool":
        return raw if type_ == "BOOLEAN" else None
    return None


def _label_sql(con: duckdb.DuckDBPyConnection, source: str, raw: str, is_status: bool,
               policy: ContractConfig) -> tuple[str, set[str], bool] | None:
    """A label column's canonical values in SQL, mapped value by value; the canonical values present; and
    whether some rows have none (missing, or a spelling with no letter or digit)."""
    values = [row[0] for row in con.execute(f"SELECT DISTINCT {raw} FROM {source} LIMIT {_MAX_LABELS + 1}").fetchall()]
    if len(values) > _MAX_LABELS:
        return None
    present = [v for v in values if v is not None]
    if present and privacy.masks(present).any():
        return None  # contact details: the pandas parse refuses or blanks them
    labels = spelling.normal_labels(pd.Series(present, dtype="str"))
    if is_status:
        labels = statuses.canonical(labels, policy.statuses)[0]
    mapping = {value: (None if pd.isna(label) else str(label)) for value, label in zip(present, labels)}
    canonical = {label for label in mapping.values() if label is not None}
    nothing = None in mapping.values() or None in values
    if all(value == label for value, label in mapping.items()):
        return raw, canonical, nothing
    whens = " ".join(f"WHEN {literal(v)} THEN {'NULL' if label is None else literal(label)}"
                     for v, label in mapping.items())
    return f"(CASE {raw} {whens} END)", canonical, nothing


def _numbers_first(path: Path, raw_name: str) -> bool:
    """True when the first present ids of a Parquet column are all numbers (see `spelling.numbers_first`).

    Reads batches of the first row group only as far as needed (a row group may hold millions of ids).
    """
    present, n = [], 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=spelling.NUMBERS_FIRST, columns=[raw_name]):
        values = batch.column(0).drop_null()
        present.append(values)
        n += len(values)
        if n >= spelling.NUMBERS_FIRST:
            break
    return bool(present) and spelling.numbers_first(pa.concat_arrays(present))


# --- small helpers -------------------------------------------------------------------------


def _settings(config: Config | ContractConfig) -> tuple[ContractConfig, str]:
    """The contract policies and the shop's time zone from a Config (or a ContractConfig: UTC)."""
    if isinstance(config, Config):
        return config.contract, config.data.timezone
    return config, "UTC"


def _file_rows(dataset: Dataset, name: str, flagged: np.ndarray) -> np.ndarray:
    """Positions flagged over a validated table (a boolean mask) as 0-based file rows, for messages.

    The rows the contract set aside are in the quarantine with their file row; the kept rows
    fill the other positions in order.
    """
    positions = np.flatnonzero(flagged)
    quarantined = dataset.quarantine.get(name)
    if quarantined is not None and len(quarantined):
        removed = np.sort(quarantined["file_row"].to_numpy(dtype="int64") - 1)
        positions = positions + np.searchsorted(removed - np.arange(len(removed)), positions, side="right")
    return positions


def _to_rewrite(ids: pd.Series) -> bool:
    """True when the pandas parser would write some of these ids otherwise (spaces, `13482.0`, ...) or refuse them
    (e-mail addresses)."""
    ids = ids.astype("str")
    parsed, _ = parsing.parse("id", ids)
    return not parsed.equals(ids) or bool(privacy.masks(ids.to_numpy(), phones=False).any())


def _where(mask: pd.Series) -> pd.Index:
    """The index labels (file rows) where a boolean Series is True."""
    return mask.index[mask.to_numpy(dtype=bool)]


def _isin(values: pd.Series, known: pd.Series) -> pd.Series:
    """values.isin(known) for id columns, through Arrow (pandas is 5x slower on strings)."""
    hit = pc.is_in(pa.array(values), value_set=pa.array(known), skip_nulls=True)
    return pd.Series(hit.to_numpy(zero_copy_only=False), index=values.index)


def _unmatched(ids: pd.Series, against: str, handling: str) -> Unmatched:
    distinct = ids.drop_duplicates()
    return Unmatched(rows=len(ids), customers=len(distinct), first_ids=tuple(distinct.iloc[:_SHOWN]),
                     against=against, handling=handling)


def _rows(source: str, column: str | None, rows: object, rule: str, values: pd.Series | None = None,
          noun: str = "row") -> str:
    """'orders.csv: column amount: 3 rows < 0 (rows 17, 204, 9001: -1.5, -2.0, -0.3)'.

    `rows`: the offending 0-based file rows, ascending; `values`: a Series by file row holding
    (at least) the first ones' values.
    """
    positions = np.asarray(rows)
    shown = positions[:_SHOWN]
    more = ", ..." if len(positions) > _SHOWN else ""
    detail = ("row " if len(positions) == 1 else "rows ") + ", ".join(str(p + 1) for p in shown) + more
    if values is not None:
        detail += ": " + ", ".join(_show(values.at[p]) for p in shown) + more
    where = f"{source}: column {column}: " if column else f"{source}: "
    count = f"{len(positions)} {noun}{'' if len(positions) == 1 else 's'}"
    return f"{where}{count}{' ' + rule if rule else ''} ({detail})"


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)
