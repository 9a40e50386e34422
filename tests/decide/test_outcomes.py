"""Outcome measurement: who came back in the window, treated vs holdout, and the uplift learnt from it."""

import math

import pandas as pd
import pytest

from churn.config import OutcomesConfig, WinbackConfig
from churn.decide.outcomes import estimate_uplift, follow_up, summary, uplift_for_run
from conftest import make_orders


def _taken(rows: list[tuple]) -> pd.DataFrame:
    """Assignments from (run_date, customer, action, arm, segment, risk_band) tuples."""
    frame = pd.DataFrame(rows, columns=["run_date", "customer_id", "action", "arm", "segment", "risk_band"])
    frame["run_date"] = pd.to_datetime(frame["run_date"])
    return frame


def test_came_back_means_an_order_in_the_days_after_the_list_within_the_horizon():
    taken = _taken([("2024-01-10", c, "callback", "treated", "none", "high") for c in "abcd"]
                   + [("2024-03-01", "a", "trial", "holdout", "none", "high")])
    orders = make_orders([("a", "2024-01-15", 20), ("a", "2024-01-20", 5), ("b", "2024-01-10 18:00"),
                          ("c", "2024-02-09 23:00", 7), ("d", "2024-02-10"), ("d", "2024-03-05")])
    got = follow_up(taken, pd.Series({pd.Timestamp("2024-01-10"): 30, pd.Timestamp("2024-03-01"): 30}), orders)
    # the 2024-03-01 list's window runs past the data (orders end 2024-03-05): not measured yet
    assert got["list_date"].unique().tolist() == [pd.Timestamp("2024-01-10")]
    assert got.set_index("customer_id")["came_back"].to_dict() == {"a": True, "b": False, "c": True, "d": False}
    assert got.set_index("customer_id")["revenue"].to_dict() == {"a": 25.0, "b": 0.0, "c": 7.0, "d": 0.0}
    assert got["contacted"].isna().all()  # no contacts table: unknown, not "no"


def test_contacts_say_who_the_team_reached():
    taken = _taken([("2024-01-10", c, "callback", "treated", "none", "high") for c in "ab"])
    orders = make_orders([("a", "2024-01-15"), ("b", "2024-03-01")])
    contacts = pd.DataFrame({"customer_id": ["a", "b"], "list_date": pd.to_datetime(["2024-01-10"] * 2),
                             "action": "callback", "arm": "treated",
                             "contacted_ts": pd.to_datetime(["2024-01-11 09:00", None])})
    got = follow_up(taken, pd.Series({pd.Timestamp("2024-01-10"): 30}), orders, contacts)
    assert got.set_index("customer_id")["contacted"].to_dict() == {"a": True, "b": False}


def test_explored_customers_are_measured_like_any_listed_customer_and_keep_their_chance_of_being_drawn():
    taken = _taken([("2024-01-10", c, "trial", arm, "none", "high")
                    for c, arm in zip("abcd", ["treated", "treated", "holdout", "treated"])])
    taken["explored"] = [True, False, True, None]  # None: a row written before exploration existed
    taken["selection_probability"] = [0.02, 1.0, 0.02, None]
    orders = make_orders([("a", "2024-01-15"), ("c", "2024-01-20"), ("d", "2024-03-01")])
    got = follow_up(taken, pd.Series({pd.Timestamp("2024-01-10"): 30}), orders).set_index("customer_id")
    assert got["came_back"].to_dict() == {"a": True, "b": False, "c": True, "d": False}
    assert got["explored"].to_dict() == {"a": True, "b": False, "c": True, "d": False}
    assert got["selection_probability"].to_dict() == {"a": 0.02, "b": 1.0, "c": 0.02, "d": 1.0}
    # Explored and ranked customers count together in the treated-vs-holdout table (the holdout mirrors both).
    table = summary(got.reset_index(), OutcomesConfig())
    assert table.loc[table["risk_band"] == "all", ["n_treated", "n_holdout"]].iloc[0].tolist() == [3, 1]


def _outcomes(action: str, segment: str, treated: tuple[int, int], holdout: tuple[int, int]) -> pd.DataFrame:
    """(came back, stayed away) counts per arm, revenue 10 per customer who came back."""
    rows = []
    for arm, (back, away) in (("treated", treated), ("holdout", holdout)):
        rows += [{"action": action, "segment": segment, "arm": arm, "risk_band": "high", "came_back": b,
                  "revenue": 10.0 * b, "coupon_redeemed": b and arm == "treated", "contacted": None}
                 for b in [True] * back + [False] * away]
    return pd.DataFrame(rows)


