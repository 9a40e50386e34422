"""Is EV ranking worth it, and does learning who responds beat the segment priors? Win-back policies
at fixed capacity on synthetic data with known responses.

For each seed: generate a synthetic shop (with ground-truth responses per customer and action),
train the churn model as of the last day, score every customer, and fill the same lists in
several ways, with the same eligibility, suppressions and capacity (no holdout):

- ev:      the policy (p_churn x uplift prior x value - cost, best action per customer);
- risk:    customers by p_churn, each given the first action (callback, discount, trial) with room;
- random:  eligible (customer, action) pairs in random order;
- prior:   the policy after `--weeks` weekly lists with a 10% holdout and their outcomes, using
           the uplift measured per action and segment (shrunk to the priors): today's `churn
           outcomes` loop;
- learned: its own weekly lists, the same but with `--exploration` (winback.exploration_share,
           default as configured) of each capacity drawn at random, then the uplift learned per
           customer from them (churn.decide.uplift, shrunk to their segment estimates), with the
           same exploration share on the last day too: the same capacity and cost as `prior`.

The weekly lists are scored on each week's features; their outcomes (came back within the
horizon or not) are drawn from the ground truth of that day (`SyntheticData.responses_at`):
the treated with the action's probability, the holdout without. Incremental customers saved =
sum over the customers listed on the last day of p_back(action) - p_back(none), from the ground
truth; net value = saved x the customer's true yearly margin - the action's cost. The weekly
lists' own saved customers and net value (treated only) are reported per loop, so the cost of
exploring in those weeks shows (`saved_weeks_prior`, `saved_weeks_learned`). Qini
coefficients (`qini_learned`, `qini_prior`) rank every eligible (customer, action) pair by the
predicted incremental response, p_churn x uplift, against the true one, averaged over actions.

    .venv/bin/python bench/winback_sim.py [--customers 20000] [--seeds 0 1 2] [--weeks 4] [--exploration 0.05]
                                          [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import pandas as pd

from churn.config import ACTIONS, DRIVERS, Config, DataConfig, ModelConfig, WinbackConfig
from churn.data import contract
from churn.data.datasets import synthetic
from churn.decide import outcomes, scoring, uplift, winback
from churn.features.engine import build_features
from churn.model import training

START, END, HORIZON = "2023-01-01", "2024-12-31", 90
# The lists hold about 5% of the customers, the situation of a team that cannot call everyone.
CAPACITY_SHARE = {"callback": 0.01, "exclusive_discount": 0.02, "trial": 0.02}


def config_for(n_customers: int) -> Config:
    """A quick model (the comparison is about the policy, not the last point of AUC) and the capacity."""
    quick = {"n_train_cutoffs": 4, "n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20,
             "search_budget": 1}
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    base = Config(data=DataConfig(horizon_days=HORIZON), model=ModelConfig(**{k: v for k, v in quick.items()
                                                                              if k in known}))
    capacity = {a: max(1, int(share * n_customers)) for a, share in CAPACITY_SHARE.items()}
    # No exploration unless a policy asks for it: the priors' lists are today's loop.
    return dataclasses.replace(base, winback=dataclasses.replace(base.winback, capacity=capacity, holdout_share=0.0,
                                                                 exploration_share=0.0))


def exploring(config: Config, share: float) -> Config:
    """The same configuration with `share` of each capacity explored."""
    return dataclasses.replace(config, winback=dataclasses.replace(config.winback, exploration_share=share))


def _saved(taken: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Incremental customers saved by a list (ground truth) and its net value."""
    rows = truth.loc[taken["customer_id"].astype(str)]
    with_action = rows.to_numpy()[np.arange(len(rows)), [rows.columns.get_loc(f"p_back_{a}")
                                                          for a in taken["action"]]].astype(float)
    saved = with_action - rows["p_back_none"].to_numpy()
    return {"listed": len(taken), "saved": float(saved.sum()),
            "net_value": float((saved * rows["margin_12m"].to_numpy()).sum() - taken["cost"].sum())}


