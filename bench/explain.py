"""Benchmark: reasons for 100k customers (exact TreeSHAP + plain-word sentences), target <= 10 s on 2 cores.

Trains the production recipe (default `ModelConfig`: search, early stopping, calibration) and the
lean setting (`model.lean_tolerance = 0.01`: the booster cheapest to explain within 1% of the best
validation log-loss) on synthetic data, then explains 100k distinct customers: the features at
one cutoff of a second synthetic population of that size (TreeSHAP now runs once per tree
decision pattern, so its cost depends on how varied the rows are: resampling a few thousand
rows would flatter it). `model.n_jobs` threads. Measured in the same run, as references:

- plain `pred_contribs` on the same rows (the previous implementation): seconds, ratio, and the
  max |difference| of the contributions;
- the lean setting on the same rows (`lean_*` keys in the JSON);
- `predict_proba` on the same rows; optionally `shap.TreeExplainer` (same values, slower);
- XGBoost threads, 1 vs 2: plain `pred_contribs` and the pattern method on the same rows, and a
  fixed 200-round training on 200k snapshot rows (resampled).

The contributions are checked to add up to the booster's margin (exact TreeSHAP) and against
plain `pred_contribs`. Prints figures, CPU seconds and ratios; no assertion on time (the machine
is shared).

    .venv/bin/python bench/explain.py [--customers 3000] [--rows 100000] [--json FILE] [--shap]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from churn.model import explain, treeshap
from churn.config import ModelConfig
from churn.data.contract import validate_tables
from churn.data.datasets.synthetic import generate
from churn.model.classifier import ChurnModel
from churn.features.engine import build_features
from churn.features.snapshots import build_snapshots

TARGET_SECONDS = 10.0
LEAN = 0.01  # the lean setting compared with the production recipe
CUTOFF = "2024-09-01"  # the explained population's scoring day (the training's validation cutoff)
# shap imports matplotlib: keep its cache inside the project, never the user's home.
os.environ.setdefault("MPLCONFIGDIR", os.path.join(os.getcwd(), ".mplconfig"))


def clock(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of all threads) of one call.

    On a shared machine the wall time grows with the load; the CPU time barely does, so
    CPU seconds / threads estimates the wall time on an idle machine.
    """
    started, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started, time.process_time() - cpu


def shape(model: ChurnModel) -> str:
    trees = model.best_iteration_ + 1
    depth = model.best_params_.get("max_depth", model.config.max_depth) if hasattr(model, "best_params_") \
        else model.config.max_depth
    return f"{trees} trees, max depth {depth}, {len(model.feature_names_)} features"


def native(model: ChurnModel, rows: pd.DataFrame, nthread: int) -> np.ndarray:
    """Plain pred_contribs on every row with a given thread count (the previous `ChurnModel.contributions`)."""
    model.booster_.set_param({"nthread": nthread})
    dm = xgb.DMatrix(rows[model.feature_names_], feature_names=model.feature_names_, nthread=nthread)
    return model.booster_.predict(dm, pred_contribs=True, iteration_range=(0, model.best_iteration_ + 1))


def train_rounds(train: pd.DataFrame, features: list[str], nthread: int, rounds: int = 200) -> None:
    """A fixed-size training (no early stopping): what one search candidate costs, threads pinned."""
    dm = xgb.DMatrix(train[features], label=train["churned"], feature_names=features, nthread=nthread)
    xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": 4, "learning_rate": 0.03,
               "subsample": 0.8, "nthread": nthread, "seed": 0}, dm, num_boost_round=rounds)


def population(rows: int) -> tuple[pd.DataFrame, float, int]:
    """(`rows` customers' features at CUTOFF, seconds to build them, distinct customers among them).

    A second synthetic shop, one year of history before the cutoff (the features' lookback);
    customers without an order by then have no features, hence the margin on the size.
    """
    def build() -> pd.DataFrame:
        data = generate(n_customers=math.ceil(rows / 0.85), start="2023-09-01", end=CUTOFF, random_state=2)
        return build_features(validate_tables(data.tables), [CUTOFF])

    features, seconds, _ = clock(build)
    distinct = min(rows, len(features))
    if len(features) < rows:  # resample the shortfall (said in the output)
        extra = np.random.default_rng(0).integers(0, len(features), rows - len(features))
        features = pd.concat([features, features.iloc[extra]])
    return features.iloc[:rows].reset_index(drop=True), seconds, distinct


