"""Churn drivers: per-customer reasons in plain words, and global and per-segment drivers.

Contributions are SHAP values in log-odds (XGBoost's exact TreeSHAP, `ChurnModel.contributions`):
positive ones raise a customer's churn risk. Features are grouped into families (one sentence
template each, filled with the customer's own numbers) and families into themes, the stories
analysts and the win-back actions speak in: buying less (drift), service trouble, price,
narrowing variety, and the customer's profile.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["FAMILIES", "THEMES", "THEME_LABELS", "family", "theme", "family_contributions", "reasons",
           "top_contributions", "global_drivers", "segment_drivers", "distinctive_drivers", "top_reason_shares"]

# A template turns the rows of a features frame into one sentence per row.
Template = Callable[[pd.DataFrame], list[str]]


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A feature column as floats; NaN when the data set lacks the feature."""
    return frame[name].to_numpy(dtype=float) if name in frame else np.full(len(frame), np.nan)


def _n(x: float) -> str:
    """A count or amount, rounded, with thousands separators ('unknown' for NaN)."""
    return "unknown" if x != x else f"{x:,.0f}"


def _count(x: float, one: str, many: str) -> str:
    """'1 order', '3 orders', 'unknown orders'."""
    return f"{_n(x)} {one if x == 1 else many}"


def _recency(f: pd.DataFrame) -> list[str]:
    out = []
    for days, gap in zip(_col(f, "recency_days"), _col(f, "gap_mean_days")):
        usual = f"; usually orders every {_n(gap)} days" if gap == gap else "; only one order so far"
        out.append(f"No order for {_n(days)} days{usual}")
    return out


def _frequency(f: pd.DataFrame) -> list[str]:
    return [f"{_count(month, 'order', 'orders')} in the last 30 days, {_n(now)} in the last 90, {_n(before)} in the 90 before"
            for month, now, before in zip(_col(f, "orders_30d"), _col(f, "orders_90d"), _col(f, "orders_prev_90d"))]


def _spend(f: pd.DataFrame) -> list[str]:
    return [f"Spent {_n(now)} in the last 90 days, {_n(before)} in the 90 before"
            for now, before in zip(_col(f, "spend_90d"), _col(f, "spend_prev_90d"))]


def _tenure(f: pd.DataFrame) -> list[str]:
    return [f"Customer for {_n(days)} days, {_count(orders, 'order', 'orders')} in all"
            for days, orders in zip(_col(f, "tenure_days"), _col(f, "orders_all"))]


def _discount(f: pd.DataFrame) -> list[str]:
    out = []
    for share, coupons in zip(_col(f, "discount_share_365d"), _col(f, "coupon_share_365d")):
        text = (f"Discounts were {share:.0%} of list value over the last year" if share == share
                else "No discount history over the last year")
        out.append(text + (f"; {coupons:.0%} of orders used a coupon" if coupons == coupons else ""))
    return out


def _basket(f: pd.DataFrame) -> list[str]:
    return [f"Average basket {aov:,.2f} over the last year" if aov == aov else "No order in the last year"
            for aov in _col(f, "avg_order_value_365d")]


def _breadth(f: pd.DataFrame) -> list[str]:
    return [f"Bought from {_count(now, 'category', 'categories')} in the last 90 days, {_n(before)} in the 90 before"
            for now, before in zip(_col(f, "categories_90d"), _col(f, "categories_prev_90d"))]


def _returns(f: pd.DataFrame) -> list[str]:
    return [f"{share:.0%} of orders returned or cancelled in the last year" if share == share
            else "Return history unknown" for share in _col(f, "returns_share_365d")]


def _activity(f: pd.DataFrame) -> list[str]:
    return [f"Last recorded event (visit, campaign, service contact) {_n(days)} days ago" if days == days
            else "No recorded event (visit, campaign, service contact) at all" for days in _col(f, "days_since_event")]


def _visits(f: pd.DataFrame) -> list[str]:
    out = []
    for now, before, last in zip(_col(f, "visits_90d"), _col(f, "visits_prev_90d"), _col(f, "days_since_visit")):
        since = f"; last one {_n(last)} days ago" if last == last else "; none ever recorded"
        out.append(f"{_count(now, 'visit or login', 'visits or logins')} in the last 90 days, {_n(before)} "
                   f"in the 90 before{since}")
    return out


