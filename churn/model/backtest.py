"""Out-of-time evaluation: the model and the baselines scored on the same test cutoff(s).

Besides the headline metrics, a backtest reports what an analyst reads to trust a score: the
gain/lift table (how many churners each score decile holds), the calibration curve (predicted
vs observed churn per probability bin), the same metrics per lifecycle stage and value tier,
and the metrics again on earlier rolling test cutoffs (is the result stable, or one lucky month?).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from churn.model.baselines import BASELINES
from churn.config import Config, EvaluateConfig
from churn.errors import DataError
from churn.features.engine import FeatureBuilder
from churn.model.classifier import ChurnModel
from churn.model.season import check_cutoffs
from churn.progress import Progress, notify, prefixed
from churn.features.segments import lifecycle_stage, value_tier
from churn.features.snapshots import build_snapshots, data_range
from churn.model.split import Split, assert_out_of_time, plan_split, rolling_test_cutoffs

if TYPE_CHECKING:
    from churn.data.contract import Dataset


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Churn rate among the 10% highest scores over the overall churn rate."""
    n_top = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-p, kind="stable")[:n_top]
    return float(y[top].mean() / y.mean())


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Mean |predicted - observed| churn rate over equal-width probability bins, weighted by size.

    The bins are those of `calibration_curve` (Naeini, Cooper and Hauskrecht 2015, "Obtaining well
    calibrated probabilities using Bayesian binning").
    """
    total = 0.0
    for b in calibration_curve(y, p, n_bins):
        total += b["n"] * abs(b["mean_predicted"] - b["observed"])
    return float(total / len(y))


def bootstrap_auc_ci(y: np.ndarray, p: np.ndarray, n_boot: int, confidence: float, random_state: int) -> list[float]:
    """Percentile bootstrap interval of the ROC-AUC (resampling customers with replacement)."""
    rng = np.random.default_rng(random_state)
    aucs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() != y[idx].max():
            aucs.append(roc_auc_score(y[idx], p[idx]))
    alpha = (1 - confidence) / 2
    return [float(np.quantile(aucs, alpha)), float(np.quantile(aucs, 1 - alpha))]


def metrics(y: np.ndarray, p: np.ndarray, n_boot: int = 500, confidence: float = 0.95,
            random_state: int = 0) -> dict[str, Any]:
    """ROC-AUC with its bootstrap interval, PR-AUC, top-decile lift, Brier score and ECE.

    With a single class (a segment where everyone churned, say) the ranking metrics are None.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return {"roc_auc": None, "roc_auc_ci": None, "pr_auc": None, "top_decile_lift": None,
                "brier": float(brier_score_loss(y, p)) if len(y) else None,
                "ece": expected_calibration_error(y, p) if len(y) else None}
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "roc_auc_ci": bootstrap_auc_ci(y, p, n_boot, confidence, random_state),
        "pr_auc": float(average_precision_score(y, p)),
        "top_decile_lift": top_decile_lift(y, p),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
    }


BANDS = ("Poor", "Fair", "Good", "Excellent")


def quality_band(m: dict[str, Any] | None, base_rate: float, config: EvaluateConfig,
                 max_ece: float) -> dict[str, Any]:
    """A plain-words quality band (Excellent, Good, Fair, Poor) from a backtest's lift and calibration.

    Lift is read against what is possible at the churn rate: a perfect ranking puts only churners
    in the top 10%, a lift of min(10, 1 / base rate). `lift_share` = (lift - 1) / (that - 1)
    picks the band by the `evaluate.band_*` thresholds. Where most customers churn (base rate
    above 50%) even a perfect top decile lifts less than 2x and says little: there the share is
    the ROC-AUC's Gini, 2 x ROC-AUC - 1, the same "share of a perfect ranking" read over every
    customer. An ECE above `max_ece` (probabilities that cannot be read as such) costs one band;
    a ROC-AUC interval reaching 0.5 is Poor. Returns band, lift_share and a sentence with the numbers.
    """
    if not m or m.get("roc_auc") is None or m.get("top_decile_lift") is None:
        return {"band": "Poor", "lift_share": None, "text": "Poor (no backtest ranking to judge by)"}
    if base_rate <= 0.5:
        best = min(10.0, 1.0 / base_rate) if base_rate > 0 else 10.0
        share = float(np.clip((m["top_decile_lift"] - 1) / (best - 1), 0.0, 1.0))
        notes = [f"top-decile lift {m['top_decile_lift']:.2f}, {share:.0%} of the best possible {best:.2f}"]
    else:
        share = float(np.clip(2 * m["roc_auc"] - 1, 0.0, 1.0))
        notes = [f"churn rate {base_rate:.0%}, where lift says little: ROC-AUC {m['roc_auc']:.3f}, "
                 f"{share:.0%} of a perfect ranking"]
    level = sum(share >= t for t in (config.band_fair, config.band_good, config.band_excellent))
    notes.append(f"ECE {m['ece']:.3f}")
    if m["ece"] > max_ece:
        level = max(level - 1, 0)
        notes.append(f"probabilities off by more than {max_ece:.3f}: one band lower")
    low = (m.get("roc_auc_ci") or [m["roc_auc"]])[0]
    if low <= 0.5:
        level = 0
        notes.append(f"ROC-AUC {m['roc_auc']:.3f} cannot be told from chance")
    return {"band": BANDS[level], "lift_share": round(share, 4), "text": f"{BANDS[level]} ({'; '.join(notes)})"}


