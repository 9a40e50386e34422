"""Training flow: validate the data, fit and backtest the model, register it as champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE

from churn import contract, registry, training
from churn.config import Config, load_config


@task(retries=2, retry_delay_seconds=5, cache_policy=NONE)
def load_data(data_dir: str, config: Config) -> contract.Dataset:
    """Read and validate the data directory (retried: files may sit on a flaky share)."""
    return contract.validate(data_dir, config.contract)


@task(cache_policy=NONE)
def fit(dataset: contract.Dataset, as_of: str | None, config: Config) -> training.TrainingResult:
    """Fit the production model and backtest its recipe out of time."""
    return training.train(dataset, as_of or training.default_as_of(dataset), config)


@task(retries=2, retry_delay_seconds=5, cache_policy=NONE)
def register(result: training.TrainingResult, models_dir: str) -> str:
    """Save the model under models/<version>/ and make it the champion."""
    registry.register(result.model, result.metadata, models_dir)
    return result.metadata["version"]


@flow(name="churn-train")
def train_flow(data_dir: str, models_dir: str = "models", as_of: str | None = None,
               horizon_days: int | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Train, backtest and register a churn model for the data in `data_dir`."""
    config = load_config(config_path).with_horizon(horizon_days)
    dataset = load_data(data_dir, config)
    result = fit(dataset, as_of, config)
    version = register(result, models_dir)
    return {**result.metadata, "path": str(Path(models_dir) / version)}
