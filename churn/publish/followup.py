"""The report's look back at published runs, once their outcomes are known.

Two sections of the analyst report:

- **Did win-back work?** Treated against holdout win-back rates per action and risk band, with
  intervals, incremental revenue, coupon redemption and the share the team reached, read from
  what `churn.decide.outcomes.measure` returns (whatever columns it carries); the uplift learned
  against its prior. Below `report.min_per_arm` customers in either arm a row says "too few to
  tell" instead of a difference: one held-out customer proves nothing.
- **Is the model still right?** The realised ROC-AUC, lift and calibration of every run published
  at least one horizon ago (`churn.model.monitoring`), with an alert line for a run below the
  backtest's interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.config import Config
from churn.decide import outcomes
from churn.errors import NothingToMeasure
from churn.model.monitoring import realised_quality
from churn.publish import charts, warehouse
from churn.publish.html import alert, img, p, section, table

if TYPE_CHECKING:
    from churn.data.contract import Dataset

__all__ = ["Followup", "collect", "verdict", "outcomes_section", "realised_section", "ACTION_NAMES"]

ACTION_NAMES = {"callback": "Callback", "exclusive_discount": "Comeback discount", "trial": "Product trial"}
TOO_FEW = "too few to tell"


@dataclass
class Followup:
    """What the report knows about the published runs' outcomes."""

    summary: pd.DataFrame | None = None  # outcomes.measure(...).table, per action and risk band
    estimates: pd.DataFrame | None = None  # uplift per action and segment: measured, prior, shrunk
    list_dates: list[str] = field(default_factory=list)
    orders_through: str | None = None
    realised: pd.DataFrame | None = None  # churn.model.monitoring.realised_quality
    notes: list[str] = field(default_factory=list)


def collect(out_dir: str | Path, models_dir: str | Path, metadata: dict[str, Any], config: Config,
            dataset: Dataset | None) -> Followup:
    """Measure outcomes and realised quality from the warehouse (and the data, when given)."""
    from churn.model import registry

    path = warehouse.path_in(out_dir)
    found = Followup()
    assignments, runs = warehouse.read_table(path, "assignments"), warehouse.read_table(path, "runs")
    if dataset is None:
        follow = warehouse.read_table(path, "outcomes")
        if len(follow):
            found.summary = outcomes.summary(follow, config.outcomes)
            found.list_dates = sorted({str(pd.Timestamp(d).date()) for d in follow["list_date"]})
            found.estimates = warehouse.uplift_estimates(path, "9999-12-31")
            found.notes.append("Outcomes as last stored by `churn outcomes`; run the report with --data to measure "
                               "them afresh and to check the model against what customers did.")
        else:
            found.notes.append("No outcomes measured yet: run `churn outcomes --data DIR` (or the report with --data).")
        return found
    try:
        contacts = warehouse.contacts_with_imports(path, dataset.contacts)
        measured = outcomes.measure(assignments, runs, dataset.orders, contacts, config, where=str(path))
        found.summary, found.estimates = measured.table, measured.estimates
        found.list_dates, found.orders_through = measured.list_dates, measured.orders_through
    except NothingToMeasure as nothing:
        found.notes.append(f"Nothing to measure yet: {nothing}.")
    trained = {m["version"]: m["as_of"] for m in registry.list_versions(models_dir)}
    bt = (metadata.get("backtest") or {}).get("models", {}).get("xgboost") or {}
    found.realised = realised_quality(
        warehouse.read_table(path, "scores"), runs, dataset.orders,
        backtest_auc_ci=tuple(bt["roc_auc_ci"]) if bt.get("roc_auc_ci") else None, max_ece=config.registry.max_ece,
        trained_as_of=trained, n_boot=config.evaluate.n_bootstrap_segments, confidence=config.evaluate.confidence,
        random_state=config.model.random_state)
    return found


