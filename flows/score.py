"""Daily scoring as a Prefect flow: `churn.pipeline.score_day`, each step a task, with a summary artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow

from churn import pipeline
from churn.config import load_config
from churn.progress import Progress
from churn.types import RunDate
from flows import refusals_fail_quietly, set_log_level, task_runner, today_in
from flows.artifacts import score_artifacts
from flows.engine import flow_engine


@flow(name="churn-daily-score")
@refusals_fail_quietly
def score_flow(data_dir: str, run_date: str, out_dir: str = "out", models_dir: str = "models",
               config_path: str | None = None, progress: Progress | None = None, engine: str | None = None,
               scheduler: str | None = None) -> dict[str, Any]:
    """Score every customer as of `run_date`, gate the data, and publish the win-back lists and history.

    `engine` / `scheduler` override `[engine]` (see flows/engine.py: the Dask engine runs on the
    flow's DaskTaskRunner).
    """
    config = load_config(config_path).with_engine(engine, scheduler)
    set_log_level(config.logging.level)
    with flow_engine(config, out_dir) as dask:
        result = pipeline.score_day(data_dir, RunDate.parse(run_date), out_dir, models_dir, config, progress,
                                    runner=task_runner, today=today_in(config.data.timezone), engine=dask)
    score_artifacts(result.manifest)
    return result.to_dict()
