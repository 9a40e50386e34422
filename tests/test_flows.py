"""The Prefect flows are thin wrappers: the same outputs as the plain pipeline, steps as tasks, quiet refusals."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from churn import pipeline
from churn.config import load_config
from churn.errors import ContractError
from churn.model import registry
from churn.publish import warehouse
from churn.types import RunDate
from tests.conftest import run

FAST_CONFIG = """
[data]
horizon_days = 60
[model]
n_train_cutoffs = 3
n_estimators = 100
learning_rate = 0.1
early_stopping_rounds = 20
[evaluate]
n_bootstrap = 30
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "churn.toml"
    path.write_text(FAST_CONFIG)
    return path


@pytest.fixture(scope="module")
def trained(prefect_harness, synthetic_dir, config_path, tmp_path_factory) -> tuple[Path, dict]:
    """A model trained by the train flow; it must be the very model the plain pipeline trains."""
    from flows.train import train_flow

    flow_models, plain_models = tmp_path_factory.mktemp("flow-models"), tmp_path_factory.mktemp("plain-models")
    meta = train_flow(str(synthetic_dir), str(flow_models), None, None, str(config_path))
    plain = pipeline.train_model(synthetic_dir, plain_models, load_config(config_path))
    assert meta["version"] == plain.metadata["version"]
    assert _digest(flow_models / meta["version"]) == _digest(plain_models / meta["version"])
    registry.set_champion(flow_models, meta["version"])
    return flow_models, meta


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "manifest.json"
            and ".cache" not in p.parts}


def test_a_flow_run_publishes_the_same_bytes_as_the_plain_pipeline_and_no_ids_in_artifacts(
        trained, synthetic_dir, config_path, tmp_path):
    from prefect import get_client

    from flows.score import score_flow

    models, meta = trained
    day = meta["as_of"]
    tracked = score_flow(str(synthetic_dir), day, str(tmp_path / "flow"), str(models), str(config_path))
    plain = pipeline.score_day(synthetic_dir, RunDate.parse(day), tmp_path / "plain", models,
                               load_config(config_path))
    assert _digest(tmp_path / "flow" / day) == _digest(tmp_path / "plain" / day)
    assert {k: v for k, v in tracked.items() if k not in ("timings_seconds", "path")} == \
        {k: v for k, v in plain.manifest.items() if k != "timings_seconds"}
    rows = [warehouse.read_table(warehouse.path_in(tmp_path / side), "assignments") for side in ("flow", "plain")]
    pd.testing.assert_frame_equal(*rows)

    async def artifacts():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    found = [a for a in asyncio.run(artifacts()) if a.key and a.key.startswith("churn-")]
    assert {a.key for a in found} >= {"churn-score-summary", "churn-train-summary", "churn-train-metrics"}
    ids = set(rows[0]["customer_id"].astype(str))
    assert ids and not any(cid in str(a.data) for a in found for cid in ids)


def test_on_the_dask_engine_a_flow_runs_on_its_dask_task_runner_with_no_prefect_on_the_workers(
        trained, synthetic_dir, config_path, tmp_path, dask_client):
    """The DaskTaskRunner owns the cluster; the steps hand plain functions to its client: the same bytes."""
    import sys

    from prefect_dask import DaskTaskRunner

    from flows.score import score_flow

    models, meta = trained
    day = meta["as_of"]
    on_dask = score_flow.with_options(task_runner=DaskTaskRunner(address=dask_client.scheduler.address))
    tracked = on_dask(str(synthetic_dir), day, str(tmp_path / "dask"), str(models), str(config_path), engine="dask")
    plain = pipeline.score_day(synthetic_dir, RunDate.parse(day), tmp_path / "plain", models,
                               load_config(config_path))
    assert _digest(tmp_path / "dask" / day) == _digest(tmp_path / "plain" / day)
    assert {k: v for k, v in tracked.items() if k not in ("timings_seconds", "path")} == \
        {k: v for k, v in plain.manifest.items() if k != "timings_seconds"}
    assert (tmp_path / "dask" / ".cache" / "partitions").is_dir()
    on_workers = dask_client.run(lambda: any(m.split(".")[0] == "prefect" for m in sys.modules))
    assert on_workers and not any(on_workers.values())


def test_a_refused_flow_run_logs_one_error_line_without_a_traceback(trained, synthetic_dir, config_path, tmp_path,
                                                                    caplog):
    from flows import REFUSED
    from flows.score import score_flow

    models, meta = trained
    stale = str(RunDate.parse(meta["as_of"]).days(30))
    caplog.set_level(logging.INFO)
    state = score_flow(str(synthetic_dir), stale, str(tmp_path), str(models), str(config_path), return_state=True)
    assert state.is_failed() and state.name == REFUSED and "freshness" in state.message
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "freshness" in errors[0].getMessage() and errors[0].exc_info is None
    assert "Traceback" not in caplog.text
    assert not (tmp_path / stale).exists()


