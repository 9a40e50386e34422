"""The same daily run on the local engine and on a 2-worker Dask LocalCluster, at growing sizes.

For each size (synthetic shops of about 1M, 10M and 30M orders: 67k, 670k and 2M customers over
two years, orders, customers and suppressions, as bench/daily.py writes them), a fresh process
runs `churn.pipeline.score_day` for the last day on each engine. Printed per size and engine:
seconds (the run; the cluster's start apart), seconds per step, peak memory of the process (local)
or of each worker and of the driver (dask), the dask / local ratio, and the load average of the
machine before and after (it is shared: timings are noisy). The Dask run writes the partitions
(once per data fingerprint, as a new day's data would); `rerun_seconds` is the same run again with
the partitions reused. Per-partition figures (orders per partition, worker-seconds per million
orders) feed the extrapolation in docs/scale.md.

    .venv/bin/python bench/scale.py [--sizes 1,10,30] [--partitions 8] [--json FILE] [--work DIR]
    .venv/bin/python bench/scale.py --train      # also: fit on the cluster vs locally, at the smallest size
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from memory import peak_rss_mb  # bench/memory.py: this process image's own peak

sys.path.insert(0, str(Path(__file__).parent))

ORDERS_PER_CUSTOMER = 15.3  # the synthetic generator over two years (bench/daily.py)
END = "2024-12-31"
WORKERS = 2


def customers_for(million_orders: float) -> int:
    return int(round(million_orders * 1e6 / ORDERS_PER_CUSTOMER, -3))


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def run_local(work: Path, customers: int) -> dict:
    """One daily run in this (fresh) process on the local engine."""
    import shutil

    from churn import pipeline
    from churn.config import CacheConfig, Config
    from churn.types import RunDate

    out = work / "out-local"
    shutil.rmtree(out, ignore_errors=True)
    load = _load()
    started = time.perf_counter()
    result = pipeline.score_day(work / f"data-{customers}", RunDate.parse(END), out, work / "models",
                                Config(cache=CacheConfig(feature_days=0)))
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "steps": result.manifest["timings_seconds"],
            "orders": result.manifest["row_counts"]["orders"], "population": result.manifest["n_scored"],
            "lists": result.manifest["lists"], "peak_rss_mb": round(peak_rss_mb()),
            "load_before": load, "load_after": _load()}


def _peak_rss_mb() -> float:
    """A Dask worker's peak (run there: self-contained, as `memory.peak_rss_mb` is not importable there)."""
    import resource as r

    return r.getrusage(r.RUSAGE_SELF).ru_maxrss / 1024  # workers are spawned, not forked from a big parent


def run_dask(work: Path, customers: int, partitions: int) -> dict:
    """One daily run on a 2-worker LocalCluster (started here, timed apart), then the same run again."""
    import dataclasses
    import shutil

    from churn import pipeline
    from churn.config import CacheConfig, Config, EngineConfig
    from churn.engine import open_engine
    from churn.types import RunDate

    out = work / "out-dask"
    shutil.rmtree(out, ignore_errors=True)
    engine_config = EngineConfig(kind="dask", partitions=partitions, workers=WORKERS, threads_per_worker=1,
                                 storage=str(work / "partitions"))
    shutil.rmtree(work / "partitions", ignore_errors=True)  # a new day's data: partitions written in the run
    config = dataclasses.replace(Config(cache=CacheConfig(feature_days=0)), engine=engine_config)
    load = _load()
    started = time.perf_counter()
    with open_engine(engine_config, out) as engine:
        cluster_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = pipeline.score_day(work / f"data-{customers}", RunDate.parse(END), out, work / "models", config,
                                    engine=engine)
        seconds = time.perf_counter() - started
        load_after = _load()
        started = time.perf_counter()
        again = pipeline.score_day(work / f"data-{customers}", RunDate.parse(END), out, work / "models", config,
                                   engine=engine)
        rerun = time.perf_counter() - started
        workers = engine.client.run(_peak_rss_mb)
    local = json.loads((work / "out-local" / END / "manifest.json").read_text())
    same = {k: v for k, v in local.items() if k != "timings_seconds"} == \
        {k: v for k, v in result.manifest.items() if k != "timings_seconds"}
    return {"seconds": round(seconds, 2), "cluster_start_seconds": round(cluster_seconds, 2),
            "rerun_seconds": round(rerun, 2), "steps": result.manifest["timings_seconds"],
            "rerun_steps": again.manifest["timings_seconds"], "partitions": partitions, "workers": WORKERS,
            "worker_peak_rss_mb": sorted(round(v) for v in workers.values()),
            "driver_peak_rss_mb": round(_peak_rss_mb()), "same_manifest_as_local": same,
            "load_before": load, "load_after": load_after}