def weekly_outcomes(data: synthetic.SyntheticData, scored: dict[pd.Timestamp, pd.DataFrame], config: Config,
                    suppressed: set[str], weeks: list[pd.Timestamp], seed: int) -> pd.DataFrame:
    """Lists on each week's date with a holdout (EV on the priors, exploring as `config` says), and
    outcomes drawn from the ground truth.

    `scored`: each week's scores. Returns one row per listed customer: the score columns as of
    the list date, action, arm, segment, explored, selection_probability, list_date, came_back,
    and (ground truth, treated only) saved and net_value.
    """
    rng = np.random.default_rng(seed)
    weekly = dataclasses.replace(config, winback=dataclasses.replace(config.winback, holdout_share=0.10))
    last_listed = pd.Series(dtype="datetime64[ns]")
    frames = []
    for day in weeks:
        scores = scored[day]
        taken = winback.assign(scores, suppressed, weekly.winback, day, last_listed=last_listed)
        truth = data.responses_at(day, HORIZON).merge(data.truth[["customer_id", "rate_30d", "order_value"]],
                                                      on="customer_id")
        truth = truth.set_index("customer_id").loc[taken["customer_id"].astype(str)]
        p = np.where(taken["arm"] == "treated",
                     truth.to_numpy()[np.arange(len(truth)), [truth.columns.get_loc(f"p_back_{a}")
                                                              for a in taken["action"]]].astype(float),
                     truth["p_back_none"].to_numpy())
        # Drivers are read among all the customers scored that day, as the policy read them.
        drv = winback.drivers(scores, config.winback).set_index(scores["customer_id"].astype(str))
        drv = drv.loc[taken["customer_id"].astype(str)].add_prefix("driver_").reset_index(drop=True)
        on = (taken["arm"] == "treated").to_numpy()
        saved = np.where(on, p - truth["p_back_none"].to_numpy(), 0.0)
        margin = truth["rate_30d"] * 365 / 30 * truth["order_value"] * config.score.margin_rate
        frames.append(pd.concat([taken, drv], axis=1).assign(
            list_date=day, came_back=rng.random(len(taken)) < p, saved=saved,
            net_value=saved * margin.to_numpy() - np.where(on, taken["cost"].to_numpy(), 0.0)))
        last_listed = pd.concat([last_listed, pd.Series(day, index=taken["customer_id"].astype(str))])
        last_listed = last_listed[~last_listed.index.duplicated(keep="last")]
    return pd.concat(frames, ignore_index=True)


def qini_of(scores: pd.DataFrame, suppressed: set[str], config: Config, truth: pd.DataFrame,
            segment_table: dict, customer_uplift: pd.DataFrame | None) -> float:
    """Mean over actions of the Qini coefficient (against the ground truth) of p_churn x uplift."""
    pairs = winback.candidates(scores, suppressed, config.winback, uplift=segment_table,
                               customer_uplift=customer_uplift)
    ids = scores["customer_id"].astype(str).to_numpy()[pairs["row"].to_numpy()]
    rows = truth.loc[ids]
    values = []
    for action in ACTIONS:
        mine = (pairs["action"] == action).to_numpy()
        if mine.sum() < 2:
            continue
        predicted = scores["p_churn"].to_numpy()[pairs["row"].to_numpy()[mine]] * pairs["uplift"].to_numpy()[mine]
        incremental = (rows[f"p_back_{action}"].to_numpy() - rows["p_back_none"].to_numpy())[mine]
        values.append(uplift.qini_from_truth(predicted, incremental))
    return float(np.mean(values))


