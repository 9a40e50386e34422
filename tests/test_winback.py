import numpy as np
import pandas as pd

from churn.config import WinbackConfig
from churn.winback import assign, holdout, service_lists, suggest_action


def _scores(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    value = rng.gamma(2, 50, n)
    return pd.DataFrame({
        "customer_id": [f"c{i:04d}" for i in range(n)],
        "p_churn": rng.random(n),
        "value": value,
        "value_tier": pd.qcut(value, [0, 0.4, 0.8, 1], labels=["low", "mid", "high"]).astype(str),
        "lifecycle_stage": "active",
        "discount_share_365d": rng.random(n) * 0.5,
        "event_complaint_90d": (rng.random(n) < 0.1).astype(float),
        "orders_prev_90d": rng.integers(0, 12, n).astype(float),
        "frequency_trend_90d": rng.random(n) * 2,
        "reason_1": "No order for 40 days", "reason_2": None, "reason_3": None,
    })


CONFIG = WinbackConfig(holdout_share=0.1, min_p_churn=0.5, capacity={"callback": 10, "exclusive_discount": 20,
                                                                      "trial": 15})


def test_suppressed_customers_never_appear():
    scores = _scores()
    suppressed = set(scores["customer_id"].iloc[::3])
    assigned = assign(scores, suppressed, CONFIG)
    assert not set(assigned["customer_id"]) & suppressed
    assert len(assigned) > 0


def test_capacity_and_minimum_risk_are_respected_and_lists_follow_value_at_stake():
    assigned = assign(_scores(), set(), CONFIG)
    treated = assigned[assigned["arm"] == "treated"]
    for action, cap in CONFIG.capacity.items():
        rows = treated[treated["action"] == action]
        assert len(rows) == cap  # plenty of candidates: each list fills to capacity exactly
        assert rows["value_at_stake"].is_monotonic_decreasing
        assert rows["rank"].tolist() == list(range(1, cap + 1))
    assert (assigned["p_churn"] >= CONFIG.min_p_churn).all()
    assert assigned["customer_id"].is_unique  # at most one action per customer


def test_holdout_is_stable_about_the_right_size_and_changes_with_the_campaign():
    ids = pd.Series([f"c{i}" for i in range(20000)])
    first = holdout(ids, "winback", 0.1)
    assert first.equals(holdout(ids.sample(frac=1, random_state=1).sort_index(), "winback", 0.1))
    assert abs(first.mean() - 0.1) < 0.01
    assert (first != holdout(ids, "spring-campaign", 0.1)).any()


def test_service_trouble_and_high_value_get_a_callback():
    scores = _scores()
    action = suggest_action(scores)
    loyal_drop = ((scores["value_tier"] == "mid") & (scores["orders_prev_90d"] >= 6)
                  & (scores["frequency_trend_90d"] <= 0.5))
    trouble = (scores["event_complaint_90d"] > 0) | (scores["value_tier"] == "high") | loyal_drop
    assert (action[trouble] == "callback").all()
    assert set(action[~trouble]) == {"exclusive_discount", "trial"}


def test_lists_hold_treated_only_and_neutralise_formulas():
    scores = _scores()
    scores.loc[:, "reason_1"] = "=HYPERLINK(\"x\")"
    assigned = assign(scores, set(), CONFIG)
    lists = service_lists(assigned, pd.Timestamp("2024-05-01"))
    held_out = set(assigned.loc[assigned["arm"] == "holdout", "customer_id"])
    for frame in lists.values():
        assert not set(frame["customer_id"]) & held_out
        assert frame["reason_1"].str.startswith("'=").all()
        assert (frame["due_date"] == "2024-05-08").all()
