"""Benchmark the feature engine on synthetic orders: seconds, orders per second, peak memory.

    .venv/bin/python bench/features.py --orders 30000000 [--json FILE] [--sql] [--cases 1 12]

Generates the orders once with `churn.datasets.synthetic` (about 15 per customer over two
years) and caches them as Parquet under `bench/.cache/`. Each measurement runs in a fresh
process that reads the Parquet file (so its peak RSS is the engine's, not the generator's):
the feature engine (`FeatureBuilder`, fast engine) for one cutoff and for 12 monthly cutoffs,
and, as the reference printed beside it as a ratio, the plain-pandas version
(`churn.features.reference`) when the data is small enough for it, else the SQL engine (the
catalogue's definitions run as DuckDB queries: `reference` in the JSON says which). `--sql`
also times the SQL engine when pandas is the reference. CPU seconds are printed beside wall seconds: other work on the machine inflates
the second, less the first.
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

import pandas as pd
from memory import peak_rss_mb

CACHE = Path(__file__).resolve().parent / ".cache"
ORDERS_PER_CUSTOMER = 15  # about what the generator makes per customer over START..END
START, END = "2023-01-01", "2024-12-31"
ONE_CUTOFF = ["2024-12-31"]
MONTHLY_CUTOFFS = [d.date().isoformat() for d in pd.date_range("2024-01-31", periods=12, freq="ME")]
# The pandas reference beyond these sizes needs more memory (one cutoff) or time (12 cutoffs,
# one after another) than a benchmark run should take.
REFERENCE_MAX_ORDERS = {1: 12_000_000, 12: 3_000_000}
REFERENCE_COLUMNS = ["customer_id", "order_ts", "amount", "discount", "status"]


def cached_orders(n_orders: int, seed: int = 0) -> Path:
    """The data directory with about `n_orders` synthetic orders, generated on first use."""
    n_customers = max(1, round(n_orders / ORDERS_PER_CUSTOMER))
    directory = CACHE / f"orders_{n_customers}_seed{seed}"
    path = directory / "orders.parquet"
    if not path.exists():
        from churn.data.datasets.synthetic import generate

        print(f"generating {n_customers:,} customers (cached in {directory}) ...", flush=True)
        data = generate(n_customers, START, END, random_state=seed, items=False, events=False)
        directory.mkdir(parents=True, exist_ok=True)
        data.tables["orders"].to_parquet(directory / "orders.tmp.parquet", index=False)
        (directory / "orders.tmp.parquet").rename(path)
    return directory


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image (bench/memory.py)."""
    return peak_rss_mb()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(engine: str, directory: Path, cutoffs: list[str]) -> dict:
    """One timed run in this process: build the features, return seconds, CPU seconds, peak RSS."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    if engine in ("fast", "sql"):
        from churn.features.engine import FeatureBuilder

        frame = FeatureBuilder(directory, engine=engine).build(cutoffs)
    else:
        from churn.features.reference import reference_features

        orders = pd.read_parquet(directory / "orders.parquet", columns=REFERENCE_COLUMNS)
        frame = reference_features(orders, cutoffs)
    return {"seconds": time.perf_counter() - start, "cpu_seconds": _cpu_seconds() - cpu,
            "peak_rss_mb": _peak_rss_mb(), "rows": len(frame), "columns": frame.shape[1] - 2}


def measure(engine: str, directory: Path, cutoffs: list[str]) -> dict:
    """`run_once` in a fresh Python process, so that peak RSS is this run's alone."""
    cmd = [sys.executable, __file__, "--run", engine, "--data", str(directory), "--cutoffs", *cutoffs]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


ROOT = Path(__file__).resolve().parent.parent


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="about how many synthetic orders")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--no-reference", action="store_true", help="skip the pandas reference")
    parser.add_argument("--sql", action="store_true", help="also time the SQL engine")
    parser.add_argument("--cases", nargs="+", type=int, choices=[1, 12], default=[1, 12],
                        help="one cutoff, 12 monthly cutoffs, or both (default)")
    parser.add_argument("--run", choices=["fast", "sql", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cutoffs", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_once(args.run, args.data, args.cutoffs)))
        return

    directory = cached_orders(args.orders)
    import pyarrow.parquet as pq

    n_orders = pq.ParquetFile(directory / "orders.parquet").metadata.num_rows
    print(f"{n_orders:,} orders, {os.cpu_count()} cores, load average before: {_load()}")
    results = []
    for cutoffs in [c for c in (ONE_CUTOFF, MONTHLY_CUTOFFS) if len(c) in args.cases]:
        run = measure("fast", directory, cutoffs)
        with_reference = not args.no_reference and n_orders <= REFERENCE_MAX_ORDERS[len(cutoffs)]
        ref = measure("pandas", directory, cutoffs) if with_reference else None
        # Beyond the pandas reference's reach, the plain DuckDB version (the SQL engine) is the reference.
        with_sql = args.sql or (not args.no_reference and ref is None)
        sql = measure("sql", directory, cutoffs) if with_sql else None
        result = {"orders": n_orders, "cutoffs": len(cutoffs), "seconds": round(run["seconds"], 3),
                  "cpu_seconds": round(run["cpu_seconds"], 3), "orders_per_second": round(n_orders / run["seconds"]),
                  "peak_rss_mb": round(run["peak_rss_mb"]), "rows": run["rows"], "features": run["columns"],
                  "reference": "pandas" if ref else ("sql" if sql else None),
                  "reference_seconds": round((ref or sql)["seconds"], 3) if ref or sql else None,
                  "reference_peak_rss_mb": round((ref or sql)["peak_rss_mb"]) if ref or sql else None,
                  "sql_seconds": round(sql["seconds"], 3) if sql else None,
                  "sql_peak_rss_mb": round(sql["peak_rss_mb"]) if sql else None,
                  "load_average": _load()}
        results.append(result)
        ratio = f", {ref['seconds'] / run['seconds']:.1f}x faster than pandas ({ref['seconds']:.1f} s, " \
                f"{ref['peak_rss_mb']:.0f} MB)" if ref else ", pandas reference not run (too large)"
        if sql:
            ratio += f", {sql['seconds'] / run['seconds']:.1f}x faster than the SQL engine ({sql['seconds']:.1f} s, " \
                     f"{sql['peak_rss_mb']:.0f} MB)"
        print(f"{len(cutoffs):2d} cutoff(s): {run['seconds']:6.2f} s (CPU {run['cpu_seconds']:.2f} s), "
              f"{n_orders / run['seconds'] / 1e6:5.2f} M orders/s, peak RSS {run['peak_rss_mb']:,.0f} MB, "
              f"{run['rows']:,} rows x {run['columns']} features{ratio}; load {_load()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results if len(results) > 1 else results[0], indent=2) + "\n")


if __name__ == "__main__":
    main()
