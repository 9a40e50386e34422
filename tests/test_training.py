"""Training on synthetic data with planted drivers: honest split, beats the baselines, finds the drivers."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from churn import explain, training
from churn.config import Config
from churn.snapshots import build_snapshots
from tests.conftest import dataset_of


@pytest.fixture(scope="module")
def dataset(synthetic_small):
    return dataset_of(**synthetic_small.tables)


@pytest.fixture(scope="module")
def result(dataset):
    config = Config().with_horizon(60)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, n_estimators=150, learning_rate=0.1,
                                          early_stopping_rounds=20, n_train_cutoffs=4),
        evaluate=dataclasses.replace(config.evaluate, n_bootstrap=50))
    return training.train(dataset, "2024-06-30", config)


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