def fit_and_score(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, config: Config,
                  horizon_days: int, progress: Progress | None = None,
                  season: pd.DataFrame | None = None) -> tuple[ChurnModel | None, dict[str, np.ndarray]]:
    """Fit the model and every baseline on the same training snapshots; score the test snapshots.

    `season`: labelled snapshots at the monthly cutoffs up to the validation cutoff, from which
    the model chooses its seasonal correction (`ChurnModel.fit_season`). When the snapshots
    cannot train XGBoost (a single class in training or validation, as in a shop where almost
    nobody comes back) the model is None and only the baselines are scored.
    """
    scores: dict[str, np.ndarray] = {}
    try:
        model: ChurnModel | None = ChurnModel(horizon_days, config.model).fit(train, val, progress)
        if season is not None:
            model.fit_season(season, val["cutoff"].max())
        scores["xgboost"] = model.predict_proba(test)[:, 1]
    except DataError:
        model = None
    for i, (name, baseline) in enumerate(BASELINES.items()):
        notify(progress, f"baseline {name}", i, len(BASELINES))
        scores[name] = (baseline(random_state=config.model.random_state, horizon_days=horizon_days)
                        .fit(train).predict_proba(test)[:, 1])
    return model, scores


def gain_table(y: np.ndarray, p: np.ndarray, n_groups: int = 10) -> list[dict[str, Any]]:
    """Customers sorted by score, cut into deciles: churners caught per decile and cumulatively.

    `lift` is a decile's churn rate over the overall rate; `cumulative_gain` the share of all
    churners found by contacting down to that decile.
    """
    y = np.asarray(y, dtype=float)
    order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
    groups = np.array_split(order, n_groups)
    base, total, caught, seen = y.mean(), y.sum(), 0.0, 0
    rows = []
    for k, idx in enumerate(groups, start=1):
        churners = float(y[idx].sum())
        caught += churners
        seen += len(idx)
        rows.append({"decile": k, "n": int(len(idx)), "churners": int(churners),
                     "churn_rate": churners / len(idx) if len(idx) else 0.0,
                     "lift": (churners / len(idx)) / base if len(idx) and base else 0.0,
                     "cumulative_gain": caught / total if total else 0.0,
                     "cumulative_lift": (caught / seen) / base if base else 0.0})
    return rows


