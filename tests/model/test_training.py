"""Training on synthetic data with planted drivers: honest split, beats the baselines, finds the drivers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from churn.model import explain
from churn.model import training
from churn.config import Config
from churn.features.snapshots import build_snapshots
from tests.conftest import dataset_of


@pytest.fixture(scope="module")
def dataset(synthetic_small):
    return dataset_of(**synthetic_small.tables)


REPORTED: list[tuple[str, int, int]] = []  # what training told its progress callback


@pytest.fixture(scope="module")
def result(dataset):
    config = Config().with_horizon(60)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, n_estimators=150, learning_rate=0.1,
                                          early_stopping_rounds=20, n_train_cutoffs=4, search_budget=2),
        evaluate=dataclasses.replace(config.evaluate, n_bootstrap=50, n_bootstrap_segments=20, n_rolling=2))
    return training.train(dataset, "2024-06-30", config, progress=lambda *told: REPORTED.append(told))


def test_production_split_uses_only_labels_known_at_as_of(result):
    h = pd.Timedelta(days=60)
    assert result.split.val_cutoff + h <= pd.Timestamp("2024-06-30")
    assert max(result.split.train_cutoffs) + h <= result.split.val_cutoff
    backtest = result.metadata["backtest"]
    assert pd.Timestamp(backtest["test_cutoff"]) + h <= pd.Timestamp("2024-06-30")


def test_model_beats_both_baselines_out_of_time(result):
    models = result.metadata["backtest"]["models"]
    assert models["xgboost"]["roc_auc"] > models["rfm_logistic"]["roc_auc"] > 0.5
    assert models["xgboost"]["roc_auc"] > models["recency"]["roc_auc"]
    assert models["xgboost"]["roc_auc"] > models["bgnbd"]["roc_auc"] > 0.5
    assert models["xgboost"]["top_decile_lift"] > 1.5


def test_planted_drivers_raise_the_risk_of_the_customers_who_show_them(result, dataset):
    snaps = build_snapshots(dataset, [result.split.val_cutoff], 60)
    by_family = result.model.contributions(snaps).T.groupby(explain.family).sum().T
    complained = snaps["event_complaint_90d"] > 0
    halved = snaps["frequency_trend_90d"] <= 0.5
    assert complained.sum() >= 10 and halved.sum() >= 50
    # Complaints and a halved frequency push risk up for those customers, not for the others.
    assert by_family.loc[complained, "event_complaint"].mean() > 0.1 > by_family.loc[~complained, "event_complaint"].mean()
    assert by_family.loc[halved, "frequency"].mean() > 0 > by_family.loc[~halved, "frequency"].mean()


def test_metadata_records_what_the_registry_needs(result, dataset):
    meta = result.metadata
    assert meta["version"].startswith("20240630-h60-")
    assert meta["features"] == result.model.feature_names_
    assert meta["split"]["val_cutoff"] == result.split.val_cutoff.date().isoformat()
    assert meta["n_train"] > 0 and 0 < meta["train_churn_rate"] < 1


def test_backtest_reports_rolling_cutoffs_gain_calibration_and_segments(result):
    bt = result.metadata["backtest"]
    rolling = bt["rolling"]
    assert [r["test_cutoff"] for r in rolling] == sorted({r["test_cutoff"] for r in rolling}) and len(rolling) == 2
    assert rolling[-1]["test_cutoff"] == bt["test_cutoff"]
    for run in rolling:  # each rolling cutoff has its own strict out-of-time split
        h = pd.Timedelta(days=run["horizon_days"])
        assert pd.Timestamp(max(run["train_cutoffs"])) + h <= pd.Timestamp(run["val_cutoff"])
        assert pd.Timestamp(run["val_cutoff"]) + h <= pd.Timestamp(run["test_cutoff"])
    assert set(bt["rolling_mean"]) == set(bt["models"]) == {"xgboost", "recency", "rfm_logistic", "bgnbd"}
    gains = bt["gain_table"]["xgboost"]
    assert len(gains) == 10 and sum(r["n"] for r in gains) == bt["n_test"]
    assert sum(c["n"] for c in bt["calibration_curve"]["xgboost"]) == bt["n_test"]
    stages = bt["segments"]["lifecycle_stage"]
    assert sum(s["n"] for s in stages.values()) == bt["n_test"]
    assert set(bt["segments"]["value_tier"]) <= {"low", "mid", "high"}


def test_training_reports_each_search_candidate_and_each_backtest_split_to_its_progress_callback(result):
    labels = [label for label, _, _ in REPORTED]
    search = [(done, total) for label, done, total in REPORTED
              if label == "production model: hyper-parameter search"]
    assert search == [(0, 2), (1, 2), (2, 2)]  # search_budget = 2
    cutoffs = [r["test_cutoff"] for r in result.metadata["backtest"]["rolling"]]
    latest, earlier = cutoffs[-1], cutoffs[0]
    assert (f"backtest {latest} (1 of 2): hyper-parameter search", 2, 2) in REPORTED
    assert (f"backtest {earlier} (2 of 2): hyper-parameter search", 2, 2) in REPORTED
    # The production model is done before the backtest starts.
    assert max(i for i, label in enumerate(labels) if label.startswith("production model")) < \
        min(i for i, label in enumerate(labels) if label.startswith("backtest"))


def test_a_store_too_small_for_xgboost_is_scored_with_bgnbd(dataset, tmp_path):
    config = Config().with_horizon(60)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, min_train_customers=10**6),
                                 evaluate=dataclasses.replace(config.evaluate, n_bootstrap=20))
    small = training.train(dataset, "2024-06-30", config, evaluate=False)
    assert small.metadata["model_kind"] == "bgnbd" and "BG/NBD" in small.metadata["fallback_reason"]
    snaps = build_snapshots(dataset, [pd.Timestamp("2024-04-01")], 60)
    p = small.model.predict_proba(snaps)[:, 1]
    assert ((0 < p) & (p < 1)).all()
    # Its reasons add up to its own log-odds against the reference customer, like TreeSHAP's.
    contribs = small.model.contributions(snaps)
    logit = np.log(p / (1 - p))
    ref = logit - contribs.sum(axis=1).to_numpy()
    np.testing.assert_allclose(ref, ref[0], atol=1e-6)
    from churn.model import registry

    small.metadata["gate"] = {"promoted": True, "reason": "first model"}
    registry.register(small.model, small.metadata, tmp_path)
    loaded, meta = registry.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(snaps)[:, 1], p)
    assert "small-store fallback" in (tmp_path / meta["version"] / "model_card.md").read_text()
