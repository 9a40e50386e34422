"""Behavioural features per customer as of a cutoff: a documented catalogue computed with DuckDB.

Every feature is one entry of the catalogue: its name, what it means in the retention team's
words, the window it looks at, the table (or column) it needs, and its SQL. The catalogue
also writes `docs/features.md` (`features_markdown`), so the documentation cannot drift from
the code. A cutoff T sees only data dated on or before T (whole days): that is what keeps a
feature as of T stable when later data arrives.

The SQL works on integer days since 1970-01-01: `t` is the cutoff, `day` the day of an order.
The SQL is the definition; two engines compute it (one plan for one cutoff or many):

- `engine="fast"` (the default) computes the order aggregates in `churn.order_kernels` on the
  orders sorted once by customer and day, with money summed exactly in integers, so a rerun
  gives the same bits on any number of threads;
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from churn import order_kernels, segments
from churn.errors import DataError

if TYPE_CHECKING:
    from churn.contract import Dataset

log = logging.getLogger(__name__)

EXCLUDED_STATUSES = ("returned", "cancelled")
WINDOWS = (30, 90, 180, 365)
EPOCH = pd.Timestamp("1970-01-01")
# Event types that mean the customer came to look (engagement): login and visit.
ENGAGEMENT_EVENTS = ("login", "visit")
# RFM scores are quintiles within the population at each cutoff.
RFM_BINS = 5
# A valuable customer is one in the top two spend quintiles (m_score >= 4); their frequency
# "dropped" when the last 90 days hold at most half the occasions of the 90 before.
VALUABLE_M_SCORE = 4
FREQUENCY_DROP = 0.5
# DuckDB's own memory budget: past it, sorts and aggregates spill to disk instead of growing.
DEFAULT_MEMORY_LIMIT = "512MB"
FAMILY_TITLES = {
    "rfm": "Recency, frequency, monetary (RFM)",
    "warning": "Warning signs",
    "basket": "Basket",
    "breadth": "Breadth and variety",
    "engagement": "Engagement and service",
}


@dataclass(frozen=True)
class Feature:
    """One catalogue entry: a named column, its meaning, window, source table and SQL.

    `kind` says where the SQL runs: `aggregate` over the rows of its table up to the cutoff,
    `derived` over other features of the same customer, `score` ranked among the population.
    """

    name: str
    meaning: str
    window: str
    table: str
    sql: str
    family: str = "rfm"
    kind: str = "aggregate"


def _agg(name: str, meaning: str, window: str, sql: str, family: str = "rfm", table: str = "orders") -> Feature:
    return Feature(name, meaning, window, table, sql, family, "aggregate")


def _derived(name: str, meaning: str, window: str, sql: str, family: str = "rfm", table: str = "orders") -> Feature:
    return Feature(name, meaning, window, table, sql, family, "derived")


def _score(name: str, meaning: str, sql: str) -> Feature:
    return Feature(name, meaning, "365 days, ranked at each cutoff", "orders", sql, "rfm", "score")


def _quintile(order_by: str) -> str:
    """1..5 by percent rank among the population at the cutoff (ties share a score)."""
    return (f"least({RFM_BINS}, 1 + floor({RFM_BINS} * percent_rank() OVER "
            f"(PARTITION BY t ORDER BY {order_by})))")


def _order_features() -> list[Feature]:
    """RFM, warning signs and basket features from the orders table."""
    feats = [
        _agg("recency_days", "days since the last purchase", "all history", "t - max(day) FILTER (WHERE occ)"),
        _agg("tenure_days", "days since the first purchase", "all history", "t - min(day) FILTER (WHERE occ)"),
        _agg("orders_all", "purchase occasions to date", "all history", "count(*) FILTER (WHERE occ)"),
        _agg("spend_all", "net spend to date", "all history", "coalesce(sum(amount) FILTER (WHERE valid), 0)"),
    ]
    for w in WINDOWS:
        feats.append(_agg(f"orders_{w}d", f"purchase occasions in the last {w} days", f"{w} days",
                          f"count(*) FILTER (WHERE occ AND day > t - {w})"))
        feats.append(_agg(f"spend_{w}d", f"net spend in the last {w} days", f"{w} days",
                          f"coalesce(sum(amount) FILTER (WHERE valid AND day > t - {w}), 0)"))
    feats += [
        _agg("orders_prev_90d", "purchase occasions 91-180 days ago", "days 91-180",
             "count(*) FILTER (WHERE occ AND day > t - 180 AND day <= t - 90)", "warning"),
        _agg("spend_prev_90d", "net spend 91-180 days ago", "days 91-180",
             "coalesce(sum(amount) FILTER (WHERE valid AND day > t - 180 AND day <= t - 90), 0)", "warning"),
        _agg("orders_prev_180d", "purchase occasions 181-360 days ago", "days 181-360",
             "count(*) FILTER (WHERE occ AND day > t - 360 AND day <= t - 180)", "warning"),
        _agg("gap_mean_days", "usual days between purchases", "all history",
             "avg(gap) FILTER (WHERE occ)", "warning"),
        _agg("gap_std_days", "spread of the days between purchases (how regular the customer is)",
             "all history", "stddev_samp(gap) FILTER (WHERE occ)", "warning"),
        _agg("gap_last_days", "days between the last two purchases", "all history",
             "arg_max(gap, day) FILTER (WHERE occ AND gap IS NOT NULL)", "warning"),
        _agg("max_order_value_365d", "largest single order in the last 365 days", "365 days",
             "max(amount) FILTER (WHERE valid AND day > t - 365)", "basket"),
    ]
    return feats


def _derived_features() -> list[Feature]:
    """Ratios and flags over a customer's own aggregates."""
    return [
        _derived("frequency_trend_90d", "occasions in the last 90 days over the 90 before (1 = steady, 0.5 = halved)",
                 "180 days", "(orders_90d + 1.0) / (orders_prev_90d + 1.0)", "warning"),
        _derived("frequency_trend_180d", "occasions in the last 6 months over the 6 before (0.5: frequency halved)",
                 "360 days", "(orders_180d + 1.0) / (orders_prev_180d + 1.0)", "warning"),
        _derived("spend_trend_90d", "spend in the last 90 days over the 90 before", "180 days",
                 "(spend_90d + 1.0) / (spend_prev_90d + 1.0)", "warning"),
        _derived("avg_order_value_365d", "average net spend per purchase occasion in the last 365 days", "365 days",
                 "spend_365d / nullif(orders_365d, 0)", "basket"),
        _derived("overdue_ratio", "days since the last purchase over the usual gap (above 1: overdue)",
                 "all history", "recency_days / nullif(gap_mean_days, 0)", "warning"),
    ]