def verdict(row: pd.Series, min_per_arm: int) -> str:
    """What a treated-vs-holdout row allows us to say, in words."""
    n_t, n_h = int(row["n_treated"]), int(row["n_holdout"])
    if min(n_t, n_h) < min_per_arm:
        return f"{TOO_FEW}: {n_t} treated, {n_h} held out ({min_per_arm} each needed)"
    if row["ci_low"] > 0:
        return "won back more than the holdout"
    if row["ci_high"] < 0:
        return "did worse than the holdout"
    return "no difference shown"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def _money(currency: str):
    def show(x: object) -> str:
        return f"{x:,.0f} {currency}".strip() if currency.isalpha() or not currency else f"{currency}{x:,.0f}"
    return show


KNOWN = ["action", "risk_band", "n_treated", "n_holdout", "rate_treated", "rate_holdout", "difference", "ci_low",
         "ci_high", "incremental_revenue", "coupon_redemption", "contacted_share"]


def outcomes_section(found: Followup, config: Config, horizon_days: int) -> str:
    """The "Did win-back work?" section."""
    currency, least = config.business.currency, config.report.min_per_arm
    intro = (f"Treated customers were listed for the team; the holdout ({config.winback.holdout_share:.0%}, a stable "
             f"hash of the customer id) was taken from the same ranking but never contacted. A customer came back "
             f"when they bought in the {horizon_days} days after the list date (the run's horizon). The difference "
             f"of the two rates is what the action did, with a 95% interval; below {least} customers in either arm "
             f"a row says \"{TOO_FEW}\" (report.min_per_arm).")
    body = [p(intro)] + [f'<p class="note">{n}</p>' for n in found.notes]
    if found.summary is None or found.summary.empty:
        return section("Did win-back work?", "".join(body), "winback")
    s = found.summary.copy()
    body.append(p(f"Lists of {', '.join(found.list_dates)}" + (f"; orders through {found.orders_through}."
                                                               if found.orders_through else ".")))
    enough = np.minimum(s["n_treated"], s["n_holdout"]) >= least
    shown = pd.DataFrame({
        "action": s["action"].map(lambda a: ACTION_NAMES.get(a, a)), "risk band": s["risk_band"],
        "treated": s["n_treated"], "held out": s["n_holdout"],
        "win-back treated": s["rate_treated"], "win-back held out": s["rate_holdout"],
        "difference (95% CI)": [f"{_pts(r.difference)} ({_pts(r.ci_low)} to {_pts(r.ci_high)})" if ok else "–"
                                for r, ok in zip(s.itertuples(), enough)],
        "what it says": [verdict(r, least) for _, r in s.iterrows()],
        f"incremental revenue ({currency})": s["incremental_revenue"].where(enough),
        "coupons redeemed": s["coupon_redemption"], "reached by the team": s["contacted_share"]})
    for extra in [c for c in s.columns if c not in KNOWN]:  # what outcomes.measure adds (Qini, ...)
        shown[extra.replace("_", " ")] = s[extra]
    pct = {c: ".1%" for c in ("win-back treated", "win-back held out", "coupons redeemed", "reached by the team")}
    body += [table(shown, {**pct, f"incremental revenue ({currency})": _money(currency)}),
             img(charts.outcome_rates(s, least), "Win-back rate, treated against held out, per action")]
    body.append(p("Incremental revenue: (mean revenue of the treated - mean revenue of the held out) x treated, over "
                  "the horizon. Coupons redeemed: share of the treated whose orders in the window used a coupon. "
                  "Reached by the team: share of the treated the team reported contacting (the data's contacts "
                  "table and the lists imported with `churn contacts import`); treated customers are counted as "
                  "listed, reached or not (intention to treat)."))
    if found.estimates is not None and len(found.estimates):
        e = found.estimates[(found.estimates["n_treated"] > 0) | (found.estimates["source"] == "measured")]
        if len(e):
            body.append("<h3>Uplift learned against its prior</h3>")
            body.append(p("Uplift: the share of would-be churners an action wins back, per driver segment. Measured "
                          "= (rate treated - rate held out) / (1 - rate held out); the next runs use it shrunk towards "
                          f"the configured prior by sample size (outcomes.prior_strength = "
                          f"{config.outcomes.prior_strength:g}); below outcomes.min_holdout = "
                          f"{config.outcomes.min_holdout} held-out customers the prior stays."))
            body.append(table(pd.DataFrame({
                "action": e["action"].map(lambda a: ACTION_NAMES.get(a, a)), "segment": e["segment"],
                "treated": e["n_treated"], "held out": e["n_holdout"], "measured": e["measured"],
                "prior": e["prior"], "used by the next runs": e["shrunk"], "source": e["source"]}),
                {"measured": ".1%", "prior": ".1%", "used by the next runs": ".1%"}))
    return section("Did win-back work?", "".join(body), "winback")


