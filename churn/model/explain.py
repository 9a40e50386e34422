"""Churn drivers: per-customer reasons in plain words, and global and per-segment drivers.

Contributions are SHAP values in log-odds (XGBoost's exact TreeSHAP, `ChurnModel.contributions`):
positive ones raise a customer's churn risk. Features are grouped into families (one warning
template each, filled with the customer's own numbers) and families into drivers (`THEMES`),
the stories analysts and the win-back actions speak in: buying less (drift), service trouble,
price, narrowing variety, and the customer's profile.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["FAMILIES", "THEMES", "THEME_LABELS", "family", "theme", "shop_event", "family_contributions", "reasons",
           "top_contributions", "global_drivers", "segment_drivers", "distinctive_drivers", "top_reason_shares"]

# A template reads the rows of a features frame and says, per row, whether the family's facts are
# a warning sign and in what words: (is_warning, sentence). Families without one (tenure, basket,
# discounts, the time since any event) never become an agent's reason: their contribution can be
# real, but their facts cannot be told as "why this customer worries us" without a reference.
Template = Callable[[pd.DataFrame, str], tuple[np.ndarray, list[str]]]


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A feature column as floats; NaN when the data set lacks the feature."""
    return frame[name].to_numpy(dtype=float) if name in frame else np.full(len(frame), np.nan)


def _n(x: float) -> str:
    """A count or amount, rounded, with thousands separators ('unknown' for NaN)."""
    return "unknown" if x != x else f"{x:,.0f}"


def _count(x: float, one: str, many: str) -> str:
    """'1 order', '3 orders', 'unknown orders'."""
    return f"{_n(x)} {one if x == 1 else many}"


def _money(x: float, currency: str) -> str:
    """'1,284 USD', '£1,284' (a symbol goes first, a code after), 'unknown'."""
    if x != x:
        return "unknown"
    if not currency:
        return f"{x:,.0f}"
    return f"{x:,.0f} {currency}" if currency.isalpha() else f"{currency}{x:,.0f}"


def _fewer(now: np.ndarray, before: np.ndarray) -> np.ndarray:
    """True where a count or amount fell against the window before (unknown is never a fall)."""
    return np.nan_to_num(now, nan=np.inf) < np.nan_to_num(before, nan=-np.inf)


def _recency(f: pd.DataFrame, currency: str) -> tuple[np.ndarray, list[str]]:
    days, gap = _col(f, "recency_days"), _col(f, "gap_mean_days")
    # Overdue against their own rhythm; a one-time buyer who has not come back is the classic case.
    warning = (days == days) & ((gap != gap) | (days > gap))
    text = [f"Stopped ordering: no order for {_n(d)} days, usually every {_n(g)} days" if g == g
            else f"Bought only once, {_n(d)} days ago, and not since" for d, g in zip(days, gap)]
    return warning, text


def _frequency(f: pd.DataFrame, currency: str) -> tuple[np.ndarray, list[str]]:
    month, now, before = _col(f, "orders_30d"), _col(f, "orders_90d"), _col(f, "orders_prev_90d")
    text = [f"Ordering less often: {_count(q, 'order', 'orders')} in the last 90 days ({_n(m)} in the last 30), "
            f"{_n(b)} in the 90 before" for m, q, b in zip(month, now, before)]
    return _fewer(now, before), text


def _spend(f: pd.DataFrame, currency: str) -> tuple[np.ndarray, list[str]]:
    now, before = _col(f, "spend_90d"), _col(f, "spend_prev_90d")
    text = [f"Spending less: {_money(q, currency)} in the last 90 days, {_money(b, currency)} in the 90 before"
            for q, b in zip(now, before)]
    return _fewer(now, before), text


def _breadth(f: pd.DataFrame, currency: str) -> tuple[np.ndarray, list[str]]:
    now, before = _col(f, "categories_90d"), _col(f, "categories_prev_90d")
    text = [f"Buying from fewer categories: {_n(q)} in the last 90 days, {_n(b)} in the 90 before"
            for q, b in zip(now, before)]
    return _fewer(now, before), text


def _returns(f: pd.DataFrame, currency: str) -> tuple[np.ndarray, list[str]]:
    share = _col(f, "returns_share_365d")
    return np.nan_to_num(share) > 0, [f"Returned or cancelled {x:.0%} of orders in the last year" if x == x
                                      else "" for x in share]


def _visits(f: pd.DataFrame, currency: str) -> tuple[np.ndarray, list[str]]:
    now, before, last = _col(f, "visits_90d"), _col(f, "visits_prev_90d"), _col(f, "days_since_visit")
    text = [f"Visiting less: {_count(q, 'visit or login', 'visits or logins')} in the last 90 days, {_n(b)} in the "
            f"90 before" + (f"; last one {_n(d)} days ago" if d == d else "") for q, b, d in zip(now, before, last)]
    return _fewer(now, before), text