def one_seed(n_customers: int, seed: int, weeks: int = 4,
             exploration: float | None = None) -> dict[str, dict[str, float]]:
    """Saved customers and net value of each policy on one synthetic shop, and the Qini of prior vs learned.

    `exploration`: the learned policy's exploration share (None: winback.exploration_share as configured).
    """
    share = WinbackConfig().exploration_share if exploration is None else exploration
    config = config_for(n_customers)
    data = synthetic.generate(n_customers, START, END, random_state=seed, response_horizon_days=HORIZON)
    dataset = contract.validate_tables(data.tables)
    model = training.train(dataset, END, config, evaluate=False).model
    week_days = [pd.Timestamp(END) - pd.Timedelta(days=7 * k) for k in range(weeks, 0, -1)]
    feats = build_features(dataset, [*week_days, END], config.data.lookback_days)
    scores = scoring.score(feats[feats["cutoff"] == pd.Timestamp(END)], model, config, explain=False)
    truth = data.responses.merge(data.truth[["customer_id", "rate_30d", "order_value"]], on="customer_id")
    # What a saved customer is worth: a year of their orders at the configured margin.
    truth["margin_12m"] = truth["rate_30d"] * 365 / 30 * truth["order_value"] * config.score.margin_rate
    truth = truth.set_index("customer_id")
    suppressed = set(data.tables["suppressions"]["customer_id"])
    results = {}
    for policy in ("ev", "risk", "random"):
        taken = winback.assign(scores, suppressed, config.winback, END, rank_by=policy, random_state=seed)
        results[policy] = _saved(taken, truth)

    scored = {day: scoring.score(feats[feats["cutoff"] == day], model, config, explain=False) for day in week_days}
    # Today's loop: the priors' lists, measured per segment.
    listed = weekly_outcomes(data, scored, config, suppressed, week_days, seed)
    estimates = outcomes.estimate_uplift(listed, config.winback, config.outcomes, END)
    segment_table, _ = outcomes.uplift_for_run(estimates, config.winback)
    results["prior"] = _saved(winback.assign(scores, suppressed, config.winback, END, uplift=segment_table), truth)
    # The learned policy's loop: the same lists with an exploration share, the uplift learned from them.
    explore = exploring(config, share)
    own = weekly_outcomes(data, scored, explore, suppressed, week_days, seed) if share > 0 else listed
    own_table, _ = outcomes.uplift_for_run(outcomes.estimate_uplift(own, config.winback, config.outcomes, END),
                                           config.winback)
    own_drivers = own[[f"driver_{d}" for d in DRIVERS]].rename(columns=lambda c: c.removeprefix("driver_"))
    learned = uplift.fit_uplift(own, own_drivers, own_table, strength=config.outcomes.learned_strength,
                                max_weight=config.outcomes.max_selection_weight)
    drivers = winback.drivers(scores, config.winback)
    segments = {a: uplift.segment_of(drivers, own_table[a]) for a in ACTIONS}
    per_customer = learned.predict(scores, drivers, segments)
    results["learned"] = _saved(winback.assign(scores, suppressed, explore.winback, END, uplift=own_table,
                                               customer_uplift=per_customer), truth)
    # For the record, not compared: the same learned uplift with the last day's list not exploring.
    results["learned_not_exploring"] = _saved(winback.assign(scores, suppressed, config.winback, END,
                                                             uplift=own_table, customer_uplift=per_customer), truth)
    results["weeks"] = {"saved_prior": float(listed["saved"].sum()), "saved_learned": float(own["saved"].sum()),
                        "net_value_prior": float(listed["net_value"].sum()),
                        "net_value_learned": float(own["net_value"].sum()),
                        "explored": float(own["explored"].sum())}
    results["qini"] = {"prior": qini_of(scores, suppressed, config, truth, segment_table, None),
                       "learned": qini_of(scores, suppressed, config, truth, own_table, per_customer),
                       "weekly_listed": float(len(listed)), "weekly_holdout": float((listed["arm"] == "holdout").sum())}
    return results


