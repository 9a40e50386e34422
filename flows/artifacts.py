"""Prefect artifacts with each flow run's headline numbers: markdown for people, a table to compare runs.

Summaries only: counts, metrics and list sizes. No customer id, reason or contact detail is ever
written to Prefect (its database is not covered by `churn forget`).
"""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from churn.decide.outcomes import Measured
from churn.model.backtest import metrics_markdown, metrics_rows


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
                  f"{bt['base_rate']:.1%}.", "", metrics_markdown(bt)]
    return "\n".join(lines) + "\n"


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


def outcomes_markdown(found: Measured) -> str:
    """The outcome run's artifact: what was measured and the summary per action and risk band (no customer ids)."""
    dates = found.list_dates
    lines = [f"# Win-back outcomes through {found.orders_through}", "",
             f"{len(found.follow)} listed customers measured, list dates {dates[0]} to {dates[-1]}.", "",
             "| action | risk band | treated | holdout | rate treated | rate holdout | difference |",
             "|---|---|---|---|---|---|---|"]
    for row in found.table.itertuples():
        lines.append(f"| {row.action} | {row.risk_band} | {row.n_treated} | {row.n_holdout} | "
                     f"{row.rate_treated:.3f} | {row.rate_holdout:.3f} | {row.difference:+.3f} |")
    measured = found.estimates[found.estimates["source"] == "measured"]
    lines += ["", f"Uplift measured for {len(measured)} action/segment pairs; the others keep their prior."]
    return "\n".join(lines) + "\n"


def train_artifacts(meta: dict[str, Any]) -> None:
    """Publish the training run's markdown and metrics table."""
    create_markdown_artifact(train_markdown(meta), key="churn-train-summary",
                             description=f"Churn model {meta['version']}")
    if meta.get("backtest"):
        create_table_artifact(metrics_rows(meta["backtest"]), key="churn-train-metrics",
                              description="Out-of-time backtest metrics, model and baselines")


def score_artifacts(manifest: dict[str, Any]) -> None:
    """Publish the scoring run's summary (counts only: the lists themselves are files)."""
    create_markdown_artifact(score_markdown(manifest), key="churn-score-summary",
                             description=f"Win-back run {manifest['run_date']}")