def _score_features() -> list[Feature]:
    """RFM quintile scores among the population at each cutoff, and the valuable customer's drop."""
    return [
        _score("r_score", "recency quintile among the customers at the cutoff (5: bought most recently)",
               _quintile("recency_days DESC")),
        _score("f_score", "frequency quintile: purchase occasions in the last 365 days (5: most frequent)",
               _quintile("orders_365d")),
        _score("m_score", "monetary quintile: net spend in the last 365 days (5: spends most)",
               _quintile("spend_365d")),
        Feature("valuable_frequency_drop",
                f"1 when a top-{RFM_BINS + 1 - VALUABLE_M_SCORE} spend quintile customer's last 90 days hold at most "
                f"half the occasions of the 90 before, else 0 (value tier x trend)", "180 days, ranked at each cutoff",
                "orders", f"CASE WHEN m_score >= {VALUABLE_M_SCORE} AND frequency_trend_90d <= {FREQUENCY_DROP} "
                "THEN 1.0 ELSE 0.0 END", "warning", "score"),
    ]


# Order features that need an optional column: the column is the feature's `table`.
OPTIONAL_ORDER_FEATURES = [
    _agg("discount_share_365d", "share of list value given as discount in the last 365 days", "365 days",
         "sum(discount) FILTER (WHERE valid AND day > t - 365) / "
         "nullif(sum(amount + discount) FILTER (WHERE valid AND day > t - 365), 0)", "basket", "orders.discount"),
    _agg("coupon_share_365d", "share of orders placed with a coupon in the last 365 days (coupon reliance)",
         "365 days", "avg(coupon_used::DOUBLE) FILTER (WHERE valid AND day > t - 365)", "basket", "orders.coupon_used"),
    _agg("items_per_order_365d", "average items per order in the last 365 days", "365 days",
         "avg(n_items::DOUBLE) FILTER (WHERE valid AND day > t - 365)", "basket", "orders.n_items"),
    _agg("returns_share_365d", "share of orders returned or cancelled in the last 365 days", "365 days",
         "avg(CASE WHEN valid THEN 0.0 ELSE 1.0 END) FILTER (WHERE day > t - 365)", "basket", "orders.status"),
]
ORDER_FEATURES = _order_features() + _derived_features()
SCORE_FEATURES = _score_features()

