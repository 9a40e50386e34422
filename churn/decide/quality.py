"""The data-quality gate of the daily run: freshness, volume against the previous run, schema.

A contract-valid data directory can still be wrong for today: yesterday's feed did not
arrive (freshness), arrived half empty or twice (volume), or lost a table or column (schema).
`check` raises one `QualityError` naming every failed check and what to do; the run then
publishes nothing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from churn.config import QualityConfig
from churn.data.contract import Dataset
from churn.errors import QualityError

__all__ = ["table_schema", "latest_order", "figures", "check_freshness", "check"]


def table_schema(dataset: Dataset) -> dict[str, list[str]]:
    """The tables present and their columns (sorted), as recorded with each run."""
    return {name: sorted(map(str, frame.columns)) for name, frame in dataset.tables().items()}


def latest_order(dataset: Dataset, run_date: object) -> str | None:
    """The day of the latest order on or before D (YYYY-MM-DD), or None."""
    end = pd.Timestamp(run_date).normalize() + pd.Timedelta(days=1)
    ts = dataset.orders["order_ts"]
    seen = ts[ts < end]
    return None if seen.empty else seen.max().date().isoformat()


def figures(dataset: Dataset, run_date: str, n_scored: int, config: QualityConfig) -> dict[str, Any]:
    """What the gate measures: latest order on or before D, orders in the window up to D, population."""
    end = pd.Timestamp(run_date).normalize() + pd.Timedelta(days=1)
    ts = dataset.orders["order_ts"]
    start = end - pd.Timedelta(days=config.volume_window_days)
    return {
        "latest_order": latest_order(dataset, run_date),
        "orders_window": int(((ts >= start) & (ts < end)).sum()),
        "n_scored": int(n_scored),
        "table_schema": table_schema(dataset),
    }


def check_freshness(dataset: Dataset, run_date: object, config: QualityConfig) -> None:
    """Raise `QualityError` at once when D is past the data's latest order (or before its first).

    The daily run checks this before its costly steps: a stale feed or a date outside the data
    is known from the orders alone. `check` repeats it with the other checks.
    """
    problems = _freshness({"latest_order": latest_order(dataset, run_date)}, str(run_date), config)
    if problems:
        raise QualityError(f"data-quality gate failed for run date {run_date}; nothing was published:\n"
                           + "\n".join(f"  - {p}" for p in problems))


def check(measured: dict[str, Any], run_date: str, previous: dict[str, Any] | None,
          config: QualityConfig) -> list[str]:
    """Raise `QualityError` listing every failed check; return the names of the checks passed."""
    problems = _freshness(measured, run_date, config)
    passed = ["freshness"] if not problems else []
    if previous is None:
        passed.append("volume (first run: nothing to compare)")
    else:
        found = _volume(measured, previous, config)
        problems += found
        passed += [] if found else ["volume"]
        found = _schema(measured["table_schema"], previous.get("table_schema") or {}, previous["run_date"])
        problems += found
        passed += [] if found else ["schema"]
    if problems:
        raise QualityError(f"data-quality gate failed for run date {run_date}; nothing was published:\n"
                           + "\n".join(f"  - {p}" for p in problems))
    return passed


def _freshness(measured: dict[str, Any], run_date: str, config: QualityConfig) -> list[str]:
    latest = measured["latest_order"]
    if latest is None:
        return [f"freshness: no order dated on or before {run_date}: is this the right data directory?"]
    lag = (pd.Timestamp(run_date) - pd.Timestamp(latest)).days
    if lag > config.max_lag_days:
        return [f"freshness: the latest order is from {latest}, {lag} days before {run_date} "
                f"(allowed: quality.max_lag_days = {config.max_lag_days}); load the missing days' orders "
                f"or score an earlier date"]
    return []


def _volume(measured: dict[str, Any], previous: dict[str, Any], config: QualityConfig) -> list[str]:
    problems = []
    labels = {"orders_window": f"orders in the {config.volume_window_days} days up to the run date",
              "n_scored": "customers in the population"}
    for key, label in labels.items():
        now, before = measured[key], previous.get(key)
        if not before:
            continue
        change = now / before - 1
        if abs(change) > config.max_volume_change:
            problems.append(f"volume: {label}: {now:,} against {before:,} in the run of {previous['run_date']} "
                            f"({change:+.0%}; allowed: +/-{config.max_volume_change:.0%}, "
                            f"quality.max_volume_change); check that the feed is complete and not loaded twice")
    return problems


def _schema(now: dict[str, list[str]], before: dict[str, list[str]], previous_date: str) -> list[str]:
    problems = []
    for table, columns in sorted(before.items()):
        if table not in now:
            problems.append(f"schema: table {table} was present in the run of {previous_date} and is missing now")
            continue
        lost = sorted(set(columns) - set(now[table]))
        if lost:
            problems.append(f"schema: {table} lost column(s) {', '.join(lost)} since the run of {previous_date}")
    return problems
