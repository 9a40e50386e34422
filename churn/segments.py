"""Segments the retention team speaks in: lifecycle stage, value tier, risk band."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.config import LifecycleConfig

STAGES = ("new", "active", "dormant", "lapsed")
VALUE_TIERS = ("low", "mid", "high")
RISK_BANDS = ("low", "medium", "high")


def lifecycle_stage(features: pd.DataFrame, config: LifecycleConfig) -> pd.Series:
    """new (first order within new_days), active, dormant or lapsed by days since the last order."""
    tenure, recency = features["tenure_days"], features["recency_days"]
    stage = np.select(
        [tenure < config.new_days, recency <= config.active_days, recency <= config.dormant_days],
        ["new", "active", "dormant"], default="lapsed")
    return pd.Series(pd.Categorical(stage, categories=STAGES), index=features.index, name="lifecycle_stage")


def value_tier(value: pd.Series) -> pd.Series:
    """high: top 20% of value among the scored customers; mid: the next 40%; low: the rest."""
    pct = value.rank(pct=True, method="first")
    tier = np.select([pct > 0.8, pct > 0.4], ["high", "mid"], default="low")
    return pd.Series(pd.Categorical(tier, categories=VALUE_TIERS), index=value.index, name="value_tier")


def risk_band(p_churn: pd.Series, bands: tuple[float, float]) -> pd.Series:
    """low below the first threshold, high from the second, medium between."""
    band = np.select([p_churn >= bands[1], p_churn >= bands[0]], ["high", "medium"], default="low")
    return pd.Series(pd.Categorical(band, categories=RISK_BANDS), index=p_churn.index, name="risk_band")
