"""Daily scoring: every customer of the population at date D, with risk, stage, value and reasons."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from churn.config import Config
from churn.model.explain import reasons
from churn.features.engine import feature_columns
from churn.model.classifier import ChurnModel
from churn.features.segments import lifecycle_stage, risk_band, value_tier

REASON_COLUMNS = ["reason_code_1", "reason_code_2", "reason_code_3", "reason_1", "reason_2", "reason_3"]
SCORE_COLUMNS = ["customer_id", "score_date", "p_churn", "risk_band", "lifecycle_stage", "value", "value_tier",
                 *REASON_COLUMNS]


def score(features: pd.DataFrame, model: ChurnModel, config: Config, explain: bool = True) -> pd.DataFrame:
    """Score the customers of a features frame built at one cutoff (the run date).

    Returns the score columns followed by the features (the facts behind the reasons), sorted
    by customer id. With `explain=False` the reason columns stay empty: reasons cost a SHAP
    computation per customer, so the daily run asks for them for the listed customers only
    (`add_reasons`).
    """
    frame = features.reset_index(drop=True)
    out = pd.DataFrame({"customer_id": frame["customer_id"], "score_date": frame["cutoff"]})
    out["p_churn"] = model.predict_proba(frame)[:, 1].astype("float64")
    out["risk_band"] = risk_band(out["p_churn"], config.score.risk_bands)
    out["lifecycle_stage"] = lifecycle_stage(frame, config.lifecycle)
    # Value at stake: trailing-12-month net spend times the margin rate.
    out["value"] = frame["spend_365d"] * config.score.margin_rate
    out["value_tier"] = value_tier(out["value"], config.score.value_tier_cuts)
    if explain:
        out = out.join(reasons(frame, model.contributions(frame), currency=config.business.currency))
    else:
        out = out.assign(**{column: pd.Series(None, index=out.index, dtype=object) for column in REASON_COLUMNS})
    facts = frame[feature_columns(frame)]
    scored = pd.concat([out[SCORE_COLUMNS], facts], axis=1)
    if scored["customer_id"].is_monotonic_increasing:  # features usually come sorted: skip the copy
        return scored
    return scored.sort_values("customer_id", ignore_index=True)


def add_reasons(scores: pd.DataFrame, model: ChurnModel, customer_ids: Iterable[str],
                currency: str = "") -> pd.DataFrame:
    """Scores with the reason columns filled in for the given customers (the others unchanged)."""
    out = scores.copy(deep=False)  # only the reason columns change, and they are replaced whole
    rows = out.index[out["customer_id"].isin(set(customer_ids))]
    if not len(rows):
        return out
    subset = out.loc[rows]
    found = reasons(subset, model.contributions(subset), currency=currency)
    for column in REASON_COLUMNS:
        out[column] = out[column].astype(object)
        out.loc[rows, column] = found[column].astype(object).to_numpy()
    return out
