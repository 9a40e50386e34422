"""Outcome measurement as a Prefect flow: `churn.pipeline.measure_outcomes`, with a summary artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from churn import pipeline
from churn.config import load_config
from churn.errors import NothingToMeasure
from flows import ALERT_HOOKS, refusals_fail_quietly, set_log_level, task_runner
from flows.artifacts import outcomes_markdown

ARTIFACT = {"key": "churn-outcomes-summary", "description": "Win-back rates, treated vs holdout"}


@flow(name="churn-outcomes", **ALERT_HOOKS)
@refusals_fail_quietly
def outcomes_flow(data_dir: str, out_dir: str = "out", config_path: str | None = None) -> dict[str, Any]:
    """Measure every published list whose horizon window lies inside the data; store what it teaches."""
    config = load_config(config_path)
    set_log_level(config.logging.level)
    try:
        result = pipeline.measure_outcomes(data_dir, out_dir, config, runner=task_runner)
    except NothingToMeasure as nothing:
        # The first weeks of a schedule, or a week with no list come of age: a normal run.
        create_markdown_artifact(f"# Win-back outcomes\n\nNothing to measure yet: {nothing}.\n", **ARTIFACT)
        return {"n_measured": 0, "list_dates": [], "orders_through": None, "summary_csv": None}
    found = result.measured
    create_markdown_artifact(outcomes_markdown(found), **ARTIFACT)
    return {"n_measured": len(found.follow), "list_dates": found.list_dates,
            "orders_through": found.orders_through, "summary_csv": str(result.summary_csv)}
