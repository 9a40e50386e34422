"""The full daily run at scale: validate, features, quality gate, score, lists (with reasons), publish.

A synthetic shop of N customers (orders, customers, suppressions; two years) is written to a
work directory and a quick model is trained on a 50,000-customer shop of the same generator;
neither is timed. Then a fresh process runs `churn.pipeline.score_day` (what `churn score`
runs) for the last day, and reports each step's seconds and the peak memory of that process.
Target: 2M customers in <= 30 s and <= 4 GB on 2 cores; validation <= 5 s and <= 2 GB.

References, measured in the same run (the machine is shared, so only same-run ratios compare):
reading the orders file with pandas, for the whole run; and for validation, the contract run on
the same tables read into pandas first (`contract.validate_tables`, the path CSV files and
frames take), in a fresh process of its own, time and peak memory.

    .venv/bin/python bench/daily.py [--customers 2000000] [--json FILE] [--work DIR] [--no-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from memory import peak_rss_mb  # bench/memory.py: this process image's own peak

END = "2024-12-31"
TARGET_SECONDS = 30.0
TARGET_PEAK_MB = 4096.0
TARGET_VALIDATE_SECONDS = 5.0
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
    config = Config(cache=CacheConfig(feature_days=0))
    result = pipeline.score_day(data_dir, RunDate.parse(END), out_dir, work / "models", config)
    peak = round(peak_rss_mb(), 1)  # the run's, before the reference
    # The reference, measured in the same run on the same (shared) machine: reading the orders file.
    clock = time.perf_counter()
    reference = len(pd.read_parquet(data_dir / "orders.parquet"))
    reference_seconds = round(time.perf_counter() - clock, 2)
    manifest = result.manifest
    steps = {STEP_KEYS.get(step, step): round(s, 2) for step, s in manifest["timings_seconds"].items()}
    return {"customers": int(manifest["n_scored"]), "orders": int(manifest["row_counts"]["orders"]),
            "listed": int(sum(manifest["lists"].values()) + manifest["holdout"]),
            "steps_seconds": steps, "seconds": round(sum(steps.values()), 2), "reference_rows": reference,
            "reference_seconds": reference_seconds, "peak_rss_mb": peak}


def reference_validate(work: Path, customers: int) -> dict:
    """The validation reference: every table read into pandas, then the contract on the frames."""
    import pandas as pd

    from churn.data import contract

    data_dir = work / f"data-{customers}"
    clock = time.perf_counter()
    tables = {path.stem: pd.read_parquet(path) for path in sorted(data_dir.glob("*.parquet"))}
    dataset = contract.validate_tables(tables, source={name: f"{name}.parquet" for name in tables})
    return {"seconds": round(time.perf_counter() - clock, 2), "orders": dataset.row_counts["orders"],
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def _child(flag: str, work: Path, customers: int) -> dict:
    """Run this script with `flag` in a fresh process (its own peak memory); its last stdout line as JSON."""
    child = subprocess.run([sys.executable, __file__, flag, "--customers", str(customers), "--work", str(work)],
                           capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000_000)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--work", default=str(Path(__file__).parent / ".cache" / "daily"),
                        help="data, model and outputs (reused; git-ignored)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the validation reference (the contract on pandas frames: slow, ~9 GB at 2M)")
    parser.add_argument("--run-only", action="store_true", help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.run_only:
        print(json.dumps(run_daily(work, args.customers)))
        return
    if args.reference_only:
        print(json.dumps(reference_validate(work, args.customers)))
        return
    prepare(work, args.customers)
    load = os.getloadavg()[0]
    # Fresh processes, so that each peak memory is the daily run's (or the reference's), not the generator's.
    result = _child("--run-only", work, args.customers)
    reference = None if args.no_reference else _child("--reference-only", work, args.customers)
    load = max(load, os.getloadavg()[0])
    steps = result["steps_seconds"]
    flat = {"customers": args.customers, "population": result["customers"], "orders": result["orders"],
            "listed": result["listed"], "seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"],
            "seconds_without_validate": round(result["seconds"] - steps["validate"], 2),
            "reference_read_orders_seconds": result["reference_seconds"], "load_average_1min": round(load, 2),
            **{f"{step}_seconds": s for step, s in steps.items()}}
    if reference is not None:
        flat.update(reference_validate_seconds=reference["seconds"],
                    reference_validate_peak_rss_mb=reference["peak_rss_mb"])
    print(f"daily run: {args.customers:,} customers ({result['customers']:,} in the population), "
          f"{result['orders']:,} orders, {result['listed']} listed; 1-min load average up to {load:.2f}")
    for step, s in steps.items():
        line = f"  {step:<20}{s:>8.2f} s"
        if step == "validate":
            line += f"  ({s / TARGET_VALIDATE_SECONDS:.2f}x the {TARGET_VALIDATE_SECONDS:.0f} s target"
            if reference is not None:
                line += (f"; {s / max(reference['seconds'], 1e-9):.2f}x the reference, the contract on pandas "
                         f"frames, {reference['seconds']:.2f} s and {reference['peak_rss_mb']:,.0f} MB peak, "
                         f"same run")
            line += ")"
        print(line)
    print(f"  {'total':<20}{result['seconds']:>8.2f} s  ({result['seconds'] / TARGET_SECONDS:.2f}x the "
          f"{TARGET_SECONDS:.0f} s target); peak memory {result['peak_rss_mb']:,.0f} MB "
          f"({result['peak_rss_mb'] / TARGET_PEAK_MB:.2f}x the {TARGET_PEAK_MB:,.0f} MB target)")
    print(f"  without validate    {flat['seconds_without_validate']:>8.2f} s; reference (read the orders file "
          f"once, same run): {result['reference_seconds']:.2f} s, the run takes "
          f"{result['seconds'] / max(result['reference_seconds'], 1e-9):.0f}x that")
    if args.json:
        Path(args.json).write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
