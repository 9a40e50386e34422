"""Daily scoring: every customer of the population at date D, with risk, stage, value and reasons."""

from __future__ import annotations

import pandas as pd

from churn.config import Config
from churn.explain import reasons
from churn.features import feature_columns
from churn.model import ChurnModel
from churn.segments import lifecycle_stage, risk_band, value_tier

SCORE_COLUMNS = ["customer_id", "score_date", "p_churn", "risk_band", "lifecycle_stage", "value", "value_tier",
                 "reason_code_1", "reason_code_2", "reason_code_3", "reason_1", "reason_2", "reason_3"]


def score(features: pd.DataFrame, model: ChurnModel, config: Config) -> pd.DataFrame:
    """Score the customers of a features frame built at one cutoff (the run date).

    Returns the score columns followed by the features (the facts behind the reasons).
    """
    frame = features.reset_index(drop=True)
    out = pd.DataFrame({"customer_id": frame["customer_id"], "score_date": frame["cutoff"]})
    out["p_churn"] = model.predict_proba(frame)[:, 1].astype("float64")
    out["risk_band"] = risk_band(out["p_churn"], config.score.risk_bands)
    out["lifecycle_stage"] = lifecycle_stage(frame, config.lifecycle)
    # Value at stake: trailing-12-month net spend times the margin rate.
    out["value"] = frame["spend_365d"] * config.score.margin_rate
    out["value_tier"] = value_tier(out["value"])
    out = out.join(reasons(frame, model.contributions(frame)))
    facts = frame[feature_columns(frame)]
    return pd.concat([out[SCORE_COLUMNS], facts], axis=1).sort_values("customer_id", ignore_index=True)
