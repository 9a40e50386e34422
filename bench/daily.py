"""The full daily run at scale: validate, features, quality gate, score, lists (with reasons), publish.

A synthetic shop of N customers (orders, customers, suppressions; two years) is written to a
work directory and a quick model is trained on a 50,000-customer shop of the same generator;
neither is timed. Then a fresh process runs `churn.pipeline.score_day` (what `churn score`
runs) for the last day, and reports each step's seconds and the peak memory of that process. Target: 2M customers in <= 60 s on 2 cores.

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
STEP_KEYS = {"lists": "lists_and_reasons"}  # the JSON keys of earlier runs


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
    """One daily run through `churn.pipeline.score_day`; seconds per step and peak memory."""
    import shutil

    import pandas as pd

    from churn import pipeline
    from churn.config import CacheConfig, Config
    from churn.types import RunDate

    data_dir, out_dir = work / f"data-{customers}", work / "out"
    shutil.rmtree(out_dir, ignore_errors=True)  # a first run of the day: no history, no cached features
    # The reference, measured in the same run on the same (shared) machine: reading the orders file.
    clock = time.perf_counter()
    reference = len(pd.read_parquet(data_dir / "orders.parquet"))
    reference_seconds = round(time.perf_counter() - clock, 2)
    config = Config(cache=CacheConfig(feature_days=0))
    result = pipeline.score_day(data_dir, RunDate.parse(END), out_dir, work / "models", config)
    manifest = result.manifest
    steps = {STEP_KEYS.get(step, step): round(s, 2) for step, s in manifest["timings_seconds"].items()}
    return {"customers": int(manifest["n_scored"]), "orders": int(manifest["row_counts"]["orders"]),
            "listed": int(sum(manifest["lists"].values()) + manifest["holdout"]),
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