# Item features aggregate one row per (cutoff, customer, product) or (..., category) with its
# first and last day bought up to the cutoff and whether it was bought 91-180 days ago.
ITEM_FEATURES = [
    Feature("categories_90d", "distinct categories bought in the last 90 days", "90 days", "order_items.category",
            "count(*) FILTER (WHERE kind = 'category' AND last_day > t - 90)", "breadth"),
    Feature("categories_prev_90d", "distinct categories bought 91-180 days ago", "days 91-180",
            "order_items.category", "count(*) FILTER (WHERE kind = 'category' AND in_prev_90d)", "breadth"),
    Feature("categories_365d", "distinct categories bought in the last 365 days", "365 days", "order_items.category",
            "count(*) FILTER (WHERE kind = 'category' AND last_day > t - 365)", "breadth"),
    Feature("products_90d", "distinct products bought in the last 90 days", "90 days", "order_items",
            "count(*) FILTER (WHERE kind = 'product' AND last_day > t - 90)", "breadth"),
    Feature("products_365d", "distinct products bought in the last 365 days", "365 days", "order_items",
            "count(*) FILTER (WHERE kind = 'product' AND last_day > t - 365)", "breadth"),
    Feature("new_products_90d", "products bought in the last 90 days for the first time ever", "90 days",
            "order_items", "count(*) FILTER (WHERE kind = 'product' AND first_day > t - 90)", "breadth"),
]
ITEM_DERIVED = [
    Feature("category_trend_90d", "categories in the last 90 days over the 90 before (below 1: narrowing)",
            "180 days", "order_items.category", "(categories_90d + 1.0) / (categories_prev_90d + 1.0)",
            "breadth", "derived"),
    Feature("new_product_share_90d", "share of the last 90 days' products new to the customer (variety seeking)",
            "90 days", "order_items", "new_products_90d / nullif(products_90d, 0)", "breadth", "derived"),
]


def _event_features(event_types: Iterable[str]) -> list[Feature]:
    """Engagement and service features: days since, counts per type in windows and to date."""
    types = sorted(set(event_types))
    feats = [Feature("days_since_event", "days since the last recorded event of any kind", "all history",
                     "events", "t - max(day)", "engagement")]
    engaged = [k for k in ENGAGEMENT_EVENTS if k in types]
    if engaged:
        kinds = ", ".join(f"'{k}'" for k in engaged)
        feats += [
            Feature("days_since_visit", "days since the last login or visit", "all history", "events",
                    f"t - max(day) FILTER (WHERE event_type IN ({kinds}))", "engagement"),
            Feature("visits_90d", "logins and visits in the last 90 days", "90 days", "events",
                    f"count(*) FILTER (WHERE event_type IN ({kinds}) AND day > t - 90)", "engagement"),
            Feature("visits_prev_90d", "logins and visits 91-180 days ago", "days 91-180", "events",
                    f"count(*) FILTER (WHERE event_type IN ({kinds}) AND day > t - 180 AND day <= t - 90)",
                    "engagement"),
        ]
    for kind in types:
        slug, quoted = _slug(kind), _sql_str(kind)
        feats += [
            Feature(f"{slug}_30d", f"'{kind}' events in the last 30 days", "30 days", "events",
                    f"count(*) FILTER (WHERE event_type = '{quoted}' AND day > t - 30)", "engagement"),
            Feature(f"{slug}_90d", f"'{kind}' events in the last 90 days", "90 days", "events",
                    f"count(*) FILTER (WHERE event_type = '{quoted}' AND day > t - 90)", "engagement"),
            Feature(f"{slug}_all", f"'{kind}' events to date (e.g. campaigns received, coupons redeemed)",
                    "all history", "events", f"count(*) FILTER (WHERE event_type = '{quoted}')", "engagement"),
        ]
    return feats