def calibration_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict[str, Any]]:
    """Mean predicted vs observed churn rate in each of 10 equal-width probability bins (empty bins left out)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return [{"bin": [b / n_bins, (b + 1) / n_bins], "n": int((bins == b).sum()),
             "mean_predicted": float(p[bins == b].mean()), "observed": float(y[bins == b].mean())}
            for b in np.unique(bins)]


def segment_report(test: pd.DataFrame, scores: dict[str, np.ndarray], config: Config) -> dict[str, Any]:
    """The metrics of every model per lifecycle stage and per value tier of the test customers."""
    y = test["churned"].to_numpy()
    segments = {
        "lifecycle_stage": lifecycle_stage(test, config.lifecycle).astype(str).to_numpy(),
        "value_tier": value_tier(test["spend_365d"] * config.score.margin_rate, config.score.value_tier_cuts).astype(str).to_numpy(),
    }
    ev = config.evaluate
    out: dict[str, Any] = {}
    for kind, labels in segments.items():
        out[kind] = {}
        for label in sorted(set(labels)):
            mask = labels == label
            out[kind][label] = {"n": int(mask.sum()), "base_rate": float(y[mask].mean()),
                                "models": {name: metrics(y[mask], p[mask], ev.n_bootstrap_segments, ev.confidence,
                                                         config.model.random_state)
                                           for name, p in scores.items()}}
    return out


def season_check_cutoffs(dataset: Dataset, anchor: pd.Timestamp, config: Config) -> list[pd.Timestamp]:
    """The monthly cutoffs up to `anchor` that the seasonal correction is measured and checked on.

    None when no cutoff there has a twin a year earlier (less than about two years of orders),
    or when the correction is turned off: then no extra features are computed.
    """
    earliest = data_range(dataset)[0] + pd.Timedelta(days=config.model.min_history_days)
    if config.model.season_correction == "none" or anchor - pd.DateOffset(months=12) < earliest:
        return []
    return check_cutoffs(anchor, earliest)


def _plan(dataset: Dataset, test_cutoff: object, config: Config) -> Split:
    start, end = data_range(dataset)
    return plan_split(test_cutoff, config.data.horizon_days, config.model.n_train_cutoffs, start, end,
                      config.model.min_history_days, with_test=True)


def evaluate_split(dataset: Dataset, split: Split, config: Config, detail: bool = True,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Fit every model on the split's training cutoffs and report their metrics on its test cutoff."""
    assert_out_of_time(split)
    h = config.data.horizon_days
    notify(progress, "features of every cutoff", 0, 1)
    checks = season_check_cutoffs(dataset, split.val_cutoff, config)
    snaps = build_snapshots(dataset, sorted(set(split.all_cutoffs()) | set(checks)), h, config.data.lookback_days,
                            FeatureBuilder(dataset, config.data.lookback_days))
    train = snaps[snaps["cutoff"].isin(split.train_cutoffs)]
    val = snaps[snaps["cutoff"] == split.val_cutoff]
    test = snaps[snaps["cutoff"] == split.test_cutoff]
    model, scores = fit_and_score(train, val, test, config, h, progress, snaps[snaps["cutoff"].isin(checks)])
    notify(progress, "metrics with bootstrap intervals", 0, 1)
    y = test["churned"].to_numpy()
    ev = config.evaluate
    report: dict[str, Any] = {
        "horizon_days": h,
        "test_cutoff": split.test_cutoff.date().isoformat(),
        "val_cutoff": split.val_cutoff.date().isoformat(),
        "train_cutoffs": [c.date().isoformat() for c in split.train_cutoffs],
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "base_rate": float(y.mean()),
        "models": {name: metrics(y, p, ev.n_bootstrap, ev.confidence, config.model.random_state)
                   for name, p in scores.items()},
    }
    if model is None:
        report["xgboost_skipped"] = "the snapshots hold a single class in training or validation"
    else:
        report["season"] = {**model.season_.to_dict(), "xgboost_without_correction": metrics(
            y, model.predict_proba(test, seasonal=False)[:, 1], ev.n_bootstrap, ev.confidence,
            config.model.random_state) if model.season_.method != "none" else None}
    if detail and model is not None:
        report["xgboost_params"] = {**model.best_params_, "trees": model.best_iteration_ + 1,
                                    "calibrator": model.calibrator_.method,
                                    "candidates_tried": len(model.search_results_)}
    if detail:
        report["gain_table"] = {name: gain_table(y, p) for name, p in scores.items()}
        report["calibration_curve"] = {name: calibration_curve(y, p) for name, p in scores.items()}
        report["segments"] = segment_report(test, scores, config)
    return report


