"""Training for production: fit on the latest labelled cutoffs as of a date, with honest metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass
from typing import Any

import pandas as pd

import churn
from churn.config import Config
from churn.evaluate import backtest
from churn.model import ChurnModel
from churn.registry import data_fingerprint, model_version
from churn.snapshots import build_snapshots, data_range
from churn.split import Split, plan_split

if TYPE_CHECKING:
    from churn.contract import Dataset


@dataclass
class TrainingResult:
    """A fitted model, the split it was fitted on, and the metadata the registry stores."""

    model: ChurnModel
    split: Split
    metadata: dict[str, Any]


def default_as_of(dataset: Dataset) -> pd.Timestamp:
    """The last day with an order: train on everything whose labels are known by then."""
    return data_range(dataset)[1]


def latest_test_cutoff(as_of: pd.Timestamp, horizon_days: int) -> pd.Timestamp:
    """The latest cutoff whose label window ends by `as_of`: where the backtest can look."""
    return as_of - pd.Timedelta(days=horizon_days)


def train(dataset: Dataset, as_of: object, config: Config, evaluate: bool = True) -> TrainingResult:
    """Fit the production model as of a date; backtest the same recipe on the latest testable cutoff.

    The production model trains on monthly cutoffs whose labels are known at `as_of` and
    early-stops on the latest of them. The backtest shifts the same recipe one horizon back,
    so its test labels are known too: the metrics are out of time, never on training data.
    """
    as_of = pd.Timestamp(as_of).normalize()
    h = config.data.horizon_days
    start, end = data_range(dataset)
    split = plan_split(as_of, h, config.model.n_train_cutoffs, start, min(end, as_of),
                       config.model.min_history_days, with_test=False)
    snaps = build_snapshots(dataset, split.all_cutoffs(), h, config.data.lookback_days)
    train_rows = snaps[snaps["cutoff"].isin(split.train_cutoffs)]
    model = ChurnModel(h, config.model).fit(train_rows, snaps[snaps["cutoff"] == split.val_cutoff])
    report = backtest(dataset, latest_test_cutoff(as_of, h), config) if evaluate else None
    fingerprint = data_fingerprint(dataset.fingerprints)
    metadata = {
        "version": model_version(as_of.date().isoformat(), h, fingerprint),
        "as_of": as_of.date().isoformat(),
        "horizon_days": h,
        "features": model.feature_names_,
        "best_iteration": model.best_iteration_,
        "split": split.to_dict(),
        "n_train": int(len(train_rows)),
        "train_churn_rate": float(train_rows["churned"].mean()),
        "data_fingerprint": fingerprint,
        "table_fingerprints": dataset.fingerprints,
        "backtest": report,
        "config": config.to_dict(),
        "churn_version": churn.__version__,
        "xgboost_version": __import__("xgboost").__version__,
    }
    return TrainingResult(model, split, metadata)