FAMILIES: dict[str, tuple[tuple[str, ...], Template]] = {
    "recency": (("recency_days", "overdue_ratio", "gap_mean_days", "gap_std_days", "gap_last_days", "r_score"),
                _recency),
    "frequency": (("orders_30d", "orders_90d", "orders_180d", "orders_365d", "orders_prev_90d", "orders_prev_180d",
                   "frequency_trend_90d", "frequency_trend_180d", "f_score", "valuable_frequency_drop"), _frequency),
    "spend": (("spend_30d", "spend_90d", "spend_180d", "spend_365d", "spend_prev_90d", "spend_trend_90d",
               "spend_all", "m_score"), _spend),
    "tenure": (("tenure_days", "orders_all"), _tenure),
    "discount": (("discount_share_365d", "coupon_share_365d"), _discount),
    "basket": (("avg_order_value_365d", "max_order_value_365d"), _basket),
    "breadth": (("categories_90d", "categories_prev_90d", "categories_365d", "products_90d", "products_365d",
                 "new_products_90d", "category_trend_90d", "new_product_share_90d", "items_per_order_365d"),
                _breadth),
    "returns": (("returns_share_365d",), _returns),
    "activity": (("days_since_event",), _activity),
    "visits": (("days_since_visit", "visits_90d", "visits_prev_90d", "visit_trend_90d"), _visits),
}
_FAMILY_OF = {feat: fam for fam, (feats, _) in FAMILIES.items() for feat in feats}
# Features outside the catalogue above still land in a family by their name.
_FAMILY_BY_PREFIX = (("orders_", "frequency"), ("frequency_", "frequency"), ("spend_", "spend"),
                     ("discount", "discount"), ("coupon", "discount"), ("categor", "breadth"),
                     ("product", "breadth"), ("return", "returns"), ("visit", "visits"), ("gap_", "recency"))
_EVENT_WINDOW = re.compile(r"_(\d+d|all|prev_\d+d)$")

# Event types in words (singular, plural); other types read "N 'type' events".
EVENT_NOUNS = {
    "complaint": ("complaint", "complaints"), "support_ticket": ("support ticket", "support tickets"),
    "return_request": ("return request", "return requests"), "visit": ("visit", "visits"),
    "login": ("login", "logins"), "email_open": ("e-mail opened", "e-mails opened"),
    "coupon_redeemed": ("coupon redeemed", "coupons redeemed"),
    "campaign_received": ("campaign received", "campaigns received"),
}

# Themes: the stories behind the families, matching the win-back actions (service -> callback,
# price -> comeback discount, variety -> product trial) and the synthetic data's planted reasons.
THEMES = {
    "recency": "drift", "frequency": "drift", "spend": "drift", "activity": "drift", "visits": "drift",
    "event_visit": "drift", "event_login": "drift", "event_email_open": "drift",
    "event_complaint": "service", "event_support_ticket": "service", "event_return_request": "service",
    "returns": "service",
    "discount": "price", "event_coupon_redeemed": "price",
    "breadth": "variety",
}
THEME_LABELS = {"drift": "Buying less often", "service": "Service trouble", "price": "Price and discounts",
                "variety": "Narrowing variety", "profile": "Customer profile"}


def family(feature: str) -> str:
    """The reason family of a feature: event counts are one family per event type."""
    if feature.startswith("event_"):
        return _EVENT_WINDOW.sub("", feature)
    if feature in _FAMILY_OF or feature in FAMILIES:
        return _FAMILY_OF.get(feature, feature)
    return next((fam for prefix, fam in _FAMILY_BY_PREFIX if feature.startswith(prefix)), feature)


def theme(feature_or_family: str) -> str:
    """The theme of a feature or family: drift, service, price, variety, or profile for the rest."""
    return THEMES.get(family(feature_or_family), "profile")


def _event_sentences(code: str, f: pd.DataFrame) -> list[str]:
    """'2 complaints in the last 30 days, 3 in the last 90' (the windows the data set has)."""
    kind = code.removeprefix("event_")
    one, many = EVENT_NOUNS.get(kind, (f"'{kind}' event", f"'{kind}' events"))
    month, quarter = _col(f, code + "_30d"), _col(f, code + "_90d")
    if code + "_30d" not in f:
        return [f"{_count(x, one, many)} in the last 90 days" for x in quarter]
    if code + "_90d" not in f:
        return [f"{_count(x, one, many)} in the last 30 days" for x in month]
    return [f"{_count(m, one, many)} in the last 30 days, {_n(q)} in the last 90" for m, q in zip(month, quarter)]


def _sentences(code: str, f: pd.DataFrame) -> list[str]:
    """The family's sentence for each row of `f` (a generic one for features without a family)."""
    if code in FAMILIES:
        return FAMILIES[code][1](f)
    if code.startswith("event_"):
        return _event_sentences(code, f)
    return [f"{code.replace('_', ' ')}: {_n(x)}" for x in _col(f, code)]


def family_contributions(contributions: pd.DataFrame, level: Callable[[str], str] = family) -> pd.DataFrame:
    """Contributions summed per family (or per theme with `level=theme`), families in first-seen order."""
    groups = [level(c) for c in contributions.columns]
    names = list(dict.fromkeys(groups))
    indicator = np.zeros((len(groups), len(names)))
    indicator[np.arange(len(groups)), [names.index(g) for g in groups]] = 1.0
    return pd.DataFrame(contributions.to_numpy(dtype=float) @ indicator, index=contributions.index, columns=names)


