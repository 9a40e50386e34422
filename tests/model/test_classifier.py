import dataclasses

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from churn.config import ModelConfig
from churn.errors import DataError
from churn.model.classifier import SEARCH_SPACE, Calibrator, ChurnModel, choose_calibrator, explain_cost


def _snapshots(n: int, seed: int) -> pd.DataFrame:
    """Customers whose churn follows recency and a falling frequency, plus noise."""
    rng = np.random.default_rng(seed)
    recency = rng.integers(0, 200, n).astype(float)
    orders_90d = rng.poisson(4, n).astype(float)
    orders_prev_90d = rng.poisson(4, n).astype(float)
    noise = rng.normal(size=n)
    logit = 0.02 * (recency - 60) - 0.4 * (orders_90d - orders_prev_90d) + 0.1 * noise
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "cutoff": pd.Timestamp("2024-01-01"),
                         "recency_days": recency, "orders_90d": orders_90d, "orders_prev_90d": orders_prev_90d,
                         "noise": noise, "churned": churned})


FAST = ModelConfig(n_estimators=200, learning_rate=0.1, early_stopping_rounds=20, search_budget=3)


@pytest.fixture(scope="module")
def fitted():
    return ChurnModel(30, FAST).fit(_snapshots(3000, 1), _snapshots(1000, 2))


def test_a_customer_who_stops_buying_scores_higher_than_one_who_keeps_buying(fitted):
    keeps = pd.DataFrame({"recency_days": [5.0], "orders_90d": [5.0], "orders_prev_90d": [5.0], "noise": [0.0]})
    stops = keeps.assign(recency_days=120.0, orders_90d=1.0)
    assert fitted.predict_proba(stops)[0, 1] > fitted.predict_proba(keeps)[0, 1] + 0.2


def test_scores_do_not_depend_on_row_order_or_customer_id(fitted):
    test = _snapshots(300, 3)
    p = fitted.predict_proba(test)[:, 1]
    shuffled = test.sample(frac=1, random_state=0).assign(customer_id=lambda f: "x" + f["customer_id"])
    p_shuffled = pd.Series(fitted.predict_proba(shuffled)[:, 1], index=shuffled.index).sort_index()
    np.testing.assert_allclose(p, p_shuffled.to_numpy())
    assert "customer_id" not in fitted.feature_names_


