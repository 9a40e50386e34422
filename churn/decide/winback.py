"""Win-back lists: who to contact, with which action, within each team's daily capacity.

The policy ranks by expected value. For each customer i and action a,

    EV(i, a) = p_churn(i) x uplift(a, segment) x value(i) - cost(i, a)

where the segment is the customer's risk driver (service, price, variety, read from the
features) with the largest uplift for that action, or "none". Uplifts are configured priors
until `churn outcomes` has measured them. A customer is a candidate for an action when its
eligibility rules hold (risk floor, stage, value tier, drivers), they are not suppressed and
not in the action's cooldown. Candidate pairs with EV > 0 are taken in EV order: each customer
gets at most one action, and each action takes customers until its daily capacity is full.

A stable share of the customers taken (a hash of campaign and customer id) is held out: recorded
with arm = holdout, never sent to the team, and not counted against capacity, so that the
holdout mirrors the lists and the win-back rate can be measured against it.

Exploration: `exploration_share` of each action's capacity goes first to the action's candidates
drawn at random (a hash of campaign, run date, action and customer id: a rerun of the same date
draws the same customers), whatever their EV, so that the uplift learned per customer
(`churn.decide.uplift`) also sees how customers the EV ranking would not pick respond. They pass
every rule (eligibility, suppressions, cooldown), one action per customer, and the holdout
applies to them as to everyone. Each assignment records `explored` and its `selection_probability`
(for an explored customer the share of the action's candidates drawn that day, else 1), so
analysts can tell them apart and the learner can weight them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from churn.config import ACTIONS, DRIVERS, SEGMENTS, WinbackConfig
from churn.data import database
from churn.data.hashing import stable_share
from churn.model.explain import theme
from churn.types import RunDate, cooldown_start, due_date

__all__ = ["ASSIGNMENT_COLUMNS", "LIST_COLUMNS", "OUTCOME_COLUMNS", "OUTCOMES", "assign", "candidates",
           "driver_cuts", "drivers", "eligibility", "exploration_draws", "exploration_slots", "funnel", "holdout",
           "in_cooldown", "listed_dates", "offer_value", "prior_uplift", "service_lists", "shortlisted",
           "talking_points", "topic"]

Uplift = Mapping[str, Mapping[str, float]]  # action -> segment -> share of would-be churners won back

ASSIGNMENT_COLUMNS = ["customer_id", "action", "arm", "rank", "segment", "uplift", "cost", "expected_value",
                      "offer_value", "explored", "selection_probability"]
# What agents fill in, with the choices the workbook's drop-downs offer (`churn contacts import` reads them).
OUTCOME_COLUMNS = ["called", "reached", "outcome", "offer_accepted", "notes"]
YES_NO = ("yes", "no")
OUTCOMES = ("accepted", "declined", "call back later", "wrong number", "do not contact again")
LIST_COLUMNS = ["rank", "customer_id", "lifecycle_stage", "value_tier", "p_churn_pct", "value",
                "expected_value", "reason_1", "reason_2", "reason_3", "chosen_because", "suggested_offer",
                "talking_points", "list_date", "due_date", *OUTCOME_COLUMNS]

# Offers and talking points by action and topic. The topic is the driver that chose the action
# (service, price, variety) or, for a customer without one, their strongest warning sign (lapse:
# buying less often; breadth: buying from fewer categories), so that the offer, the talking
# points and the reasons on the same row tell one story. {offer} is the coupon's value with its
# currency, {valid_days} how long it holds.
OFFERS: dict[str, dict[str, str]] = {
    "callback": {
        "service": "A personal call: apologise, fix what went wrong, offer help",
        "price": "A personal call: tell them about the offers on what they usually buy",
        "variety": "A personal call: tell them what is new in the categories they like",
        "breadth": "A personal call: help them find what they no longer buy from us",
        "lapse": "A personal call: check in, ask what changed, help with the next order",
        "default": "A personal call: thank them and ask how their orders went",
    },
    "exclusive_discount": {
        "service": "A personal comeback coupon worth {offer} to make up for the trouble, valid {valid_days} days",
        "price": "A personal comeback coupon worth {offer} on the next order, valid {valid_days} days",
        "variety": "A personal coupon worth {offer} to try something new, valid {valid_days} days",
        "breadth": "A personal coupon worth {offer} in a category they used to buy, valid {valid_days} days",
        "lapse": "A personal comeback coupon worth {offer} on the next order, valid {valid_days} days",
        "default": "A personal comeback coupon worth {offer} on the next order, valid {valid_days} days",
    },
    "trial": {
        "service": "A free sample as a thank-you for their patience after the recent trouble",
        "price": "A free sample: something new to try at no cost",
        "variety": "A free sample of a new product in a category they like",
        "breadth": "A free sample from a category they used to buy but have not lately",
        "lapse": "A free sample of a new product in a category they used to buy often",
        "default": "A free sample of a new product in a category they like",
    },
}
TALKING_POINTS: dict[str, dict[str, tuple[str, ...]]] = {
    "callback": {
        "service": ("Apologise for the trouble with their recent orders",
                    "Ask what went wrong and listen to the whole story",
                    "Offer a fix: a refund, a replacement, or a named contact for next time"),
        "price": ("Thank them for shopping with us",
                  "Ask whether prices or offers have kept them away",
                  "Tell them about the offers on products they buy often"),
        "variety": ("Thank them for shopping with us",
                    "Tell them what is new in the categories they buy from",
                    "Ask what they would like to see us sell"),
        "breadth": ("Say we noticed they buy from fewer of our categories than before",
                    "Ask whether they found what they were looking for lately",
                    "Mention new products in the categories they used to buy"),
        "lapse": ("Say we noticed they have not ordered for a while and wanted to check in",
                  "Ask whether anything changed in how they shop with us",
                  "Offer help with their next order"),
        "default": ("Thank them for being a customer",
                    "Ask how their recent orders went",
                    "Fix or escalate anything that went wrong"),
    },
    "exclusive_discount": {
        "service": ("Apologise for the recent trouble; the coupon thanks them for their patience",
                    "Make sure the problem is solved before mentioning the coupon"),
        "price": ("The coupon is personal and valid {valid_days} days",
                  "Point to products they bought before that are on offer now"),
        "variety": ("The coupon is personal and valid {valid_days} days",
                    "Suggest something new in a category they like"),
        "breadth": ("Mention a category they used to buy from us",
                    "The coupon is personal and valid {valid_days} days"),
        "lapse": ("Tell them we miss them",
                  "The coupon is personal and valid {valid_days} days",
                  "Point to products they bought before"),
        "default": ("Tell them we miss them",
                    "The coupon is personal and valid {valid_days} days",
                    "Point to products they bought before"),
    },
    "trial": {
        "service": ("Apologise for the recent trouble; the sample is a small thank-you",
                    "The sample is free, no order needed"),
        "price": ("The sample is free, no order needed",
                  "Mention the offers on products they buy often"),
        "variety": ("Suggest something new in a category they like",
                    "The sample is free, no order needed",
                    "Ask them to tell us what they think of it"),
        "breadth": ("Suggest a product from a category they used to enjoy",
                    "The sample is free, no order needed",
                    "Ask them to tell us what they think of it"),
        "lapse": ("Say we noticed they have not ordered for a while",
                  "Suggest something new in a category they used to buy often; the sample is free",
                  "Ask them to tell us what they think of it"),
        "default": ("Suggest something new in a category they like",
                    "The sample is free, no order needed",
                    "Ask them to tell us what they think of it"),
    },
}
# Why a customer got the action, by segment (the driver with the largest uplift for it).
CHOSEN_BECAUSE = {
    "service": "Service trouble: a complaint, ticket or return request in the last 90 days, or many returns",
    "price": "Price-sensitive: buys on discount more than most customers",
    "variety": "Variety seeker: buys from more categories than most customers",
    "none": "No specific driver: the action with the best expected value for them",
    "explored": "No specific driver: one of the customers we try this action with, to learn whom it helps",
}
EXPLORED_TOO = "also one of the customers we try this action with, to learn whom it helps"
# Reason families (churn.model.explain) and segments mapped to a topic.
_TOPIC_OF = {"event_complaint": "service", "event_support_ticket": "service", "event_return_request": "service",
             "returns": "service", "service": "service", "discount": "price", "price": "price",
             "variety": "variety", "breadth": "breadth", "recency": "lapse", "frequency": "lapse",
             "spend": "lapse", "visits": "lapse", "activity": "lapse", "drift": "lapse"}


# --- drivers and candidates ----------------------------------------------------------------


def _column(scores: pd.DataFrame, name: str) -> np.ndarray:
    """A numeric feature as floats (NaN when the data set lacks it)."""
    if name not in scores:
        return np.full(len(scores), np.nan)
    return scores[name].to_numpy(dtype="float64", na_value=np.nan)


def driver_cuts(scores: pd.DataFrame, config: WinbackConfig) -> dict[str, float]:
    """The thresholds of the relative drivers among the scored customers (NaN when nobody has a value).

    price: the `price_quantile` of the discount share; variety: the `variety_quantile` of the
    categories bought (last 90 days or the 90 before). The Dask engine computes the same
    quantiles over all partitions and passes them to `drivers`.
    """
    breadth = np.fmax(_column(scores, "categories_90d"), _column(scores, "categories_prev_90d"))
    return {"price": _quantile(_column(scores, "discount_share_365d"), config.price_quantile),
            "variety": _quantile(breadth, config.variety_quantile)}


def drivers(scores: pd.DataFrame, config: WinbackConfig, cuts: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Which risk drivers each customer's features show: service, price, variety (booleans).

    service: an event of a `service_events` type (complaint, support ticket, return request) in the
    last 90 days, or many returns;
    price: a discount share above the configured quantile of the scored customers;
    variety: many categories bought (last 90 days or the 90 before), by quantile likewise.
    Quantiles are relative so that a grocery and a fashion shop are read on their own scale;
    `cuts` gives them (see `driver_cuts`, the default: the quantiles of `scores`).
    """
    cuts = driver_cuts(scores, config) if cuts is None else cuts
    service = np.zeros(len(scores), dtype=bool)
    for col in (f"event_{event}_90d" for event in config.service_events):
        service |= np.nan_to_num(_column(scores, col)) > 0
    service |= np.nan_to_num(_column(scores, "returns_share_365d")) >= config.service_returns_share
    price = _above(_column(scores, "discount_share_365d"), cuts["price"])
    breadth = np.fmax(_column(scores, "categories_90d"), _column(scores, "categories_prev_90d"))
    variety = _above(breadth, cuts["variety"])
    return pd.DataFrame({"service": service, "price": price, "variety": variety}, index=scores.index)


