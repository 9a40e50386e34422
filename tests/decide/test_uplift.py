"""Uplift learned per customer from the holdout, and the field's metrics (Qini, uplift at capacity)."""

import numpy as np
import pandas as pd
import pytest

from churn.config import DRIVERS, WinbackConfig
from churn.decide import uplift, winback


def test_qini_is_zero_for_a_random_order_and_largest_for_the_true_one():
    rng = np.random.default_rng(0)
    incremental = rng.uniform(0, 0.3, 5000)
    best = uplift.qini_from_truth(incremental, incremental)
    assert best > 0 and uplift.qini_from_truth(-incremental, incremental) < 0
    assert abs(uplift.qini_from_truth(rng.random(5000), incremental)) < 0.1 * best


def test_qini_on_measured_outcomes_finds_an_ordering_that_puts_responders_first():
    rng = np.random.default_rng(1)
    n = 20000
    tau = rng.uniform(0, 0.4, n)  # each customer's true incremental response
    treated = rng.random(n) < 0.8
    came_back = rng.random(n) < 0.3 + tau * treated
    good = uplift.qini_coefficient(tau, came_back, treated)
    assert good > 0.02 and abs(uplift.qini_coefficient(rng.random(n), came_back, treated)) < good / 3
    assert uplift.qini_coefficient(tau, came_back, treated) == pytest.approx(
        uplift.qini_from_truth(tau, tau * 1.0), rel=0.5)  # sampled and true agree roughly


