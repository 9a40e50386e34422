"""The seasonal correction: a log-odds shift from the same time last year, chosen by a backtest on earlier cutoffs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.config import ModelConfig
from churn.data.datasets import synthetic
from churn.features.snapshots import build_snapshots
from churn.model.backtest import expected_calibration_error
from churn.model.classifier import ChurnModel
from churn.model.season import SeasonalCorrection, apply_shift, check_cutoffs, intercept_shift
from tests.conftest import dataset_of

FAST = ModelConfig(n_estimators=150, learning_rate=0.1, early_stopping_rounds=20, search_budget=1)


def test_intercept_shift_matches_the_mean_and_keeps_the_order():
    p = np.array([0.1, 0.2, 0.4, 0.7])
    shift = intercept_shift(p, 0.25)
    moved = apply_shift(p, shift)
    assert moved.mean() == pytest.approx(0.25, abs=1e-9) and shift < 0
    assert (np.diff(moved) > 0).all()
    assert intercept_shift(p, p.mean()) == pytest.approx(0.0, abs=1e-9)


def test_shifts_are_read_by_day_of_the_year_and_wrap_around_it():
    c = SeasonalCorrection("prior_shift", "test", {"2023-01-01": 1.0, "2023-07-02": -1.0})
    got = c.shift_for(pd.Series(pd.to_datetime(["2024-01-01", "2024-07-01", "2024-04-01", "2024-10-01"])))
    np.testing.assert_allclose(got[:2], [1.0, -1.0], atol=0.02)
    assert abs(got[2]) < 0.05 and abs(got[3]) < 0.05  # half-way between the two, either way round the year
    assert (SeasonalCorrection("none", "", {"2023-01-01": 1.0}).shift_for(pd.Series(pd.to_datetime(["2024-01-01"])))
            == 0).all()


def test_check_cutoffs_are_monthly_back_two_years_from_the_anchor():
    cuts = check_cutoffs(pd.Timestamp("2024-06-01"), pd.Timestamp("2023-01-15"))
    assert cuts[0] == pd.Timestamp("2023-02-01") and cuts[-1] == pd.Timestamp("2024-06-01") and len(cuts) == 17


def _fit(amplitude: float):
    """A 3-year shop (orders only), the model trained in winter-spring and calibrated in spring."""
    data = synthetic.generate(2500, "2022-01-01", "2024-12-31", random_state=5, items=False, events=False,
                              season_amplitude=amplitude)
    dataset = dataset_of(data.tables["orders"])
    anchor = pd.Timestamp("2024-04-01")
    cutoffs = check_cutoffs(anchor, pd.Timestamp("2022-04-01")) + [pd.Timestamp("2024-07-01")]
    snaps = build_snapshots(dataset, cutoffs, 90)
    train = snaps[snaps["cutoff"].isin(pd.to_datetime(["2023-10-01", "2023-11-01", "2023-12-01", "2024-01-01"]))]
    model = ChurnModel(90, FAST).fit(train, snaps[snaps["cutoff"] == anchor])
    model.fit_season(snaps[snaps["cutoff"] <= anchor], anchor)
    return model, snaps[snaps["cutoff"] == pd.Timestamp("2024-07-01")]


def test_a_planted_season_is_found_and_corrected_out_of_time():
    model, summer = _fit(0.6)
    assert model.season_.method == "prior_shift" and "seasonal" in model.season_.reason
    y = summer["churned"].to_numpy()
    before = expected_calibration_error(y, model.predict_proba(summer, seasonal=False)[:, 1])
    after = expected_calibration_error(y, model.predict_proba(summer)[:, 1])
    assert before > 0.06 and after < before / 2
    # The ranking is the model's own: a shift moves every customer's log-odds alike.
    order = np.argsort(model.predict_proba(summer)[:, 1], kind="stable")
    assert (np.diff(model.predict_proba(summer, seasonal=False)[order, 1]) >= -1e-12).all()


def test_a_shop_without_a_season_keeps_its_probabilities(tmp_path):
    model, summer = _fit(0.0)
    assert model.season_.method == "none" and "no season" in model.season_.reason
    np.testing.assert_array_equal(model.predict_proba(summer), model.predict_proba(summer, seasonal=False))
    model.save(tmp_path)
    assert ChurnModel.load(tmp_path).season_.to_dict() == model.season_.to_dict()
