"""Daily scoring flow: validate, gate, score every customer as of the run date, build and publish the lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.tasks import exponential_backoff
from prefect.cache_policies import NONE

from churn.features.engine import FeatureBuilder
from churn.data import contract
from churn.decide import outcomes
from churn.decide import quality
from churn.model import registry
from churn.decide import scoring
from churn.publish import warehouse
from churn.decide import winback
from churn.config import ACTIONS, Config, load_config
from churn.errors import DataError
from churn.model.classifier import ChurnModel
from churn.progress import Progress
from churn.publish.files import publish

from flows import StepLog, cache, set_log_level, transient
from flows.artifacts import score_artifacts
from flows.train import load_data

STEPS = ("validate", "features", "quality", "score", "lists", "publish")


@dataclass(frozen=True)
class History:
    """What earlier runs tell today's: the last listing per customer, the uplift to use, the previous run."""

    last_listed: pd.Series
    uplift: dict[str, dict[str, float]]
    uplift_report: dict[str, Any]
    previous_run: dict[str, Any] | None


@task(cache_policy=NONE)
def load_model(models_dir: str) -> tuple[ChurnModel, dict[str, Any]]:
    """The champion model and its metadata."""
    return registry.load(models_dir)


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=transient,
      cache_policy=NONE)
def load_history(out_dir: str, run_date: str, dataset: contract.Dataset, config: Config) -> History:
    """Past listings (warehouse and contacts table), measured uplift and the previous run, all before D."""
    path = warehouse.path_in(out_dir)
    uplift, report = outcomes.uplift_for_run(warehouse.uplift_estimates(path, run_date), config.winback)
    return History(warehouse.last_listed(path, run_date, dataset.contacts), uplift, report,
                   warehouse.previous_run(path, run_date))


@task(**cache.task_options())
def build_features(dataset: contract.Dataset, run_date: str, config: Config) -> pd.DataFrame:
    """Features of every customer in the population as of the run date (cached: see flows/cache.py)."""
    # The fast engine sums money exactly (integers), so a rerun publishes the same bytes on any
    # number of threads.
    frame = FeatureBuilder(dataset, config.data.lookback_days).build([run_date])
    if frame.empty:
        raise DataError(f"no customer bought in the {config.data.lookback_days} days up to {run_date}: "
                        f"is the data directory current?")
    return frame


@task(cache_policy=NONE)
def check_quality(dataset: contract.Dataset, feats: pd.DataFrame, run_date: str, history: History,
                  config: Config) -> dict[str, Any]:
    """The data-quality gate: freshness, volume against the previous run, schema. Raises when it fails."""
    measured = quality.figures(dataset, run_date, len(feats), config.quality)
    return {**measured, "passed": quality.check(measured, run_date, history.previous_run, config.quality)}


@task(cache_policy=NONE)
def score_customers(feats: pd.DataFrame, model: ChurnModel, config: Config) -> pd.DataFrame:
    """p_churn, risk band, lifecycle stage and value for every customer (reasons come later)."""
    return scoring.score(feats, model, config, explain=False)


@task(cache_policy=NONE)
def build_lists(scores: pd.DataFrame, model: ChurnModel, dataset: contract.Dataset, history: History,
                run_date: str, config: Config) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """EV policy, reasons for the customers taken, and the per-action lists for the service team."""
    suppressed = set() if dataset.suppressions is None else set(dataset.suppressions["customer_id"])
    taken = winback.assign(scores, suppressed, config.winback, run_date, history.last_listed, history.uplift)
    scores = scoring.add_reasons(scores, model, taken["customer_id"])
    reasons = scores.set_index("customer_id").loc[taken["customer_id"], scoring.REASON_COLUMNS]
    taken[scoring.REASON_COLUMNS] = reasons.to_numpy()
    return scores, taken, winback.service_lists(taken, run_date, config.winback)


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=transient,
      cache_policy=NONE)
def publish_outputs(out_dir: str, run: dict[str, Any], scores: pd.DataFrame, taken: pd.DataFrame,
                    lists: dict[str, pd.DataFrame], manifest: dict[str, Any], dataset: contract.Dataset) -> str:
    """Replace D's warehouse rows and <out>/<D>/ together: the rows commit only if the files are in place."""
    path = warehouse.write_run(
        warehouse.path_in(out_dir), run, scores, taken, dataset.contacts,
        then=lambda: publish(out_dir, run["run_date"], scores, lists, manifest, dataset.quarantine))
    return str(path)


