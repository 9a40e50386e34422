"""Baselines: BG/NBD checked against data simulated from its own process; logistic ones on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.model.baselines import (BASELINES, BGNBDBaseline, bgnbd_inputs, bgnbd_p_alive, bgnbd_p_no_purchase,
                             fit_bgnbd)

TRUE = np.array([0.25, 4.0, 0.8, 2.5])  # r, alpha, a, b: close to the published CDNOW fit, in weeks


def simulate_bgnbd(params: np.ndarray, T: np.ndarray, horizon: float, seed: int) -> pd.DataFrame:
    """Simulate the BG/NBD story up to T + horizon: Poisson buying, drop-out after each repeat purchase."""
    r, alpha, a, b = params
    rng = np.random.default_rng(seed)
    n = len(T)
    rate = rng.gamma(r, 1 / alpha, n)
    p_drop = rng.beta(a, b, n)
    now, alive = np.zeros(n), np.ones(n, dtype=bool)
    x, t_x, bought_after = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    while alive.any():
        now = np.where(alive, now + rng.exponential(1 / np.maximum(rate, 1e-12)), now)
        alive &= now <= T + horizon
        before = alive & (now <= T)
        x += before
        t_x = np.where(before, now, t_x)
        bought_after |= alive & (now > T)
        alive &= rng.random(n) >= p_drop
    return pd.DataFrame({"x": x, "t_x": t_x, "T": T, "no_purchase": ~bought_after})


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    T = np.random.default_rng(1).uniform(30, 78, 20_000)
    return simulate_bgnbd(TRUE, T, horizon=8.0, seed=2)


def test_maximum_likelihood_recovers_the_parameters_of_simulated_customers(simulated):
    fitted = fit_bgnbd(simulated["x"], simulated["t_x"], simulated["T"])
    np.testing.assert_allclose(fitted, TRUE, rtol=0.2)


def test_p_no_purchase_formula_matches_simulation(simulated):
    p = bgnbd_p_no_purchase(TRUE, simulated["x"].to_numpy(), simulated["t_x"].to_numpy(),
                            simulated["T"].to_numpy(), 8.0)
    observed = simulated["no_purchase"].to_numpy()
    assert p.mean() == pytest.approx(observed.mean(), abs=0.01)
    # Within risk bins too, not only on average.
    bins = np.digitize(p, [0.5, 0.8, 0.95])
    for b in np.unique(bins):
        mask = bins == b
        assert mask.sum() > 500
        assert p[mask].mean() == pytest.approx(observed[mask].mean(), abs=0.03)


def test_p_alive_is_one_for_one_time_buyers_and_falls_with_silence():
    x, T = np.array([0.0, 3.0, 3.0]), np.array([40.0, 40.0, 40.0])
    t_x = np.array([0.0, 39.0, 10.0])
    alive = bgnbd_p_alive(TRUE, x, t_x, T)
    assert alive[0] == 1.0 and alive[1] > alive[2]
    # A one-time buyer still gets a churn risk from the purchase-rate part of the formula.
    assert 0 < bgnbd_p_no_purchase(TRUE, x, t_x, T, 4.0)[0] < 1


def test_bgnbd_baseline_reads_x_tx_T_from_the_feature_columns():
    feats = pd.DataFrame({"orders_all": [1.0, 5.0], "tenure_days": [70.0, 140.0], "recency_days": [70.0, 14.0]})
    x, t_x, T = bgnbd_inputs(feats)
    np.testing.assert_allclose(x, [0, 4])
    np.testing.assert_allclose(T, [10, 20])
    np.testing.assert_allclose(t_x, [0, 18])


def test_every_baseline_fits_on_snapshots_and_ranks_silent_customers_higher():
    rng = np.random.default_rng(0)
    n = 2000
    orders = rng.integers(1, 30, n).astype(float)
    tenure = rng.uniform(100, 360, n)
    recency = np.minimum(rng.exponential(tenure / (orders + 1)), tenure)
    churned = (rng.random(n) < 1 - np.exp(-recency / 60)).astype(int)
    snaps = pd.DataFrame({"orders_all": orders, "tenure_days": tenure, "recency_days": recency,
                          "orders_365d": orders, "spend_365d": orders * 20.0, "churned": churned})
    silent = snaps.iloc[[0]].assign(recency_days=100.0, tenure_days=300.0, orders_all=10.0, orders_365d=10.0)
    busy = silent.assign(recency_days=2.0)
    assert set(BASELINES) == {"recency", "rfm_logistic", "bgnbd"}
    for name, cls in BASELINES.items():
        model = cls(random_state=0, horizon_days=30).fit(snaps)
        p = model.predict_proba(pd.concat([silent, busy]))
        assert p.shape == (2, 2), name
        assert p[0, 1] > p[1, 1], name
    assert isinstance(BASELINES["bgnbd"](), BGNBDBaseline)


def test_a_served_logistic_baseline_predicts_like_the_baseline_and_its_reasons_add_up(tmp_path):
    from churn.model.baselines import LogisticChurnModel

    rng = np.random.default_rng(3)
    n = 800
    recency = rng.integers(0, 200, n).astype(float)
    frame = pd.DataFrame({"recency_days": recency, "orders_365d": rng.poisson(5, n).astype(float),
                          "spend_365d": rng.gamma(2, 100, n)})
    frame["churned"] = (rng.random(n) < 1 / (1 + np.exp(-(recency - 90) / 30))).astype(int)
    train, val = frame.iloc[:600], frame.iloc[600:]
    served = LogisticChurnModel("rfm_logistic", horizon_days=60).fit(train, val)
    plain = BASELINES["rfm_logistic"]().fit(pd.concat([train, val]))
    np.testing.assert_allclose(served.predict_proba(frame), plain.predict_proba(frame), atol=1e-9)
    p = served.predict_proba(frame)[:, 1]
    logit = np.log(p / (1 - p))
    rest = logit - served.contributions(frame).sum(axis=1).to_numpy()
    np.testing.assert_allclose(rest, rest[0], atol=1e-9)  # the reference customer's log-odds for everyone
    assert served.contributions(frame.assign(recency_days=180.0))["recency_days"].gt(0).all()
    served.save(tmp_path)
    np.testing.assert_allclose(LogisticChurnModel.load(tmp_path).predict_proba(frame), served.predict_proba(frame))
    assert served.feature_names_ == ["recency_days", "orders_365d", "spend_365d"]
