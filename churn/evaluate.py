"""Out-of-time evaluation: the model and the baselines scored on the same test cutoff."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from churn.baselines import BASELINES
from churn.config import Config
from churn.features import FeatureBuilder
from churn.model import ChurnModel
from churn.snapshots import build_snapshots, data_range
from churn.split import Split, assert_out_of_time, plan_split

if TYPE_CHECKING:
    from churn.contract import Dataset


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Churn rate among the 10% highest scores over the overall churn rate."""
    n_top = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-p, kind="stable")[:n_top]
    return float(y[top].mean() / y.mean())


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Mean |predicted - observed| churn rate over 10 equal-width probability bins, weighted by size."""
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        mask = bins == b
        total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return float(total / len(y))


def bootstrap_auc_ci(y: np.ndarray, p: np.ndarray, n_boot: int, confidence: float, random_state: int) -> list[float]:
    """Percentile bootstrap interval of the ROC-AUC (resampling customers with replacement)."""
    rng = np.random.default_rng(random_state)
    aucs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() != y[idx].max():
            aucs.append(roc_auc_score(y[idx], p[idx]))
    alpha = (1 - confidence) / 2
    return [float(np.quantile(aucs, alpha)), float(np.quantile(aucs, 1 - alpha))]


def metrics(y: np.ndarray, p: np.ndarray, n_boot: int = 500, confidence: float = 0.95,
            random_state: int = 0) -> dict[str, Any]:
    """ROC-AUC with its bootstrap interval, PR-AUC, top-decile lift, Brier score and ECE."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "roc_auc_ci": bootstrap_auc_ci(y, p, n_boot, confidence, random_state),
        "pr_auc": float(average_precision_score(y, p)),
        "top_decile_lift": top_decile_lift(y, p),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
    }


def fit_and_score(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, config: Config,
                  horizon_days: int) -> tuple[ChurnModel, dict[str, np.ndarray]]:
    """Fit the model and every baseline on the same training snapshots; score the test snapshots."""
    model = ChurnModel(horizon_days, config.model).fit(train, val)
    scores = {"xgboost": model.predict_proba(test)[:, 1]}
    for name, baseline in BASELINES.items():
        scores[name] = baseline(random_state=config.model.random_state).fit(train).predict_proba(test)[:, 1]
    return model, scores


def backtest(dataset: Dataset, test_cutoff: object, config: Config, split: Split | None = None) -> dict[str, Any]:
    """Train on earlier cutoffs, early-stop on the validation cutoff, evaluate every model on the test cutoff.

    Returns the backtest JSON of DESIGN.md section 6.
    """
    h = config.data.horizon_days
    if split is None:
        start, end = data_range(dataset)
        split = plan_split(test_cutoff, h, config.model.n_train_cutoffs, start, end,
                           config.model.min_history_days, with_test=True)
    assert_out_of_time(split)
    snaps = build_snapshots(dataset, split.all_cutoffs(), h, config.data.lookback_days,
                            FeatureBuilder(dataset, config.data.lookback_days))
    train = snaps[snaps["cutoff"].isin(split.train_cutoffs)]
    val = snaps[snaps["cutoff"] == split.val_cutoff]
    test = snaps[snaps["cutoff"] == split.test_cutoff]
    _, scores = fit_and_score(train, val, test, config, h)
    y = test["churned"].to_numpy()
    ev = config.evaluate
    return {
        "horizon_days": h,
        "test_cutoff": split.test_cutoff.date().isoformat(),
        "val_cutoff": split.val_cutoff.date().isoformat(),
        "train_cutoffs": [c.date().isoformat() for c in split.train_cutoffs],
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "base_rate": float(y.mean()),
        "models": {name: metrics(y, p, ev.n_bootstrap, ev.confidence, config.model.random_state)
                   for name, p in scores.items()},
    }
