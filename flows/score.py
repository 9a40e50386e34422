"""Daily scoring flow: validate, score every customer as of the run date, build and publish the lists."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NONE

from churn import contract, features, registry, scoring, winback
from churn.config import Config, load_config
from churn.errors import DataError
from churn.model import ChurnModel
from churn.publish import publish

from flows.train import load_data


@task(cache_policy=NONE)
def load_model(models_dir: str) -> tuple[ChurnModel, dict[str, Any]]:
    """The champion model and its metadata."""
    return registry.load(models_dir)


@task(cache_policy=NONE)
def build_features(dataset: contract.Dataset, run_date: str, config: Config) -> pd.DataFrame:
    """Features of every customer in the population as of the run date."""
    frame = features.build_features(dataset, [run_date], config.data.lookback_days)
    if frame.empty:
        raise DataError(f"no customer bought in the {config.data.lookback_days} days up to {run_date}: "
                        f"is the data directory current?")
    return frame


@task(cache_policy=NONE)
def score_customers(feats: pd.DataFrame, model: ChurnModel, config: Config) -> pd.DataFrame:
    """p_churn, risk band, lifecycle stage, value and reasons for every customer."""
    return scoring.score(feats, model, config)


@task(cache_policy=NONE)
def build_lists(scores: pd.DataFrame, dataset: contract.Dataset, run_date: str,
                config: Config) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Assign actions and arms, then the per-action lists for the service team."""
    suppressed = set() if dataset.suppressions is None else set(dataset.suppressions["customer_id"])
    assignments = winback.assign(scores, suppressed, config.winback)
    return assignments, winback.service_lists(assignments, pd.Timestamp(run_date))


@task(retries=2, retry_delay_seconds=5, cache_policy=NONE)
def publish_outputs(out_dir: str, run_date: str, scores: pd.DataFrame, lists: dict[str, pd.DataFrame],
                    manifest: dict[str, Any], dataset: contract.Dataset) -> str:
    """Replace <out>/<run_date>/ whole with the new outputs."""
    return str(publish(out_dir, run_date, scores, lists, manifest, dataset.quarantine))


@flow(name="churn-daily-score")
def score_flow(data_dir: str, run_date: str, out_dir: str = "out", models_dir: str = "models",
               config_path: str | None = None) -> dict[str, Any]:
    """Score every customer as of `run_date` and publish the win-back lists."""
    config = load_config(config_path)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = round(now - clock, 3)
        clock = now

    dataset = load_data(data_dir, config)
    lap("validate")
    model, meta = load_model(models_dir)
    config = config.with_horizon(meta["horizon_days"])
    feats = build_features(dataset, run_date, config)
    lap("features")
    scores = score_customers(feats, model, config)
    lap("score")
    assignments, lists = build_lists(scores, dataset, run_date, config)
    lap("lists")
    manifest = {
        "run_date": run_date,
        "model_version": meta["version"],
        "horizon_days": meta["horizon_days"],
        "data_fingerprint": registry.data_fingerprint(dataset.fingerprints),
        "table_fingerprints": dataset.fingerprints,
        "row_counts": dataset.row_counts,
        "quarantined": {name: len(rows) for name, rows in dataset.quarantine.items()},
        "checks_passed": ["contract", "model_features", "population"],
        "n_scored": int(len(scores)),
        "risk_bands": scores["risk_band"].value_counts().sort_index().astype(int).to_dict(),
        "lists": {action: int(len(frame)) for action, frame in lists.items()},
        "holdout": int((assignments["arm"] == "holdout").sum()),
        "suppressed_excluded": int(scores["customer_id"].isin(
            set() if dataset.suppressions is None else set(dataset.suppressions["customer_id"])).sum()),
        "timings_seconds": timings,
    }
    path = publish_outputs(out_dir, run_date, scores, lists, manifest, dataset)
    return {**manifest, "path": path}
