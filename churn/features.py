"""Behavioural features per customer as of a cutoff, computed with DuckDB.

Every feature is one entry of a catalogue: its name, what it means in the retention team's
words, the window it looks at, the table it needs, and its SQL. A cutoff T sees only data
dated on or before T (whole days): that is what makes a feature as of T stable when later
data arrives.

The SQL works on integer days (days since 1970-01-01): `t` is the cutoff, `day` the day of
a purchase occasion (a customer's calendar day with at least one valid order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

if TYPE_CHECKING:
    from churn.contract import Dataset

EXCLUDED_STATUSES = ("returned", "cancelled")
WINDOWS = (30, 90, 180, 365)
EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True)
class Feature:
    """One catalogue entry: a named column, its meaning, window, source table and SQL."""

    name: str
    meaning: str
    window: str
    table: str
    sql: str


def _order_features() -> list[Feature]:
    """Recency, frequency, monetary, trend and gap features from purchase occasions."""
    feats = [
        Feature("recency_days", "days since the last purchase", "all history", "orders", "t - max(day)"),
        Feature("tenure_days", "days since the first purchase", "all history", "orders", "t - min(day)"),
        Feature("orders_all", "purchase occasions to date", "all history", "orders", "count(*)"),
        Feature("spend_all", "net spend to date", "all history", "orders", "sum(spend)"),
    ]
    for w in WINDOWS:
        feats.append(Feature(f"orders_{w}d", f"purchase occasions in the last {w} days", f"{w} days",
                             "orders", f"count(*) FILTER (WHERE day > t - {w})"))
        feats.append(Feature(f"spend_{w}d", f"net spend in the last {w} days", f"{w} days", "orders",
                             f"coalesce(sum(spend) FILTER (WHERE day > t - {w}), 0)"))
    feats += [
        Feature("orders_prev_90d", "purchase occasions 91-180 days ago", "days 91-180", "orders",
                "count(*) FILTER (WHERE day > t - 180 AND day <= t - 90)"),
        Feature("spend_prev_90d", "net spend 91-180 days ago", "days 91-180", "orders",
                "coalesce(sum(spend) FILTER (WHERE day > t - 180 AND day <= t - 90), 0)"),
        Feature("frequency_trend_90d", "occasions in the last 90 days over the 90 before (1 = steady, 0.5 = halved)",
                "180 days", "orders", "(orders_90d + 1.0) / (orders_prev_90d + 1.0)"),
        Feature("spend_trend_90d", "spend in the last 90 days over the 90 before", "180 days", "orders",
                "(spend_90d + 1.0) / (spend_prev_90d + 1.0)"),
        Feature("avg_order_value_365d", "average net spend per occasion in the last 365 days", "365 days",
                "orders", "spend_365d / nullif(orders_365d, 0)"),
        Feature("gap_mean_days", "usual days between purchases", "all history", "orders", "avg(gap)"),
        Feature("gap_std_days", "spread of the days between purchases", "all history", "orders",
                "stddev_samp(gap)"),
        Feature("gap_last_days", "days between the last two purchases", "all history", "orders",
                "arg_max(gap, day)"),
        Feature("overdue_ratio", "days since the last purchase over the usual gap (above 1: overdue)",
                "all history", "orders", "recency_days / nullif(gap_mean_days, 0)"),
        Feature("discount_share_365d", "share of list value given as discount in the last 365 days",
                "365 days", "orders",
                "sum(discount) FILTER (WHERE day > t - 365) / "
                "nullif(sum(spend + discount) FILTER (WHERE day > t - 365), 0)"),
    ]
    return feats


ORDER_FEATURES = _order_features()
# Derived features reference other features by name, so they run in an outer SELECT.
_DERIVED = {"frequency_trend_90d", "spend_trend_90d", "avg_order_value_365d", "overdue_ratio"}

ITEM_FEATURES = [
    Feature("categories_90d", "distinct categories bought in the last 90 days", "90 days", "order_items",
            "count(DISTINCT category) FILTER (WHERE day > t - 90)"),
    Feature("categories_prev_90d", "distinct categories bought 91-180 days ago", "days 91-180",
            "order_items", "count(DISTINCT category) FILTER (WHERE day <= t - 90)"),
    Feature("products_90d", "distinct products bought in the last 90 days", "90 days", "order_items",
            "count(DISTINCT product_id) FILTER (WHERE day > t - 90)"),
]

RETURN_FEATURES = [
    Feature("returns_share_365d", "share of orders returned or cancelled in the last 365 days", "365 days",
            "orders.status", "avg(CASE WHEN excluded THEN 1.0 ELSE 0.0 END)"),
]


def catalogue(event_types: Iterable[str] = ()) -> list[Feature]:
    """Every feature this module can compute, events ones for the given event types."""
    feats = ORDER_FEATURES + ITEM_FEATURES + RETURN_FEATURES
    feats.append(Feature("days_since_event", "days since the last recorded event of any kind", "all history",
                         "events", "t - max(day)"))
    for kind in sorted(event_types):
        feats.append(Feature(f"{_slug(kind)}_90d", f"'{kind}' events in the last 90 days", "90 days",
                             "events", f"count(*) FILTER (WHERE event_type = '{_sql_str(kind)}' AND day > t - 90)"))
    return feats


def _slug(text: str) -> str:
    return "event_" + "".join(ch if ch.isalnum() else "_" for ch in text.lower())


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def _days(ts: pd.Series) -> pd.Series:
    """Whole days since 1970-01-01 of each timestamp (its calendar day)."""
    return (ts.dt.floor("D") - EPOCH).dt.days.astype("int32")


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


class FeatureBuilder:
    """Compute the catalogue's features for a data set at one or many cutoffs.

    Tables the data set lacks remove their features: nothing is filled with zeros that would
    pretend a customer had no events.
    """

    def __init__(self, dataset: Dataset, lookback_days: int = 365, event_types: Sequence[str] | None = None):
        """`event_types`: which event types get a count column (default: those in the data)."""
        self.lookback_days = lookback_days
        self.con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                          "autoload_known_extensions": False})
        self.con.register("occ_raw", occasions(dataset.orders))
        self.con.execute("""
            CREATE TEMP TABLE occ AS
            SELECT customer_id, day, spend, discount,
                   day - lag(day) OVER (PARTITION BY customer_id ORDER BY day) AS gap
            FROM occ_raw""")
        self.has_status = "status" in dataset.orders
        if self.has_status:
            orders = dataset.orders
            self.con.register("status_raw", pd.DataFrame({
                "customer_id": orders["customer_id"].to_numpy(),
                "day": _days(orders["order_ts"]).to_numpy(),
                "excluded": orders["status"].fillna("").str.lower().isin(EXCLUDED_STATUSES).to_numpy(),
            }))
        self.has_items = dataset.order_items is not None and "category" in dataset.order_items
        if self.has_items:
            orders = valid_orders(dataset.orders)
            self.con.register("orders_raw", pd.DataFrame({
                "order_id": orders["order_id"].to_numpy(),
                "customer_id": orders["customer_id"].to_numpy(),
                "day": _days(orders["order_ts"]).to_numpy(),
            }))
            self.con.register("items_raw", dataset.order_items[["order_id", "product_id", "category"]])
        self.event_types: list[str] = []
        self.has_events = dataset.events is not None
        if self.has_events:
            events = dataset.events
            self.con.register("events_raw", pd.DataFrame({
                "customer_id": events["customer_id"].to_numpy(),
                "day": _days(events["event_ts"]).to_numpy(),
                "event_type": events["event_type"].to_numpy(),
            }))
            present = events["event_type"].dropna().unique().tolist()
            self.event_types = sorted(present if event_types is None else event_types)

    @property
    def features(self) -> list[Feature]:
        """The catalogue entries this data set supports, in output column order."""
        feats = list(ORDER_FEATURES)
        if self.has_items:
            feats += ITEM_FEATURES
        if self.has_status:
            feats += RETURN_FEATURES
        if self.has_events:
            feats += [f for f in catalogue(self.event_types) if f.table == "events"]
        return feats

    def build(self, cutoffs: Sequence[object]) -> pd.DataFrame:
        """Features of the population at each cutoff: one row per (customer_id, cutoff)."""
        days = sorted({to_day(c) for c in cutoffs})
        self.con.register("cutoffs", pd.DataFrame({"t": pd.array(days, dtype="int32")}))
        aggregates = ",\n".join(f"{f.sql} AS {f.name}" for f in ORDER_FEATURES if f.name not in _DERIVED)
        derived = ",\n".join(f"{f.sql} AS {f.name}" for f in ORDER_FEATURES if f.name in _DERIVED)
        sql = f"""
            WITH base AS (
                SELECT c.t, o.customer_id, {aggregates}
                FROM cutoffs c JOIN occ o ON o.day <= c.t
                GROUP BY c.t, o.customer_id
                HAVING max(o.day) > c.t - {int(self.lookback_days)}
            )
            SELECT base.*, {derived} {self._extra_columns()}
            FROM base {self._extra_joins()}
            ORDER BY base.t, base.customer_id"""
        frame = self.con.execute(sql).df()
        frame.insert(1, "cutoff", EPOCH + pd.to_timedelta(frame.pop("t"), unit="D"))
        frame["customer_id"] = frame["customer_id"].astype("str")
        order = ["customer_id", "cutoff"] + [f.name for f in self.features]
        return frame[order].astype({f.name: "float64" for f in self.features})

    def _extra_columns(self) -> str:
        cols = []
        if self.has_items:
            cols += [f"coalesce(it.{f.name}, 0) AS {f.name}" for f in ITEM_FEATURES]
        if self.has_status:
            cols += [f"st.{f.name}" for f in RETURN_FEATURES]
        if self.has_events:
            # A customer with no event yet has counts of 0 but no "days since" (NULL): honest.
            cols += [f"ev.{f.name}" if f.name == "days_since_event" else f"coalesce(ev.{f.name}, 0) AS {f.name}"
                     for f in self.features if f.table == "events"]
        return "".join(", " + c for c in cols)

    def _extra_joins(self) -> str:
        joins = []
        if self.has_items:
            aggs = ", ".join(f"{f.sql} AS {f.name}" for f in ITEM_FEATURES)
            joins.append(f"""LEFT JOIN (
                SELECT c.t, o.customer_id, {aggs}
                FROM cutoffs c JOIN orders_raw o ON o.day <= c.t AND o.day > c.t - 180
                JOIN items_raw i ON i.order_id = o.order_id
                GROUP BY c.t, o.customer_id) it USING (t, customer_id)""")
        if self.has_status:
            aggs = ", ".join(f"{f.sql} AS {f.name}" for f in RETURN_FEATURES)
            joins.append(f"""LEFT JOIN (
                SELECT c.t, s.customer_id, {aggs}
                FROM cutoffs c JOIN status_raw s ON s.day <= c.t AND s.day > c.t - 365
                GROUP BY c.t, s.customer_id) st USING (t, customer_id)""")
        if self.has_events:
            aggs = ", ".join(f"{f.sql} AS {f.name}" for f in self.features if f.table == "events")
            joins.append(f"""LEFT JOIN (
                SELECT c.t, e.customer_id, {aggs}
                FROM cutoffs c JOIN events_raw e ON e.day <= c.t
                GROUP BY c.t, e.customer_id) ev USING (t, customer_id)""")
        return "\n".join(joins)


def build_features(dataset: Dataset, cutoffs: Sequence[object], lookback_days: int = 365,
                   event_types: Sequence[str] | None = None) -> pd.DataFrame:
    """Features of the population at each cutoff (see `FeatureBuilder`)."""
    return FeatureBuilder(dataset, lookback_days, event_types).build(cutoffs)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a features or snapshots frame (everything but keys and labels)."""
    return [c for c in frame.columns if c not in ("customer_id", "cutoff", "churned")]
