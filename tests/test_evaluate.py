import numpy as np
import pytest

from churn.evaluate import bootstrap_auc_ci, expected_calibration_error, metrics, top_decile_lift


def test_top_decile_lift_by_hand():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0] * 2)
    p = np.array([0.9, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1] * 2)
    # Top 2 of 20 are both churners: rate 1.0 over base rate 0.2.
    assert top_decile_lift(y, p) == pytest.approx(5.0)


def test_ece_is_zero_when_calibrated_and_large_when_not():
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(y, np.full(10, 0.2)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(10, 0.9)) == pytest.approx(0.7)


def test_auc_interval_brackets_the_auc_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    def sample(n):
        y = rng.integers(0, 2, n)
        return y, 1 / (1 + np.exp(-(y - 0.5 + rng.normal(size=n))))  # noisy probabilities
    y1, p1 = sample(200)
    y2, p2 = sample(5000)
    lo1, hi1 = bootstrap_auc_ci(y1, p1, 200, 0.95, 0)
    lo2, hi2 = bootstrap_auc_ci(y2, p2, 200, 0.95, 0)
    m = metrics(y1, p1, n_boot=200)
    assert lo1 < m["roc_auc"] < hi1
    assert hi2 - lo2 < (hi1 - lo1) / 2
    assert set(m) == {"roc_auc", "roc_auc_ci", "pr_auc", "top_decile_lift", "brier", "ece"}
