"""Realised quality of published scores once their horizon has passed, by hand."""

import pandas as pd

from churn.model.monitoring import realised_quality
from tests.conftest import make_orders


def test_realised_quality_labels_each_run_after_its_horizon_and_alerts_below_the_backtest_interval():
    # a, b, c buy again within 30 days of 2024-01-31; d, e, f do not. Orders end 2024-03-31.
    orders = make_orders([(c, "2024-01-10") for c in "abcdef"] + [(c, "2024-02-15") for c in "abc"]
                         + [("a", "2024-03-20"), ("f", "2024-03-31")])
    runs = pd.DataFrame({"run_date": pd.to_datetime(["2024-01-31", "2024-02-29", "2024-03-15"]),
                         "model_version": "m1", "horizon_days": 30})
    good = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]  # ranks every churner above every stayer
    bad = good[::-1]  # the reverse
    scores = pd.concat([
        pd.DataFrame({"run_date": pd.Timestamp(d), "customer_id": list("abcdef"), "p_churn": p})
        for d, p in (("2024-01-31", good), ("2024-02-29", bad), ("2024-03-15", good))])
    got = realised_quality(scores, runs, orders, backtest_auc_ci=(0.85, 0.90), max_ece=0.5, n_boot=20)
    # 2024-03-15 + 30 days is after the last order: not measured yet.
    assert got["run_date"].tolist() == [pd.Timestamp("2024-01-31"), pd.Timestamp("2024-02-29")]
    first, second = got.iloc[0], got.iloc[1]
    assert first["roc_auc"] == 1.0 and first["churn_rate"] == 0.5 and first["n"] == 6 and first["alert"] == ""
    assert first["mean_predicted"] == 0.5 and sum(b["n"] for b in first["calibration"]) == 6
    # On 2024-02-29 only a buys again (2024-03-20; f on 03-31, after the window): the reversed scores rank it last.
    assert second["churn_rate"] == 5 / 6 and second["roc_auc"] == 0.0
    assert second["alert"].startswith("ROC-AUC 0.000 is below the backtest's interval (0.850-0.900)")
    # The same runs scored by a model trained on their outcomes are in-sample: marked, never alerted.
    again = realised_quality(scores, runs, orders, backtest_auc_ci=(0.85, 0.90), trained_as_of={"m1": "2024-03-31"},
                             n_boot=20)
    assert again["in_sample"].tolist() == [True, True] and (again["alert"] == "").all()
