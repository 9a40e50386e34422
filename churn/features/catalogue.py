"""The feature catalogue: every feature's name, meaning, window, source table and SQL definition.

One definition per feature, in the retention team's words. The catalogue also writes
`docs/features.md` (`features_markdown`), so the documentation cannot drift from the code;
`churn.features.engine` computes it. The SQL works on integer days since 1970-01-01: `t` is
the cutoff, `day` the day of an order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churn.errors import DataError
from churn.features import segments

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
# Each RFM quintile score: the feature it ranks, and whether larger values rank first (DESC).
QUINTILES = {"r_score": ("recency_days", True), "f_score": ("orders_365d", False), "m_score": ("spend_365d", False)}
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


def _quintile(score: str) -> str:
    """1..5 by percent rank among the population at the cutoff (ties share a score)."""
    column, descending = QUINTILES[score]
    order_by = f"{column} DESC" if descending else column
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
               _quintile("r_score")),
        _score("f_score", "frequency quintile: purchase occasions in the last 365 days (5: most frequent)",
               _quintile("f_score")),
        _score("m_score", "monetary quintile: net spend in the last 365 days (5: spends most)",
               _quintile("m_score")),
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
    slugs = pd.Series(types, dtype=object).map(_slug)
    if slugs.duplicated().any():
        clash = sorted(t for t, dup in zip(types, slugs.duplicated(keep=False)) if dup)
        raise DataError(f"event types {clash} would share feature names: validate the data (churn.data.contract), "
                        f"which writes each event type one way")
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


# Labels where the meaning is too long for a chart's axis.
SHORT_LABELS = {"valuable_frequency_drop": "valuable customer buying half as often",
                "gap_std_days": "spread of the days between purchases"}
_EVENT_NAME = re.compile(r"^event_(.+)_(30d|90d|all)$")
LABEL_LENGTH = 48


def history_days(window: str) -> float:
    """How many days of history a feature's window needs: "90 days" 90, "days 91-180" 180, all history inf."""
    numbers = [int(n) for n in re.findall(r"\d+", window)]
    return float("inf") if "all history" in window or not numbers else float(max(numbers))


def labels(names: Iterable[str]) -> dict[str, str]:
    """Each feature in words for charts and tables, from its meaning: "orders_90d" -> "Purchase occasions in
    the last 90 days" (the first clause, at most LABEL_LENGTH characters)."""
    names = list(names)
    kinds = {m.group(1) for m in map(_EVENT_NAME.match, names) if m}
    meanings = {f.name: f.meaning for f in catalogue(kinds)}
    out = {}
    for name in names:
        text = SHORT_LABELS.get(name) or meanings.get(name) or name.replace("_", " ")
        text = re.split(r" \(|: |, else", text)[0]
        text = re.sub(r"'([^']+)' events", lambda m: m.group(1).replace("_", " ") + " events", text)
        if len(text) > LABEL_LENGTH:
            text = text[:LABEL_LENGTH - 1].rstrip() + "…"
        out[name] = text[:1].upper() + text[1:]
    return out


def _slug(text: str) -> str:
    return "event_" + "".join(ch if ch.isalnum() else "_" for ch in text.lower())


def _sql_str(text: str) -> str:
    return text.replace("'", "''")

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
        "Generated from `churn/features/catalogue.py` by `python -m churn.features.catalogue docs/features.md`: do not edit by hand",
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
        "Money (`amount`, `discount`) is read as DECIMAL(38,6): an amount counts to the millionth of its",
        "unit, sums are exact whatever the order of their terms, and a NaN or infinite amount counts as",
        "missing (as in pandas' sums).",
        "",
        "The SQL below is the definition. The default engine computes the order aggregates in one pass",
        "over the orders as stored, keeping running totals per customer in compiled loops",
        "(`churn/features/kernels.py`, `churn/features/loops.py`), summing money exactly in millionths so",
        "that reruns give identical bits, and ranks the RFM quintile scores in numpy with",
        "the same float steps as DuckDB's `percent_rank` (ties share their lowest rank); `FeatureBuilder(...,",
        "engine=\"sql\")` runs this SQL itself, and the tests check that both engines agree, to the bit for",
        "the scores, on random and synthetic data.",
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
              "Labels for lists and reports, computed by `churn.features.segments` from the features above;",
              "thresholds in `churn.toml` (`[lifecycle]`).", "",
              "| segment | meaning | function |", "|---|---|---|"]
    for fn in (segments.lifecycle_stage, segments.value_tier, segments.rfm_segment):
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        lines.append(f"| `{fn.__name__}` | {_cell(doc)} | `churn.features.segments.{fn.__name__}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    Path(sys.argv[1] if len(sys.argv) > 1 else "docs/features.md").write_text(features_markdown(), encoding="utf-8")
