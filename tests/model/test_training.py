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


# --- issue 13, item 5: a shop where almost nobody comes back -----------------------------------------


def one_timer_orders(n: int = 1500, repeat_share: float = 0.03, seed: int = 0) -> pd.DataFrame:
    """n customers with one order each over 18 months; `repeat_share` of them order once more."""
    rng = np.random.default_rng(seed)
    first = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 545, n), unit="D")
    again = np.flatnonzero(rng.random(n) < repeat_share)
    ids = [f"c{i}" for i in range(n)] + [f"c{i}" for i in again]
    ts = list(first) + [first[i] + pd.Timedelta(days=int(rng.integers(5, 60))) for i in again]
    orders = pd.DataFrame({"customer_id": ids, "order_ts": ts, "amount": 10.0})
    orders = orders[orders["order_ts"] <= pd.Timestamp("2024-06-30")].reset_index(drop=True)
    return orders.assign(order_id=[f"o{k}" for k in range(len(orders))])


def test_a_shop_where_almost_nobody_comes_back_falls_back_on_the_rarer_class(tmp_path):
    config = Config().with_horizon(60)
    config = dataclasses.replace(config, evaluate=dataclasses.replace(config.evaluate, n_bootstrap=50))
    result = training.train(dataset_of(one_timer_orders()), "2024-06-30", config)
    meta = result.metadata
    # Thousands of churned rows, but only a handful of customers who stayed: too few to learn from.
    assert meta["model_kind"] in ("bgnbd", "recency", "rfm_logistic")
    assert "stayed" in (meta.get("fallback_reason") or "") or meta.get("fitted_kind") == "bgnbd"
    test = build_snapshots(dataset_of(one_timer_orders()), [pd.Timestamp("2024-04-01")], 60)
    p = result.model.predict_proba(test)[:, 1]
    assert p.std() > 0.005 and abs(p.mean() - test["churned"].mean()) < 0.05  # not 0.99 for everyone
    assert meta["quality"]["band"] in ("Excellent", "Good", "Fair", "Poor")


def test_xgboost_at_chance_or_below_the_best_baseline_is_not_served():
    quoted = {"models": {"xgboost": {"roc_auc": 0.500, "roc_auc_ci": [0.500, 0.500]},
                         "recency": {"roc_auc": 0.740, "roc_auc_ci": [0.70, 0.78]},
                         "rfm_logistic": {"roc_auc": 0.724, "roc_auc_ci": [0.68, 0.76]},
                         "bgnbd": {"roc_auc": 0.753, "roc_auc_ci": [0.71, 0.79]}}}
    served, why = training.serving_choice(quoted, "xgboost")
    assert served == "bgnbd" and "chance" in why and "0.753" in why
    below = {"models": {**quoted["models"], "xgboost": {"roc_auc": 0.745, "roc_auc_ci": [0.70, 0.79]}}}
    assert training.serving_choice(below, "xgboost")[0] == "bgnbd"
    above = {"models": {**quoted["models"], "xgboost": {"roc_auc": 0.760, "roc_auc_ci": [0.72, 0.80]}}}
    assert training.serving_choice(above, "xgboost") == ("xgboost", None)
    assert training.serving_choice(None, "xgboost") == ("xgboost", None)


def test_the_served_baseline_is_registered_and_the_card_and_run_say_why(dataset, tmp_path, monkeypatch):
    from churn.model import registry

    # Make XGBoost lose on the backtest: its test scores are a coin.
    from churn.model import backtest as bt

    real = bt.fit_and_score

    def coin(*args, **kwargs):
        model, scores = real(*args, **kwargs)
        return model, {**scores, "xgboost": np.full(len(scores["xgboost"]), 0.4)}

    monkeypatch.setattr(bt, "fit_and_score", coin)
    config = Config().with_horizon(60)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, n_estimators=50, learning_rate=0.2, search_budget=1),
        evaluate=dataclasses.replace(config.evaluate, n_bootstrap=30, n_bootstrap_segments=10))
    result = training.train(dataset, "2024-06-30", config)
    meta = result.metadata
    best = max(("recency", "rfm_logistic", "bgnbd"), key=lambda k: meta["backtest"]["models"][k]["roc_auc"])
    assert meta["model_kind"] == best and meta["fitted_kind"] == "xgboost" and "chance" in meta["served_reason"]
    assert meta["features"] == result.model.feature_names_
    meta["gate"] = training.gate(dataset, meta, None, None, config)
    assert meta["gate"]["promoted"]
    registry.register(result.model, meta, tmp_path)
    loaded, loaded_meta = registry.load(tmp_path)
    snaps = build_snapshots(dataset, [pd.Timestamp("2024-04-01")], 60)
    np.testing.assert_allclose(loaded.predict_proba(snaps), result.model.predict_proba(snaps))
    card = (tmp_path / meta["version"] / "model_card.md").read_text()
    assert "served instead" in card and "Quality:" in card
