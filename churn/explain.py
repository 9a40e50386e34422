"""Per-customer reasons: the features that raise a customer's churn risk most, in plain words."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

# Each feature belongs to a family; one sentence per family, filled with the customer's numbers.
Template = Callable[[pd.Series], str]


def _n(x: float) -> str:
    return "unknown" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.0f}"


def _frequency(r: pd.Series) -> str:
    return f"{_n(r.get('orders_90d'))} orders in the last 90 days, {_n(r.get('orders_prev_90d'))} in the 90 before"


def _recency(r: pd.Series) -> str:
    gap = r.get("gap_mean_days")
    usual = f"; usually orders every {_n(gap)} days" if gap == gap and gap is not None else ""
    return f"No order for {_n(r.get('recency_days'))} days{usual}"


def _spend(r: pd.Series) -> str:
    return f"Spent {_n(r.get('spend_90d'))} in the last 90 days, {_n(r.get('spend_prev_90d'))} in the 90 before"


def _tenure(r: pd.Series) -> str:
    return f"Customer for {_n(r.get('tenure_days'))} days with {_n(r.get('orders_all'))} orders in all"


def _discount(r: pd.Series) -> str:
    share = r.get("discount_share_365d")
    return f"{share:.0%} of list value came as discounts in the last year" if share == share else "Rarely uses discounts"


def _basket(r: pd.Series) -> str:
    return f"Average basket {r.get('avg_order_value_365d', float('nan')):,.2f} over the last year"


def _breadth(r: pd.Series) -> str:
    return (f"Bought from {_n(r.get('categories_90d'))} categories in the last 90 days, "
            f"{_n(r.get('categories_prev_90d'))} in the 90 before")


def _returns(r: pd.Series) -> str:
    return f"{r.get('returns_share_365d', 0):.0%} of orders returned or cancelled in the last year"


def _activity(r: pd.Series) -> str:
    return f"No recorded activity for {_n(r.get('days_since_event'))} days"


FAMILIES: dict[str, tuple[tuple[str, ...], Template]] = {
    "recency": (("recency_days", "overdue_ratio", "gap_mean_days", "gap_std_days", "gap_last_days"), _recency),
    "frequency": (("orders_30d", "orders_90d", "orders_180d", "orders_365d", "orders_prev_90d",
                   "frequency_trend_90d"), _frequency),
    "spend": (("spend_30d", "spend_90d", "spend_180d", "spend_365d", "spend_prev_90d", "spend_trend_90d",
               "spend_all"), _spend),
    "tenure": (("tenure_days", "orders_all"), _tenure),
    "discount": (("discount_share_365d",), _discount),
    "basket": (("avg_order_value_365d",), _basket),
    "breadth": (("categories_90d", "categories_prev_90d", "products_90d"), _breadth),
    "returns": (("returns_share_365d",), _returns),
    "activity": (("days_since_event",), _activity),
}
_FAMILY_OF = {feat: fam for fam, (feats, _) in FAMILIES.items() for feat in feats}


def family(feature: str) -> str:
    """The reason family of a feature: event counts are one family per event type."""
    if feature.startswith("event_"):
        return feature.removesuffix("_90d")
    return _FAMILY_OF.get(feature, feature)


def _sentence(code: str, row: pd.Series) -> str:
    if code in FAMILIES:
        return FAMILIES[code][1](row)
    if code.startswith("event_"):
        kind = code.removeprefix("event_").replace("_", " ")
        return f"{_n(row.get(code + '_90d'))} {kind} events in the last 90 days"
    return code.replace("_", " ")


def reasons(features: pd.DataFrame, contributions: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Top reasons raising each customer's risk: codes and sentences, strongest first.

    Contributions (SHAP, log-odds) are summed per family so that, say, three frequency
    features do not fill all three slots with the same story. Only positive ones count.
    """
    by_family = contributions.T.groupby(family).sum().T
    rows = []
    for idx, contrib in by_family.iterrows():
        ranked = contrib[contrib > 0].sort_values(ascending=False).index[:top]
        row = features.loc[idx]
        codes = list(ranked) + [None] * (top - len(ranked))
        texts = [_sentence(c, row) if c else None for c in codes]
        rows.append(codes + texts)
    columns = [f"reason_code_{i + 1}" for i in range(top)] + [f"reason_{i + 1}" for i in range(top)]
    return pd.DataFrame(rows, index=features.index, columns=columns)