def backtest(dataset: Dataset, test_cutoff: object, config: Config, split: Split | None = None,
             test_cutoffs: list[object] | None = None, n_rolling: int = 1,
             progress: Progress | None = None) -> dict[str, Any]:
    """Train on earlier cutoffs, early-stop and calibrate on the validation cutoff, evaluate on the test cutoff.

    Returns the backtest JSON of DESIGN.md section 6 for `test_cutoff` (the latest), with the
    gain table, calibration curve and segment metrics, plus `rolling`: the same headline metrics
    on each of `test_cutoffs` (or the `n_rolling` monthly cutoffs ending at `test_cutoff`), each
    with its own strict out-of-time split, and their mean per model. `progress` (optional) hears
    of each split's steps.
    """
    split = split or _plan(dataset, test_cutoff, config)
    cutoffs = sorted({pd.Timestamp(c).normalize() for c in test_cutoffs} if test_cutoffs
                     else rolling_test_cutoffs(split.test_cutoff, n_rolling))
    cutoffs = [c for c in cutoffs if c != split.test_cutoff]

    def told(cutoff: pd.Timestamp, k: int) -> Progress | None:
        return prefixed(progress, f"backtest {cutoff.date()} ({k} of {len(cutoffs) + 1})")

    report = evaluate_split(dataset, split, config, progress=told(split.test_cutoff, 1))
    if cutoffs:
        runs = [evaluate_split(dataset, _plan(dataset, c, config), config, detail=False, progress=told(c, k))
                for k, c in enumerate(cutoffs, start=2)]
        runs.append({k: v for k, v in report.items() if k not in ("gain_table", "calibration_curve", "segments",
                                                                   "xgboost_params")})
        for run in runs:  # the rolling runs keep the correction chosen, not its checks
            if run.get("season"):
                run["season"] = {k: v for k, v in run["season"].items() if k in ("method", "reason")}
        runs.sort(key=lambda r: r["test_cutoff"])
        report["rolling"] = runs
        report["rolling_mean"] = {
            name: {key: float(np.nanmean([np.nan if r["models"][name][key] is None else r["models"][name][key]
                                          for r in runs]))
                   for key in ("roc_auc", "pr_auc", "top_decile_lift", "brier", "ece")}
            for name in report["models"] if all(name in r["models"] for r in runs)}
    return report


def rolling_calibration(report: dict[str, Any]) -> list[str]:
    """One line per rolling test cutoff: each model's ECE, and the seasonal correction XGBoost used."""
    lines = []
    for run in report.get("rolling", []):
        eces = ", ".join(f"{name} {m['ece']:.3f}" for name, m in run["models"].items() if m.get("ece") is not None)
        season = (run.get("season") or {}).get("method")
        lines.append(f"{run['test_cutoff']}: churn rate {run['base_rate']:.1%}, ECE {eces}"
                     + (f" (seasonal correction: {season})" if season else ""))
    return lines


# --- the metrics table, as every face shows it ---------------------------------------------------

METRIC_COLUMNS = ("model", "ROC-AUC (95% CI)", "PR-AUC", "top-decile lift", "Brier", "ECE")
MISSING = "–"  # a metric that cannot be computed (a single class, no backtest)


def _fmt(value: float | None, spec: str) -> str:
    return MISSING if value is None or value != value else format(value, spec)


def metrics_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """The backtest report's headline metrics, one row of formatted cells per model (METRIC_COLUMNS).

    The one rendering of the metrics table: the command line, the model card, the Prefect
    artifact and the analyst report all show these cells; a missing metric shows as "–".
    """
    rows = []
    for name, m in report["models"].items():
        lo, hi = m.get("roc_auc_ci") or (None, None)
        auc = _fmt(m.get("roc_auc"), ".3f")
        rows.append(dict(zip(METRIC_COLUMNS, (
            name, auc if lo is None else f"{auc} ({_fmt(lo, '.3f')}-{_fmt(hi, '.3f')})",
            _fmt(m.get("pr_auc"), ".3f"), _fmt(m.get("top_decile_lift"), ".2f"), _fmt(m.get("brier"), ".3f"),
            _fmt(m.get("ece"), ".3f")))))
    return rows


def metrics_markdown(report: dict[str, Any]) -> str:
    """The metrics table in Markdown (model card, Prefect artifact)."""
    lines = ["| " + " | ".join(METRIC_COLUMNS) + " |", "|" + "---|" * len(METRIC_COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in METRIC_COLUMNS) + " |" for row in metrics_rows(report)]
    return "\n".join(lines)


def metrics_text(report: dict[str, Any]) -> str:
    """The metrics table as plain text for a terminal, under a line naming the split."""
    rows = metrics_rows(report)
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in METRIC_COLUMNS]
    line = lambda cells: "  " + "  ".join(  # noqa: E731
        cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))
    return "\n".join([f"backtest: horizon {report['horizon_days']} days, test cutoff {report['test_cutoff']}, "
                      f"{report['n_test']} customers, churn rate {report['base_rate']:.1%}",
                      line(METRIC_COLUMNS), *(line([r[c] for c in METRIC_COLUMNS]) for r in rows)])
