"""Behavioural features per customer as of a cutoff: a documented catalogue computed with DuckDB.

Every feature is one entry of the catalogue: its name, what it means in the retention team's
words, the window it looks at, the table (or column) it needs, and its SQL. The catalogue
also writes `docs/features.md` (`features_markdown`), so the documentation cannot drift from
the code. A cutoff T sees only data dated on or before T (whole days): that is what keeps a
feature as of T stable when later data arrives.

The SQL works on integer days since 1970-01-01: `t` is the cutoff, `day` the day of an order.
The SQL is the definition; two engines compute it (one plan for one cutoff or many):

- `engine="fast"` (the default) computes the order aggregates in `churn.features.kernels`: one
  pass over the orders as stored, running totals per customer kept by compiled loops, money
  summed exactly in integers, so a rerun gives the same bits on any number of threads;
- `engine="sql"` runs the catalogue's SQL for them: one scan of the orders, each order's `gap`
  to the customer's previous order by a window over the orders sorted by (customer, day), an
  order opening a purchase occasion (`occ`) when it is valid and its day is new, and one
  aggregate per (cutoff, customer) with FILTER clauses for every window. The tests hold the
  fast engine to this one.

Then, for both, each derived feature's and score's SQL runs over just the columns it reads
(RFM quintiles ranked within each cutoff), and the item and event features are aggregated apart
and matched to the population's rows.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.data import database
from churn.data.statuses import is_purchase, purchase_sql
from churn.errors import DataError
from churn.features import kernels
from churn.features.catalogue import EPOCH, QUINTILES, RFM_BINS, Feature, _sql_str, catalogue

if TYPE_CHECKING:
    from churn.data.contract import Dataset

log = logging.getLogger(__name__)


def _days(ts: pd.Series) -> pd.Series:
    """Whole days since 1970-01-01 of each timestamp (its calendar day)."""
    return (ts.dt.floor("D") - EPOCH).dt.days.astype("int32")


def _floats(values: np.ndarray) -> np.ndarray:
    """A fetched column as floats, NULL as NaN."""
    return np.ma.filled(np.ma.asarray(values).astype("float64"), np.nan)


def _scatter(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Values fetched with their row number `index` put back in row order, as floats (NULL: NaN)."""
    out = np.full(n, np.nan)
    out[index] = _floats(values)
    return out


def to_day(cutoff: object) -> int:
    """Integer day of a cutoff given as a date, a string or a timestamp."""
    return int((pd.Timestamp(cutoff).floor("D") - EPOCH).days)


