"""Benchmark: reasons for 100k customers (exact TreeSHAP + plain-word sentences), target <= 10 s on 2 cores.

Trains the production recipe (default `ModelConfig`: search, early stopping, calibration) and the
lean setting (`model.lean_tolerance = 0.01`: the booster cheapest to explain within 1% of the best
validation log-loss) on synthetic data, then explains 100k customer rows
(the population's feature rows resampled: TreeSHAP costs the same per row whatever the values)
with `model.n_jobs` threads. Measured in the same run, as references:

- the lean setting on the same rows (`lean_*` keys in the JSON);
- `predict_proba` on the same rows; optionally `shap.TreeExplainer` (same values, slower);
- XGBoost threads, 1 vs 2: `pred_contribs` on the same rows and a fixed 200-round training on
  200k snapshot rows (resampled).

The contributions are checked to add up to the booster's margin (exact TreeSHAP). Prints figures
and ratios; no assertion on time (the machine is shared).

    .venv/bin/python bench/explain.py [--customers 3000] [--rows 100000] [--json FILE] [--shap]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from churn.model import explain
from churn.config import ModelConfig
from churn.data.contract import validate_tables
from churn.data.datasets.synthetic import generate
from churn.model.classifier import ChurnModel
from churn.features.snapshots import build_snapshots

TARGET_SECONDS = 10.0
LEAN = 0.01  # the lean setting compared with the production recipe
# shap imports matplotlib: keep its cache inside the project, never the user's home.
os.environ.setdefault("MPLCONFIGDIR", os.path.join(os.getcwd(), ".mplconfig"))


CPU_SECONDS: dict[str, float] = {}


def clock(fn, *args, **kwargs):
    """(result, wall seconds) of one call; its CPU seconds (all threads) go to CPU_SECONDS[fn name].

    On a shared machine the wall time grows with the load; the CPU time barely does, so
    CPU seconds / threads estimates the wall time on an idle machine.
    """
    started, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    CPU_SECONDS[getattr(fn, "__name__", "call")] = time.process_time() - cpu
    return out, time.perf_counter() - started


def shape(model: ChurnModel) -> str:
    trees = model.best_iteration_ + 1
    depth = model.best_params_.get("max_depth", model.config.max_depth) if hasattr(model, "best_params_") \
        else model.config.max_depth
    return f"{trees} trees, max depth {depth}, {len(model.feature_names_)} features"


def native(model: ChurnModel, rows: pd.DataFrame, nthread: int) -> np.ndarray:
    """pred_contribs with a given thread count (what ChurnModel.contributions runs, threads pinned)."""
    model.booster_.set_param({"nthread": nthread})
    dm = xgb.DMatrix(rows[model.feature_names_], feature_names=model.feature_names_, nthread=nthread)
    return model.booster_.predict(dm, pred_contribs=True, iteration_range=(0, model.best_iteration_ + 1))


def train_rounds(train: pd.DataFrame, features: list[str], nthread: int, rounds: int = 200) -> None:
    """A fixed-size training (no early stopping): what one search candidate costs, threads pinned."""
    dm = xgb.DMatrix(train[features], label=train["churned"], feature_names=features, nthread=nthread)
    xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": 4, "learning_rate": 0.03,
               "subsample": 0.8, "nthread": nthread, "seed": 0}, dm, num_boost_round=rounds)


def explain_rows(model: ChurnModel, rows: pd.DataFrame, threads: int) -> tuple[pd.DataFrame, float, float]:
    """(contributions, seconds for contributions, seconds for reasons) with `threads` XGBoost threads."""
    model.booster_.set_param({"nthread": threads})
    contribs, contribs_s = clock(model.contributions, rows)
    _, reasons_s = clock(explain.reasons, rows, contribs)
    return contribs, contribs_s, reasons_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000, help="synthetic customers to train on")
    parser.add_argument("--rows", type=int, default=100_000, help="customers to explain")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--shap", action="store_true", help="also time shap.TreeExplainer (slow)")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average before: {_load()}")

    data = generate(n_customers=args.customers, start="2023-01-01", end="2024-12-31", random_state=1)
    dataset = validate_tables(data.tables)
    cutoffs = pd.date_range("2024-01-01", "2024-09-01", freq="MS")  # 6 training cutoffs, as in production
    snaps = build_snapshots(dataset, cutoffs, 90)
    train, val = snaps[snaps["cutoff"] < cutoffs[-3]], snaps[snaps["cutoff"] == cutoffs[-1]]
    config = ModelConfig()
    model, fit_s = clock(ChurnModel(90, config).fit, train, val)
    lean, lean_fit_s = clock(ChurnModel(90, dataclasses.replace(config, lean_tolerance=LEAN)).fit, train, val)
    y = val["churned"].to_numpy()
    auc = roc_auc_score(y, model.predict_proba(val)[:, 1])
    lean_auc = roc_auc_score(y, lean.predict_proba(val)[:, 1])
    print(f"production recipe: {shape(model)}, fit {fit_s:.1f} s on {len(train):,} rows, validation ROC-AUC {auc:.3f}")
    print(f"lean setting (lean_tolerance = {LEAN}): {shape(lean)}, fit {lean_fit_s:.1f} s, "
          f"validation ROC-AUC {lean_auc:.3f} (in-sample for the early stopping: a comparison, not a backtest)")

    rng = np.random.default_rng(0)
    rows = val.iloc[rng.integers(0, len(val), args.rows)].reset_index(drop=True)
    threads = config.n_jobs or os.cpu_count()
    _, predict_s = clock(model.predict_proba, rows)
    contribs, contribs_s, reasons_s = explain_rows(model, rows, threads)
    total = contribs_s + reasons_s
    cpu = dict(CPU_SECONDS)
    # Exact TreeSHAP: each row's contributions (and the bias column) add up to its raw margin.
    margin = model.booster_.predict(model._matrix(rows), output_margin=True,
                                    iteration_range=(0, model.best_iteration_ + 1))
    bias = native(model, rows.iloc[:1], threads)[0, -1]
    gap = float(np.abs(contribs.to_numpy().sum(axis=1) + bias - margin).max())
    _, lean_contribs_s, lean_reasons_s = explain_rows(lean, rows, threads)
    lean_total = lean_contribs_s + lean_reasons_s
    print(f"\n{args.rows:,} customers, {threads} XGBoost thread(s) (model.n_jobs = {config.n_jobs}):")
    print(f"  contributions (exact TreeSHAP)  {contribs_s:7.2f} s   ({contribs_s / predict_s:.0f}x predict_proba "
          f"{predict_s:.2f} s); sum - margin: max |difference| {gap:.1e}")
    print(f"  reasons (families, top 3, text) {reasons_s:7.2f} s")
    print(f"  reasons in all                  {total:7.2f} s   target {TARGET_SECONDS:.0f} s: "
          f"{'met' if total <= TARGET_SECONDS else 'NOT met'}; lean setting {lean_total:.2f} s "
          f"({total / lean_total:.1f}x faster; target {'met' if lean_total <= TARGET_SECONDS else 'NOT met'})")
    print(f"  CPU seconds: contributions {cpu['contributions']:.1f}, reasons {cpu['reasons']:.1f} "
          f"(lean setting: contributions {CPU_SECONDS['contributions']:.1f})")

    one_s = clock(native, model, rows, 1)[1]
    two_s = clock(native, model, rows, 2)[1]
    # Training at a daily-run shop's size: 200k snapshot rows (resampled), 200 rounds of depth 4.
    big = train.iloc[rng.integers(0, len(train), 200_000)]
    train_one_s = clock(train_rounds, big, model.feature_names_, 1)[1]
    train_two_s = clock(train_rounds, big, model.feature_names_, 2)[1]
    print(f"  threads: contributions 1 thread {one_s:.2f} s, 2 threads {two_s:.2f} s ({one_s / two_s:.2f}x); "
          f"training 200k rows x 200 rounds 1 thread {train_one_s:.2f} s, 2 threads {train_two_s:.2f} s "
          f"({train_one_s / train_two_s:.2f}x)")
    if args.shap:
        import shap

        explainer = shap.TreeExplainer(model.booster_)
        values, shap_s = clock(explainer.shap_values, rows[model.feature_names_])
        diff = float(np.abs(values - contribs.to_numpy()).max())
        print(f"  shap.TreeExplainer              {shap_s:7.2f} s   ({shap_s / contribs_s:.2f}x native; "
              f"max |difference| {diff:.1e})")
    print(f"load average after: {_load()}")
    if args.json:
        args.json.write_text(json.dumps({
            "rows": args.rows, "threads": threads, "seconds": round(total, 3),
            "contributions_seconds": round(contribs_s, 3), "reasons_seconds": round(reasons_s, 3),
            "contributions_cpu_seconds": round(cpu["contributions"], 3), "reasons_cpu_seconds": round(cpu["reasons"], 3),
            "lean_contributions_cpu_seconds": round(CPU_SECONDS["contributions"], 3),
            "predict_seconds": round(predict_s, 3), "trees": model.best_iteration_ + 1,
            "validation_auc": round(auc, 4), "margin_max_abs_difference": gap,
            "lean_seconds": round(lean_total, 3), "lean_trees": lean.best_iteration_ + 1,
            "lean_validation_auc": round(lean_auc, 4),
            "contributions_1_thread_seconds": round(one_s, 3), "contributions_2_threads_seconds": round(two_s, 3),
            "train_1_thread_seconds": round(train_one_s, 3), "train_2_threads_seconds": round(train_two_s, 3),
            "load_average": _load()}, indent=2) + "\n")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
