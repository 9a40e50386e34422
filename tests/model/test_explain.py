"""Reasons in plain words, drivers per segment, exact TreeSHAP, and the planted drivers found where planted."""

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


def frames(features: dict[str, list], contributions: dict[str, list]) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = [f"c{i}" for i in range(len(next(iter(features.values()))))]
    return pd.DataFrame(features, index=index), pd.DataFrame(contributions, index=index)


def test_reasons_are_sentences_with_the_customers_own_numbers_strongest_first():
    feats, contribs = frames(
        {"recency_days": [47.0], "gap_mean_days": [12.0], "orders_30d": [0.0], "orders_90d": [2.0],
         "orders_prev_90d": [7.0], "event_complaint_90d": [2.0], "discount_share_365d": [0.1]},
        {"recency_days": [0.9], "gap_mean_days": [0.1], "orders_30d": [0.2], "orders_90d": [0.3],
         "orders_prev_90d": [0.0], "event_complaint_90d": [0.6], "discount_share_365d": [-0.4]})
    got = explain.reasons(feats, contribs).iloc[0]
    # recency 0.9 + 0.1 = 1.0 > complaints 0.6 > frequency 0.2 + 0.3 = 0.5; the discount lowers the risk.
    assert list(got[["reason_code_1", "reason_code_2", "reason_code_3"]]) == ["recency", "event_complaint", "frequency"]
    assert got["reason_1"] == "No order for 47 days; usually orders every 12 days"
    assert got["reason_2"] == "2 complaints in the last 90 days"
    assert got["reason_3"] == "0 orders in the last 30 days, 2 in the last 90, 7 in the 90 before"


def test_only_positive_contributions_become_reasons_and_the_rest_stay_empty():
    feats, contribs = frames({"event_support_ticket_90d": [1.0, 0.0], "tenure_days": [20.0, 300.0],
                              "orders_all": [1.0, 9.0]},
                             {"event_support_ticket_90d": [0.4, -0.1], "tenure_days": [-0.2, -0.3],
                              "orders_all": [0.0, -0.1]})
    got = explain.reasons(feats, contribs)
    assert got.index.tolist() == ["c0", "c1"]
    assert got.loc["c0", "reason_1"] == "1 support ticket in the last 90 days"
    assert got.loc["c0", ["reason_code_2", "reason_2", "reason_code_3"]].isna().all()
    assert got.loc["c1"].isna().all()


def test_a_missing_number_reads_unknown_and_a_single_order_has_no_usual_gap():
    feats, contribs = frames({"recency_days": [15.0], "gap_mean_days": [np.nan], "orders_90d": [np.nan]},
                             {"recency_days": [0.5], "gap_mean_days": [0.0], "orders_90d": [0.2]})
    got = explain.reasons(feats, contribs).iloc[0]
    assert got["reason_1"] == "No order for 15 days; only one order so far"
    assert got["reason_2"] == "unknown orders in the last 30 days, unknown in the last 90, unknown in the 90 before"


def test_families_and_themes():
    assert explain.family("orders_prev_90d") == "frequency"
    assert explain.family("event_complaint_90d") == "event_complaint"
    assert explain.theme("event_complaint_90d") == explain.theme("returns_share_365d") == "service"
    assert explain.theme("discount_share_365d") == explain.theme("event_coupon_redeemed") == "price"
    assert explain.theme("categories_prev_90d") == "variety"
    assert explain.theme("overdue_ratio") == "drift"
    assert explain.theme("avg_order_value_365d") == explain.theme("something_new") == "profile"