def _quantile(values: np.ndarray, q: float) -> float:
    known = values[~np.isnan(values)]
    return float(np.quantile(known, q)) if len(known) else float("nan")


def _above(values: np.ndarray, threshold: float) -> np.ndarray:
    if np.isnan(threshold):  # nobody has a value: nobody shows the driver
        return np.zeros(len(values), dtype=bool)
    # Strictly above, and above zero: "nobody uses discounts" must not make everyone price-driven.
    return np.nan_to_num(values, nan=-np.inf) > max(threshold, 0.0)


def prior_uplift(config: WinbackConfig) -> dict[str, dict[str, float]]:
    """The configured uplift priors: action -> segment -> uplift."""
    return {action: dict(config.action(action).uplift) for action in ACTIONS}


def eligibility(scores: pd.DataFrame, suppressed: set[str], config: WinbackConfig,
                run_date: pd.Timestamp | str | None = None, last_listed: pd.Series | None = None,
                cuts: Mapping[str, float] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per action, one boolean per customer for each rule a candidate must pass.

    eligible: the action's stages, value tiers and drivers; above_risk_floor: p_churn at least
    winback.min_p_churn and the action's own floor; not_suppressed; not_in_cooldown: not listed or
    contacted within the action's cooldown (`last_listed`). A candidate passes all four.
    """
    p = scores["p_churn"].to_numpy(dtype="float64")
    free = ~scores["customer_id"].isin(suppressed).to_numpy()
    last = listed_dates(scores["customer_id"], last_listed)
    drv = drivers(scores, config, cuts)
    rules = {}
    for action in ACTIONS:
        policy = config.action(action)
        eligible = (scores["lifecycle_stage"].isin(policy.stages).to_numpy()
                    & scores["value_tier"].isin(policy.value_tiers).to_numpy())
        if policy.drivers:
            eligible &= drv[list(policy.drivers)].to_numpy().any(axis=1)
        rules[action] = {"eligible": eligible,
                         "above_risk_floor": (p >= config.min_p_churn) & (p >= policy.min_p_churn),
                         "not_suppressed": free,
                         "not_in_cooldown": ~in_cooldown(last, run_date, policy.cooldown_days)}
    return rules


def offer_value(basket: np.ndarray, policy) -> np.ndarray:
    """The face value of an offer priced on the customer's average basket (0 for other actions).

    basket_share_cost x basket, at least `min_offer_value`, rounded up to a multiple of `offer_step`
    (a coupon of 0.52 helps nobody and looks odd).
    """
    if policy.basket_share_cost <= 0:
        return np.zeros(len(basket))
    value = np.maximum(policy.basket_share_cost * basket, policy.min_offer_value)
    if policy.offer_step > 0:
        # Round up, but not past a value that is already a multiple (floating-point noise aside).
        value = np.ceil(np.round(value / policy.offer_step, 9)) * policy.offer_step
    return value


def candidates(scores: pd.DataFrame, suppressed: set[str], config: WinbackConfig,
               run_date: pd.Timestamp | str | None = None, last_listed: pd.Series | None = None,
               uplift: Uplift | None = None, positive_only: bool = False,
               customer_uplift: pd.DataFrame | None = None, cuts: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Every eligible (customer, action) pair with its segment, uplift, cost and EV.

    `row` is the customer's position in `scores`. A pair passes every rule of `eligibility`:
    suppressed customers are never candidates, whatever else holds. `positive_only` keeps the
    pairs with EV > 0 only. `customer_uplift` (one row per row of `scores`, one column per action:
    `churn.decide.uplift.UpliftModel.predict`) replaces the segment's uplift customer by customer
    where it has a value. `cuts`: the drivers' thresholds (see `drivers`).
    """
    uplift = prior_uplift(config) if uplift is None else uplift
    p = scores["p_churn"].to_numpy(dtype="float64")
    value = np.nan_to_num(scores["value"].to_numpy(dtype="float64"))
    basket = np.nan_to_num(_column(scores, "avg_order_value_365d"))
    drv = drivers(scores, config, cuts)
    rules = eligibility(scores, suppressed, config, run_date, last_listed, cuts)
    frames = []
    for action in ACTIONS:
        policy = config.action(action)
        rows = np.flatnonzero(np.logical_and.reduce(list(rules[action].values())))
        segment, lift = _segment(drv.iloc[rows], uplift[action])
        if customer_uplift is not None and action in customer_uplift:
            learned = customer_uplift[action].to_numpy(dtype="float64")[rows]
            lift = np.where(np.isnan(learned), lift, learned)
        offer = offer_value(basket[rows], policy)
        cost = (policy.fixed_cost + offer) * policy.cost_probability
        ev = p[rows] * lift * value[rows] - cost
        keep = ev > 0 if positive_only else slice(None)
        frames.append(pd.DataFrame({
            "row": rows[keep], "action": action, "segment": np.asarray(SEGMENTS)[segment[keep]],
            "uplift": lift[keep], "cost": cost[keep], "expected_value": ev[keep], "offer_value": offer[keep]}))
    return pd.concat(frames, ignore_index=True)


FUNNEL_STEPS = ("scored", "eligible", "above_risk_floor", "suppressed", "in_cooldown", "ev_positive",
                "to_other_action", "listed", "held_out", "explored", "capacity")


def funnel(scores: pd.DataFrame, suppressed: set[str], config: WinbackConfig, taken: pd.DataFrame,
           run_date: pd.Timestamp | str | None = None, last_listed: pd.Series | None = None,
           uplift: Uplift | None = None, customer_uplift: pd.DataFrame | None = None,
           cuts: Mapping[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Per action, how many customers each rule let through, and what kept the list short.

    Counted in order: scored; eligible (stage, value tier, drivers); of those above the risk floor;
    then removed as suppressed and as in cooldown; of the rest, EV > 0; of those, taken for a
    better action (a customer gets one action); listed (treated) and held out; the capacity.
    `explored`: of the listed, those drawn at random for exploration (any EV; see `assign`).
    `blocked` says in words why a list is not full (or that it is): the step that lost the most.
    """
    rules = eligibility(scores, suppressed, config, run_date, last_listed, cuts)
    pairs = candidates(scores, suppressed, config, run_date, last_listed, uplift, positive_only=True,
                       customer_uplift=customer_uplift, cuts=cuts)
    out: dict[str, dict[str, Any]] = {}
    for action in ACTIONS:
        r = rules[action]
        eligible = r["eligible"]
        floor = eligible & r["above_risk_floor"]
        free = floor & r["not_suppressed"]
        cool = free & r["not_in_cooldown"]
        positive = pairs[pairs["action"] == action]
        mine = taken[taken["action"] == action]
        listed = int((mine["arm"] == "treated").sum())
        counts = {"scored": len(scores), "eligible": int(eligible.sum()), "above_risk_floor": int(floor.sum()),
                  "suppressed": int((floor & ~r["not_suppressed"]).sum()),
                  "in_cooldown": int((free & ~r["not_in_cooldown"]).sum()), "ev_positive": len(positive),
                  "to_other_action": int(scores["customer_id"].iloc[positive["row"]].isin(
                      taken.loc[taken["action"] != action, "customer_id"]).sum()),
                  "listed": listed, "held_out": int((mine["arm"] == "holdout").sum()),
                  "explored": int(((mine["arm"] == "treated") & mine.get("explored", False)).sum()),
                  "capacity": int(config.capacity.get(action, 0))}
        counts["blocked"] = _blocked(counts, int(cool.sum()), config.min_p_churn)
        out[action] = counts
    return out


def _blocked(c: dict[str, Any], candidates_left: int, floor: float) -> str:
    """Why a list holds fewer customers than its capacity, in the team's words."""
    if c["listed"] >= c["capacity"]:
        return f"full: {c['capacity']} listed, the daily capacity"
    losses = {
        "eligible": (c["scored"] - c["eligible"], f"only {c['eligible']:,} of {c['scored']:,} scored customers are "
                                                  f"in the stages and value tiers this action is for"),
        "above_risk_floor": (c["eligible"] - c["above_risk_floor"],
                             f"only {c['above_risk_floor']:,} of the {c['eligible']:,} eligible are above the risk "
                             f"floor ({floor:.0%})"),
        "suppressed": (c["suppressed"], f"{c['suppressed']:,} of those are suppressed (opt-outs, do not contact)"),
        "in_cooldown": (c["in_cooldown"], f"{c['in_cooldown']:,} of those were listed or contacted within the "
                                          f"cooldown"),
        "ev_positive": (candidates_left - c["ev_positive"],
                        f"only {c['ev_positive']:,} of the {candidates_left:,} left have an expected value above "
                        f"cost (EV > 0)"),
        "to_other_action": (c["to_other_action"], f"{c['to_other_action']:,} of those are worth more in another "
                                                  f"action's list"),
    }
    before = {"eligible": c["scored"], "above_risk_floor": c["eligible"], "suppressed": c["above_risk_floor"],
              "in_cooldown": c["above_risk_floor"] - c["suppressed"], "ev_positive": candidates_left,
              "to_other_action": c["ev_positive"]}
    # The step that lost the largest share of what reached it: ten of ten matters more than 900 of 2,000.
    step = max(losses, key=lambda k: losses[k][0] / max(before[k], 1))
    return f"{c['listed']} of {c['capacity']}: {losses[step][1]}"


def listed_dates(customer_ids: pd.Series, last_listed: pd.Series | None) -> np.ndarray:
    """Each customer's last listing or contact date (datetime64; NaT when never), from `last_listed`."""
    if last_listed is None or not len(last_listed):
        return np.full(len(customer_ids), np.datetime64("NaT"), dtype="datetime64[ns]")
    return pd.to_datetime(customer_ids.map(last_listed)).to_numpy(dtype="datetime64[ns]")


def in_cooldown(last: np.ndarray, run_date: object, cooldown_days: int) -> np.ndarray:
    """True for customers whose last listing or contact (`listed_dates`) falls inside D's cooldown.

    The cooldown is defined once, by `churn.types.cooldown_start`; never listed (NaT) is never in it.
    """
    if run_date is None:
        return np.zeros(len(last), dtype=bool)
    return last > cooldown_start(run_date, cooldown_days).to_datetime64()


def _segment(drv: pd.DataFrame, table: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per customer: the driver with the largest uplift in `table` ("none" without drivers), and that uplift.

    The segment comes back as an index into SEGMENTS.
    """
    none = SEGMENTS.index("none")
    segment = np.full(len(drv), none, dtype=np.int8)
    lift = np.full(len(drv), float(table.get("none", 0.0)))
    for name in DRIVERS:
        has = drv[name].to_numpy()
        u = float(table.get(name, table.get("none", 0.0)))
        better = has & ((segment == none) | (u > lift))
        segment[better], lift[better] = SEGMENTS.index(name), u
    return segment, lift


# --- assignment --------------------------------------------------------------------------------


def holdout(customer_ids: pd.Series, campaign: str, share: float) -> pd.Series:
    """True for the customers held out: a stable hash of campaign and customer id below `share`."""
    return customer_ids.map(lambda cid: _draw(campaign, cid)) < share


def _draw(campaign: str, customer_id: str) -> float:
    return stable_share(f"{campaign}:{customer_id}")


def assign(scores: pd.DataFrame, suppressed: set[str], config: WinbackConfig,
           run_date: pd.Timestamp | str | None = None, last_listed: pd.Series | None = None,
           uplift: Uplift | None = None, rank_by: str = "ev", random_state: int = 0,
           customer_uplift: pd.DataFrame | None = None, cuts: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The customers taken for the lists: one action each, with arm (treated/holdout) and rank.

    `customer_uplift`: learned uplift per customer and action (see `candidates`).
    `rank_by="ev"` is the policy. "risk" (p_churn order; each customer gets the first action in
    callback, exclusive_discount, trial order with room left) and "random" ignore EV: they are
    the baselines of bench/winback_sim.py. Returns the score columns of the customers taken
    followed by the assignment columns, in list order. `cuts`: the drivers' thresholds (see
    `drivers`; the Dask engine passes those of all partitions).
    """
    if rank_by not in ("ev", "risk", "random"):
        raise ValueError(f"rank_by must be 'ev', 'risk' or 'random', not {rank_by!r}")
    slots = exploration_slots(config) if rank_by == "ev" and run_date is not None else {}
    pairs = candidates(scores, suppressed, config, run_date, last_listed, uplift,
                       positive_only=rank_by == "ev" and not any(slots.values()),
                       customer_uplift=customer_uplift, cuts=cuts)
    explored = _explore(pairs, scores, config, run_date, slots) if any(slots.values()) else None
    if explored is not None:  # the EV lists fill the rest of each capacity from the customers not drawn
        treated = explored.loc[explored["arm"] == "treated", "action"].value_counts()
        config = replace(config, capacity={a: int(config.capacity.get(a, 0)) - int(treated.get(a, 0))
                                           for a in ACTIONS})
        pairs = pairs[(pairs["expected_value"] > 0).to_numpy() & ~pairs["row"].isin(explored["row"]).to_numpy()]
    if rank_by == "random":
        priority = np.random.default_rng(random_state).random(len(pairs))
    else:
        priority = (pairs["expected_value"] if rank_by == "ev" else scores["p_churn"].iloc[pairs["row"]]).to_numpy()
    short = _shortlist(pairs, priority, config)
    chosen = _fill(pairs[short], priority[short], scores, config)
    if _cut_short(pairs, short, chosen, config):  # rare: a list the shortlist could not fill
        chosen = _fill(pairs, priority, scores, config)
    chosen = chosen.assign(explored=False, selection_probability=1.0)
    if explored is not None:  # one list per action in EV order: an explored customer is a customer to call
        chosen = _in_ev_order(pd.concat([chosen, explored], ignore_index=True), scores)
    chosen["rank"] = chosen.groupby(["action", "arm"]).cumcount() + 1
    out = scores.iloc[chosen["row"].to_numpy()].reset_index(drop=True)
    for column in ASSIGNMENT_COLUMNS[1:]:
        out[column] = chosen[column].to_numpy()
    return out


def exploration_slots(config: WinbackConfig) -> dict[str, int]:
    """Per action, the treated places of a day's list given to customers drawn at random.

    exploration_share x capacity, rounded half up: 10% of 25 calls is 3 (a share above zero
    explores as soon as the capacity allows one place).
    """
    return {a: int(np.floor(config.exploration_share * int(config.capacity.get(a, 0)) + 0.5)) for a in ACTIONS}


def exploration_draws(customer_ids: pd.Series, campaign: str, run_date: object) -> pd.DataFrame:
    """Each customer's random draw per action on a run date: uniform in [0, 1), one column per action.

    SHA-256 of "campaign:explore:YYYY-MM-DD:customer_id", 8 bytes per action: the same on every
    machine and rerun, independent between actions, dates and campaigns.
    """
    prefix = f"{campaign}:explore:{RunDate.parse(run_date)}:"
    # DuckDB's sha256 (the standard digest, hex) over the column: 1.5M customers in 0.5 s, against
    # 4.9 s for hashlib in a Python loop. Each 16-hex-digit word read as an unsigned 64-bit integer;
    # uint64 -> float64 then / 2**64 rounds exactly as the integer ratio does.
    con = database.connect()
    try:
        con.register("ids", pd.DataFrame({"id": customer_ids.astype(str).to_numpy(dtype=object)}))
        words = con.execute(
            "SELECT " + ", ".join(f"('0x' || substr(h, {1 + 16 * k}, 16))::UBIGINT AS w{k}" for k in range(len(ACTIONS)))
            + " FROM (SELECT sha256(? || id) AS h FROM ids)", [prefix]).fetchnumpy()
    finally:
        con.close()
    return pd.DataFrame({a: np.asarray(words[f"w{k}"], dtype="uint64").astype("float64") / 2**64
                         for k, a in enumerate(ACTIONS)}, index=customer_ids.index)


def _explore(pairs: pd.DataFrame, scores: pd.DataFrame, config: WinbackConfig, run_date: object,
             slots: Mapping[str, int]) -> pd.DataFrame:
    """The customers drawn at random for each action's exploration places (see the module docstring).

    Every candidate pair (all rules passed, any EV) is walked in the order of its draw; a pair is
    taken while its action has places left and its customer has no action yet; the holdout
    applies as in `_fill`. selection_probability = customers drawn for the action (both arms) /
    the action's candidates: each candidate's chance of being drawn that day.
    """
    rows = pairs["row"].to_numpy(dtype=np.int64)
    ids = scores["customer_id"].astype(str).to_numpy()
    unique = np.unique(rows)
    draws = exploration_draws(pd.Series(ids[unique], dtype=object), config.campaign, run_date).to_numpy()
    at = np.searchsorted(unique, rows)
    column = _action_codes(pairs["action"])
    priority = -draws[at, column]  # the smallest draw first
    explore = replace(config, capacity=dict(slots))
    short = _shortlist(pairs, priority, explore)  # as for the EV lists: only the first draws can matter
    chosen = _fill(pairs[short], priority[short], scores, explore)
    if _cut_short(pairs, short, chosen, explore):
        chosen = _fill(pairs, priority, scores, explore)
    pool = pairs["action"].value_counts()
    drawn = chosen["action"].value_counts()
    return chosen.assign(explored=True, selection_probability=[drawn[a] / pool[a] for a in chosen["action"]])


def _action_codes(actions: pd.Series) -> np.ndarray:
    """Each action's place in ACTIONS (callback 0, ...), vectorised: `map(ACTIONS.index)` calls Python per row."""
    return np.asarray(pd.Categorical(actions, categories=list(ACTIONS)).codes, dtype=np.int64)


def _in_ev_order(chosen: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Taken pairs in list order: EV first, ties by customer id then action order (as `_fill` walks)."""
    ids = scores["customer_id"].astype(str).to_numpy()[chosen["row"].to_numpy()]
    order = np.lexsort((_action_codes(chosen["action"]), ids, -chosen["expected_value"].to_numpy()))
    return chosen.iloc[order].reset_index(drop=True)


def shortlisted(pairs: pd.DataFrame, config: WinbackConfig) -> tuple[np.ndarray, set[str]]:
    """The EV pairs that can make the lists (`_shortlist`), and the actions that lost pairs to it.

    The Dask engine sends only these from each partition: the union of the partitions' shortlists
    holds the shortlist of all pairs, so `assign` on it gives the same lists, unless a list
    that lost pairs somewhere is not full (then every partition sends all its pairs).
    """
    keep = _shortlist(pairs, pairs["expected_value"].to_numpy(), config)
    return keep, set(pairs.loc[~keep, "action"].unique())


def _shortlist(pairs: pd.DataFrame, priority: np.ndarray, config: WinbackConfig) -> np.ndarray:
    """The pairs that can matter: per action, those at or above the priority of its N-th best.

    Lists fill from the top, so with N well above what all lists together take, the pairs
    below never get their turn; `_cut_short` checks that this held.
    """
    n_keep = int(2 * sum(config.capacity.values()) / max(1 - config.holdout_share, 0.05)) + 100
    keep = np.ones(len(pairs), dtype=bool)
    for action in ACTIONS:
        idx = np.flatnonzero(pairs["action"].to_numpy() == action)
        if len(idx) > n_keep:
            kth = np.partition(-priority[idx], n_keep - 1)[n_keep - 1]
            keep[idx[-priority[idx] > kth]] = False  # ties with the N-th stay in
    return keep


def _cut_short(pairs: pd.DataFrame, short: np.ndarray, chosen: pd.DataFrame, config: WinbackConfig) -> bool:
    """True when an action whose pairs were shortlisted did not fill its list (then redo in full)."""
    dropped = set(pairs.loc[~short, "action"].unique())  # unique first: iterating 1.7M Arrow strings took 1.1 s
    treated = chosen[chosen["arm"] == "treated"]["action"].value_counts()
    return any(treated.get(a, 0) < config.capacity.get(a, 0) for a in dropped)


def _fill(pairs: pd.DataFrame, priority: np.ndarray, scores: pd.DataFrame, config: WinbackConfig) -> pd.DataFrame:
    """Walk the pairs in priority order: one action per customer, treated up to each capacity.

    Ties are broken by customer id, then by action order, so the result never depends on the
    order of the scores.
    """
    ids = scores["customer_id"].astype(str).to_numpy()[pairs["row"].to_numpy()]
    order = np.lexsort((_action_codes(pairs["action"]), ids, -priority))
    pairs, ids = pairs.iloc[order], ids[order]
    room = {action: int(config.capacity.get(action, 0)) for action in ACTIONS}
    seen: set[int] = set()
    position, arm = [], []
    for i, (row, action) in enumerate(zip(pairs["row"].to_numpy(), pairs["action"].to_numpy())):
        if room[action] <= 0 or row in seen:
            if not any(room.values()):
                break
            continue
        seen.add(row)
        held = _draw(config.campaign, ids[i]) < config.holdout_share
        position.append(i)
        arm.append("holdout" if held else "treated")
        room[action] -= 0 if held else 1
    return pairs.iloc[position].reset_index(drop=True).assign(arm=arm)


# --- the lists ---------------------------------------------------------------------------------


def topic(action: str, top_reason: object, segment: object) -> str:
    """The story an action's offer and talking points tell: the driver that chose the action
    (its segment), else the customer's strongest warning sign, else "default"."""
    options = OFFERS[action]
    return next((t for t in (_topic(segment), _topic(top_reason)) if t in options), "default")


def talking_points(action: str, top_reason: object, segment: object, valid_days: int = 14) -> str:
    """2-3 numbered talking points for an action, on the same topic as its offer (`topic`)."""
    points = TALKING_POINTS[action][topic(action, top_reason, segment)]
    return "\n".join(f"{i}) {point.format(valid_days=valid_days)}" for i, point in enumerate(points, start=1))


def _topic(code: object) -> str | None:
    if not isinstance(code, str) or code == "none":
        return None
    if code in _TOPIC_OF:
        return _TOPIC_OF[code]
    return _TOPIC_OF.get(theme(code))  # event families of any shop's spelling


def _amount(value: float, currency: str) -> str:
    """'7 USD', '7.50 USD', '£7.50': whole amounts without decimals."""
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    if not currency:
        return text
    return f"{text} {currency}" if currency.isalpha() else f"{currency}{text}"


def _chosen_because(segment: object, uplift: float, explored: bool = False) -> str:
    """Why the customer got this action: the driver (segment) and how much the action helps such customers.

    A customer drawn for exploration was not chosen for the best expected value (theirs may be
    below zero): the text says they are one of the customers the action is tried with, after
    their driver when they have one, so that an agent is not left wondering about the row.
    """
    if explored and str(segment) == "none":
        return CHOSEN_BECAUSE["explored"]
    text = CHOSEN_BECAUSE.get(str(segment), CHOSEN_BECAUSE["none"])
    if uplift == uplift:
        text = f"{text} (wins back about {uplift:.0%} of such customers who would leave)"
    return f"{text}; {EXPLORED_TOO}" if explored else text


def _plain(day: dt.date) -> dt.date:
    return dt.date(day.year, day.month, day.day)


def service_lists(assignments: pd.DataFrame, run_date: pd.Timestamp | str,
                  config: WinbackConfig | None = None, currency: str = "") -> dict[str, pd.DataFrame]:
    """The lists the service team works from: treated customers only, one frame per action.

    Values are true values (ids exactly as in the data, dates as dates); the outcome columns are
    empty for the team to fill in. Guarding text against spreadsheet formulas is the writer's
    job (`churn.publish.files`), so that the workbook keeps the true id.
    """
    config = config or WinbackConfig()
    listed = RunDate.parse(run_date)
    lists = {}
    for action in ACTIONS:
        policy = config.action(action)
        rows = assignments[(assignments["action"] == action) & (assignments["arm"] == "treated")]
        empty = pd.Series(index=rows.index, dtype=object)
        codes = rows.get("reason_code_1", empty)
        topics = [topic(action, c, s) for c, s in zip(codes, rows["segment"])]
        frame = pd.DataFrame({
            "rank": np.arange(1, len(rows) + 1),
            "customer_id": rows["customer_id"].astype(str).to_numpy(),
            "lifecycle_stage": rows["lifecycle_stage"].astype(str).to_numpy(),
            "value_tier": rows["value_tier"].astype(str).to_numpy(),
            "p_churn_pct": (100 * rows["p_churn"].to_numpy(dtype="float64")).round(1),
            "value": rows["value"].to_numpy(dtype="float64").round(2),
            "expected_value": rows["expected_value"].to_numpy(dtype="float64").round(2),
            "reason_1": rows.get("reason_1", empty).to_numpy(),
            "reason_2": rows.get("reason_2", empty).to_numpy(),
            "reason_3": rows.get("reason_3", empty).to_numpy(),
            "chosen_because": [_chosen_because(seg, u, bool(e)) for seg, u, e in
                               zip(rows["segment"], rows.get("uplift", pd.Series(np.nan, index=rows.index)),
                                   rows.get("explored", pd.Series(False, index=rows.index)))],
            "suggested_offer": [OFFERS[action][t].format(offer=_amount(v, currency), valid_days=policy.offer_valid_days)
                                for t, v in zip(topics, rows["offer_value"])],
            "talking_points": [talking_points(action, c, seg, policy.offer_valid_days)
                               for c, seg in zip(codes, rows["segment"])],
            "list_date": _plain(listed),
            "due_date": _plain(due_date(listed, policy.due_days)),
            **{column: None for column in OUTCOME_COLUMNS},
        }, columns=LIST_COLUMNS)
        lists[action] = frame
    return lists