FAMILIES: dict[str, tuple[tuple[str, ...], Template | None]] = {
    "recency": (("recency_days", "overdue_ratio", "gap_mean_days", "gap_std_days", "gap_last_days", "r_score"),
                _recency),
    "frequency": (("orders_30d", "orders_90d", "orders_180d", "orders_365d", "orders_prev_90d", "orders_prev_180d",
                   "frequency_trend_90d", "frequency_trend_180d", "f_score", "valuable_frequency_drop"), _frequency),
    "spend": (("spend_30d", "spend_90d", "spend_180d", "spend_365d", "spend_prev_90d", "spend_trend_90d",
               "spend_all", "m_score"), _spend),
    "tenure": (("tenure_days", "orders_all"), None),
    "discount": (("discount_share_365d", "coupon_share_365d"), None),
    "basket": (("avg_order_value_365d", "max_order_value_365d"), None),
    "breadth": (("categories_90d", "categories_prev_90d", "categories_365d", "products_90d", "products_365d",
                 "new_products_90d", "category_trend_90d", "new_product_share_90d", "items_per_order_365d"),
                _breadth),
    "returns": (("returns_share_365d",), _returns),
    "activity": (("days_since_event",), None),  # any event, the shop's own campaigns included
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


# Other shops' spellings of service trouble ("complaint_filed", "refund_requested", "ticket_opened").
SERVICE_EVENT_WORDS = ("complain", "ticket", "return", "refund", "dispute")


def theme(feature_or_family: str) -> str:
    """The driver of a feature or family: drift, service, price, variety, or profile for the rest."""
    code = family(feature_or_family)
    if code not in THEMES and code.startswith("event_") and any(w in code for w in SERVICE_EVENT_WORDS):
        return "service"
    return THEMES.get(code, "profile")


# Events the shop sends (campaigns, mailings) say what the shop did, not how the customer feels:
# never an agent's reason, in any spelling a shop uses for them.
SHOP_EVENT_SUFFIXES = ("_received", "_sent", "_delivered", "_targeted")
SHOP_EVENT_PREFIXES = ("campaign", "mailing", "newsletter", "promotion")


def shop_event(kind: str) -> bool:
    """True for an event type the shop itself causes (e.g. campaign_received, email_sent)."""
    return kind.endswith(SHOP_EVENT_SUFFIXES) or kind.startswith(SHOP_EVENT_PREFIXES)


def _event_warning(code: str, f: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Service events (complaints, tickets, return requests) are a warning when there were any in
    the last 90 days; the customer's other events when they stopped: none in 30 days, some in 90."""
    kind = code.removeprefix("event_")
    one, many = EVENT_NOUNS.get(kind, (f"'{kind}' event", f"'{kind}' events"))
    month, quarter = _col(f, code + "_30d"), _col(f, code + "_90d")
    if shop_event(kind):
        return np.zeros(len(f), dtype=bool), [""] * len(f)
    if theme(code) == "service":
        recent = np.fmax(np.nan_to_num(month), np.nan_to_num(quarter))
        text = [f"Service trouble: {_count(q, one, many)} in the last 90 days" + (f" ({_n(m)} in the last 30)"
                if m == m else "") if q == q else f"Service trouble: {_count(m, one, many)} in the last 30 days"
                for m, q in zip(month, quarter)]
        return recent > 0, text
    stopped = (month == 0) & (np.nan_to_num(quarter) > 0)
    return stopped, [f"Stopped: no {one} in the last 30 days, {_n(q)} in the last 90" for q in quarter]


def _warnings(code: str, f: pd.DataFrame, currency: str) -> tuple[np.ndarray, list[str]] | None:
    """Per row of `f`: is the family's fact a warning sign, and its sentence; None: never a reason."""
    if code in FAMILIES:
        template = FAMILIES[code][1]
        return None if template is None else template(f, currency)
    if code.startswith("event_"):
        return _event_warning(code, f)
    return None  # a feature outside the catalogue: no words to warn with


def family_contributions(contributions: pd.DataFrame, level: Callable[[str], str] = family) -> pd.DataFrame:
    """Contributions summed per family (or per theme with `level=theme`), families in first-seen order."""
    groups = [level(c) for c in contributions.columns]
    names = list(dict.fromkeys(groups))
    indicator = np.zeros((len(groups), len(names)))
    indicator[np.arange(len(groups)), [names.index(g) for g in groups]] = 1.0
    return pd.DataFrame(contributions.to_numpy(dtype=float) @ indicator, index=contributions.index, columns=names)


def reasons(features: pd.DataFrame, contributions: pd.DataFrame, top: int = 3, currency: str = "") -> pd.DataFrame:
    """Top warning signs raising each customer's risk: codes and sentences, strongest first.

    Contributions (SHAP, log-odds) are summed per family so that, say, three frequency
    features do not fill all three slots with the same story. A family is a reason only when
    it pushes the risk up (positive sum) AND the customer's own facts show its warning sign
    (fewer orders than before, overdue against their rhythm, a complaint, ...): a rising figure,
    the shop's own marketing or a family without a warning reading is never shown to an agent.
    Sentences say why it worries us ("Stopped ordering: no order for 61 days, usually every 4
    days"); amounts carry `currency`. A customer with fewer than `top` gets None in the rest.
    """
    by_family = family_contributions(contributions)
    names = np.array(by_family.columns, dtype=object)
    values = by_family.to_numpy()
    rows = features.reset_index(drop=True)
    usable = np.zeros(values.shape, dtype=bool)
    sentences: dict[int, dict[int, str]] = {}
    for j, code in enumerate(names):
        # Only a family that raises the risk can be a reason: the templates (row by row) read those rows only.
        up = np.flatnonzero(values[:, j] > 0)
        if not len(up):
            continue
        found = _warnings(code, rows.iloc[up] if len(up) < len(rows) else rows, currency)
        if found is not None:
            usable[up, j] = found[0]
            sentences[j] = dict(zip(up.tolist(), found[1]))
    ranked = np.where((values > 0) & usable, values, -np.inf)
    # Stable order on (value desc, family order): the same input always gives the same codes.
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :top]
    positive = np.take_along_axis(ranked, order, axis=1) > -np.inf
    codes = np.where(positive, names[order], None)
    texts = np.full(codes.shape, None, dtype=object)
    for i, k in zip(*np.nonzero(positive)):
        texts[i, k] = sentences[order[i, k]][i]
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
