import numpy as np
import pytest

from churn.model.backtest import (bootstrap_auc_ci, calibration_curve, expected_calibration_error, gain_table, metrics,
                            top_decile_lift)


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


def test_gain_table_by_hand():
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    p = np.linspace(1, 0.1, 10)  # already sorted: decile k is row k
    table = gain_table(y, p)
    assert [r["churners"] for r in table] == [1, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    assert table[0]["lift"] == pytest.approx(1 / 0.3)
    assert table[1]["cumulative_gain"] == pytest.approx(2 / 3)
    assert table[-1]["cumulative_gain"] == pytest.approx(1.0) and table[-1]["cumulative_lift"] == pytest.approx(1.0)


def test_calibration_curve_bins_by_predicted_probability():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.05, 0.08, 0.95, 0.91, 0.99])
    curve = calibration_curve(y, p)
    assert [c["bin"] for c in curve] == [[0.0, 0.1], [0.9, 1.0]]
    assert curve[0]["observed"] == 0.0 and curve[1]["observed"] == 1.0
    assert curve[1]["mean_predicted"] == pytest.approx(0.95)


def test_metrics_of_a_single_class_segment_are_none_not_a_crash():
    m = metrics(np.ones(5), np.full(5, 0.8), n_boot=10)
    assert m["roc_auc"] is None and m["brier"] == pytest.approx(0.04)
