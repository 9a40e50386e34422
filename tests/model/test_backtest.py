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


def _band(lift, ece, auc=0.85, ci=(0.8, 0.9), base_rate=0.172, max_ece=0.03):
    from churn.config import EvaluateConfig
    from churn.model.backtest import quality_band

    m = {"roc_auc": auc, "roc_auc_ci": list(ci), "top_decile_lift": lift, "ece": ece}
    return quality_band(m, base_rate, EvaluateConfig(), max_ece)


def test_quality_band_reads_lift_against_the_best_possible_at_the_churn_rate():
    # Complete Journey's backtest: lift 3.83 of a possible 1 / 0.172 = 5.81 is 59%: Good, with the numbers.
    band = _band(3.83, 0.010)
    assert band["band"] == "Good" and band["lift_share"] == pytest.approx(2.83 / (1 / 0.172 - 1), abs=1e-4)
    assert "3.83" in band["text"] and "5.81" in band["text"] and "ECE 0.010" in band["text"]
    assert _band(5.0, 0.010)["band"] == "Excellent"
    assert _band(2.2, 0.010)["band"] == "Fair" and _band(1.5, 0.010)["band"] == "Poor"
    # At a churn rate of 2%, the best lift is 10 (the top decile holds more than all churners).
    assert _band(7.0, 0.01, base_rate=0.02)["lift_share"] == pytest.approx(6 / 9, abs=1e-4)


def test_quality_band_drops_for_bad_calibration_and_is_poor_at_chance():
    assert _band(3.83, 0.05)["band"] == "Fair" and "one band lower" in _band(3.83, 0.05)["text"]
    chance = _band(1.0, 0.0, auc=0.5, ci=(0.5, 0.5))
    assert chance["band"] == "Poor" and "chance" in chance["text"]


def test_quality_band_where_most_customers_churn_reads_the_ranking_not_the_lift():
    # At a 97% churn rate a perfect top decile lifts 1.03x: the ROC-AUC's Gini decides instead.
    assert _band(1.03, 0.01, auc=0.92, ci=(0.87, 0.97), base_rate=0.97)["band"] == "Excellent"
    assert _band(1.03, 0.01, auc=0.62, ci=(0.55, 0.7), base_rate=0.97)["band"] == "Fair"


def test_rolling_calibration_gives_one_line_per_month_with_each_models_ece_and_the_correction():
    from churn.model.backtest import rolling_calibration

    run = lambda day, ece, season: {"test_cutoff": day, "base_rate": 0.3,  # noqa: E731
                                    "models": {"xgboost": {"ece": ece}, "bgnbd": {"ece": 0.05}},
                                    "season": season}
    report = {"rolling": [run("2024-05-01", 0.184, {"method": "none"}), run("2024-06-01", 0.034, None)]}
    assert rolling_calibration(report) == [
        "2024-05-01: churn rate 30.0%, ECE xgboost 0.184, bgnbd 0.050 (seasonal correction: none)",
        "2024-06-01: churn rate 30.0%, ECE xgboost 0.034, bgnbd 0.050"]
    assert rolling_calibration({"models": {}}) == []