def test_predict_proba_is_sklearn_shaped_and_early_stopping_picked_trees(fitted):
    proba = fitted.predict_proba(_snapshots(10, 4))
    assert proba.shape == (10, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert 0 < fitted.best_iteration_ < FAST.n_estimators - 1


def test_same_seed_same_model_and_saved_model_predicts_the_same(fitted, tmp_path):
    again = ChurnModel(30, FAST).fit(_snapshots(3000, 1), _snapshots(1000, 2))
    test = _snapshots(200, 5)
    np.testing.assert_array_equal(again.predict_proba(test), fitted.predict_proba(test))
    fitted.save(tmp_path)
    loaded = ChurnModel.load(tmp_path)
    assert (tmp_path / "booster.json").exists() and (tmp_path / "calibrator.json").exists()
    assert not list(tmp_path.glob("*.pkl"))
    assert loaded.calibrator_.method == fitted.calibrator_.method in ("platt", "isotonic")
    np.testing.assert_array_equal(loaded.predict_proba(test), fitted.predict_proba(test))
    assert loaded.horizon_days == 30 and loaded.feature_names_ == fitted.feature_names_


def test_contributions_add_up_to_the_log_odds(fitted):
    test = _snapshots(50, 6)
    contribs = fitted.contributions(test)
    p = fitted.raw_proba(test)  # contributions explain the booster's log-odds, before calibration
    bias = np.log(p / (1 - p)) - contribs.sum(axis=1).to_numpy()
    np.testing.assert_allclose(bias, bias[0], atol=1e-4)  # the rest is the same bias for everyone


def test_single_class_training_data_is_a_clear_error():
    train = _snapshots(100, 1).assign(churned=0)
    with pytest.raises(DataError, match="single class"):
        ChurnModel(30, FAST).fit(train, _snapshots(100, 2))


def test_missing_feature_at_scoring_is_a_clear_error(fitted):
    with pytest.raises(DataError, match="lacks features"):
        fitted.predict_proba(_snapshots(5, 1).drop(columns=["noise"]))


def test_bounded_search_tries_the_budget_and_keeps_the_cheapest_to_explain_of_the_best(fitted):
    results = fitted.search_results_
    assert len(results) == FAST.search_budget  # learning_rate == lean_learning_rate: no lean twin
    assert results[0]["max_depth"] == FAST.max_depth  # the configured parameters are candidate 0
    for r in results[1:]:
        assert all(r[k] in SEARCH_SPACE[k] for k in SEARCH_SPACE)
    lowest = min(r["validation_logloss"] for r in results)
    near = [r for r in results if r["validation_logloss"] <= lowest * (1 + FAST.lean_tolerance)]
    kept = min(near, key=lambda r: (r["explain_cost"], r["validation_logloss"]))
    assert {k: kept[k] for k in SEARCH_SPACE} == fitted.best_params_
    assert kept["explain_cost"] == explain_cost(fitted.booster_) > 0


def test_explain_cost_counts_leaves_times_depth_squared_of_the_trees_kept():
    train = _snapshots(500, 1)
    dm = xgb.DMatrix(train[["recency_days", "noise"]], label=train["churned"])
    stumps = xgb.train({"max_depth": 1, "objective": "binary:logistic"}, dm, num_boost_round=5)
    stumps.best_iteration = 2  # as early stopping leaves it: three trees kept
    assert explain_cost(stumps) == 3 * 2 * 1
    deep = xgb.train({"max_depth": 3, "min_child_weight": 0, "objective": "binary:logistic"}, dm, num_boost_round=1)
    deep.best_iteration = 0
    leaves = sum("leaf=" in line for line in deep.get_dump()[0].splitlines())
    assert explain_cost(deep) == leaves * 3 ** 2 and leaves > 4


def test_the_search_winner_gives_way_to_a_cheaper_booster_only_when_it_predicts_about_as_well():
    """At a small learning rate the winner is retrained at lean_learning_rate: fewer trees, cheaper reasons."""
    slow = ModelConfig(n_estimators=400, learning_rate=0.03, early_stopping_rounds=20, search_budget=2,
                       lean_tolerance=0.01)
    train, val = _snapshots(3000, 1), _snapshots(1000, 2)
    lean = ChurnModel(30, slow).fit(train, val)
    results = lean.search_results_
    winner, twin = min(results[:2], key=lambda r: r["validation_logloss"]), results[2]
    assert len(results) == 3 and twin["learning_rate"] == slow.lean_learning_rate
    assert {k: twin[k] for k in SEARCH_SPACE} == {k: winner[k] for k in SEARCH_SPACE}
    assert twin["trees"] < winner["trees"] and twin["explain_cost"] < winner["explain_cost"]
    lowest = min(r["validation_logloss"] for r in results)
    near = [r for r in results if r["validation_logloss"] <= lowest * (1 + slow.lean_tolerance)]
    assert lean.best_iteration_ + 1 == min(near, key=lambda r: r["explain_cost"])["trees"]
    # Switched off (tolerance 0): the lowest validation log-loss alone decides, no twin trained.
    plain = ChurnModel(30, dataclasses.replace(slow, lean_tolerance=0.0)).fit(train, val)
    assert len(plain.search_results_) == 2 and "learning_rate" not in plain.best_params_
    assert plain.best_iteration_ + 1 == winner["trees"]


def test_a_cheaper_booster_that_predicts_clearly_worse_never_wins():
    model = ChurnModel(30, dataclasses.replace(FAST, lean_tolerance=0.01))
    train = _snapshots(500, 1)
    dm = xgb.DMatrix(train[["recency_days", "noise"]], label=train["churned"])
    cheap, dear = (xgb.train({"max_depth": d, "objective": "binary:logistic"}, dm, num_boost_round=3) for d in (1, 4))
    for booster in (cheap, dear):
        booster.best_iteration = 2
    assert model.choose([(0.300, {"n": 0}, dear), (0.302, {"n": 1}, cheap)])[1] == {"n": 1}  # within 1%
    assert model.choose([(0.300, {"n": 0}, dear), (0.310, {"n": 1}, cheap)])[1] == {"n": 0}  # 3.3% worse


def test_calibration_fixes_probabilities_that_are_systematically_too_high():
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.02, 0.6, 20_000)
    y = (rng.random(20_000) < true_p).astype(int)
    raw = np.clip(true_p * 1.5, 0, 0.99)  # a model that over-states every risk by half
    calibrator, briers = choose_calibrator(raw, y, 0)
    assert set(briers) == {"platt", "isotonic"} and calibrator.method == min(briers, key=briers.get)
    calibrated = calibrator(raw)
    assert abs(calibrated.mean() - y.mean()) < 0.01 < abs(raw.mean() - y.mean())
    # The ranking survives calibration (isotonic steps keep the raw order as a tie-break).
    assert np.all(np.diff(calibrated[np.argsort(raw)]) >= 0)
    iso = Calibrator.fit("isotonic", raw, y)
    assert len(np.unique(iso(raw))) == len(np.unique(raw))