@flow(name="churn-daily-score")
def score_flow(data_dir: str, run_date: str, out_dir: str = "out", models_dir: str = "models",
               config_path: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Score every customer as of `run_date`, gate the data, and publish the win-back lists and history.

    `progress` (optional, the command line's bar) hears which step runs.
    """
    config = load_config(config_path)
    set_log_level(config.logging.level)
    run_date = pd.Timestamp(run_date).date().isoformat()
    steps = StepLog(f"score {run_date}", STEPS, progress)
    dataset = load_data(data_dir, config)
    steps.lap("validate", ", ".join(f"{name} {n} rows" for name, n in dataset.row_counts.items()))
    model, meta = load_model(models_dir)
    config = config.with_horizon(meta["horizon_days"])
    history = load_history(out_dir, run_date, dataset, config)
    features_run = cache.configured(build_features, config.cache)(dataset, run_date, config, return_state=True)
    feats = features_run.result()
    steps.lap("features", f"{len(feats)} customers in the population"
                          + (", from the cache" if features_run.name == "Cached" else ""))
    gate = check_quality(dataset, feats, run_date, history, config)
    steps.lap("quality", "checks passed")
    scores = score_customers(feats, model, config)
    steps.lap("score", f"{len(scores)} customers scored with model {meta['version']}")
    scores, taken, lists = build_lists(scores, model, dataset, history, run_date, config)
    steps.lap("lists", ", ".join(f"{action} {len(frame)}" for action, frame in lists.items()))
    manifest = run_manifest(run_date, meta, dataset, gate, scores, taken, lists, history, config)
    run = warehouse_run(manifest, gate, config)
    manifest["timings_seconds"] = dict(steps.timings)
    path = publish_outputs(out_dir, run, scores, _with_sources(taken, history, run_date, config), lists,
                           manifest, dataset)
    steps.lap("publish", f"published to {path}")
    score_artifacts(manifest, lists)
    return {**manifest, "path": path}


def run_manifest(run_date: str, meta: dict[str, Any], dataset: contract.Dataset, gate: dict[str, Any],
                 scores: pd.DataFrame, taken: pd.DataFrame, lists: dict[str, pd.DataFrame], history: History,
                 config: Config) -> dict[str, Any]:
    """The run's manifest (without timings): what was used, what was checked, what was listed."""
    suppressed = set() if dataset.suppressions is None else set(dataset.suppressions["customer_id"])
    recent = history.last_listed[history.last_listed > pd.Timestamp(run_date) - pd.Timedelta(
        days=max(config.winback.action(a).cooldown_days for a in ACTIONS))]
    return {
        "run_date": run_date,
        "model_version": meta["version"],
        "horizon_days": meta["horizon_days"],
        "data_fingerprint": registry.data_fingerprint(dataset.fingerprints),
        "table_fingerprints": dataset.fingerprints,
        "row_counts": dataset.row_counts,
        "quarantined": {name: len(rows) for name, rows in dataset.quarantine.items()},
        "checks_passed": ["contract", "model_features", "population", *gate["passed"]],
        "quality": {k: gate[k] for k in ("latest_order", "orders_window", "n_scored")},
        "previous_run": None if history.previous_run is None else history.previous_run["run_date"],
        "n_scored": int(len(scores)),
        "risk_bands": scores["risk_band"].value_counts().sort_index().astype(int).to_dict(),
        "lists": {action: int(len(frame)) for action, frame in lists.items()},
        "holdout": int((taken["arm"] == "holdout").sum()),
        "holdout_by_action": {a: int(((taken["action"] == a) & (taken["arm"] == "holdout")).sum()) for a in ACTIONS},
        "expected_value": {a: round(float(taken.loc[(taken["action"] == a) & (taken["arm"] == "treated"),
                                                    "expected_value"].sum()), 2) for a in ACTIONS},
        "uplift": history.uplift_report,
        "suppressed_excluded": int(scores["customer_id"].isin(suppressed).sum()),
        "in_cooldown": int(scores["customer_id"].isin(recent.index).sum()),
    }


def warehouse_run(manifest: dict[str, Any], gate: dict[str, Any], config: Config) -> dict[str, Any]:
    """The run's row in the warehouse (its manifest without timings, so that a rerun writes the same row)."""
    return {"run_date": manifest["run_date"], "model_version": manifest["model_version"],
            "horizon_days": manifest["horizon_days"], "campaign": config.winback.campaign,
            "data_fingerprint": manifest["data_fingerprint"], "n_scored": manifest["n_scored"],
            "orders_window": gate["orders_window"], "latest_order": gate["latest_order"],
            "table_schema": gate["table_schema"], "manifest": dict(manifest)}


def _with_sources(taken: pd.DataFrame, history: History, run_date: str, config: Config) -> pd.DataFrame:
    """Assignments as the warehouse keeps them: where each uplift came from and the due date."""
    source = [history.uplift_report[a][s]["source"] for a, s in zip(taken["action"], taken["segment"])]
    due = [pd.Timestamp(run_date) + pd.Timedelta(days=config.winback.action(a).due_days) for a in taken["action"]]
    return taken.assign(uplift_source=source, due_date=due)

