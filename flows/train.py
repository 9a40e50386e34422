"""Training as a Prefect flow: `churn.pipeline.train_model`, each step a task, with metrics artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow

from churn import pipeline
from churn.config import load_config
from churn.progress import Progress
from churn.types import RunDate
from flows import ALERT_HOOKS, refusals_fail_quietly, set_log_level, task_runner, today_in
from flows.artifacts import train_artifacts
from flows.engine import flow_engine


@flow(name="churn-train", **ALERT_HOOKS)
@refusals_fail_quietly
def train_flow(data_dir: str, models_dir: str = "models", as_of: str | None = None,
               horizon_days: int | None = None, config_path: str | None = None,
               progress: Progress | None = None, out_dir: str | None = None, engine: str | None = None,
               scheduler: str | None = None) -> dict[str, Any]:
    """Train, backtest and register a churn model for the data in `data_dir`; the gate decides the champion.

    `out_dir`: the output root where a failed scheduled run leaves its alert (OUT/alerts/).
    `engine` / `scheduler` override `[engine]` (see flows/engine.py).
    """
    config = load_config(config_path).with_horizon(horizon_days).with_engine(engine, scheduler)
    set_log_level(config.logging.level)
    with flow_engine(config, models_dir) as dask:
        result = pipeline.train_model(data_dir, models_dir, config,
                                      None if as_of is None else RunDate.parse(as_of), progress,
                                      runner=task_runner, today=today_in(config.data.timezone), engine=dask)
    train_artifacts(result.metadata)
    return result.to_dict()