def _event_derived(event_types: Iterable[str]) -> list[Feature]:
    if not any(k in set(event_types) for k in ENGAGEMENT_EVENTS):
        return []
    return [Feature("visit_trend_90d", "logins and visits in the last 90 days over the 90 before", "180 days",
                    "events", "(visits_90d + 1.0) / (visits_prev_90d + 1.0)", "engagement", "derived")]


def catalogue(event_types: Iterable[str] = ()) -> list[Feature]:
    """Every feature this module can compute, events ones for the given event types."""
    event_types = list(event_types)
    return (ORDER_FEATURES + OPTIONAL_ORDER_FEATURES + SCORE_FEATURES + ITEM_FEATURES + ITEM_DERIVED
            + _event_features(event_types) + _event_derived(event_types))


def _slug(text: str) -> str:
    return "event_" + "".join(ch if ch.isalnum() else "_" for ch in text.lower())


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


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
    """Orders that count as purchases: returned and cancelled ones are left out."""
    if "status" not in orders:
        return orders
    return orders[~orders["status"].fillna("").str.lower().isin(EXCLUDED_STATUSES)]


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
    which DuckDB then scans itself, reading only the columns the features need. Tables (and
    optional columns) the data set lacks remove their features, said once in the log: nothing
    is filled with zeros that would pretend a customer had no events.
    """

    def __init__(self, dataset: Dataset | str | Path, lookback_days: int = 365,
                 event_types: Sequence[str] | None = None, memory_limit: str = DEFAULT_MEMORY_LIMIT,
                 engine: str = "fast"):
        """`event_types`: which event types get count columns (default: those in the data).

        `engine`: "fast" computes the order aggregates with `churn.order_kernels`; "sql" runs the
        catalogue's SQL for them too (the definition the fast engine is tested against).
        """
        if engine not in ("fast", "sql"):
            raise ValueError(f"engine must be 'fast' or 'sql', not {engine!r}")
        self.engine = engine
        self.lookback_days = int(lookback_days)
        self.con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                          "autoload_known_extensions": False,
                                          "memory_limit": memory_limit,
                                          "preserve_insertion_order": False})
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
        else:
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
        excluded = ", ".join(f"'{s}'" for s in EXCLUDED_STATUSES)
        cols = ["customer_id", _DAY_SQL.format(col="order_ts") + " AS day", "amount",
                f"coalesce(lower(status), '') NOT IN ({excluded}) AS valid" if has("orders.status") else "TRUE AS valid"]
        cols += [f"coalesce({c}, 0) AS {c}" for c in ("discount", "n_items") if has(f"orders.{c}")]
        if has("orders.coupon_used"):
            cols.append("coupon_used")
        self.con.execute(f"CREATE VIEW orders_v AS SELECT {', '.join(cols)} FROM orders_src")
        if has("order_items"):
            category = "i.category" if has("order_items.category") else "NULL AS category"
            purchases = f"WHERE coalesce(lower(o.status), '') NOT IN ({excluded})" if has("orders.status") else ""
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
                threads = int(self.con.execute("SELECT current_setting('threads')").fetchone()[0])
                ids, got = order_kernels.build(self.con, "orders_v", days, self.lookback_days, columns, threads)
                return ids, {"t": got["t"], **{name: got[name] for name in names}}
            except order_kernels.Unsupported as exc:
                log.warning("fast feature engine not used (%s): computing the order features in SQL", exc)
        got = self.con.execute(f"SELECT * FROM ({self.sql(days)}) ORDER BY t, customer_id").fetchnumpy()
        ids = pd.Series(np.asarray(got["customer_id"], dtype=object), dtype="str")
        return ids, {"t": np.asarray(got["t"]), **{name: _floats(got[name]) for name in names}}

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
        # One sort: each customer's orders by (valid, day), so a valid order's predecessor is the
        # previous valid order (invalid ones sort first and never count as a predecessor).
        orders = f"""SELECT *, CASE WHEN valid AND prev_valid THEN day - prev_day END AS gap FROM (
                         SELECT *, lag(day) OVER w AS prev_day, lag(valid) OVER w AS prev_valid
                         FROM orders_v WHERE day <= {last}
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


# --- documentation -----------------------------------------------------------------------------

_TYPE = "TYPE"  # placeholder event type for the documentation


def _documented_features() -> list[Feature]:
    """The catalogue with one generic event type `<type>` standing for each type in the data."""
    feats = [f for f in catalogue([_TYPE, *ENGAGEMENT_EVENTS])
             if not any(f.name.startswith(_slug(k) + "_") for k in ENGAGEMENT_EVENTS)]
    return [Feature(f.name.replace(_slug(_TYPE), "event_<type>"), f.meaning.replace(f"'{_TYPE}'", "`<type>`"),
                    f.window, f.table, f.sql.replace(f"'{_TYPE}'", "'<type>'"), f.family, f.kind) for f in feats]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def features_markdown() -> str:
    """`docs/features.md`: the catalogue as tables for analysts, generated from the code."""
    lines = [
        "# Feature catalogue",
        "",
        "Generated from `churn/features.py` by `python -m churn.features docs/features.md`: do not edit by hand",
        "(a test checks that this file equals the generated one).",
        "",
        "Every feature is computed per customer *as of a cutoff T*, from data dated on or before T (whole",
        "days); `t` is T and `day` an order's or event's day, both in days since 1970-01-01. A purchase",
        "occasion is a customer's calendar day with at least one valid order (returned and cancelled",
        "orders are not purchases). The population at T is every customer with an occasion in the",
        "`data.lookback_days` before T. A feature whose source (a table or an optional column) the data",
        "lacks is left out, never filled with zeros; counts over a present table are 0 when nothing",
        "happened, while \"days since\" stays empty when it never happened.",
        "",
        "In the SQL, an order row has `valid` (not returned or cancelled), `occ` (valid and the first",
        "order of its customer's day: counting `occ` counts occasions) and `gap` (days since the",
        "customer's previous valid order). Item features aggregate one row per (customer, product) and",
        "per (customer, category) with `first_day`, `last_day` bought and `in_prev_90d`.",
        "",
        "Kinds: **aggregate** is SQL over the source's rows up to T; **derived** combines the customer's",
        "other features; **score** ranks the customer among the population at T.",
        "",
        "The SQL below is the definition. The default engine computes the order aggregates with numpy",
        "on the orders sorted once by customer and day (`churn/order_kernels.py`), summing money exactly",
        "in millionths so that reruns give identical bits; `FeatureBuilder(..., engine=\"sql\")` runs this SQL",
        "itself, and the tests check that both engines agree on random and synthetic data.",
    ]
    families: dict[str, list[Feature]] = {}
    for f in _documented_features():
        families.setdefault(f.family, []).append(f)
    for family, feats in families.items():
        lines += ["", f"## {FAMILY_TITLES[family]}", "",
                  "| feature | meaning | window | source | kind | definition |", "|---|---|---|---|---|---|"]
        lines += [f"| `{f.name}` | {_cell(f.meaning)} | {f.window} | {f.table} | {f.kind} | `{_cell(f.sql)}` |"
                  for f in feats]
    lines += ["", "`event_<type>_*` columns exist for each event type in the data (the data set decides which,",
              "not the cutoff); the login/visit features need `login` or `visit` events.", "",
              "## Segments (not model inputs)", "",
              "Labels for lists and reports, computed by `churn.segments` from the features above;",
              "thresholds in `churn.toml` (`[lifecycle]`).", "",
              "| segment | meaning | function |", "|---|---|---|"]
    for fn in (segments.lifecycle_stage, segments.value_tier, segments.rfm_segment):
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        lines.append(f"| `{fn.__name__}` | {_cell(doc)} | `churn.segments.{fn.__name__}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    Path(sys.argv[1] if len(sys.argv) > 1 else "docs/features.md").write_text(features_markdown(), encoding="utf-8")