def valid_orders(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders that count as purchases (`churn.data.statuses.is_purchase`): cancelled and returned ones are left out."""
    if "status" not in orders:
        return orders
    return orders[is_purchase(orders["status"])]


def occasions(orders: pd.DataFrame) -> pd.DataFrame:
    """Purchase occasions: one row per (customer, calendar day) with at least one valid order."""
    valid = valid_orders(orders)
    frame = pd.DataFrame({
        "customer_id": valid["customer_id"].to_numpy(),
        "day": _days(valid["order_ts"]).to_numpy(),
        "spend": valid["amount"].to_numpy(),
        "discount": valid["discount"].fillna(0).to_numpy() if "discount" in valid else 0.0,
    })
    return frame.groupby(["customer_id", "day"], as_index=False, sort=True).sum()


# --- the engine --------------------------------------------------------------------------------

_DAY_SQL = "(CAST({col} AS DATE) - DATE '1970-01-01')::INTEGER"


class FeatureBuilder:
    """Compute the catalogue's features for a data set at one or many cutoffs.

    `dataset` is a validated `Dataset` (frames in memory) or a data directory of Parquet files,
    which DuckDB then scans itself, reading only the columns the features need; such files must
    already be in the contract's canonical form (canonical statuses, normalised event types,
    naive local timestamps), as the synthetic generator writes them. Tables (and
    optional columns) the data set lacks remove their features, said once in the log: nothing
    is filled with zeros that would pretend a customer had no events.
    """

    def __init__(self, dataset: Dataset | str | Path, lookback_days: int = 365,
                 event_types: Sequence[str] | None = None, memory_limit: str | None = None,
                 engine: str = "fast"):
        """`event_types`: which event types get count columns (default: those in the data).

        `memory_limit`: DuckDB's memory budget ("2GB", "50%", "auto"); default the job's,
        `[engine] duckdb_memory_limit` (see `churn.data.database.budget`). Not everything spills:
        the item and event features' join result is built in memory (at 512MB, training on
        Complete Journey, 6 cutoffs x 1.47M items, ran out of memory in 3 of 4 runs; 1GB passed).

        `engine`: "fast" computes the order aggregates with `churn.features.kernels`; "sql" runs the
        catalogue's SQL for them too (the definition the fast engine is tested against).
        """
        if engine not in ("fast", "sql"):
            raise ValueError(f"engine must be 'fast' or 'sql', not {engine!r}")
        self.engine = engine
        self.lookback_days = int(lookback_days)
        self.con = database.connect(memory_limit=memory_limit, preserve_insertion_order=False)
        columns = self._register_sources(dataset)
        self.available = {"orders"} | {f"orders.{c}" for c in ("discount", "coupon_used", "n_items", "status")
                                       if c in columns.get("orders", ())}
        if "order_items" in columns:
            self.available.add("order_items")
            if "category" in columns["order_items"]:
                self.available.add("order_items.category")
        self.event_types: list[str] = []
        if "events" in columns:
            self.available.add("events")
            present = [r[0] for r in self.con.execute(
                "SELECT DISTINCT event_type FROM events_src WHERE event_type IS NOT NULL").fetchall()]
            self.event_types = sorted(present if event_types is None else event_types)
        self._create_views()
        missing = sorted({f.table for f in catalogue(self.event_types)} - self.available)
        if missing:
            log.info("features left out because the data lacks %s", ", ".join(missing))

    def _register_sources(self, dataset: Dataset | str | Path) -> dict[str, list[str]]:
        """Make each present table a DuckDB view `<table>_src`; return their column names."""
        if isinstance(dataset, (str, Path)):
            paths = {name: Path(dataset) / f"{name}.parquet" for name in ("orders", "order_items", "events")}
            if not paths["orders"].exists():
                raise DataError(f"{paths['orders']} not found: features read a directory of Parquet files; "
                                f"for CSV, load the data with churn.contract.validate and pass the Dataset")
            for name, path in paths.items():
                if path.exists():
                    self.con.execute(f"CREATE VIEW {name}_src AS SELECT * FROM read_parquet('{_sql_str(str(path))}')")
        elif hasattr(dataset, "register"):  # frames as they are; tables left in their Parquet files as views
            dataset.register(self.con, ("orders", "order_items", "events"), suffix="_src")
        else:  # any object with the tables as frames
            for name in ("orders", "order_items", "events"):
                frame = getattr(dataset, name)
                if frame is not None:
                    self.con.register(f"{name}_src", frame)
        tables = {r[0] for r in self.con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        tables |= {r[0] for r in self.con.execute("SHOW TABLES").fetchall()}
        return {name: [r[0] for r in self.con.execute(f"DESCRIBE {name}_src").fetchall()]
                for name in ("orders", "order_items", "events") if f"{name}_src" in tables}

    def _create_views(self) -> None:
        """Views with the columns the SQL uses: integer days, `valid` for purchases."""
        has = self.available.__contains__
        cols = ["customer_id", _DAY_SQL.format(col="order_ts") + " AS day", "amount",
                f"{purchase_sql('status')} AS valid" if has("orders.status") else "TRUE AS valid"]
        kinds = {r[0]: r[1] for r in self.con.execute("DESCRIBE orders_src").fetchall()}
        # A missing discount or item count is 0, in the column's own type (text columns too).
        cols += [f"coalesce({c}, 0::{kinds[c]}) AS {c}" for c in ("discount", "n_items") if has(f"orders.{c}")]
        if has("orders.coupon_used"):
            cols.append("coupon_used")
        self.con.execute(f"CREATE VIEW orders_v AS SELECT {', '.join(cols)} FROM orders_src")
        if has("order_items"):
            category = "i.category" if has("order_items.category") else "NULL AS category"
            purchases = f"WHERE {purchase_sql('o.status')}" if has("orders.status") else ""
            self.con.execute(f"""CREATE VIEW items_v AS
                SELECT o.customer_id, {_DAY_SQL.format(col='o.order_ts')} AS day, i.product_id, {category}
                FROM order_items_src i JOIN orders_src o USING (order_id) {purchases}""")
        if has("events"):
            self.con.execute(f"""CREATE VIEW events_v AS
                SELECT customer_id, {_DAY_SQL.format(col='event_ts')} AS day, event_type FROM events_src""")

    @property
    def features(self) -> list[Feature]:
        """The catalogue entries this data set supports, in output column order."""
        return [f for f in catalogue(self.event_types) if f.table in self.available]

    def _of(self, table_prefix: str, kind: str) -> list[Feature]:
        return [f for f in self.features if f.table.split(".")[0] == table_prefix and f.kind == kind]

    def build(self, cutoffs: Sequence[object]) -> pd.DataFrame:
        """Features of the population at each cutoff: one row per (customer_id, cutoff), in that order."""
        days = sorted({to_day(c) for c in cutoffs})
        ids, columns = self.order_aggregates(days)
        # Derived features, scores, item and event features: the catalogue's SQL, each over the few
        # columns it reads, matched back to the rows by position (no wide join, sort or spill).
        self._add(columns, self._of("orders", "derived"), ())
        ranked = [f for f in self._of("orders", "score") if f.name != "valuable_frequency_drop"]
        if self.engine == "fast" and not any(np.isnan(columns[QUINTILES[f.name][0]]).any() for f in ranked):
            # The quintiles' ranks in numpy (the same float steps as the SQL's percent_rank):
            # three window sorts over the population in DuckDB cost more than the order aggregates.
            def score(f: Feature) -> np.ndarray:
                column, descending = QUINTILES[f.name]
                return kernels.quintile_scores(columns["t"], np.asarray(columns[column], dtype="float64"),
                                               descending, RFM_BINS)

            with ThreadPoolExecutor(self._threads()) as pool:  # numpy's sorts release the GIL
                columns.update(zip((f.name for f in ranked), pool.map(score, ranked)))
        else:
            self._add(columns, ranked, ("t",))
        self._add(columns, [f for f in self._of("orders", "score") if f not in ranked], ())
        self._add_joined(columns, ids, days)
        out = {"customer_id": ids, "cutoff": EPOCH + pd.to_timedelta(columns.pop("t"), unit="D")}
        out.update({f.name: np.asarray(columns.pop(f.name), dtype="float64") for f in self.features})
        return pd.DataFrame(out, copy=False)

    def order_aggregates(self, days: Sequence[int]) -> tuple[pd.Series, dict[str, np.ndarray]]:
        """The customer ids and order aggregates (`t` and one column each) of the population at each cutoff day.

        Rows are sorted by (t, customer_id).
        """
        names = [f.name for f in self._of("orders", "aggregate")]
        if self.engine == "fast":
            columns = {c.split(".")[1] for c in self.available if c.startswith("orders.")}
            try:
                ids, got = kernels.build(self.con, "orders_v", days, self.lookback_days, columns, self._threads())
                return ids, {"t": got["t"], **{name: got[name] for name in names}}
            except kernels.Unsupported as exc:
                log.warning("fast feature engine not used (%s): computing the order features in SQL", exc)
        # Ids as DuckDB writes them as text, as the fast engine does; ordered in their own type.
        got = self.con.execute(f"SELECT *, customer_id::VARCHAR AS id_text FROM ({self.sql(days)}) "
                               "ORDER BY t, customer_id").fetchnumpy()
        ids = pd.Series(np.asarray(got["id_text"], dtype=object), dtype="str")
        return ids, {"t": np.asarray(got["t"]), **{name: _floats(got[name]) for name in names}}

    def _threads(self) -> int:
        """DuckDB's thread count for this job: the numpy and compiled steps use as many."""
        return int(self.con.execute("SELECT current_setting('threads')").fetchall()[0][0])

    def _add(self, columns: dict[str, np.ndarray], feats: list[Feature], partition: Sequence[str]) -> None:
        """Evaluate each feature's SQL over the columns it reads; add the results to `columns`."""
        if not feats:
            return
        names = sorted({n for f in feats for n in re.findall(r"[a-z_0-9]+", f.sql) if n in columns} | set(partition))
        narrow = pa.table({"i": np.arange(len(columns["t"])), **{n: columns[n] for n in names}})
        self.con.register("narrow_t", narrow)
        try:
            got = self.con.execute(f"SELECT i, {', '.join(f'{f.sql} AS {f.name}' for f in feats)} FROM narrow_t"
                                   ).fetchnumpy()
        finally:
            self.con.unregister("narrow_t")
        for f in feats:
            columns[f.name] = _scatter(got["i"], got[f.name], narrow.num_rows)

    def _add_joined(self, columns: dict[str, np.ndarray], ids: pd.Series, days: Sequence[int]) -> None:
        """Item and event features: aggregated apart, then matched to the population's rows."""
        selects, joins = self._extra(days)
        if not selects:
            return
        keys = pd.DataFrame({"i": np.arange(len(ids)), "t": columns["t"], "customer_id": ids})
        self.con.register("keys_df", keys)
        try:
            got = self.con.execute(f"SELECT flagged.i, {', '.join(selects)} FROM keys_df flagged {joins}").fetchnumpy()
        finally:
            self.con.unregister("keys_df")
        for name in got:
            if name != "i":
                columns[name] = _scatter(got["i"], got[name], len(keys))

    def sql(self, days: Sequence[int]) -> str:
        """The order aggregates in SQL: one row per (t, customer_id) in the population (the definition).

        What `engine="sql"` runs; EXPLAIN ANALYZE it to see the plan.
        """
        last = max(days)
        # Money as DECIMAL(38,6): sums exact in millionths, so they do not depend on the order of
        # their terms (ties between customers' spends stay ties, a rerun gives the same bits) and
        # equal the fast engine's; a NaN or infinite amount counts as missing.
        money = ", ".join(f"TRY_CAST({c} AS DECIMAL(38,6)) AS {c}" for c in ("amount", "discount")
                          if c == "amount" or f"orders.{c}" in self.available)
        # One sort: each customer's orders by (valid, day), so a valid order's predecessor is the
        # previous valid order (invalid ones sort first and never count as a predecessor).
        orders = f"""SELECT *, CASE WHEN valid AND prev_valid THEN day - prev_day END AS gap FROM (
                         SELECT *, lag(day) OVER w AS prev_day, lag(valid) OVER w AS prev_valid
                         FROM (SELECT * REPLACE ({money}) FROM orders_v) WHERE day <= {last}
                         WINDOW w AS (PARTITION BY customer_id ORDER BY valid, day))"""
        # An order opens a purchase occasion when it is valid and the first of its day: no
        # separate GROUP BY (customer, day) is needed.
        marked = f"SELECT * EXCLUDE (prev_day, prev_valid), valid AND coalesce(gap, 1) > 0 AS occ FROM ({orders})"
        aggregates = ",\n".join(f"{f.sql} AS {f.name}" for f in self._of("orders", "aggregate"))
        return f"""SELECT c.t, o.customer_id, {aggregates}
                   FROM {self._cutoffs(days)} c JOIN ({marked}) o ON o.day <= c.t
                   GROUP BY c.t, o.customer_id
                   HAVING max(o.day) FILTER (WHERE o.valid) > c.t - {self.lookback_days}"""

    def _cutoffs(self, days: Sequence[int]) -> str:
        rows = ", ".join(f"({d})" for d in days)
        return f"(SELECT t::INTEGER AS t FROM (VALUES {rows}) v(t))"

    def _extra(self, days: Sequence[int]) -> tuple[list[str], str]:
        """Columns and LEFT JOINs (onto `flagged`: t, customer_id) for the item and event features."""
        cols, joins = [], []
        last = max(days)
        cutoffs = self._cutoffs(days)
        items = self._of("order_items", "aggregate")
        if items:
            # Zero distinct products is a fact when the items table exists: coalesce to 0.
            cols += [f"coalesce(it.{f.name}, 0) AS {f.name}" for f in items]
            cols += [f"{self._inline(f.sql, items, 'it')} AS {f.name}" for f in self._of("order_items", "derived")]
            aggs = ",\n".join(f"{f.sql} AS {f.name}" for f in items)
            per_thing = f"""
                SELECT c.t, i.customer_id, kind, thing, min(i.day) AS first_day, max(i.day) AS last_day,
                       bool_or(i.day > c.t - 180 AND i.day <= c.t - 90) AS in_prev_90d
                FROM {cutoffs} c
                JOIN (SELECT customer_id, day, 'product' AS kind, product_id::VARCHAR AS thing FROM items_v
                      UNION ALL
                      SELECT customer_id, day, 'category', category::VARCHAR FROM items_v WHERE category IS NOT NULL
                     ) i ON i.day <= c.t AND i.day <= {last}
                GROUP BY c.t, i.customer_id, kind, thing"""
            joins.append(f"""LEFT JOIN (SELECT t, customer_id, {aggs} FROM ({per_thing}) GROUP BY t, customer_id) it
                             ON it.t = flagged.t AND it.customer_id = flagged.customer_id""")
        events = self._of("events", "aggregate")
        if events:
            # No event yet: counts are 0, but "days since" stays unknown (NULL), which is honest.
            cols += [f"ev.{f.name}" if f.name.startswith("days_since") else f"coalesce(ev.{f.name}, 0) AS {f.name}"
                     for f in events]
            cols += [f"{self._inline(f.sql, events, 'ev')} AS {f.name}" for f in self._of("events", "derived")]
            aggs = ",\n".join(f"{f.sql} AS {f.name}" for f in events)
            joins.append(f"""LEFT JOIN (
                SELECT c.t, e.customer_id, {aggs}
                FROM {cutoffs} c JOIN events_v e ON e.day <= c.t
                GROUP BY c.t, e.customer_id) ev ON ev.t = flagged.t AND ev.customer_id = flagged.customer_id""")
        return cols, "\n".join(joins)

    @staticmethod
    def _inline(sql: str, inputs: list[Feature], alias: str) -> str:
        """A derived feature's SQL over a joined aggregate: its inputs read with coalesce to 0."""
        names = "|".join(re.escape(f.name) for f in inputs)
        return re.sub(rf"\b({names})\b", lambda m: f"coalesce({alias}.{m.group(1)}, 0)", sql)


def build_features(dataset: Dataset | str | Path, cutoffs: Sequence[object], lookback_days: int = 365,
                   event_types: Sequence[str] | None = None) -> pd.DataFrame:
    """Features of the population at each cutoff (see `FeatureBuilder`)."""
    return FeatureBuilder(dataset, lookback_days, event_types).build(cutoffs)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a features or snapshots frame (everything but keys and labels)."""
    return [c for c in frame.columns if c not in ("customer_id", "cutoff", "churned")]


