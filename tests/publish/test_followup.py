"""The report's look back: no claim on tiny samples, an alert line for a model below its backtest."""

import pandas as pd

from churn.config import Config
from churn.publish import followup


def _summary(n_holdout: int) -> pd.DataFrame:
    return pd.DataFrame([{"action": "trial", "risk_band": "all", "n_treated": 40, "n_holdout": n_holdout,
                          "rate_treated": 0.5, "rate_holdout": 0.0, "difference": 0.5, "ci_low": 0.35,
                          "ci_high": 0.65, "incremental_revenue": 1234.0, "coupon_redemption": 0.1,
                          "contacted_share": float("nan"), "qini": 0.12}])


def test_one_held_out_customer_is_too_few_to_tell_and_enough_of_them_give_a_verdict():
    # The case: `churn outcomes` called a trial effect significant on one held-out customer.
    config = Config()
    few = followup.outcomes_section(followup.Followup(summary=_summary(1), list_dates=["2017-11-01"]), config, 30)
    assert "too few to tell: 40 treated, 1 held out (30 each needed)" in few
    assert "+50.0 pts" not in few and "1,234 USD" not in few  # no difference, no revenue claimed
    assert "qini" in few  # columns outcomes.measure adds are shown too
    enough = followup.outcomes_section(followup.Followup(summary=_summary(35), list_dates=["2017-11-01"]), config, 30)
    assert "+50.0 pts (+35.0 pts to +65.0 pts)" in enough and "won back more than the holdout" in enough
    assert "1,234 USD" in enough


def test_a_run_below_the_backtest_interval_gets_an_alert_line():
    realised = pd.DataFrame([{
        "run_date": pd.Timestamp("2017-11-01"), "model_version": "m", "horizon_days": 30, "n": 2000,
        "churn_rate": 0.2, "mean_predicted": 0.21, "roc_auc": 0.80, "roc_auc_low": 0.78, "roc_auc_high": 0.82,
        "top_decile_lift": 3.1, "ece": 0.02, "in_sample": False,
        "alert": "ROC-AUC 0.800 is below the backtest's interval (0.867-0.898)",
        "calibration": [{"bin": [0, 0.1], "n": 2000, "mean_predicted": 0.21, "observed": 0.2}]}])
    meta = {"horizon_days": 30, "backtest": {"test_cutoff": "2017-12-01", "models": {"xgboost": {
        "roc_auc": 0.882, "roc_auc_ci": [0.867, 0.898], "top_decile_lift": 3.83, "ece": 0.01}}}}
    page = followup.realised_section(followup.Followup(realised=realised), meta, Config())
    assert '<p class="alert">Alert: run 2017-11-01: ROC-AUC 0.800 is below the backtest&#x27;s interval' in page
    assert "0.800 (0.780-0.820)" in page and "<img" in page