def _listed(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Listed customers whose discount uplift fades with days gone and is large when price-driven."""
    rng = np.random.default_rng(seed)
    recency = rng.integers(1, 400, n).astype(float)
    price = rng.random(n) < 0.5
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "p_churn": rng.uniform(0.3, 0.95, n),
                          "recency_days": recency, "orders_365d": rng.poisson(5, n).astype(float),
                          "spend_365d": rng.gamma(2, 100, n), "frequency_trend_90d": rng.uniform(0.2, 1.5, n),
                          "tenure_days": rng.integers(100, 700, n).astype(float)})
    drivers = pd.DataFrame({"service": False, "price": price, "variety": False}, index=frame.index)[list(DRIVERS)]
    share = np.where(price, 0.4, 0.05) * np.exp(-recency / 90)
    frame["action"] = "exclusive_discount"
    frame["arm"] = np.where(rng.random(n) < 0.15, "holdout", "treated")
    mu0 = 1 - frame["p_churn"].to_numpy()
    p = np.where(frame["arm"] == "treated", mu0 + (1 - mu0) * share, mu0)
    frame["came_back"] = rng.random(n) < p
    return frame, drivers, share


def test_learned_uplift_recovers_who_responds_and_ranks_them_better_than_the_segment():
    listed, drivers, _ = _listed(6000, 2)
    segment = winback.prior_uplift(WinbackConfig())
    model = uplift.fit_uplift(listed, drivers, segment, strength=100)
    fresh, fresh_drivers, true_share = _listed(4000, 3)
    segments = {a: uplift.segment_of(fresh_drivers, WinbackConfig().action(a).uplift) for a in winback.ACTIONS}
    learned = model.predict(fresh, fresh_drivers, segments)["exclusive_discount"].to_numpy()
    prior = np.where(fresh_drivers["price"], 0.25, 0.06)
    assert np.corrcoef(learned, true_share)[0, 1] > np.corrcoef(prior, true_share)[0, 1] + 0.2
    assert uplift.qini_from_truth(learned, true_share) > 1.3 * uplift.qini_from_truth(prior, true_share)
    # Other actions had no data: they keep the segment estimate.
    assert model.predict(fresh, fresh_drivers, segments)["trial"].eq(
        [WinbackConfig().trial.uplift.get(s, 0.05) for s in segments["trial"]]).all()
    again = uplift.UpliftModel.from_dict(model.to_dict())
    np.testing.assert_allclose(again.predict(fresh, fresh_drivers, segments), model.predict(fresh, fresh_drivers,
                                                                                            segments))


def test_thin_data_stays_at_the_segment_estimate():
    listed, drivers, _ = _listed(300, 4)
    segment = {"exclusive_discount": {"price": 0.25, "none": 0.06, "service": 0.05, "variety": 0.06}}
    few = uplift.fit_uplift(listed.iloc[:50], drivers.iloc[:50], segment)
    assert few.treated == {}  # below min_treated: nothing learned
    some = uplift.fit_uplift(listed, drivers, segment, strength=1e9)  # learned, but weighed at ~0
    segments = {a: uplift.segment_of(drivers, segment.get(a, {"none": 0.05})) for a in winback.ACTIONS}
    got = some.predict(listed, drivers, segments)["exclusive_discount"]
    np.testing.assert_allclose(got, np.where(drivers["price"], 0.25, 0.06), atol=1e-6)


def test_the_policy_uses_the_learned_uplift_customer_by_customer():
    scores = pd.DataFrame({"customer_id": ["a", "b"], "p_churn": [0.8, 0.8], "value": [100.0, 100.0],
                           "lifecycle_stage": "active", "value_tier": "mid", "avg_order_value_365d": 10.0})
    config = WinbackConfig()
    plain = winback.candidates(scores, set(), config)
    learned = pd.DataFrame({"callback": [0.5, np.nan], "exclusive_discount": [0.0, 0.3], "trial": np.nan})
    got = winback.candidates(scores, set(), config, customer_uplift=learned)
    ev = got.set_index(["row", "action"])["expected_value"]
    base = plain.set_index(["row", "action"])["expected_value"]
    assert ev[(0, "callback")] == pytest.approx(0.8 * 0.5 * 100 - 12.0)
    assert ev[(1, "callback")] == pytest.approx(base[(1, "callback")])  # no learned value: the segment's
    assert ev[(1, "exclusive_discount")] > base[(1, "exclusive_discount")]


def test_the_learner_weighs_an_explored_customer_by_their_chance_of_being_drawn():
    listed, drivers, _ = _listed(1500, 5)
    segment = winback.prior_uplift(WinbackConfig())
    # Customers drawn with chance 1/3 stand for three candidates: weighing them is fitting them three times.
    drawn = np.arange(len(listed)) % 5 == 0
    weighted = listed.assign(selection_probability=np.where(drawn, 1 / 3, 1.0))
    repeated = pd.concat([listed] + [listed[drawn]] * 2, ignore_index=True)
    repeated_drivers = pd.concat([drivers] + [drivers[drawn]] * 2, ignore_index=True)
    by_weight = uplift.fit_uplift(weighted, drivers, segment, max_weight=20.0)
    by_copies = uplift.fit_uplift(repeated, repeated_drivers, segment)
    plain = uplift.fit_uplift(listed, drivers, segment)
    fit_w, fit_c = by_weight.treated["exclusive_discount"], by_copies.treated["exclusive_discount"]
    # Same fit up to the standardisation, which the weights do not change (it only rescales the inputs).
    share_w = by_weight.learned_share("exclusive_discount", listed, drivers)
    share_c = by_copies.learned_share("exclusive_discount", listed, drivers)
    share_plain = plain.learned_share("exclusive_discount", listed, drivers)
    assert np.abs(share_w - share_c).max() < 0.02
    assert np.abs(share_w - share_plain).max() > 2 * np.abs(share_w - share_c).max()
    assert fit_w["n"] == fit_c["n"] - 2 * int((drawn & (listed["arm"] == "treated")).sum())
    # With the cap at 1 (the default) an explored customer weighs like any other.
    np.testing.assert_allclose(uplift.fit_uplift(weighted, drivers, segment).learned_share(
        "exclusive_discount", listed, drivers), share_plain)
    # Lists from before exploration (no column) and EV-chosen customers weigh 1; tiny chances are capped.
    assert (uplift.selection_weights(listed) == 1).all()
    capped = uplift.selection_weights(listed.assign(selection_probability=np.where(drawn, 1e-4, 1.0)), 20.0)
    assert capped.max() == 20.0 and (capped[~drawn] == 1).all()
