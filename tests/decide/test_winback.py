import dataclasses

import numpy as np
import pandas as pd
import pytest

import datetime as dt

from churn.config import ACTIONS, WinbackConfig
from churn.decide.winback import (LIST_COLUMNS, OFFERS, OUTCOME_COLUMNS, TALKING_POINTS, assign, candidates, drivers,
                                  funnel, holdout, offer_value, service_lists, talking_points, topic)


def _scores(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    value = rng.gamma(2, 50, n)
    return pd.DataFrame({
        "customer_id": [f"c{i:04d}" for i in range(n)],
        "p_churn": rng.random(n),
        "value": value,
        "value_tier": pd.qcut(value, [0, 0.4, 0.8, 1], labels=["low", "mid", "high"]).astype(str),
        "lifecycle_stage": "active",
        "risk_band": "high",
        "avg_order_value_365d": rng.gamma(2, 15, n),
        "discount_share_365d": rng.random(n) * 0.5,
        "event_complaint_90d": (rng.random(n) < 0.1).astype(float),
        "categories_90d": rng.integers(0, 10, n).astype(float),
        "categories_prev_90d": rng.integers(0, 10, n).astype(float),
        "reason_code_1": "recency", "reason_1": "No order for 40 days", "reason_2": None, "reason_3": None,
    })


CONFIG = WinbackConfig(holdout_share=0.1, min_p_churn=0.5, capacity={"callback": 10, "exclusive_discount": 20,
                                                                      "trial": 15})


def _customer(cid: str, **values) -> dict:
    row = {"customer_id": cid, "p_churn": 0.8, "value": 100.0, "value_tier": "mid", "lifecycle_stage": "active",
           "risk_band": "high", "avg_order_value_365d": 30.0, "discount_share_365d": 0.0,
           "event_complaint_90d": 0.0, "categories_90d": 1.0, "categories_prev_90d": 1.0}
    return {**row, **values}


def test_suppressed_customers_never_appear():
    scores = _scores()
    suppressed = set(scores["customer_id"].iloc[::3])
    assigned = assign(scores, suppressed, CONFIG)
    assert not set(assigned["customer_id"]) & suppressed
    assert len(assigned) > 0
    # Not even when they are the most valuable customers with the best EV there is.
    scores.loc[scores["customer_id"].isin(suppressed), ["p_churn", "value"]] = [0.99, 1e6]
    assert not set(assign(scores, suppressed, CONFIG)["customer_id"]) & suppressed


def test_capacity_holds_lists_follow_ev_and_each_customer_gets_one_action():
    assigned = assign(_scores(), set(), CONFIG)
    treated = assigned[assigned["arm"] == "treated"]
    for action, cap in CONFIG.capacity.items():
        rows = treated[treated["action"] == action]
        assert len(rows) == cap  # plenty of candidates: each list fills to capacity exactly
        assert rows["expected_value"].is_monotonic_decreasing
        assert rows["rank"].tolist() == list(range(1, cap + 1))
    assert (assigned["p_churn"] >= CONFIG.min_p_churn).all() and (assigned["expected_value"] > 0).all()
    assert assigned["customer_id"].is_unique  # at most one action per customer


def test_ev_is_p_churn_times_uplift_times_value_minus_cost():
    scores = pd.DataFrame([_customer("a", p_churn=0.6, value=200.0, avg_order_value_365d=40.0)])
    pairs = candidates(scores, set(), WinbackConfig()).set_index("action")
    # callback: no driver -> segment none (0.10); cost 12
    assert pairs.loc["callback", "segment"] == "none"
    assert pairs.loc["callback", "expected_value"] == pytest.approx(0.6 * 0.10 * 200 - 12.0)
    # discount: coupon 20% of a 40 basket, redeemed 35% of the time
    assert pairs.loc["exclusive_discount", "cost"] == pytest.approx(0.2 * 40 * 0.35)
    assert pairs.loc["exclusive_discount", "expected_value"] == pytest.approx(0.6 * 0.06 * 200 - 2.8)


def test_each_customer_gets_the_action_their_driver_answers():
    scores = pd.DataFrame([_customer("svc", event_complaint_90d=2.0), _customer("cheap", discount_share_365d=0.4),
                           _customer("wide", categories_90d=9.0)] + [_customer(f"x{i}") for i in range(7)])
    config = dataclasses.replace(WinbackConfig(), holdout_share=0.0)
    got = assign(scores, set(), config).set_index("customer_id")
    assert got.loc["svc", "action"] == "callback" and got.loc["svc", "segment"] == "service"
    assert got.loc["cheap", "action"] == "exclusive_discount" and got.loc["cheap", "segment"] == "price"
    assert got.loc["wide", "action"] == "trial" and got.loc["wide", "segment"] == "variety"


def test_drivers_read_quantiles_of_the_scored_customers():
    scores = _scores()
    drv = drivers(scores, CONFIG)
    assert drv["price"].mean() == pytest.approx(0.3, abs=0.01)
    assert (drv["service"] == (scores["event_complaint_90d"] > 0)).all()
    nobody_discounts = scores.assign(discount_share_365d=0.0)
    assert not drivers(nobody_discounts, CONFIG)["price"].any()


def test_eligibility_rules_and_a_full_list_spill_to_the_next_best_action():
    scores = pd.DataFrame([_customer("lapsed", lifecycle_stage="lapsed", event_complaint_90d=1.0),
                           _customer("low", value_tier="low", event_complaint_90d=1.0),
                           _customer("calm", p_churn=0.3, event_complaint_90d=1.0)])
    got = assign(scores, set(), dataclasses.replace(WinbackConfig(), holdout_share=0.0))
    assert "callback" not in set(got["action"])  # lapsed and low value may not get a call
    assert "calm" not in set(got["customer_id"])  # below the risk floor
    only_callers = dataclasses.replace(WinbackConfig(), holdout_share=0.0,
                                       exclusive_discount=dataclasses.replace(WinbackConfig().exclusive_discount,
                                                                              drivers=("price",)))
    assert "exclusive_discount" not in set(assign(scores, set(), only_callers)["action"])
    two = pd.DataFrame([_customer("a", value=500.0, event_complaint_90d=1.0),
                        _customer("b", value=400.0, event_complaint_90d=1.0)])
    one_call = dataclasses.replace(WinbackConfig(), holdout_share=0.0,
                                   capacity={"callback": 1, "exclusive_discount": 5, "trial": 5})
    got = assign(two, set(), one_call).set_index("customer_id")["action"]
    assert got.to_dict() == {"a": "callback", "b": "exclusive_discount"}


def test_cooldown_keeps_recently_listed_customers_out():
    scores = _scores()
    run_date = pd.Timestamp("2024-05-01")
    first = assign(scores, set(), CONFIG, run_date)
    recent = pd.Series(run_date - pd.Timedelta(days=10), index=first["customer_id"])
    again = assign(scores, set(), CONFIG, run_date, last_listed=recent)
    assert not set(again["customer_id"]) & set(first["customer_id"])
    long_ago = pd.Series(run_date - pd.Timedelta(days=90), index=first["customer_id"])
    assert assign(scores, set(), CONFIG, run_date, last_listed=long_ago).equals(first)


def test_holdout_is_stable_about_the_right_size_and_changes_with_the_campaign():
    ids = pd.Series([f"c{i}" for i in range(20000)])
    first = holdout(ids, "winback", 0.1)
    assert first.equals(holdout(ids.sample(frac=1, random_state=1).sort_index(), "winback", 0.1))
    assert abs(first.mean() - 0.1) < 0.01
    assert (first != holdout(ids, "spring-campaign", 0.1)).any()


def test_holdout_mirrors_the_lists_without_taking_their_places_and_is_stable_across_reruns():
    scores = _scores(2000, seed=1)
    assigned = assign(scores, set(), CONFIG)
    held = assigned[assigned["arm"] == "holdout"]
    assert len(held) > 0
    assert held["customer_id"].pipe(holdout, CONFIG.campaign, CONFIG.holdout_share).all()
    assert (assigned.groupby("action")["arm"].apply(lambda a: (a == "treated").sum()) ==
            pd.Series(CONFIG.capacity)).all()
    shuffled = scores.sample(frac=1, random_state=3)
    again = assign(shuffled, set(), CONFIG)
    pd.testing.assert_frame_equal(again[["customer_id", "action", "arm", "rank"]],
                                  assigned[["customer_id", "action", "arm", "rank"]])


def test_lists_hold_treated_only_true_values_and_carry_list_and_due_dates():
    scores = _scores()
    scores.loc[:, "reason_1"] = "=HYPERLINK(\"x\")"
    scores.loc[:2, "customer_id"] = ["-c1", "+c2", "007"]
    scores.loc[:2, ["p_churn", "value"]] = [0.99, 5000.0]
    assigned = assign(scores, set(), CONFIG)
    lists = service_lists(assigned, pd.Timestamp("2024-05-01"), CONFIG)
    held_out = set(assigned.loc[assigned["arm"] == "holdout", "customer_id"])
    assert set(lists) == set(ACTIONS)
    every = pd.concat(lists.values())
    # True values: the formula guard is the CSV writer's job (churn.publish.files), never the list's.
    assert {"-c1", "+c2", "007"} - held_out <= set(every["customer_id"])
    for action, frame in lists.items():
        assert list(frame.columns) == LIST_COLUMNS
        assert not set(frame["customer_id"]) & held_out
        assert (frame["reason_1"] == "=HYPERLINK(\"x\")").all()
        assert frame["rank"].tolist() == list(range(1, len(frame) + 1))
        due = (pd.Timestamp("2024-05-01") + pd.Timedelta(days=CONFIG.action(action).due_days)).date()
        assert (frame["due_date"] == due).all() and (frame["list_date"] == dt.date(2024, 5, 1)).all()
        assert frame["talking_points"].str.count(r"\d\) ").between(2, 3).all()
        assert frame[OUTCOME_COLUMNS].isna().all().all()  # for the team to fill in


def test_talking_points_follow_the_driver_that_chose_the_action_else_the_top_reason():
    assert "Apologise" in talking_points("callback", "event_complaint", "none")
    assert "Apologise" in talking_points("callback", None, "service")  # the driver that chose the call decides
    assert "Apologise" in talking_points("callback", "recency", "service")
    assert "not ordered for a while" in talking_points("callback", "recency", "none")
    assert "category they used to enjoy" in talking_points("trial", "breadth", "none")
    assert "something new" in talking_points("trial", "recency", "variety")
    assert talking_points("exclusive_discount", "unheard_of", "none").startswith("1) Tell them we miss them")
    assert "valid 21 days" in talking_points("exclusive_discount", "recency", "price", valid_days=21)


def test_offers_tell_the_same_story_as_the_talking_points_and_the_reasons():
    # Every action has an offer and talking points for the same topics ...
    for action in ACTIONS:
        assert set(OFFERS[action]) == set(TALKING_POINTS[action])
    # ... and the two contradictions are gone: a lapsing customer's call is not about
    # fixing what went wrong, and a trial's offer and talking point name the same kind of category.
    assert "fix what went wrong" not in OFFERS["callback"][topic("callback", "frequency", "none")]
    assert "fix what went wrong" in OFFERS["callback"][topic("callback", "recency", "service")]
    breadth = topic("trial", "breadth", "none")
    assert "used to buy" in OFFERS["trial"][breadth] and "used to enjoy" in TALKING_POINTS["trial"][breadth][0]
    variety = topic("trial", "recency", "variety")
    assert "new product" in OFFERS["trial"][variety] and "something new" in TALKING_POINTS["trial"][variety][0]
    for action in ACTIONS:  # no offer says "not tried" while its talking point says "used to"
        for t in OFFERS[action]:
            points = " ".join(TALKING_POINTS[action][t])
            assert not ("not tried" in OFFERS[action][t] and "used to" in points)


def test_lists_say_why_the_action_was_chosen_and_the_coupon_in_the_currency():
    scores = pd.DataFrame([_customer("a", event_complaint_90d=2.0, value_tier="high", value=900.0),
                           _customer("b", avg_order_value_365d=2.6, value_tier="low")])
    lists = service_lists(assign(scores, set(), dataclasses.replace(CONFIG, holdout_share=0.0)),
                          "2024-05-01", CONFIG, currency="EUR")
    call = lists["callback"].iloc[0]
    assert call["customer_id"] == "a" and call["chosen_because"].startswith("Service trouble")
    assert "fix what went wrong" in call["suggested_offer"] and "Apologise" in call["talking_points"]
    coupon = lists["exclusive_discount"].iloc[0]
    # 20% of a 2.60 basket is 0.52: the coupon is the minimum, 5 EUR, valid 14 days.
    assert coupon["suggested_offer"] == "A personal comeback coupon worth 5 EUR on the next order, valid 14 days"


def test_coupons_have_a_minimum_face_value_and_are_rounded_up():
    policy = WinbackConfig().exclusive_discount
    assert policy.min_offer_value == 5.0 and policy.offer_step == 1.0
    got = offer_value(np.array([2.6, 30.0, 36.5, 100.0]), policy)
    assert got.tolist() == [5.0, 6.0, 8.0, 20.0]  # 0.52 -> 5 (minimum), 6.0 stays 6, 7.3 -> 8, 20
    unrounded = dataclasses.replace(policy, min_offer_value=0.0, offer_step=0.0)
    assert offer_value(np.array([2.6]), unrounded).tolist() == pytest.approx([0.52])
    assert offer_value(np.array([50.0]), WinbackConfig().callback).tolist() == [0.0]  # not priced on the basket


def test_the_funnel_explains_a_short_list_and_a_full_one():
    # The case: capacity 25 callbacks, 3 listed. Here: 10 callback-eligible customers,
    # 4 of them above the risk floor, one suppressed, one in cooldown; 2 worth a call.
    rows = [_customer(f"h{i}", value_tier="high", p_churn=0.9 if i < 4 else 0.1, value=2000.0 if i < 2 else 20.0)
            for i in range(10)] + [_customer(f"l{i}", value_tier="low") for i in range(5)]
    scores = pd.DataFrame(rows)
    config = dataclasses.replace(CONFIG, holdout_share=0.0, capacity={"callback": 25, "exclusive_discount": 1,
                                                                      "trial": 20})
    last = pd.Series([pd.Timestamp("2024-04-20")], index=["h3"])
    taken = assign(scores, {"h2"}, config, "2024-05-01", last)
    got = funnel(scores, {"h2"}, config, taken, "2024-05-01", last)
    call = got["callback"]
    assert {k: call[k] for k in ("scored", "eligible", "above_risk_floor", "suppressed", "in_cooldown",
                                 "ev_positive", "listed", "held_out", "capacity")} == {
        "scored": 15, "eligible": 10, "above_risk_floor": 4, "suppressed": 1, "in_cooldown": 1, "ev_positive": 2,
        "listed": 2, "held_out": 0, "capacity": 25}
    assert call["blocked"].startswith("2 of 25: only 4 of the 10 eligible are above the risk floor")
    assert got["exclusive_discount"]["blocked"] == "full: 1 listed, the daily capacity"


def test_the_shortlist_changes_nothing_against_walking_every_pair():
    from churn.decide import winback

    scores = _scores(5000, seed=4)
    config = dataclasses.replace(CONFIG, capacity={"callback": 3, "exclusive_discount": 5, "trial": 4})
    pairs = candidates(scores, set(), config, positive_only=True)
    full = winback._fill(pairs, pairs["expected_value"].to_numpy(), scores, config)
    got = assign(scores, set(), config)
    assert len(pairs) > 10 * len(got)  # the shortlist did cut
    assert got["customer_id"].tolist() == full["row"].map(scores["customer_id"]).tolist()
    assert got["arm"].tolist() == full["arm"].tolist()


# --- exploration: a share of each list drawn at random, for the uplift learned per customer -----

EXPLORING = dataclasses.replace(CONFIG, exploration_share=0.2)  # 2, 4 and 3 places of 10, 20, 15


def test_exploration_fills_its_share_of_each_list_at_random_and_the_ev_ranking_fills_the_rest():
    scores = _scores(2000, seed=2)
    taken = assign(scores, set(), EXPLORING, "2024-05-01")
    treated = taken[taken["arm"] == "treated"]
    slots = {"callback": 2, "exclusive_discount": 4, "trial": 3}
    for action, cap in EXPLORING.capacity.items():
        mine = treated[treated["action"] == action]
        assert len(mine) == cap  # exploration takes places of the capacity, not more
        assert int(mine["explored"].sum()) == slots[action]
        assert mine["rank"].tolist() == list(range(1, cap + 1))
        assert mine["expected_value"].is_monotonic_decreasing  # one list in EV order: nothing to learn for agents
    # The explored are drawn whatever their EV: some have an EV the ranking would never take.
    explored = taken[taken["explored"]]
    assert (explored["expected_value"] <= 0).any()
    assert (taken.loc[~taken["explored"], "expected_value"] > 0).all()
    assert taken["customer_id"].is_unique
    # Without a run date (the baselines of the benchmark) or with a share of 0, nobody is explored.
    assert not assign(scores, set(), EXPLORING)["explored"].any()
    assert not assign(scores, set(), dataclasses.replace(EXPLORING, exploration_share=0.0), "2024-05-01")[
        "explored"].any()


def test_exploration_is_reproducible_from_the_run_date_and_changes_with_it():
    scores = _scores(2000, seed=2)
    first = assign(scores, set(), EXPLORING, "2024-05-01")
    again = assign(scores.sample(frac=1, random_state=4), set(), EXPLORING, pd.Timestamp("2024-05-01 00:00"))
    pd.testing.assert_frame_equal(again, first)  # a rerun (in any row order) changes nothing
    other_day = assign(scores, set(), EXPLORING, "2024-05-08")
    assert set(other_day.loc[other_day["explored"], "customer_id"]) != set(first.loc[first["explored"], "customer_id"])
    other_campaign = assign(scores, set(), dataclasses.replace(EXPLORING, campaign="spring"), "2024-05-01")
    assert set(other_campaign.loc[other_campaign["explored"], "customer_id"]) != set(
        first.loc[first["explored"], "customer_id"])


def test_exploration_respects_opt_outs_cooldowns_and_eligibility():
    scores = _scores(600, seed=5)
    day = pd.Timestamp("2024-05-01")
    suppressed = set(scores["customer_id"].iloc[::2])
    recent = pd.Series(day - pd.Timedelta(days=5), index=scores["customer_id"].iloc[1::4])
    taken = assign(scores, suppressed, EXPLORING, day, last_listed=recent)
    assert taken["explored"].any()
    assert not set(taken["customer_id"]) & suppressed
    assert not set(taken["customer_id"]) & set(recent.index)
    assert (taken["p_churn"] >= EXPLORING.min_p_churn).all()
    callback = taken[taken["action"] == "callback"]
    assert set(callback["value_tier"]) <= set(EXPLORING.callback.value_tiers)
    # Fewer candidates than places: everyone left is drawn, and nothing more.
    few = scores.assign(p_churn=np.where(np.arange(len(scores)) < 12, 0.9, 0.1))
    small = assign(few, set(), EXPLORING, day)
    assert len(small) <= 12 and (small["p_churn"] == 0.9).all()


def test_explored_customers_carry_their_chance_of_being_drawn():
    scores = _scores(2000, seed=2)
    day = "2024-05-01"
    taken = assign(scores, set(), EXPLORING, day)
    pool = candidates(scores, set(), EXPLORING, day)["action"].value_counts()
    for action in ACTIONS:
        mine = taken[(taken["action"] == action) & taken["explored"]]
        assert np.allclose(mine["selection_probability"], len(mine) / pool[action])  # both arms drawn / candidates
    assert (taken.loc[~taken["explored"], "selection_probability"] == 1.0).all()


def test_exploration_leaves_the_holdout_a_stable_random_holdout():
    scores = _scores(20000, seed=6)
    config = dataclasses.replace(EXPLORING, capacity={"callback": 300, "exclusive_discount": 600, "trial": 500})
    taken = assign(scores, set(), config, "2024-05-01")
    # The arm is the holdout hash of campaign and customer, for explored and ranked customers alike.
    assert taken["arm"].eq(np.where(holdout(taken["customer_id"], config.campaign, config.holdout_share),
                                    "holdout", "treated")).all()
    for explored in (True, False):
        share = (taken.loc[taken["explored"] == explored, "arm"] == "holdout").mean()
        assert abs(share - config.holdout_share) < 0.05
    # The held-out explored do not take places: the treated still fill each capacity.
    assert (taken[taken["arm"] == "treated"].groupby("action").size() == pd.Series(config.capacity)).all()


def test_the_funnel_and_the_lists_show_the_explored_customers_as_customers_to_call():
    scores = _scores(2000, seed=2)
    day = "2024-05-01"
    taken = assign(scores, set(), EXPLORING, day)
    counts = funnel(scores, set(), EXPLORING, taken, day)
    assert {a: counts[a]["explored"] for a in ACTIONS} == {"callback": 2, "exclusive_discount": 4, "trial": 3}
    lists = service_lists(taken, day, EXPLORING)
    assert list(lists["trial"].columns) == LIST_COLUMNS  # no new column for the team
    treated = taken[taken["arm"] == "treated"]
    for action, frame in lists.items():
        mine = treated[treated["action"] == action].reset_index(drop=True)
        because = frame["chosen_because"][mine["explored"] & (mine["segment"] == "none")]
        assert because.str.contains("try this action with").all()
        assert frame["suggested_offer"].notna().all()


def test_exploration_with_no_candidates_lists_nobody():
    scores = _scores(50, seed=7).assign(p_churn=0.1)  # everyone below the risk floor
    taken = assign(scores, set(), EXPLORING, "2024-05-01")
    assert taken.empty and "explored" in taken


def test_exploration_draws_are_the_sha256_words_of_campaign_date_and_id():
    """The draw is defined by SHA-256 (the same on every machine and version), word k for action k."""
    import hashlib

    from churn.decide.winback import exploration_draws

    ids = pd.Series(["1", "c-007", "é42", "1"], index=[5, 6, 7, 8], dtype=object)
    draws = exploration_draws(ids, "spring", "2024-03-01")
    assert list(draws.index) == [5, 6, 7, 8] and list(draws.columns) == list(ACTIONS)
    for i, cid in zip(ids.index, ids):
        digest = hashlib.sha256(f"spring:explore:2024-03-01:{cid}".encode()).digest()
        assert list(draws.loc[i]) == [int.from_bytes(digest[8 * k:8 * k + 8], "big") / 2**64 for k in range(len(ACTIONS))]
    assert exploration_draws(pd.Series([], dtype=object), "spring", "2024-03-01").shape == (0, len(ACTIONS))


def test_an_explored_customer_with_a_driver_is_told_apart_from_one_chosen_for_expected_value():
    """Trial, stop 21: explored rows can show a negative expected gain; with a driver, nothing said why."""
    from churn.decide.winback import _chosen_because

    chosen = _chosen_because("price", 0.38)
    explored = _chosen_because("price", 0.38, explored=True)
    assert explored.startswith(chosen) and "try this action" in explored and "try this action" not in chosen
    assert "try this action" in _chosen_because("none", 0.1, explored=True)