def realised_section(found: Followup, metadata: dict[str, Any], config: Config) -> str:
    """The "Is the model still right?" section."""
    h = metadata["horizon_days"]
    body = [p(f"Every published run, checked once its {h}-day horizon has passed: did the customers it ranked as "
              f"risky really stop buying? A delayed-label backtest of the scores as published (all customers of the "
              f"run), beside the out-of-time backtest the model was promoted on.")]
    r = found.realised
    if r is None:
        body.append(p("Run the report with --data to check the published scores against what customers did."))
        return section("Is the model still right?", "".join(body), "realised")
    if r.empty:
        body.append(p(f"No published run is {h} days old inside the data yet."))
        return section("Is the model still right?", "".join(body), "realised")
    bt = (metadata.get("backtest") or {}).get("models", {}).get("xgboost") or {}
    for row in r[r["alert"] != ""].itertuples():
        body.append(alert(f"Alert: run {row.run_date.date()}: {row.alert}. Look at the data (Stability) and "
                          f"consider retraining (churn train)."))
    if (r["alert"] == "").all() and not r["in_sample"].all():
        body.append(p("No alert: every measured run ranks customers within the backtest's interval or above it."))
    if r["in_sample"].any():
        body.append(f'<p class="note">{int(r["in_sample"].sum())} run(s) marked "in sample" were scored by a model '
                    f"trained on their outcomes (their horizon ended on or before its as-of date, as when a demo or a "
                    f"backfill scores the past with today's model): they flatter the model and never alert.</p>")
    shown = pd.DataFrame({
        "run": r["run_date"].dt.strftime("%Y-%m-%d"), "model": r["model_version"], "customers": r["n"],
        "churned": r["churn_rate"], "mean predicted": r["mean_predicted"],
        "ROC-AUC (95% CI)": [f"{a:.3f} ({lo:.3f}-{hi:.3f})" if a == a else "–"
                             for a, lo, hi in zip(r["roc_auc"], r["roc_auc_low"], r["roc_auc_high"])],
        "top-decile lift": r["top_decile_lift"], "ECE": r["ece"],
        "note": np.where(r["in_sample"], "in sample", r["alert"])})
    if bt.get("roc_auc") is not None:
        lo, hi = bt["roc_auc_ci"]
        body.append(p(f"Backtest ({metadata['backtest']['test_cutoff']}): ROC-AUC {bt['roc_auc']:.3f} ({lo:.3f}-"
                      f"{hi:.3f}), top-decile lift {bt['top_decile_lift']:.2f}, ECE {bt['ece']:.3f}."))
    body += [table(shown, {"churned": ".1%", "mean predicted": ".1%", "top-decile lift": ".2f", "ECE": ".3f"},
                   flag=r["alert"] != ""),
             img(charts.realised_panel(r, bt.get("roc_auc_ci")), "Realised ROC-AUC per run and calibration")]
    return section("Is the model still right?", "".join(body), "realised")