def test_bad_data_in_a_tracked_command_is_one_line_and_exit_1(trained, synthetic_dir, config_path, tmp_path,
                                                             monkeypatch, capsys):
    models, meta = trained
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_dir, broken)
    orders = pd.read_parquet(broken / "orders.parquet")
    orders.loc[5, "amount"] = -3.0
    orders.to_parquet(broken / "orders.parquet")
    code, _, err = run(monkeypatch, capsys, "score", "--data", str(broken), "--date", meta["as_of"], "--out",
                       str(tmp_path / "out"), "--models", str(models), "--config", str(config_path), "--tracked")
    assert code == 1 and "error: " in err and "amount" in err and "Traceback" not in err
    assert not (tmp_path / "out" / meta["as_of"]).exists()
    with pytest.raises(ContractError):  # the library raises it as such (a flow only reports it)
        pipeline.score_day(broken, RunDate.parse(meta["as_of"]), tmp_path / "out", models, load_config(config_path))


def test_steps_that_touch_files_are_retried_and_input_errors_are_not(prefect_harness, monkeypatch):
    from prefect import flow

    from churn.errors import QualityError
    from flows import refusals_fail_quietly, task_runner

    calls = {"io": 0, "bad": 0}

    def flaky_read() -> str:
        calls["io"] += 1
        if calls["io"] < 3:
            raise OSError("the share went away")
        return "read"

    def stale_feed() -> None:
        calls["bad"] += 1
        raise QualityError("freshness: stale feed")

    @flow
    @refusals_fail_quietly
    def two_steps() -> str:
        got = task_runner("read", flaky_read, (), True)
        task_runner("gate", stale_feed, (), True)
        return got

    import flows

    monkeypatch.setattr(flows, "RETRY_BACKOFF_SECONDS", 0)
    state = two_steps(return_state=True)
    assert calls == {"io": 3, "bad": 1} and state.name == flows.REFUSED and "stale feed" in state.message


def test_outcome_flow_measures_stores_and_leaves_an_artifact(trained, synthetic_dir, config_path, tmp_path):
    from prefect import get_client

    from flows.outcomes import outcomes_flow

    models, meta = trained
    list_date = RunDate.parse(meta["as_of"]).days(-75)
    pipeline.score_day(synthetic_dir, list_date, tmp_path, models, load_config(config_path))
    # Nothing listed yet: a normal run on a schedule, not a failure (the CLI still exits 1).
    assert outcomes_flow(str(synthetic_dir), str(tmp_path / "empty"), str(config_path))["n_measured"] == 0
    got = outcomes_flow(str(synthetic_dir), str(tmp_path), str(config_path))
    assert got["list_dates"] == [str(list_date)] and got["n_measured"] > 0
    stored = warehouse.read_table(warehouse.path_in(tmp_path), "outcomes")
    assert len(stored) == got["n_measured"] and (tmp_path / "outcomes.csv").exists()

    async def latest():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    summary = [a for a in asyncio.run(latest()) if a.key == "churn-outcomes-summary"]
    assert summary and f"list dates {list_date}" in summary[0].data
    assert not any(cid in summary[0].data for cid in stored["customer_id"].astype(str).head(50))


def test_artifacts_render_the_shared_metrics_table():
    from flows import artifacts

    text = artifacts.score_markdown({"run_date": "2024-06-30", "model_version": "v1", "n_scored": 1200,
                                     "risk_bands": {"high": 30}, "lists": {"callback": 2}, "holdout": 1,
                                     "holdout_by_action": {"callback": 1}, "expected_value": {"callback": 55.4}})
    assert "| callback | 2 | 1 | 55 |" in text and "1,200 customers scored" in text
    meta = {"version": "v1", "as_of": "2024-06-30", "horizon_days": 60, "n_train": 10, "features": ["a"],
            "backtest": {"test_cutoff": "2024-04-01", "n_test": 5, "base_rate": 0.2, "models": {
                "xgboost": {"roc_auc": 0.8, "roc_auc_ci": [0.7, 0.9], "pr_auc": 0.5, "top_decile_lift": 3.0,
                            "brier": 0.1, "ece": 0.02},
                "recency": {"roc_auc": None, "roc_auc_ci": None, "pr_auc": None, "top_decile_lift": None,
                            "brier": 0.2, "ece": 0.05}}}}
    text = artifacts.train_markdown(meta)
    assert "| xgboost | 0.800 (0.700-0.900) | 0.500 | 3.00 | 0.100 | 0.020 |" in text
    assert "| recency | – | – | – | 0.200 | 0.050 |" in text


def test_tracked_runs_write_no_customer_id_to_prefect_and_forget_leaves_no_trace(
        trained, synthetic_dir, config_path, tmp_path):
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME

    from flows.score import score_flow
    from tests.conftest import FORGOTTEN, traces, with_distinctive_id

    models, meta = trained
    day = meta["as_of"]
    probe = pipeline.score_day(synthetic_dir, RunDate.parse(day), tmp_path / "probe", models,
                               load_config(config_path))
    customer = pd.read_parquet(probe.path / "scores.parquet")["customer_id"].iloc[0]
    data = with_distinctive_id(synthetic_dir, customer, tmp_path / "data")
    out = tmp_path / "out"
    score_flow(str(data), day, str(out), str(models), str(config_path))
    database = Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split(":///", 1)[1]).parent
    assert traces(database, str(out)) and traces(out, FORGOTTEN)  # the search reads Prefect's database
    assert traces(database, FORGOTTEN) == [] and traces(PREFECT_HOME.value(), FORGOTTEN) == []
    pipeline.forget([FORGOTTEN], out, models, load_config(config_path))
    for place in (out, models, database, PREFECT_HOME.value()):
        assert traces(place, FORGOTTEN) == [], place
