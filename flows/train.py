"""Training flow: validate the data, fit and backtest the model, register it; the promotion gate picks the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.tasks import exponential_backoff
from prefect.cache_policies import NONE

from churn.data import contract
from churn.model import registry
from churn.model import training
from churn.config import Config, load_config
from churn.errors import ModelNotFoundError
from churn.progress import Progress
from flows import StepLog, set_log_level, transient
from flows.artifacts import train_artifacts


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=transient,
      cache_policy=NONE)
def load_data(data_dir: str, config: Config) -> contract.Dataset:
    """Read and validate the data directory (retried: files may sit on a flaky share)."""
    return contract.validate(data_dir, config.contract)


@task(cache_policy=NONE)
def fit(dataset: contract.Dataset, as_of: str | None, config: Config,
        progress: Progress | None = None) -> training.TrainingResult:
    """Fit the production model on the cutoffs whose labels are known by `as_of` (default: the last order)."""
    return training.train(dataset, as_of or training.default_as_of(dataset), config, evaluate=False,
                          progress=progress)


@task(cache_policy=NONE)
def backtest(dataset: contract.Dataset, result: training.TrainingResult, config: Config,
             progress: Progress | None = None) -> dict[str, Any] | None:
    """Backtest the model's recipe out of time, one horizon before its as-of date."""
    return training.backtest_recipe(dataset, result.metadata, config, progress)


@task(cache_policy=NONE)
def current_champion(models_dir: str) -> tuple[Any, dict[str, Any]] | tuple[None, None]:
    """The champion model and its metadata, or (None, None) when there is none yet."""
    try:
        return registry.load(models_dir)
    except ModelNotFoundError:
        return None, None


@task(cache_policy=NONE)
def decide(dataset: contract.Dataset, result: training.TrainingResult, champion: Any,
           champion_meta: dict[str, Any] | None, config: Config) -> dict[str, Any]:
    """The promotion gate: champion only if no worse on the same backtest and well calibrated."""
    return training.gate(dataset, result.metadata, champion, champion_meta, config)


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=transient,
      cache_policy=NONE)
def register(result: training.TrainingResult, models_dir: str, promoted: bool) -> str:
    """Save the model under models/<version>/; point the champion at it if the gate promoted it."""
    registry.register(result.model, result.metadata, models_dir, make_champion=promoted)
    return result.metadata["version"]


@flow(name="churn-train")
def train_flow(data_dir: str, models_dir: str = "models", as_of: str | None = None,
               horizon_days: int | None = None, config_path: str | None = None,
               progress: Progress | None = None) -> dict[str, Any]:
    """Train, backtest and register a churn model for the data in `data_dir`; the gate decides the champion.

    `progress` (optional, the command line's bar) hears of the search and backtest steps.
    """
    config = load_config(config_path).with_horizon(horizon_days)
    set_log_level(config.logging.level)
    steps = StepLog(f"train h{config.data.horizon_days}")
    dataset = load_data(data_dir, config)
    steps.lap("validate", ", ".join(f"{name} {n} rows" for name, n in dataset.row_counts.items()))
    result = fit(dataset, as_of, config, progress)
    steps.lap("fit", _fit_counts(result.metadata))
    result.metadata["backtest"] = backtest(dataset, result, config, progress)
    steps.lap("backtest", _backtest_counts(result.metadata))
    champion, champion_meta = current_champion(models_dir)
    result.metadata["gate"] = decide(dataset, result, champion, champion_meta, config)
    gate = result.metadata["gate"]
    steps.lap("gate", f"{'champion' if gate['promoted'] else 'challenger'}: {gate['reason']}")
    version = register(result, models_dir, gate["promoted"])
    steps.lap("register", f"model {version} in {models_dir}")
    train_artifacts(result.metadata)
    return {**result.metadata, "path": str(Path(models_dir) / version)}


def _fit_counts(meta: dict[str, Any]) -> str:
    """The fit step's log line: model kind, as-of date, training rows and cutoffs, search and calibration."""
    split = meta["split"]
    line = (f"{meta['model_kind']} as of {meta['as_of']}, {meta['n_train']} training rows from "
            f"{len(split['train_cutoffs'])} cutoffs, validation cutoff {split['val_cutoff']}")
    if meta["model_kind"] == "xgboost":
        return (f"{line}, {meta['search_candidates']} candidates searched, {meta['best_iteration'] + 1} trees, "
                f"{meta['calibration']['method']} calibration")
    return f"{line} ({meta['fallback_reason']})"


def _backtest_counts(meta: dict[str, Any]) -> str:
    """The backtest step's log line: test cutoff, customers, churn rate and each model's ROC-AUC."""
    bt = meta.get("backtest")
    if not bt:
        return "none: the data cannot support one"
    aucs = ", ".join(f"{name} {m['roc_auc']:.3f}" for name, m in bt["models"].items() if m["roc_auc"] is not None)
    return (f"test cutoff {bt['test_cutoff']}, {bt['n_test']} customers, churn rate {bt['base_rate']:.1%}; "
            f"ROC-AUC {aucs}")