def run_training(work: Path, customers: int) -> dict:
    """The production fit on one size: locally, with xgboost.dask, and gathered to one worker (ROC-AUC on a later cutoff)."""
    import dataclasses

    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from churn.config import Config, DataConfig, EngineConfig, ModelConfig
    from churn.data import contract
    from churn.engine import open_engine
    from churn.engine import training as distributed
    from churn.features.snapshots import build_snapshots, data_range
    from churn.model.classifier import ChurnModel
    from churn.model.split import plan_split

    config = Config(data=DataConfig(horizon_days=90), model=ModelConfig(n_train_cutoffs=4, n_estimators=300,
                                                                        learning_rate=0.1, search_budget=2))
    data_dir = work / f"data-{customers}"
    dataset = contract.validate(data_dir)
    split = plan_split(pd.Timestamp("2024-09-30"), 90, 4, *data_range(dataset), 90, with_test=True)
    snaps = build_snapshots(dataset, split.all_cutoffs(), 90, 365)
    test = snaps[snaps["cutoff"] == split.test_cutoff]
    out = {"rows": int(len(snaps)), "load_before": _load()}
    started = time.perf_counter()
    local = ChurnModel(90, config.model).fit(snaps[snaps["cutoff"].isin(split.train_cutoffs)],
                                             snaps[snaps["cutoff"] == split.val_cutoff])
    out["local"] = {"fit_seconds": round(time.perf_counter() - started, 2),
                    "roc_auc": round(roc_auc_score(test["churned"], local.predict_proba(test)[:, 1]), 4)}
    for mode in ("xgboost_dask", "gather"):
        engine_config = EngineConfig(kind="dask", partitions=8, workers=WORKERS, training=mode,
                                     storage=str(work / "partitions"))
        with open_engine(engine_config, work) as engine:
            data = engine.load(str(data_dir), config.contract)
            parts = distributed.snapshots(engine, data, split.all_cutoffs(), 90, 365)
            engine.gather(parts)
            started = time.perf_counter()
            model = distributed.fit(engine, parts, split, 90, dataclasses.replace(config))
            out[mode] = {"fit_seconds": round(time.perf_counter() - started, 2),
                         "roc_auc": round(roc_auc_score(test["churned"], model.predict_proba(test)[:, 1]), 4)}
    out["load_after"] = _load()
    return out


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,30", help="millions of orders, comma-separated")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--train", action="store_true", help="also compare the fits at the smallest size")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--work", default=str(Path(__file__).parent / ".cache" / "scale"))
    parser.add_argument("--run-only", choices=("local", "dask", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--customers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.run_only:
        runs = {"local": lambda: run_local(work, args.customers),
                "dask": lambda: run_dask(work, args.customers, args.partitions),
                "train": lambda: run_training(work, args.customers)}
        print(json.dumps(runs[args.run_only]()))
        return
    from daily import prepare

    figures = []
    for size in [float(s) for s in args.sizes.split(",")]:
        customers = customers_for(size)
        prepare(work, customers)
        local = _child("--run-only", "local", "--customers", str(customers), "--work", str(work))
        dask = _child("--run-only", "dask", "--customers", str(customers), "--work", str(work),
                      "--partitions", str(args.partitions))
        orders = local["orders"]
        per_partition = orders / args.partitions
        worker_seconds = dask["seconds"] * WORKERS
        row = {"million_orders": round(orders / 1e6, 2), "customers": customers, "population": local["population"],
               "local": local, "dask": dask, "ratio": round(dask["seconds"] / local["seconds"], 2),
               "orders_per_partition": int(per_partition),
               "worker_seconds_per_million_orders": round(worker_seconds / (orders / 1e6), 2)}
        figures.append(row)
        print(f"\n{orders / 1e6:.1f}M orders, {customers:,} customers ({local['population']:,} in the population)")
        print(f"  local   {local['seconds']:8.1f} s   peak {local['peak_rss_mb']:,} MB   "
              f"(load {local['load_before']} -> {local['load_after']})")
        print(f"  dask    {dask['seconds']:8.1f} s   workers' peaks {dask['worker_peak_rss_mb']} MB, driver "
              f"{dask['driver_peak_rss_mb']:,} MB   (load {dask['load_before']} -> {dask['load_after']}); "
              f"cluster start {dask['cluster_start_seconds']} s apart; rerun (partitions reused) "
              f"{dask['rerun_seconds']} s")
        print(f"  ratio dask / local {row['ratio']}; {args.partitions} partitions of ~{int(per_partition):,} orders; "
              f"{row['worker_seconds_per_million_orders']} worker-seconds per million orders; "
              f"same manifest: {dask['same_manifest_as_local']}")
        steps = sorted(set(local["steps"]) | set(dask["steps"]), key=list(dask["steps"]).index
                       if set(local["steps"]) <= set(dask["steps"]) else None)
        for step in steps:
            print(f"    {step:<14}{local['steps'].get(step, 0):8.2f} s local  {dask['steps'].get(step, 0):8.2f} s dask"
                  f"  ({dask['rerun_steps'].get(step, 0):.2f} s on the rerun)")
    result = {"figures": figures}
    if args.train:
        smallest = customers_for(float(args.sizes.split(",")[0]))
        result["training"] = _child("--run-only", "train", "--customers", str(smallest), "--work", str(work))
        t = result["training"]
        print(f"\ntraining at {smallest:,} customers ({t['rows']:,} snapshot rows; load {t['load_before']} -> "
              f"{t['load_after']}):")
        for mode in ("local", "xgboost_dask", "gather"):
            print(f"  {mode:<13} fit {t[mode]['fit_seconds']:7.1f} s   ROC-AUC {t[mode]['roc_auc']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
