"""Is EV ranking worth it? Win-back policies at fixed capacity on synthetic data with known responses.

For each seed: generate a synthetic shop (with ground-truth responses per customer and action),
train the churn model as of the last day, score every customer, and fill the same lists three
ways, with the same eligibility, suppressions and capacity (no holdout):

- ev:     the policy (p_churn x uplift prior x value - cost, best action per customer);
- risk:   customers by p_churn, each given the first action (callback, discount, trial) with room;
- random: eligible (customer, action) pairs in random order.

Incremental customers saved = sum over the customers listed of p_back(action) - p_back(none),
from the ground truth; net value = saved x the customer's true yearly margin - the action's cost.

    .venv/bin/python bench/winback_sim.py [--customers 20000] [--seeds 0 1 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import pandas as pd

from churn.features.engine import build_features
from churn.data import contract
from churn.decide import scoring
from churn.model import training
from churn.decide import winback
from churn.config import Config, DataConfig, ModelConfig
from churn.data.datasets import synthetic

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
    return dataclasses.replace(base, winback=dataclasses.replace(base.winback, capacity=capacity, holdout_share=0.0))


def one_seed(n_customers: int, seed: int) -> dict[str, dict[str, float]]:
    """Saved customers and net value of each policy on one synthetic shop."""
    config = config_for(n_customers)
    data = synthetic.generate(n_customers, START, END, random_state=seed, response_horizon_days=HORIZON)
    dataset = contract.validate_tables(data.tables)
    model = training.train(dataset, END, config, evaluate=False).model
    scores = scoring.score(build_features(dataset, [END], config.data.lookback_days), model, config,
                           explain=False)
    truth = data.responses.merge(data.truth[["customer_id", "rate_30d", "order_value"]], on="customer_id")
    # What a saved customer is worth: a year of their orders at the configured margin.
    truth["margin_12m"] = truth["rate_30d"] * 365 / 30 * truth["order_value"] * config.score.margin_rate
    truth = truth.set_index("customer_id")
    suppressed = set(data.tables["suppressions"]["customer_id"])
    results = {}
    for policy in ("ev", "risk", "random"):
        taken = winback.assign(scores, suppressed, config.winback, END, rank_by=policy, random_state=seed)
        rows = truth.loc[taken["customer_id"].astype(str)]
        with_action = rows.to_numpy()[np.arange(len(rows)), [rows.columns.get_loc(f"p_back_{a}")
                                                              for a in taken["action"]]].astype(float)
        saved = with_action - rows["p_back_none"].to_numpy()
        results[policy] = {"listed": len(taken), "saved": float(saved.sum()),
                           "net_value": float((saved * rows["margin_12m"].to_numpy()).sum() - taken["cost"].sum())}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    started = time.perf_counter()
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = one_seed(args.customers, seed)
        print(f"  seed {seed}: " + ", ".join(f"{p} saved {r['saved']:.1f}" for p, r in per_seed[seed].items())
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    mean = {policy: {k: float(np.mean([per_seed[s][policy][k] for s in args.seeds])) for k in ("saved", "net_value")}
            for policy in ("ev", "risk", "random")}
    capacity = config_for(args.customers).winback.capacity
    report = {
        "customers": args.customers, "capacity": capacity, "seeds": args.seeds,
        "saved_ev": round(mean["ev"]["saved"], 2), "saved_risk": round(mean["risk"]["saved"], 2),
        "saved_random": round(mean["random"]["saved"], 2),
        "net_value_ev": round(mean["ev"]["net_value"], 2), "net_value_risk": round(mean["risk"]["net_value"], 2),
        "net_value_random": round(mean["random"]["net_value"], 2),
        "ratio_ev_vs_risk": round(mean["ev"]["saved"] / mean["risk"]["saved"], 3),
        "per_seed": {str(s): r for s, r in per_seed.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"win-back simulation: {args.customers:,} customers, capacity {capacity} per day, seeds {args.seeds}")
    print(f"  {'policy':<8}{'incremental customers saved':>30}{'net value':>14}")
    for policy in ("ev", "risk", "random"):
        print(f"  {policy:<8}{mean[policy]['saved']:>30,.1f}{mean[policy]['net_value']:>14,.0f}")
    target = "met" if report["ratio_ev_vs_risk"] >= 1.5 and mean["ev"]["net_value"] > mean["risk"]["net_value"] \
        else "NOT met"
    print(f"  EV saves {report['ratio_ev_vs_risk']:.2f}x the customers of risk-only ranking "
          f"(target >= 1.5x and more net value: {target}); {report['seconds']} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, sort_keys=True)
            fh.write("\n")


if __name__ == "__main__":
    main()
