"""Is the model still right? The scores a run published, checked once their horizon has passed.

A delayed-label backtest: a run on date D scored every customer; after D + H (H: that run's
horizon) the data says who really churned (no purchase occasion in (D, D + H]). For each such
run this module gives the realised ROC-AUC (with a bootstrap interval), top-decile lift,
calibration (mean predicted against observed, ECE, per-bin counts) and flags the runs whose
ROC-AUC fell below the backtest's interval or whose calibration error passed the promotion
gate's limit. Runs whose outcomes the model saw in training (D + H on or before its as-of
date) are in-sample: they are marked, and never alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churn.features.engine import occasions
from churn.features.labels import churn_labels
from churn.model.backtest import calibration_curve, metrics

__all__ = ["realised_quality", "REALISED_COLUMNS"]

REALISED_COLUMNS = ["run_date", "model_version", "horizon_days", "n", "churn_rate", "mean_predicted", "roc_auc",
                    "roc_auc_low", "roc_auc_high", "top_decile_lift", "ece", "in_sample", "alert", "calibration"]


def realised_quality(scores: pd.DataFrame, runs: pd.DataFrame, orders: pd.DataFrame, *,
                     backtest_auc_ci: tuple[float, float] | None = None, max_ece: float | None = None,
                     trained_as_of: Mapping[str, object] | None = None, n_boot: int = 100,
                     confidence: float = 0.95, random_state: int = 0) -> pd.DataFrame:
    """One row per run whose horizon window lies wholly inside the orders (see the module docstring).

    `scores`: the warehouse's scores (run_date, customer_id, p_churn); `runs`: its runs (run_date,
    model_version, horizon_days); `orders`: the data's orders. `trained_as_of`: model version ->
    its as-of date (in-sample runs). `alert` is a sentence, or "" when nothing is wrong.
    """
    if scores.empty or runs.empty:
        return pd.DataFrame(columns=REALISED_COLUMNS)
    occ = occasions(orders)
    data_end = pd.Timestamp("1970-01-01") + pd.Timedelta(days=int(occ["day"].max()))
    rows = []
    for run in runs.sort_values("run_date").itertuples():
        day, horizon = pd.Timestamp(run.run_date), int(run.horizon_days)
        if day + pd.Timedelta(days=horizon) > data_end:
            continue  # its customers' outcomes are not all known yet
        mine = scores[pd.to_datetime(scores["run_date"]) == day]
        if mine.empty:
            continue
        keys = pd.DataFrame({"customer_id": mine["customer_id"].astype(str).to_numpy(),
                             "cutoff": np.full(len(mine), day.to_datetime64())})
        y = churn_labels(keys, occ, horizon).to_numpy(dtype=float)
        p = mine["p_churn"].to_numpy(dtype=float)
        found = metrics(y, p, n_boot, confidence, random_state)
        low, high = found["roc_auc_ci"] or (np.nan, np.nan)
        as_of = (trained_as_of or {}).get(run.model_version)
        in_sample = as_of is not None and day + pd.Timedelta(days=horizon) <= pd.Timestamp(as_of)
        rows.append({"run_date": day, "model_version": run.model_version, "horizon_days": horizon, "n": len(y),
                     "churn_rate": float(y.mean()), "mean_predicted": float(p.mean()),
                     "roc_auc": np.nan if found["roc_auc"] is None else found["roc_auc"],
                     "roc_auc_low": low, "roc_auc_high": high,
                     "top_decile_lift": np.nan if found["top_decile_lift"] is None else found["top_decile_lift"],
                     "ece": found["ece"], "in_sample": in_sample,
                     "alert": "" if in_sample else _alert(found, backtest_auc_ci, max_ece),
                     "calibration": calibration_curve(y, p)})
    return pd.DataFrame(rows, columns=REALISED_COLUMNS)


def _alert(found: dict[str, Any], auc_ci: tuple[float, float] | None, max_ece: float | None) -> str:
    """Why a run's realised quality worries us, or ""."""
    said = []
    if auc_ci is not None and found["roc_auc"] is not None and found["roc_auc"] < auc_ci[0]:
        said.append(f"ROC-AUC {found['roc_auc']:.3f} is below the backtest's interval "
                    f"({auc_ci[0]:.3f}-{auc_ci[1]:.3f})")
    if max_ece is not None and found["ece"] is not None and found["ece"] > max_ece:
        said.append(f"calibration error {found['ece']:.3f} is above the gate's limit {max_ece:.3f}")
    return "; ".join(said)