def test_global_and_segment_drivers_by_hand():
    contribs = pd.DataFrame({"orders_90d": [1.0, -3.0, 0.5, 0.5], "event_complaint_90d": [0.0, 0.0, 2.0, 0.0]})
    glob = explain.global_drivers(contribs)
    assert glob["feature"].tolist() == ["orders_90d", "event_complaint_90d"]
    assert glob["mean_abs_shap"].tolist() == [1.25, 0.5] and glob["theme"].tolist() == ["drift", "service"]
    segment = pd.Series(["a", "a", "b", "b"], name="stage")
    by_theme = explain.segment_drivers(contribs, segment)
    assert by_theme.loc["a", "drift"] == -1.0 and by_theme.loc["b", "service"] == 1.0
    assert by_theme["n"].tolist() == [2, 2]
    lift = explain.distinctive_drivers(contribs, segment)
    # service: mean 0.5, population std 0.866; segment b mean 1.0 -> (1.0 - 0.5) / 0.866
    assert lift.loc["b", "service"] == pytest.approx(0.5 / np.std([0, 0, 2, 0]))
    shares = explain.top_reason_shares(pd.Series(["frequency", None, "event_complaint", "recency"]), segment)
    assert shares.loc["b", "service"] == 0.5 and shares.loc["a", "drift"] == 1.0


@pytest.fixture(scope="module")
def planted(synthetic_small):
    """A fast model on the small synthetic data; contributions at three cutoffs with the planted truth."""
    dataset = dataset_of(**synthetic_small.tables)
    config = Config().with_horizon(60)
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, n_estimators=150, learning_rate=0.1, early_stopping_rounds=20, n_train_cutoffs=4,
        search_budget=1))
    result = training.train(dataset, "2024-06-30", config, evaluate=False)
    cutoffs = [*result.split.train_cutoffs[-2:], result.split.val_cutoff]
    snaps = build_snapshots(dataset, cutoffs, 60)
    truth = synthetic_small.truth.set_index("customer_id").reindex(snaps["customer_id"])
    churn_ts, cutoff = truth["churn_ts"].to_numpy(), snaps["cutoff"].to_numpy()
    planted = np.select([churn_ts <= cutoff, churn_ts <= cutoff + np.timedelta64(60, "D")],
                        ["earlier", truth["churn_reason"].to_numpy()], default="stays")
    # Customers still buying at the cutoff: those who churn within the horizon, by planted reason, and the rest.
    alive = planted != "earlier"
    return result.model, snaps[alive], pd.Series(planted[alive], index=snaps.index[alive], name="planted")


def test_native_contributions_equal_shap_tree_explainer(planted):
    import shap

    model, snaps, _ = planted
    rows = snaps.head(300)
    native = model.contributions(rows).to_numpy()
    # The trees the model predicts with (early stopping leaves a few more in the booster).
    booster = model.booster_[: model.best_iteration_ + 1]
    values = shap.TreeExplainer(booster).shap_values(rows[model.feature_names_])
    assert np.abs(native - values).max() < 1e-4
    assert np.abs(native).max() > 0.1


def test_planted_drivers_come_out_on_top_in_their_segments(planted):
    model, snaps, planted_reason = planted
    lift = explain.distinctive_drivers(model.contributions(snaps), planted_reason)
    reasons = ("drift", "service", "price", "variety")
    assert (lift.loc[list(reasons), "n"] >= 30).all()
    for reason in reasons:
        # Each planted driver stands out most among the churners it was planted in.
        assert lift.loc[list(reasons), reason].idxmax() == reason, lift.round(2)
    # Every churner's purchases slow down first (drift is planted in all of them); on top of it,
    # what sets service, price and variety churners apart is their own driver.
    assert lift.loc["drift", list(reasons) + ["profile"]].idxmax() == "drift", lift.round(2)
    for reason in ("service", "price", "variety"):
        assert lift.loc[reason, ["service", "price", "variety", "profile"]].idxmax() == reason, lift.round(2)


def test_reasons_of_service_churners_name_their_complaints(planted):
    model, snaps, planted_reason = planted
    service = snaps[(planted_reason == "service").to_numpy()]
    found = explain.reasons(service, model.contributions(service))
    said = found[["reason_1", "reason_2", "reason_3"]].fillna("").agg(" ".join, axis=1)
    assert said.str.contains("complaint|support ticket").mean() > 0.5
