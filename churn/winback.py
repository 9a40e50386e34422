"""Win-back lists: who to contact, with which action, within each team's daily capacity.

This first policy is rule-based: a customer's situation picks the action (service trouble or
high value: a callback; price sensitivity: a comeback discount; otherwise: a product trial),
and lists fill in order of value at stake (p_churn x value). Suppressed customers never
appear. A stable share of eligible customers is held out and recorded, never contacted, so
the win-back rate can be measured against them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from churn.config import ACTIONS, WinbackConfig

SERVICE_EVENTS = ("event_complaint_90d", "event_support_ticket_90d", "event_return_request_90d")
# Returning or cancelling this share of orders counts as service trouble, like a complaint.
SERVICE_RETURNS_SHARE = 0.2
# A regular who halved their frequency: "a sudden drop after long loyalty" merits a call.
LOYAL_ORDERS_PREV_90D = 6
FREQUENCY_HALVED = 0.5

OFFERS = {
    "callback": "A personal call from the service team; offer help with whatever went wrong",
    "exclusive_discount": "A personal comeback coupon for the next order",
    "trial": "A free sample of a product from a category they have not tried yet",
}
TALKING_POINTS = {
    "callback": "Thank them for being a customer; ask how their recent orders went; fix or escalate "
                "anything that went wrong",
    "exclusive_discount": "Tell them we miss them; the coupon is personal and time-limited; point to "
                          "products they bought before",
    "trial": "Suggest something new in a category they like; the sample is free, no order needed",
}
LIST_COLUMNS = ["rank", "customer_id", "lifecycle_stage", "value_tier", "p_churn_pct", "value",
                "value_at_stake", "reason_1", "reason_2", "reason_3", "suggested_offer",
                "talking_points", "due_date"]


def holdout(customer_ids: pd.Series, campaign: str, share: float) -> pd.Series:
    """True for the customers held out: a stable hash of campaign and customer id below `share`."""
    def draw(cid: str) -> float:
        digest = hashlib.sha256(f"{campaign}:{cid}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64
    return customer_ids.map(draw) < share


def suggest_action(scores: pd.DataFrame) -> pd.Series:
    """callback for service trouble, high value or a loyal regular's collapse; discount for discount lovers; else trial."""
    service = np.zeros(len(scores), dtype=bool)
    for col in SERVICE_EVENTS:
        if col in scores:
            service |= scores[col].fillna(0).to_numpy() > 0
    if "returns_share_365d" in scores:
        service |= scores["returns_share_365d"].fillna(0).to_numpy() >= SERVICE_RETURNS_SHARE
    high_value = (scores["value_tier"] == "high").to_numpy()
    loyal_drop = ((scores["value_tier"] != "low") & (scores["orders_prev_90d"] >= LOYAL_ORDERS_PREV_90D)
                  & (scores["frequency_trend_90d"] <= FREQUENCY_HALVED)).to_numpy()
    price = np.zeros(len(scores), dtype=bool)
    if "discount_share_365d" in scores:
        # Price-sensitive: more of their basket came discounted than for half the candidates.
        share = scores["discount_share_365d"]
        price = (share >= share.median()).to_numpy()
    action = np.select([service | high_value | loyal_drop, price], ["callback", "exclusive_discount"], default="trial")
    return pd.Series(action, index=scores.index, name="action")


def assign(scores: pd.DataFrame, suppressed: set[str], config: WinbackConfig) -> pd.DataFrame:
    """Every eligible customer with an action, an arm (treated/holdout) and a rank within the action.

    Eligible: p_churn at least the minimum and not suppressed. Treated customers beyond an
    action's capacity are dropped; holdout customers are drawn before capacity is applied, so
    the holdout mirrors the customers the lists are drawn from.
    """
    eligible = scores[(scores["p_churn"] >= config.min_p_churn) & ~scores["customer_id"].isin(suppressed)].copy()
    eligible["action"] = suggest_action(eligible)
    eligible["value_at_stake"] = eligible["p_churn"] * eligible["value"]
    eligible["arm"] = np.where(holdout(eligible["customer_id"], config.campaign, config.holdout_share),
                               "holdout", "treated")
    eligible = eligible.sort_values(["value_at_stake", "customer_id"], ascending=[False, True])
    eligible["rank"] = eligible.groupby(["action", "arm"]).cumcount() + 1
    capacity = eligible["action"].map(lambda a: config.capacity.get(a, 0))
    keep = (eligible["rank"] <= capacity) | (eligible["arm"] == "holdout")
    return eligible[keep].reset_index(drop=True)


def _neutralise(value: object) -> object:
    """Make text that a spreadsheet would run as a formula show as plain text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def service_lists(assignments: pd.DataFrame, run_date: pd.Timestamp, due_days: int = 7) -> dict[str, pd.DataFrame]:
    """The lists the service team works from: treated customers only, one frame per action."""
    lists = {}
    for action in ACTIONS:
        rows = assignments[(assignments["action"] == action) & (assignments["arm"] == "treated")]
        frame = pd.DataFrame({
            "rank": rows["rank"].to_numpy(),
            "customer_id": rows["customer_id"].to_numpy(),
            "lifecycle_stage": rows["lifecycle_stage"].astype(str).to_numpy(),
            "value_tier": rows["value_tier"].astype(str).to_numpy(),
            "p_churn_pct": (100 * rows["p_churn"]).round(1).to_numpy(),
            "value": rows["value"].round(2).to_numpy(),
            "value_at_stake": rows["value_at_stake"].round(2).to_numpy(),
            "reason_1": rows.get("reason_1", pd.Series(index=rows.index, dtype=str)).to_numpy(),
            "reason_2": rows.get("reason_2", pd.Series(index=rows.index, dtype=str)).to_numpy(),
            "reason_3": rows.get("reason_3", pd.Series(index=rows.index, dtype=str)).to_numpy(),
            "suggested_offer": OFFERS[action],
            "talking_points": TALKING_POINTS[action],
            "due_date": (run_date + pd.Timedelta(days=due_days)).date().isoformat(),
        }, columns=LIST_COLUMNS)
        lists[action] = frame.map(_neutralise)
    return lists