POLICIES = ("ev", "risk", "random", "prior", "learned")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weeks", type=int, default=4, help="weekly lists with outcomes before the last day")
    parser.add_argument("--exploration", type=float, default=WinbackConfig().exploration_share,
                        help="the learned policy's exploration share (default: winback.exploration_share)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    started = time.perf_counter()
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = one_seed(args.customers, seed, args.weeks, args.exploration)
        print(f"  seed {seed}: " + ", ".join(f"{p} saved {per_seed[seed][p]['saved']:.1f}" for p in POLICIES)
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    mean = {policy: {k: float(np.mean([per_seed[s][policy][k] for s in args.seeds])) for k in ("saved", "net_value")}
            for policy in POLICIES}
    qini = {k: float(np.mean([per_seed[s]["qini"][k] for s in args.seeds])) for k in ("prior", "learned")}
    weeks = {k: float(np.mean([per_seed[s]["weeks"][k] for s in args.seeds])) for k in per_seed[args.seeds[0]]["weeks"]}
    plain = float(np.mean([per_seed[s]["learned_not_exploring"]["saved"] for s in args.seeds]))
    capacity = config_for(args.customers).winback.capacity
    report = {
        "customers": args.customers, "capacity": capacity, "seeds": args.seeds, "weeks": args.weeks,
        "saved_ev": round(mean["ev"]["saved"], 2), "saved_risk": round(mean["risk"]["saved"], 2),
        "saved_random": round(mean["random"]["saved"], 2),
        "net_value_ev": round(mean["ev"]["net_value"], 2), "net_value_risk": round(mean["risk"]["net_value"], 2),
        "net_value_random": round(mean["random"]["net_value"], 2),
        "ratio_ev_vs_risk": round(mean["ev"]["saved"] / mean["risk"]["saved"], 3),
        "saved_prior": round(mean["prior"]["saved"], 2), "saved_learned": round(mean["learned"]["saved"], 2),
        "net_value_prior": round(mean["prior"]["net_value"], 2),
        "net_value_learned": round(mean["learned"]["net_value"], 2),
        "ratio_learned_vs_prior": round(mean["learned"]["saved"] / mean["prior"]["saved"], 3),
        "qini_learned": round(qini["learned"], 5), "qini_prior": round(qini["prior"], 5),
        "exploration_share": args.exploration, "saved_learned_not_exploring": round(plain, 2),
        "ratio_per_seed": {str(s): round(r["learned"]["saved"] / r["prior"]["saved"], 3) for s, r in per_seed.items()},
        "saved_weeks_prior": round(weeks["saved_prior"], 2), "saved_weeks_learned": round(weeks["saved_learned"], 2),
        "net_value_weeks_prior": round(weeks["net_value_prior"], 2),
        "net_value_weeks_learned": round(weeks["net_value_learned"], 2),
        "explored_weeks": round(weeks["explored"], 1),
        "per_seed": {str(s): r for s, r in per_seed.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"win-back simulation: {args.customers:,} customers, capacity {capacity} per day, seeds {args.seeds}")
    print(f"  {'policy':<8}{'incremental customers saved':>30}{'net value':>14}")
    for policy in POLICIES:
        print(f"  {policy:<8}{mean[policy]['saved']:>30,.1f}{mean[policy]['net_value']:>14,.0f}")
    target = "met" if report["ratio_ev_vs_risk"] >= 1.5 and mean["ev"]["net_value"] > mean["risk"]["net_value"] \
        else "NOT met"
    print(f"  EV saves {report['ratio_ev_vs_risk']:.2f}x the customers of risk-only ranking "
          f"(target >= 1.5x and more net value: {target}); {report['seconds']} s")
    learned = "met" if report["ratio_learned_vs_prior"] >= 1.3 else "NOT met"
    print(f"  after {args.weeks} weekly lists, learned uplift saves {report['ratio_learned_vs_prior']:.2f}x the "
          f"customers of the segment estimates (target >= 1.3x: {learned}); Qini learned "
          f"{report['qini_learned']:.4f} vs segment {report['qini_prior']:.4f}; per seed {report['ratio_per_seed']}")
    print(f"  exploring {args.exploration:.0%} of each list: {report['explored_weeks']:.0f} customers explored over the "
          f"weeks; the weeks saved {report['saved_weeks_learned']:.1f} (net {report['net_value_weeks_learned']:,.0f}) "
          f"against {report['saved_weeks_prior']:.1f} (net {report['net_value_weeks_prior']:,.0f}) without; the last "
          f"day's learned list without exploring would save {plain:.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, sort_keys=True)
            fh.write("\n")


if __name__ == "__main__":
    main()
