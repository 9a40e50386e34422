"""Outcome flow: measure the win-back lists whose horizon has passed; the next daily runs use the uplift learned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.tasks import exponential_backoff

from churn.decide import outcomes
from churn.publish import warehouse
from churn.config import Config, load_config
from churn.errors import NothingToMeasure
from churn.data.io import write_csv
from flows import StepLog, set_log_level, transient
from flows.train import load_data


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=transient,
      cache_policy=NONE)
def read_lists(out_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The published lists (assignments) and runs from the warehouse."""
    path = warehouse.path_in(out_dir)
    return warehouse.read_table(path, "assignments"), warehouse.read_table(path, "runs")


@task(cache_policy=NONE)
def measure(assignments: pd.DataFrame, runs: pd.DataFrame, dataset: Any, config: Config,
            out_dir: str) -> outcomes.Measured:
    """Win-back rates treated vs holdout, and the uplift estimates shrunk towards the priors."""
    return outcomes.measure(assignments, runs, dataset.orders, dataset.contacts, config,
                            where=str(warehouse.path_in(out_dir)))


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=transient,
      cache_policy=NONE)
def write(found: outcomes.Measured, out_dir: str) -> str:
    """Store outcomes and estimates in the warehouse (one transaction) and the summary as OUT/outcomes.csv."""
    warehouse.write_outcomes(warehouse.path_in(out_dir), found.follow, found.estimates)
    write_csv(found.table, Path(out_dir) / "outcomes.csv")
    return str(Path(out_dir) / "outcomes.csv")


def outcomes_markdown(found: outcomes.Measured) -> str:
    """The run's artifact: what was measured and the summary per action and risk band (no customer ids)."""
    dates = found.list_dates
    lines = [f"# Win-back outcomes through {found.orders_through}", "",
             f"{len(found.follow)} listed customers measured, list dates {dates[0]} to {dates[-1]}.", "",
             "| action | risk band | treated | holdout | rate treated | rate holdout | difference |",
             "|---|---|---|---|---|---|---|"]
    for row in found.table.itertuples():
        lines.append(f"| {row.action} | {row.risk_band} | {row.n_treated} | {row.n_holdout} | "
                     f"{row.rate_treated:.3f} | {row.rate_holdout:.3f} | {row.difference:+.3f} |")
    measured = found.estimates[found.estimates["source"] == "measured"]
    lines += ["", f"Uplift measured for {len(measured)} action/segment pairs; the others keep their prior."]
    return "\n".join(lines) + "\n"


@flow(name="churn-outcomes")
def outcomes_flow(data_dir: str, out_dir: str = "out", config_path: str | None = None) -> dict[str, Any]:
    """Measure every published list whose horizon window lies inside the data; store what it teaches."""
    config = load_config(config_path)
    set_log_level(config.logging.level)
    steps = StepLog("outcomes")
    dataset = load_data(data_dir, config)
    steps.lap("validate", f"orders {len(dataset.orders)} rows")
    assignments, runs = read_lists(out_dir)
    try:
        found = measure(assignments, runs, dataset, config, out_dir)
    except NothingToMeasure as nothing:
        # The first weeks of a schedule, or a week with no list come of age: a normal run.
        steps.lap("measure", f"nothing to measure yet: {nothing}")
        create_markdown_artifact(f"# Win-back outcomes\n\nNothing to measure yet: {nothing}.\n",
                                 key="churn-outcomes-summary", description="Win-back rates, treated vs holdout")
        return {"n_measured": 0, "list_dates": [], "orders_through": None, "summary_csv": None}
    steps.lap("measure", f"{len(found.follow)} listed customers, {len(found.list_dates)} list dates")
    csv = write(found, out_dir)
    steps.lap("write", "warehouse outcomes and uplift, outcomes.csv")
    create_markdown_artifact(outcomes_markdown(found), key="churn-outcomes-summary",
                             description="Win-back rates, treated vs holdout")
    return {"n_measured": len(found.follow), "list_dates": found.list_dates,
            "orders_through": found.orders_through, "summary_csv": csv}
