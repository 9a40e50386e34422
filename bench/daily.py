"""The full daily run at scale: validate, features, quality gate, score, lists (with reasons), publish.

A synthetic shop of N customers (orders, customers, suppressions; two years) is written to a
work directory and a quick model is trained on a 50,000-customer shop of the same generator;
neither is timed. Then a fresh process runs the daily steps of flows/score.py (the same task
functions, without the Prefect engine) for the last day, and reports each step's seconds and
the peak memory of that process. Target: 2M customers in <= 60 s on 2 cores.

    .venv/bin/python bench/daily.py [--customers 2000000] [--json FILE] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

END = "2024-12-31"
TARGET_SECONDS = 60.0
TRAIN_CUSTOMERS = 50_000


def prepare(work: Path, customers: int) -> None:
    """Write the data directory and train the model (skipped when already there)."""
    from churn.data import contract
    from churn.model import registry
    from churn.model import training
    from churn.config import Config, DataConfig, ModelConfig
    from churn.data.datasets import synthetic

    data_dir = work / f"data-{customers}"
    if not (data_dir / "orders.parquet").exists():
        started = time.perf_counter()
        synthetic.write(synthetic.generate(customers, end=END, random_state=1, items=False, events=False), data_dir)
        print(f"wrote {data_dir} in {time.perf_counter() - started:.0f} s (not timed)", flush=True)
    models = work / "models"
    if not (models / registry.CHAMPION_FILE).exists():
        config = Config(data=DataConfig(horizon_days=90),
                        model=ModelConfig(n_train_cutoffs=4, n_estimators=300, learning_rate=0.1))
        small = synthetic.generate(TRAIN_CUSTOMERS, end=END, random_state=2, items=False, events=False)
        result = training.train(contract.validate_tables(small.tables), END, config, evaluate=False)
        registry.register(result.model, result.metadata, models)
        print(f"trained {result.metadata['version']} (not timed)", flush=True)


def run_daily(work: Path, customers: int) -> dict:
    """One daily run through the flow's task functions; seconds per step and peak memory."""
    import pandas as pd

    from churn.config import Config
    from flows.score import (build_features, build_lists, check_quality, load_history, load_model, publish_outputs,
                             run_manifest, score_customers, warehouse_run)
    from flows.train import load_data

    data_dir, out_dir = str(work / f"data-{customers}"), str(work / "out")
    # The reference, measured in the same run on the same (shared) machine: reading the orders file.
    clock = time.perf_counter()
    reference = len(pd.read_parquet(Path(data_dir) / "orders.parquet"))
    reference_seconds = round(time.perf_counter() - clock, 2)
    steps: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[step] = round(now - clock, 2)
        clock = now

    config = Config()
    dataset = load_data.fn(data_dir, config)
    lap("validate")
    model, meta = load_model.fn(str(work / "models"))
    config = config.with_horizon(meta["horizon_days"])
    history = load_history.fn(out_dir, END, dataset, config)
    feats = build_features.fn(dataset, END, config)
    lap("features")
    gate = check_quality.fn(dataset, feats, END, history, config)
    lap("quality")
    scores = score_customers.fn(feats, model, config)
    lap("score")
    scores, taken, lists = build_lists.fn(scores, model, dataset, history, END, config)
    lap("lists_and_reasons")
    manifest = run_manifest(END, meta, dataset, gate, scores, taken, lists, history, config)
    taken = taken.assign(uplift_source="prior", due_date=pd.Timestamp(END))
    publish_outputs.fn(out_dir, warehouse_run(manifest, gate, config), scores, taken, lists, manifest, dataset)
    lap("publish")
    return {"customers": int(len(scores)), "orders": int(len(dataset.orders)), "listed": int(len(taken)),
            "steps_seconds": steps, "seconds": round(sum(steps.values()), 2), "reference_rows": reference,
            "reference_seconds": reference_seconds,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000_000)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--work", default=str(Path(__file__).parent / ".cache" / "daily"),
                        help="data, model and outputs (reused; git-ignored)")
    parser.add_argument("--run-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    work = Path(args.work)
    if args.run_only:
        print(json.dumps(run_daily(work, args.customers)))
        return
    prepare(work, args.customers)
    # A fresh process, so that the peak memory is the daily run's, not the generator's.
    child = subprocess.run([sys.executable, __file__, "--run-only", "--customers", str(args.customers),
                            "--work", str(work)], capture_output=True, text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    flat = {"customers": args.customers, "population": result["customers"], "orders": result["orders"],
            "listed": result["listed"], "seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"],
            "seconds_without_validate": round(result["seconds"] - result["steps_seconds"]["validate"], 2),
            "reference_read_orders_seconds": result["reference_seconds"],
            **{f"{step}_seconds": s for step, s in result["steps_seconds"].items()}}
    print(f"daily run: {args.customers:,} customers ({result['customers']:,} in the population), "
          f"{result['orders']:,} orders, {result['listed']} listed")
    for step, s in result["steps_seconds"].items():
        print(f"  {step:<20}{s:>8.2f} s")
    print(f"  {'total':<20}{result['seconds']:>8.2f} s  ({result['seconds'] / TARGET_SECONDS:.2f}x the "
          f"{TARGET_SECONDS:.0f} s target); peak memory {result['peak_rss_mb']:,.0f} MB")
    print(f"  without validate    {flat['seconds_without_validate']:>8.2f} s; reference (read the orders file "
          f"once, same run): {result['reference_seconds']:.2f} s, the run takes "
          f"{result['seconds'] / max(result['reference_seconds'], 1e-9):.0f}x that")
    if args.json:
        Path(args.json).write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
