"""The train and daily-score flows under Prefect's test harness, on small synthetic data."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from churn import registry
from churn.errors import ContractError
from flows.score import score_flow
from flows.train import train_flow

FAST_CONFIG = """
[data]
horizon_days = 60
[model]
n_train_cutoffs = 4
n_estimators = 150
learning_rate = 0.1
early_stopping_rounds = 20
[evaluate]
n_bootstrap = 50
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "churn.toml"
    path.write_text(FAST_CONFIG)
    return str(path)


@pytest.fixture(scope="module")
def trained(prefect_harness, synthetic_dir, config_path, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    meta = train_flow(str(synthetic_dir), str(models), None, None, config_path)
    return models, meta


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_train_flow_registers_a_champion_that_beats_the_recency_baseline(trained):
    models, meta = trained
    assert registry.champion_version(models) == meta["version"]
    saved = json.loads((models / meta["version"] / "metadata.json").read_text())
    assert saved["features"] == meta["features"] and (models / meta["version"] / "model_card.md").exists()
    bt = saved["backtest"]["models"]
    assert set(bt) == {"xgboost", "recency", "rfm_logistic"}
    assert bt["xgboost"]["roc_auc"] > bt["recency"]["roc_auc"]
    assert saved["backtest"]["test_cutoff"] <= meta["as_of"]


def test_score_flow_publishes_lists_without_suppressed_customers_and_a_rerun_changes_nothing(
        trained, synthetic_dir, synthetic_small, config_path, tmp_path):
    models, meta = trained
    run_date = meta["as_of"]
    first = score_flow(str(synthetic_dir), run_date, str(tmp_path), str(models), config_path)
    out = Path(first["path"])
    before = _digest(out)
    assert {"scores.parquet", "winback.xlsx", "winback_callback.csv", "winback_exclusive_discount.csv",
            "winback_trial.csv"} <= set(before)
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["customer_id"].is_unique and scores["p_churn"].between(0, 1).all()
    suppressed = set(synthetic_small.tables["suppressions"]["customer_id"])
    listed = pd.concat([pd.read_csv(p, dtype={"customer_id": str}) for p in out.glob("winback_*.csv")])
    assert len(listed) > 0 and not set(listed["customer_id"]) & suppressed
    assert first["model_version"] == meta["version"]

    again = score_flow(str(synthetic_dir), run_date, str(tmp_path), str(models), config_path)
    assert _digest(out) == before
    assert {k: v for k, v in again.items() if k != "timings_seconds"} == \
        {k: v for k, v in first.items() if k != "timings_seconds"}


def test_broken_data_publishes_nothing_and_keeps_the_previous_run(trained, synthetic_dir, config_path, tmp_path):
    models, meta = trained
    score_flow(str(synthetic_dir), meta["as_of"], str(tmp_path / "out"), str(models), config_path)
    before = _digest(tmp_path / "out" / meta["as_of"])
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_dir, broken)
    orders = pd.read_parquet(broken / "orders.parquet")
    orders.loc[5, "amount"] = -3.0
    orders.to_parquet(broken / "orders.parquet")
    with pytest.raises(ContractError, match="amount"):
        score_flow(str(broken), meta["as_of"], str(tmp_path / "out"), str(models), config_path)
    assert _digest(tmp_path / "out" / meta["as_of"]) == before
