"""Segments the retention team speaks in: lifecycle stage, value tier, risk band, RFM segment."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.config import LifecycleConfig

STAGES = ("new", "active", "dormant", "lapsed")
VALUE_TIERS = ("low", "mid", "high")
RISK_BANDS = ("low", "medium", "high")
RFM_SEGMENTS = ("champions", "loyal", "potential_loyalist", "new", "promising", "needs_attention",
                "about_to_sleep", "at_risk", "cant_lose", "hibernating")


def lifecycle_stage(features: pd.DataFrame, config: LifecycleConfig) -> pd.Series:
    """new (first order within new_days), active, dormant or lapsed by days since the last order."""
    tenure, recency = features["tenure_days"], features["recency_days"]
    stage = np.select(
        [tenure < config.new_days, recency <= config.active_days, recency <= config.dormant_days],
        ["new", "active", "dormant"], default="lapsed")
    return pd.Series(pd.Categorical(stage, categories=STAGES), index=features.index, name="lifecycle_stage")


def value_tier(value: pd.Series, cuts: tuple[float, float] = (0.4, 0.8)) -> pd.Series:
    """high: above the `cuts[1]` share of value among the scored customers (top 20%); mid: above `cuts[0]`.

    `cuts` is `[score] value_tier_cuts`: with (0.4, 0.8), the top 20% are high, the next 40% mid.
    """
    pct = value.rank(pct=True, method="first")
    tier = np.select([pct > cuts[1], pct > cuts[0]], ["high", "mid"], default="low")
    return pd.Series(pd.Categorical(tier, categories=VALUE_TIERS), index=value.index, name="value_tier")


def risk_band(p_churn: pd.Series, bands: tuple[float, float]) -> pd.Series:
    """low below the first threshold, high from the second, medium between."""
    band = np.select([p_churn >= bands[1], p_churn >= bands[0]], ["high", "medium"], default="low")
    return pd.Series(pd.Categorical(band, categories=RISK_BANDS), index=p_churn.index, name="risk_band")


def rfm_segment(features: pd.DataFrame) -> pd.Series:
    """The usual named RFM segment from the recency and frequency quintile scores (r_score, f_score).

    The classic R x F grid: champions R5 F4-5; loyal R3-4 F4-5; potential loyalists R4-5 F2-3;
    new R5 F1; promising R4 F1; needs attention R3 F3; about to sleep R3 F1-2; at risk R1-2
    F3-4; can't lose R1-2 F5; hibernating R1-2 F1-2.
    """
    r, f = features["r_score"].to_numpy(), features["f_score"].to_numpy()
    segment = np.select(
        [(r == 5) & (f >= 4), (r >= 3) & (f >= 4), (r >= 4) & (f >= 2), (r == 5) & (f == 1), (r == 4) & (f == 1),
         (r == 3) & (f == 3), r == 3, f == 5, f >= 3],
        ["champions", "loyal", "potential_loyalist", "new", "promising", "needs_attention", "about_to_sleep",
         "cant_lose", "at_risk"], default="hibernating")
    return pd.Series(pd.Categorical(segment, categories=RFM_SEGMENTS), index=features.index, name="rfm_segment")
