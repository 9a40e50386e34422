"""A daily run's manifest (`OUT/D/manifest.json`) and its row in the warehouse's `runs` table.

The manifest says what a run used and did: model version, data fingerprints, row counts,
quarantined rows, checks passed, the quality gate's figures, list sizes, holdout, expected
value per list, the uplift used and where it came from, customers suppressed and in cooldown,
per action the funnel (eligible, above the risk floor, suppressed, in cooldown, EV > 0, listed,
held out) with what kept the list short, and the step timings. It carries counts and names only: never a customer id.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from churn.config import ACTIONS, Config
from churn.data.contract import Dataset
from churn.decide.winback import in_cooldown, listed_dates
from churn.model.registry import data_fingerprint
from churn.publish.warehouse import History
from churn.types import RunDate, due_date

__all__ = ["run_manifest", "warehouse_run", "assignments_for_history"]


def run_manifest(run_date: RunDate, meta: dict[str, Any], dataset: Dataset, gate: dict[str, Any],
                 scores: pd.DataFrame, taken: pd.DataFrame, lists: dict[str, pd.DataFrame], history: History,
                 suppressed: set[str], config: Config,
                 funnel: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run's manifest (without timings): what was used, what was checked, what was listed.

    `funnel` (`churn.decide.winback.funnel`): per action, how many customers each rule let
    through and, in words, what kept the list short.
    """
    longest_cooldown = max(config.winback.action(a).cooldown_days for a in ACTIONS)
    cooling = in_cooldown(listed_dates(scores["customer_id"], history.last_listed), run_date, longest_cooldown)
    treated = taken["arm"] == "treated"
    # Contact details the contract removed under [contract] contact_details = "drop": cells per table
    # and column (only when some were: a clean run's manifest is unchanged).
    removed = {"contact_details_removed": dataset.contact_details} if dataset.contact_details else {}
    return {
        "run_date": str(run_date),
        "model_version": meta["version"],
        "horizon_days": meta["horizon_days"],
        "data_fingerprint": data_fingerprint(dataset.fingerprints),
        "table_fingerprints": dataset.fingerprints,
        "row_counts": dataset.row_counts,
        "quarantined": {name: len(rows) for name, rows in dataset.quarantine.items()},
        # Rows naming no known customer, per table (counts only; `churn validate` shows the first ids).
        "unmatched": {name: {k: v for k, v in found.as_dict().items() if k != "first_ids"}
                      for name, found in dataset.unmatched.items()},
        "cleared": dataset.cleared,
        "checks_passed": ["contract", "model_features", "population", *gate["passed"]],
        "quality": {k: gate[k] for k in ("latest_order", "orders_window", "n_scored")},
        "previous_run": None if history.previous_run is None else history.previous_run["run_date"],
        "n_scored": int(len(scores)),
        "risk_bands": scores["risk_band"].value_counts().sort_index().astype(int).to_dict(),
        "lists": {action: int(len(frame)) for action, frame in lists.items()},
        "holdout": int((taken["arm"] == "holdout").sum()),
        "holdout_by_action": {a: int(((taken["action"] == a) & ~treated).sum()) for a in ACTIONS},
        # Drawn at random for exploration (either arm), per action: see churn.decide.winback.
        "explored_by_action": {a: int(((taken["action"] == a) & taken.get("explored", False)).sum())
                               for a in ACTIONS},
        "expected_value": {a: round(float(taken.loc[(taken["action"] == a) & treated, "expected_value"].sum()), 2)
                           for a in ACTIONS},
        "uplift": history.uplift_report,
        "uplift_per_customer": (None if history.uplift_model is None else
                                {"measured_through": history.uplift_model_through,
                                 "treated": {a: fit["n"] for a, fit in history.uplift_model.treated.items()}}),
        "suppressed_excluded": int(scores["customer_id"].isin(suppressed).sum()),
        "in_cooldown": int(cooling.sum()),
        "funnel": funnel or {},
        **removed,
    }


def warehouse_run(manifest: dict[str, Any], gate: dict[str, Any], config: Config) -> dict[str, Any]:
    """The run's row in the warehouse (its manifest without timings, so that a rerun writes the same row)."""
    return {"run_date": manifest["run_date"], "model_version": manifest["model_version"],
            "horizon_days": manifest["horizon_days"], "campaign": config.winback.campaign,
            "data_fingerprint": manifest["data_fingerprint"], "n_scored": manifest["n_scored"],
            "orders_window": gate["orders_window"], "latest_order": gate["latest_order"],
            "table_schema": gate["table_schema"], "manifest": dict(manifest)}


def assignments_for_history(taken: pd.DataFrame, history: History, run_date: RunDate,
                            config: Config) -> pd.DataFrame:
    """Assignments as the warehouse keeps them: where each uplift came from, and the due date."""
    source = [history.uplift_report[a][s]["source"] for a, s in zip(taken["action"], taken["segment"])]
    due = [due_date(run_date, config.winback.action(a).due_days).timestamp for a in taken["action"]]
    return taken.assign(uplift_source=source, due_date=due)