def test_calibrator_is_fitted_on_validation_customers_the_booster_did_not_early_stop_on():
    model = ChurnModel(30, FAST).fit(_snapshots(3000, 1), _snapshots(1000, 2))
    assert 300 < model.n_calibration_ < 700  # about calibration_share of the validation customers
    uncalibrated = ChurnModel(30, ModelConfig(n_estimators=200, learning_rate=0.1, early_stopping_rounds=20,
                                              calibration="none", search_budget=1))
    uncalibrated.fit(_snapshots(3000, 1), _snapshots(1000, 2))
    test = _snapshots(100, 3)
    np.testing.assert_allclose(uncalibrated.predict_proba(test)[:, 1], uncalibrated.raw_proba(test))


def test_churn_model_is_a_scikit_learn_estimator():
    from sklearn.base import clone, is_classifier

    model = ChurnModel(30, FAST, random_state=7)
    assert model.get_params() == {"horizon_days": 30, "config": FAST, "random_state": 7}
    assert ChurnModel().get_params() == {"horizon_days": 90, "config": None, "random_state": None}  # kept as given
    copy = clone(model.set_params(horizon_days=60))
    assert copy is not model and copy.get_params() == {"horizon_days": 60, "config": FAST, "random_state": 7}
    assert is_classifier(model) and not hasattr(copy, "booster_")
    fitted = ChurnModel(30, FAST).fit(_snapshots(3000, 1), _snapshots(1000, 2))
    test = _snapshots(500, 3)
    assert list(fitted.classes_) == [0, 1] and fitted.n_features_in_ == len(fitted.feature_names_)
    labels = fitted.predict(test)
    assert set(labels) <= {0, 1} and (labels == (fitted.predict_proba(test)[:, 1] >= 0.5)).all()
    assert 0.5 < fitted.score(test, test["churned"]) <= 1.0  # ClassifierMixin: accuracy


def test_threads_change_neither_scores_nor_contributions(fitted):
    import json

    test = _snapshots(500, 6)
    one = (fitted.use_threads(1).predict_proba(test), fitted.contributions(test).to_numpy())
    assert json.loads(fitted.booster_.save_config())["learner"]["generic_param"]["nthread"] == "1"
    two = (fitted.use_threads(2).predict_proba(test), fitted.contributions(test).to_numpy())
    fitted.use_threads(FAST.n_jobs)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