def reasons(features: pd.DataFrame, contributions: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Top reasons raising each customer's risk: codes and sentences, strongest first.

    Contributions (SHAP, log-odds) are summed per family so that, say, three frequency
    features do not fill all three slots with the same story. Only positive ones count;
    a customer with fewer than `top` gets None in the remaining slots.
    """
    by_family = family_contributions(contributions)
    names = np.array(by_family.columns, dtype=object)
    values = by_family.to_numpy()
    ranked = np.where(values > 0, values, -np.inf)
    # Stable order on (value desc, family order): the same input always gives the same codes.
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :top]
    positive = np.take_along_axis(ranked, order, axis=1) > -np.inf
    codes = np.where(positive, names[order], None)
    texts = np.full(codes.shape, None, dtype=object)
    rows = features.reset_index(drop=True)
    for code in pd.unique(codes[positive]):
        hit = codes == code
        who = np.flatnonzero(hit.any(axis=1))
        sentences = np.array(_sentences(code, rows.iloc[who]), dtype=object)
        slot = hit[who].argmax(axis=1)  # a family fills at most one slot per customer
        texts[who, slot] = sentences
    columns = [f"reason_code_{i + 1}" for i in range(top)] + [f"reason_{i + 1}" for i in range(top)]
    padded = np.full((len(features), 2 * top), None, dtype=object)
    padded[:, :codes.shape[1]], padded[:, top:top + codes.shape[1]] = codes, texts
    return pd.DataFrame(padded, index=features.index, columns=columns)


def top_contributions(features: pd.Series, contributions: pd.Series, top: int = 8) -> pd.DataFrame:
    """One customer's largest contributions by size: feature, value, contribution, family, theme."""
    order = contributions.abs().sort_values(ascending=False, kind="stable").index[:top]
    return pd.DataFrame({
        "feature": order,
        "value": [features.get(f, np.nan) for f in order],
        "contribution": contributions[order].to_numpy(),
        "family": [family(f) for f in order],
        "theme": [theme(f) for f in order],
    })


def global_drivers(contributions: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP| and mean SHAP per feature, largest mean |SHAP| first, with family and theme."""
    out = pd.DataFrame({
        "feature": contributions.columns,
        "mean_abs_shap": contributions.abs().mean().to_numpy(),
        "mean_shap": contributions.mean().to_numpy(),
        "family": [family(c) for c in contributions.columns],
        "theme": [theme(c) for c in contributions.columns],
    })
    return out.sort_values(["mean_abs_shap", "feature"], ascending=[False, True], ignore_index=True)


def segment_drivers(contributions: pd.DataFrame, segment: pd.Series,
                    level: Callable[[str], str] = theme) -> pd.DataFrame:
    """Mean contribution (log-odds) of each theme (or family) per segment; rows: segments, plus `n`.

    A positive cell: that story raises the risk of the segment's customers on average.
    """
    grouped = family_contributions(contributions, level)
    key = pd.Series(segment.to_numpy(), index=grouped.index, name=segment.name or "segment")
    means = grouped.groupby(key, observed=True).mean()
    means.insert(0, "n", key.value_counts().reindex(means.index).to_numpy())
    return means


def distinctive_drivers(contributions: pd.DataFrame, segment: pd.Series,
                        level: Callable[[str], str] = theme) -> pd.DataFrame:
    """How far each theme (or family) sits above the average in each segment, in standard deviations.

    Raw means favour the loudest story (a frequency collapse outweighs everything for churners);
    this lift shows what sets a segment apart: (segment mean - overall mean) / overall std.
    """
    grouped = family_contributions(contributions, level)
    spread = grouped.std(ddof=0).replace(0.0, np.nan)
    key = pd.Series(segment.to_numpy(), index=grouped.index, name=segment.name or "segment")
    lift = ((grouped.groupby(key, observed=True).mean() - grouped.mean()) / spread).fillna(0.0)
    lift.insert(0, "n", key.value_counts().reindex(lift.index).to_numpy())
    return lift


def top_reason_shares(reason_codes: pd.Series, segment: pd.Series) -> pd.DataFrame:
    """Per segment, the share of customers whose strongest reason falls in each theme (rows sum to 1)."""
    themes = reason_codes.map(lambda c: theme(c) if isinstance(c, str) else None)
    frame = pd.DataFrame({"segment": segment.to_numpy(), "theme": themes.to_numpy()}).dropna()
    shares = pd.crosstab(frame["segment"], frame["theme"], normalize="index")
    shares.index.name = segment.name or "segment"
    return shares
