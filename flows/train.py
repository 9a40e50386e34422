"""Training flow: validate the data, fit and backtest the model, register it; the promotion gate picks the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.tasks import exponential_backoff
from prefect.cache_policies import NONE

from churn import contract, registry, training
from churn.config import Config, load_config
from churn.errors import ModelNotFoundError
from flows.artifacts import train_artifacts
from flows import transient


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=transient,
      cache_policy=NONE)
def load_data(data_dir: str, config: Config) -> contract.Dataset:
    """Read and validate the data directory (retried: files may sit on a flaky share)."""
    return contract.validate(data_dir, config.contract)


@task(cache_policy=NONE)
def fit(dataset: contract.Dataset, as_of: str | None, config: Config) -> training.TrainingResult:
    """Fit the production model and backtest its recipe out of time."""
    return training.train(dataset, as_of or training.default_as_of(dataset), config)


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
               horizon_days: int | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Train, backtest and register a churn model for the data in `data_dir`; the gate decides the champion."""
    config = load_config(config_path).with_horizon(horizon_days)
    dataset = load_data(data_dir, config)
    result = fit(dataset, as_of, config)
    champion, champion_meta = current_champion(models_dir)
    result.metadata["gate"] = decide(dataset, result, champion, champion_meta, config)
    version = register(result, models_dir, result.metadata["gate"]["promoted"])
    train_artifacts(result.metadata)
    return {**result.metadata, "path": str(Path(models_dir) / version)}