def test_summary_compares_treated_with_holdout_with_a_confidence_interval():
    table = summary(_outcomes("callback", "none", treated=(40, 60), holdout=(5, 20)), OutcomesConfig())
    row = table[(table["action"] == "callback") & (table["risk_band"] == "high")].iloc[0]
    assert (row.n_treated, row.n_holdout) == (100, 25)
    assert row.rate_treated == pytest.approx(0.4) and row.rate_holdout == pytest.approx(0.2)
    se = math.sqrt(0.4 * 0.6 / 100 + 0.2 * 0.8 / 25)
    assert row.ci_low == pytest.approx(0.2 - 1.959964 * se, abs=1e-5)
    assert row.ci_high == pytest.approx(0.2 + 1.959964 * se, abs=1e-5)
    assert row.incremental_revenue == pytest.approx((4.0 - 2.0) * 100)
    assert row.coupon_redemption == pytest.approx(0.4)
    assert set(table["risk_band"]) == {"high", "all"}


def test_measured_uplift_is_shrunk_towards_the_prior_by_sample_size():
    config = OutcomesConfig(prior_strength=100.0, min_holdout=20)
    winback = WinbackConfig()
    estimates = estimate_uplift(_outcomes("callback", "none", treated=(40, 60), holdout=(5, 20)), winback, config,
                                "2024-03-01").set_index(["action", "segment"])
    row = estimates.loc[("callback", "none")]
    measured = (0.4 - 0.2) / (1 - 0.2)  # a quarter of those who would have stayed away came back
    n = 100 * 25 / 125
    assert row.measured == pytest.approx(measured) and row.source == "measured"
    assert row.shrunk == pytest.approx((n * measured + 100 * 0.10) / (n + 100))
    assert estimates.loc[("trial", "price"), "source"] == "prior"  # no data: the prior stays
    few = estimate_uplift(_outcomes("callback", "none", treated=(40, 60), holdout=(2, 8)), winback, config,
                          "2024-03-01").set_index(["action", "segment"])
    assert few.loc[("callback", "none"), "source"] == "prior" and few.loc[("callback", "none"), "shrunk"] == 0.10


def test_the_next_run_uses_the_measured_uplift_and_says_so():
    winback = WinbackConfig()
    estimates = estimate_uplift(_outcomes("callback", "none", treated=(40, 60), holdout=(5, 20)), winback,
                                OutcomesConfig(), "2024-03-01")
    used, report = uplift_for_run(estimates, winback)
    assert used["callback"]["none"] == pytest.approx(estimates.set_index(["action", "segment"])
                                                     .loc[("callback", "none"), "shrunk"], abs=1e-6)
    assert report["callback"]["none"]["source"] == "measured (shrunk to prior)"
    assert report["callback"]["none"]["n_holdout"] == 25
    assert used["trial"]["variety"] == 0.20 and report["trial"]["variety"]["source"] == "prior"
    assert uplift_for_run(None, winback)[0]["callback"] == winback.callback.uplift


def test_ranking_reports_uplift_at_capacity_and_qini_only_from_enough_customers():
    from churn.decide.outcomes import ranking

    big = _outcomes("callback", "none", treated=(90, 210), holdout=(10, 50))
    # The lists ranked the customers who came back first when treated: a good ranking.
    big["expected_value"] = big["came_back"].astype(float) * (big["arm"] == "treated") + 0.5 * (big["arm"] == "holdout")
    table = ranking(big, OutcomesConfig(min_claim_treated=200, min_claim_holdout=50)).set_index("action")
    row = table.loc["callback"]
    assert row.claim == "measured" and row.uplift_at_capacity == pytest.approx(0.3 - 10 / 60)
    assert row.ci_low < row.uplift_at_capacity < row.ci_high and row.qini_list > 0
    few = ranking(_outcomes("trial", "none", treated=(40, 60), holdout=(5, 20)), OutcomesConfig()).set_index("action")
    assert "too few to tell" in few.loc["trial", "claim"] and math.isnan(few.loc["trial", "uplift_at_capacity"])
