"""Prefect artifacts with each flow run's headline numbers: markdown for people, tables to compare runs.

Customer ids and reasons only: no contact details, no feature values beyond what a reason says.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

# How many listed customers per action the score artifact shows (the lists themselves are files).
LISTED_PER_ACTION = 25


def train_markdown(meta: dict[str, Any]) -> str:
    """The training run in a few lines: model, split, metrics beside the baselines."""
    lines = [f"# Churn model {meta['version']}", "",
             f"Trained as of {meta['as_of']}, horizon {meta['horizon_days']} days, {meta['n_train']:,} training rows, "
             f"{len(meta['features'])} features.", ""]
    gate = meta.get("gate")
    if isinstance(gate, dict) and "promoted" in gate:
        lines += [f"Promoted to champion: {'yes' if gate['promoted'] else 'no'}.", ""]
    bt = meta.get("backtest")
    if bt:
        lines += [f"Out-of-time backtest on {bt['test_cutoff']}: {bt['n_test']:,} customers, churn rate "
                  f"{bt['base_rate']:.1%}.", "", "| model | ROC-AUC (95% CI) | PR-AUC | top-decile lift | Brier | ECE |",
                  "|---|---|---|---|---|---|"]
        lines += [_metric_row(name, m) for name, m in bt["models"].items()]
    return "\n".join(lines) + "\n"


def _f(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _metric_row(name: str, m: dict[str, Any]) -> str:
    lo, hi = m.get("roc_auc_ci") or (None, None)
    return (f"| {name} | {_f(m['roc_auc'], '.3f')} ({_f(lo, '.3f')}-{_f(hi, '.3f')}) | {_f(m['pr_auc'], '.3f')} | "
            f"{_f(m['top_decile_lift'], '.2f')} | {_f(m['brier'], '.3f')} | {_f(m['ece'], '.3f')} |")


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def train_table(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model of the backtest: its headline metrics."""
    bt = meta.get("backtest") or {"models": {}}
    rows = []
    for name, m in bt["models"].items():
        lo, hi = m.get("roc_auc_ci") or (None, None)
        rows.append({"model": name, "roc_auc": _r(m["roc_auc"], 4), "roc_auc_low": _r(lo, 4),
                     "roc_auc_high": _r(hi, 4), "pr_auc": _r(m["pr_auc"], 4),
                     "top_decile_lift": _r(m["top_decile_lift"], 3), "brier": _r(m["brier"], 4),
                     "ece": _r(m["ece"], 4)})
    return rows


def score_markdown(manifest: dict[str, Any]) -> str:
    """The scoring run in a few lines: customers, risk bands, list sizes, expected value, holdout."""
    bands = ", ".join(f"{band} {n:,}" for band, n in manifest.get("risk_bands", {}).items())
    ev = manifest.get("expected_value", {})
    held = manifest.get("holdout_by_action", {})
    lines = [f"# Win-back run {manifest['run_date']}", "",
             f"Model {manifest['model_version']}; {manifest['n_scored']:,} customers scored (risk: {bands}).", "",
             "| action | listed | held out | expected value |", "|---|---|---|---|"]
    for action, n in manifest.get("lists", {}).items():
        value = f"{ev[action]:,.0f}" if action in ev else "–"
        lines.append(f"| {action} | {n:,} | {held.get(action, '–')} | {value} |")
    lines += ["", f"Held out in all: {manifest.get('holdout', 0):,} (not contacted, so that the win-back rate can "
              "be measured)."]
    return "\n".join(lines) + "\n"


def score_table(lists: dict[str, pd.DataFrame], per_action: int = LISTED_PER_ACTION) -> list[dict[str, Any]]:
    """The top of each list: action, rank, customer id and the three reasons (nothing else)."""
    rows = []
    for action, frame in lists.items():
        for _, row in frame.head(per_action).iterrows():
            rows.append({"action": action, "rank": int(row["rank"]), "customer_id": str(row["customer_id"]),
                         **{f"reason_{i}": _text(row.get(f"reason_{i}")) for i in (1, 2, 3)}})
    return rows


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def train_artifacts(meta: dict[str, Any]) -> None:
    """Publish the training run's markdown and metrics table."""
    create_markdown_artifact(train_markdown(meta), key="churn-train-summary",
                             description=f"Churn model {meta['version']}")
    create_table_artifact(train_table(meta), key="churn-train-metrics",
                          description="Out-of-time backtest metrics, model and baselines")


def score_artifacts(manifest: dict[str, Any], lists: dict[str, pd.DataFrame]) -> None:
    """Publish the scoring run's markdown and the top of each list (ids and reasons only)."""
    create_markdown_artifact(score_markdown(manifest), key="churn-score-summary",
                             description=f"Win-back run {manifest['run_date']}")
    create_table_artifact(score_table(lists), key="churn-winback-top",
                          description=f"Top {LISTED_PER_ACTION} of each win-back list: ids and reasons")