def explain_rows(model: ChurnModel, rows: pd.DataFrame, threads: int) -> dict[str, float | pd.DataFrame]:
    """Contributions and reasons with `threads` XGBoost threads: the frame, wall and CPU seconds of each."""
    model.use_threads(threads)
    contribs, contribs_s, contribs_cpu = clock(model.contributions, rows)
    _, reasons_s, reasons_cpu = clock(explain.reasons, rows, contribs)
    return {"contributions": contribs, "contributions_s": contribs_s, "contributions_cpu": contribs_cpu,
            "reasons_s": reasons_s, "reasons_cpu": reasons_cpu, "total": contribs_s + reasons_s}


def patterns(model: ChurnModel, rows: pd.DataFrame) -> np.ndarray:
    """Distinct decision patterns of each tree on the rows (what the pattern method computes TreeSHAP for)."""
    columns = np.ascontiguousarray(rows[model.feature_names_].to_numpy(dtype=np.float32).T)
    forest = treeshap.plan(model.booster_, model.best_iteration_ + 1)
    return np.array([len(np.unique(treeshap.decision_patterns(tree, columns))) for tree in forest.trees])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000, help="synthetic customers to train on")
    parser.add_argument("--rows", type=int, default=100_000, help="customers to explain")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--shap", action="store_true", help="also time shap.TreeExplainer (slow)")
    args = parser.parse_args()
    load_before = _load()
    print(f"cores: {os.cpu_count()}, load average before: {load_before}")

    data = generate(n_customers=args.customers, start="2023-01-01", end="2024-12-31", random_state=1)
    dataset = validate_tables(data.tables)
    cutoffs = pd.date_range("2024-01-01", CUTOFF, freq="MS")  # 6 training cutoffs, as in production
    snaps = build_snapshots(dataset, cutoffs, 90)
    train, val = snaps[snaps["cutoff"] < cutoffs[-3]], snaps[snaps["cutoff"] == cutoffs[-1]]
    config = ModelConfig()
    model, fit_s, _ = clock(ChurnModel(90, config).fit, train, val)
    lean, lean_fit_s, _ = clock(ChurnModel(90, dataclasses.replace(config, lean_tolerance=LEAN)).fit, train, val)
    y = val["churned"].to_numpy()
    auc = roc_auc_score(y, model.predict_proba(val)[:, 1])
    lean_auc = roc_auc_score(y, lean.predict_proba(val)[:, 1])
    print(f"production recipe: {shape(model)}, fit {fit_s:.1f} s on {len(train):,} rows, validation ROC-AUC {auc:.3f}")
    print(f"lean setting (lean_tolerance = {LEAN}): {shape(lean)}, fit {lean_fit_s:.1f} s, "
          f"validation ROC-AUC {lean_auc:.3f} (in-sample for the early stopping: a comparison, not a backtest)")

    rows, population_s, distinct = population(args.rows)
    print(f"customers to explain: {len(rows):,} ({distinct:,} distinct), features at {CUTOFF} of a second "
          f"synthetic shop, built in {population_s:.1f} s")
    threads = config.n_jobs or os.cpu_count()
    rng = np.random.default_rng(0)
    _, predict_s, _ = clock(model.predict_proba, rows)
    load_timed = _load()
    methods = _methods()
    ours = explain_rows(model, rows, threads)
    method = methods[-1]
    reference, reference_s, reference_cpu = clock(native, model, rows, threads)
    contribs = ours["contributions"].to_numpy()
    difference = float(np.abs(contribs - reference[:, :-1]).max())
    reference_total = reference_s + ours["reasons_s"]
    # Exact TreeSHAP: each row's contributions (and the bias column) add up to its raw margin.
    margin = model.booster_.predict(model._matrix(rows), output_margin=True,
                                    iteration_range=(0, model.best_iteration_ + 1))
    gap = float(np.abs(contribs.sum(axis=1) + reference[0, -1] - margin).max())
    counts = patterns(model, rows)
    lean_run = explain_rows(lean, rows, threads)
    total = ours["total"]
    print(f"\n{args.rows:,} customers, {threads} XGBoost thread(s) (model.n_jobs = {config.n_jobs}), "
          f"load average {load_timed}:")
    print(f"  contributions (exact TreeSHAP)  {ours['contributions_s']:7.2f} s, {ours['contributions_cpu']:5.1f} CPU-s "
          f"({ours['contributions_s'] / predict_s:.0f}x predict_proba {predict_s:.2f} s); method: {method}")
    print(f"    reference, plain pred_contribs {reference_s:6.2f} s, {reference_cpu:5.1f} CPU-s "
          f"({reference_s / ours['contributions_s']:.1f}x slower, CPU {reference_cpu / ours['contributions_cpu']:.1f}x); "
          f"max |difference| {difference:.1e}; sum - margin: max |difference| {gap:.1e}")
    print(f"    distinct decision patterns per tree: mean {counts.mean():.0f}, median {np.median(counts):.0f}, "
          f"max {counts.max():,} ({counts.sum():,} in all against {len(rows) * len(counts):,} row-trees, "
          f"{len(rows) * len(counts) / counts.sum():.0f}x fewer)")
    print(f"  reasons (families, top 3, text) {ours['reasons_s']:7.2f} s, {ours['reasons_cpu']:5.1f} CPU-s")
    print(f"  reasons in all                  {total:7.2f} s   target {TARGET_SECONDS:.0f} s: "
          f"{'met' if total <= TARGET_SECONDS else 'NOT met'}; reference (plain pred_contribs) {reference_total:.2f} s "
          f"({reference_total / total:.1f}x); lean setting {lean_run['total']:.2f} s")
    print(f"  CPU seconds: contributions {ours['contributions_cpu']:.1f}, reasons {ours['reasons_cpu']:.1f} "
          f"(lean setting: contributions {lean_run['contributions_cpu']:.1f})")

    one_s = clock(native, model, rows, 1)[1]
    two_s = clock(native, model, rows, 2)[1]
    ours_one = explain_rows(model, rows, 1)["contributions_s"]
    ours_two = explain_rows(model, rows, 2)["contributions_s"]
    model.use_threads(threads)
    # Training at a daily-run shop's size: 200k snapshot rows (resampled), 200 rounds of depth 4.
    big = train.iloc[rng.integers(0, len(train), 200_000)]
    train_one_s = clock(train_rounds, big, model.feature_names_, 1)[1]
    train_two_s = clock(train_rounds, big, model.feature_names_, 2)[1]
    print(f"  threads: plain pred_contribs 1 thread {one_s:.2f} s, 2 threads {two_s:.2f} s ({one_s / two_s:.2f}x); "
          f"patterns 1 thread {ours_one:.2f} s, 2 threads {ours_two:.2f} s ({ours_one / ours_two:.2f}x); "
          f"training 200k rows x 200 rounds 1 thread {train_one_s:.2f} s, 2 threads {train_two_s:.2f} s "
          f"({train_one_s / train_two_s:.2f}x)")
    if args.shap:
        import shap

        explainer = shap.TreeExplainer(model.booster_[: model.best_iteration_ + 1])
        values, shap_s, _ = clock(explainer.shap_values, rows[model.feature_names_])
        diff = float(np.abs(values - contribs).max())
        print(f"  shap.TreeExplainer              {shap_s:7.2f} s   ({shap_s / ours['contributions_s']:.2f}x ours; "
              f"max |difference| {diff:.1e})")
    load_after = _load()
    print(f"load average after: {load_after}")
    if args.json:
        args.json.write_text(json.dumps({
            "rows": args.rows, "distinct_rows": distinct, "threads": threads, "seconds": round(total, 3),
            "contributions_seconds": round(ours["contributions_s"], 3), "reasons_seconds": round(ours["reasons_s"], 3),
            "contributions_cpu_seconds": round(ours["contributions_cpu"], 3),
            "reasons_cpu_seconds": round(ours["reasons_cpu"], 3),
            "contributions_method": method,
            "reference_seconds": round(reference_total, 3), "reference_contributions_seconds": round(reference_s, 3),
            "reference_contributions_cpu_seconds": round(reference_cpu, 3),
            "reference_max_abs_difference": difference,
            "patterns_total": int(counts.sum()), "patterns_per_tree_mean": round(float(counts.mean()), 1),
            "patterns_per_tree_median": float(np.median(counts)), "patterns_per_tree_max": int(counts.max()),
            "lean_contributions_cpu_seconds": round(lean_run["contributions_cpu"], 3),
            "predict_seconds": round(predict_s, 3), "trees": model.best_iteration_ + 1,
            "validation_auc": round(auc, 4), "margin_max_abs_difference": gap,
            "lean_seconds": round(lean_run["total"], 3), "lean_trees": lean.best_iteration_ + 1,
            "lean_validation_auc": round(lean_auc, 4),
            "contributions_1_thread_seconds": round(one_s, 3), "contributions_2_threads_seconds": round(two_s, 3),
            "patterns_1_thread_seconds": round(ours_one, 3), "patterns_2_threads_seconds": round(ours_two, 3),
            "train_1_thread_seconds": round(train_one_s, 3), "train_2_threads_seconds": round(train_two_s, 3),
            "load_average": load_after, "load_average_before": load_before,
            "load_average_at_timing": load_timed}, indent=2) + "\n")


class _Methods(logging.Handler):
    """The TreeSHAP method of each `ChurnModel.contributions` call, read from churn.model.treeshap's log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage().split(": ", 1)[-1])


def _methods() -> list[str]:
    """A list that receives the method of every later contributions call."""
    handler = _Methods()
    logger = logging.getLogger(treeshap.__name__)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler.seen


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
