"""The analyst report: one self-contained HTML file on the business, the model, its drivers and the lists.

The numbers are pure functions of frames (KPIs over time, curves, PSI, drivers, list sizes);
`collect` reads the model registry, the latest run and optionally the data directory;
`render` turns everything into HTML with the charts embedded as PNG (nothing is fetched when
the file is opened). Customer ids never appear in the report, let alone contact details.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from churn.model import explain, registry
from churn.publish import charts, followup
from churn.publish.followup import Followup
from churn.publish.html import img as _img
from churn.publish.html import p as _p
from churn.publish.html import section as _section
from churn.publish.html import table as _table
from churn.config import Config, LifecycleConfig
from churn.errors import DataError
from churn.model.backtest import (bootstrap_auc_ci, calibration_curve, fit_and_score, gain_table,
                                  metrics_rows)
from churn.features.catalogue import EPOCH, catalogue, history_days, labels
from churn.features.engine import FeatureBuilder, occasions, to_day, valid_orders
from churn.features.labels import churn_labels
from churn.model.classifier import ChurnModel
from churn.features.segments import lifecycle_stage, rfm_segment, value_tier

if TYPE_CHECKING:
    from churn.data.contract import Dataset

__all__ = ["monthly_kpis", "psi", "feature_psi", "curves", "segment_metrics", "list_summary",
           "ReportInputs", "collect", "render", "latest_run"]

# A theme this many standard deviations above average in a segment is worth naming; below, noise.
NOTABLE_LIFT = 0.1


# --- business KPIs over time ------------------------------------------------------------------


def _month_ends(first_day: int, last_day: int) -> list[pd.Timestamp]:
    """Ends of the calendar months lying wholly inside [first_day, last_day] (integer days)."""
    first, last = EPOCH + pd.Timedelta(days=first_day), EPOCH + pd.Timedelta(days=last_day)
    starts = pd.date_range(first.to_period("M").start_time, last, freq="MS")
    return [s + pd.offsets.MonthEnd(0) for s in starts if s >= first and s + pd.offsets.MonthEnd(0) <= last]


def monthly_kpis(dataset: Dataset, horizon_days: int, lifecycle: LifecycleConfig,
                 lookback_days: int = 365) -> pd.DataFrame:
    """Business KPIs per whole calendar month of the data, one row per month (indexed by month end).

    - new / active / dormant / lapsed: customers of the population at the month end by stage;
    - churn_rate: share of that population with no purchase in the next `horizon_days` (NaN
      while the window is not over by the end of the data);
    - buyers, retention_rate (buyers of the previous month who bought again this month),
      repurchase_rate (buyers of the month who had bought before it), arpu (net spend per buyer);
    - coupon_redemption_rate: share of the month's orders with a coupon (when orders say so).
    """
    occ = occasions(dataset.orders)
    first_day, last_day = int(occ["day"].min()), int(occ["day"].max())
    month_ends = _month_ends(first_day, last_day)
    if not month_ends:
        raise DataError("the data covers no whole calendar month: the report's KPIs need at least one")
    first_seen = occ.groupby("customer_id")["day"].min()
    rows = []
    for end in month_ends:
        t = to_day(end)
        start = to_day(end.to_period("M").start_time)
        seen = occ[occ["day"] <= t].groupby("customer_id")["day"].agg(["min", "max"])
        seen = seen[seen["max"] > t - lookback_days]
        stage = lifecycle_stage(pd.DataFrame({"tenure_days": t - seen["min"], "recency_days": t - seen["max"]}),
                                lifecycle)
        row: dict[str, Any] = {"month": end, **stage.value_counts().to_dict()}
        if t + horizon_days <= last_day:
            later = occ[(occ["day"] > t) & (occ["day"] <= t + horizon_days)]["customer_id"].unique()
            row["churn_rate"] = float(1 - seen.index.isin(later).mean())
        month = occ[(occ["day"] >= start) & (occ["day"] <= t)]
        buyers = pd.Index(month["customer_id"].unique())
        before = occ[(occ["day"] < start) & (occ["day"] >= to_day(end.to_period("M").start_time
                                                                   - pd.offsets.MonthBegin(1)))]
        previous = pd.Index(before["customer_id"].unique())
        row["buyers"] = len(buyers)
        row["retention_rate"] = float(previous.isin(buyers).mean()) if len(previous) else np.nan
        row["repurchase_rate"] = float((first_seen.reindex(buyers) < start).mean()) if len(buyers) else np.nan
        row["arpu"] = float(month["spend"].sum() / len(buyers)) if len(buyers) else np.nan
        rows.append(row)
    kpis = pd.DataFrame(rows).set_index("month")
    for stage_name in ("new", "active", "dormant", "lapsed"):
        kpis[stage_name] = kpis.get(stage_name, pd.Series(0, index=kpis.index)).fillna(0).astype(int)
    kpis["churn_rate"] = kpis.get("churn_rate", pd.Series(np.nan, index=kpis.index))
    # The first month has no previous month to retain from.
    kpis.iloc[0, kpis.columns.get_loc("retention_rate")] = np.nan
    if "coupon_used" in dataset.orders:
        orders = valid_orders(dataset.orders)
        month = orders["order_ts"].dt.to_period("M").dt.end_time.dt.normalize()
        rate = orders["coupon_used"].astype("float64").groupby(month.to_numpy()).mean()
        kpis["coupon_redemption_rate"] = rate.reindex(kpis.index).to_numpy()
    return kpis


# --- model quality ----------------------------------------------------------------------------


def curves(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """ROC curve, cumulative gains, lift per decile and a reliability curve (the backtest's own tables)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    fpr, tpr, _ = roc_curve(y, p)
    order = np.argsort(-p, kind="stable")
    captured = np.concatenate([[0.0], np.cumsum(y[order]) / max(y.sum(), 1)])
    contacted = np.arange(len(y) + 1) / len(y)
    lift = [row["lift"] for row in gain_table(y, p, n_bins)]
    calibration = [(b["mean_predicted"], b["observed"], b["n"]) for b in calibration_curve(y, p, n_bins)]
    return {"roc": (fpr, tpr), "gains": (contacted, captured), "lift": lift, "calibration": calibration}


def segment_metrics(y: np.ndarray, scores: dict[str, np.ndarray], segments: dict[str, pd.Series],
                    n_boot: int, confidence: float, random_state: int = 0) -> pd.DataFrame:
    """ROC-AUC per segment for every model; the first model also gets its bootstrap interval."""
    rows = []
    first = next(iter(scores))
    for kind, segment in segments.items():
        for name in segment.dropna().unique():
            mask = (segment == name).to_numpy()
            ys = y[mask]
            row: dict[str, Any] = {"segmentation": kind, "segment": str(name), "n": int(mask.sum()),
                                   "churn_rate": float(ys.mean())}
            for model, p in scores.items():
                both = ys.min() != ys.max()
                row[model] = float(roc_auc_score(ys, p[mask])) if both else np.nan
                if model == first:
                    row["ci"] = (bootstrap_auc_ci(ys, p[mask], n_boot, confidence, random_state)
                                 if both and mask.sum() >= 20 else [np.nan, np.nan])
            rows.append(row)
    return pd.DataFrame(rows)


def test_scores(dataset: Dataset, backtest: dict[str, Any], config: Config,
                builder: FeatureBuilder | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Re-run the backtest's split (the cutoffs in its JSON): the test snapshots and every model's scores."""
    h = int(backtest["horizon_days"])
    cutoffs = [pd.Timestamp(c) for c in [*backtest["train_cutoffs"], backtest["val_cutoff"], backtest["test_cutoff"]]]
    builder = builder or FeatureBuilder(dataset, config.data.lookback_days)
    snaps = builder.build(cutoffs)
    snaps["churned"] = churn_labels(snaps, occasions(dataset.orders), h)
    train = snaps[snaps["cutoff"].isin(cutoffs[:-2])]
    val, test = snaps[snaps["cutoff"] == cutoffs[-2]], snaps[snaps["cutoff"] == cutoffs[-1]]
    _, scores = fit_and_score(train, val, test, config.with_horizon(h), h)
    return test.reset_index(drop=True), scores


# --- stability --------------------------------------------------------------------------------


def psi(expected: pd.Series, actual: pd.Series, n_bins: int = 10, floor: float = 1e-4) -> float:
    """Population stability index of `actual` against `expected`, on `expected`'s quantile bins.

    Missing values are a bin of their own; a share of 0 is floored so the log stays finite.
    """
    e, a = expected.to_numpy(dtype=float), actual.to_numpy(dtype=float)
    edges = np.unique(np.nanquantile(e, np.linspace(0, 1, n_bins + 1)[1:-1])) if np.isfinite(e).any() else []

    def shares(x: np.ndarray) -> np.ndarray:
        binned = np.where(np.isnan(x), len(edges) + 1, np.searchsorted(edges, x, side="right"))
        return np.maximum(np.bincount(binned.astype(int), minlength=len(edges) + 2) / max(len(x), 1), floor)

    pe, pa = shares(e), shares(a)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def feature_psi(training: pd.DataFrame, latest: pd.DataFrame, features: list[str], n_bins: int = 10) -> pd.Series:
    """PSI of each feature, latest run against the training snapshots, largest first."""
    values = {f: psi(training[f], latest[f], n_bins) for f in features if f in training and f in latest}
    return pd.Series(values, name="psi").sort_values(ascending=False)


# --- the latest run ---------------------------------------------------------------------------


def latest_run(out_dir: str | Path) -> Path:
    """The newest run directory under `out_dir` (an ISO date with a manifest.json)."""
    runs = sorted(p.parent for p in Path(out_dir).glob("*/manifest.json")
                  if len(p.parent.name) == 10 and p.parent.name[4] == "-")
    if not runs:
        raise DataError(f"no scoring run under {out_dir}: run `churn score --data DIR --date D --out {out_dir}` first")
    return runs[-1]


def list_summary(lists: dict[str, pd.DataFrame], manifest: dict[str, Any]) -> pd.DataFrame:
    """Per action: customers listed, mean risk, expected value (or value at stake), and the holdout."""
    rows = []
    held = manifest.get("holdout_by_action") or {}
    for action, frame in lists.items():
        money = "expected_value" if "expected_value" in frame else "value_at_stake"
        rows.append({"action": action, "listed": len(frame), **({"held out": held.get(action, 0)} if held else {}),
                     "mean_p_churn": float(frame["p_churn_pct"].mean() / 100) if len(frame) else np.nan,
                     "value": float(frame["value"].sum()) if "value" in frame else np.nan,
                     money: float(frame[money].sum()) if money in frame else np.nan})
    out = pd.DataFrame(rows)
    holdout = manifest.get("holdout")
    holdout = sum(holdout.values()) if isinstance(holdout, dict) else holdout
    out.attrs["holdout"] = holdout
    listed = int(out["listed"].sum()) if len(out) else 0
    out.attrs["holdout_share"] = holdout / (holdout + listed) if holdout is not None and holdout + listed else np.nan
    return out


# --- collecting the inputs --------------------------------------------------------------------


@dataclass
class ReportInputs:
    """Everything the report shows, gathered once (see `collect`)."""

    model: ChurnModel
    metadata: dict[str, Any]
    run_date: str
    manifest: dict[str, Any]
    scores: pd.DataFrame
    lists: dict[str, pd.DataFrame]
    config: Config
    kpis: pd.DataFrame | None = None
    test: pd.DataFrame | None = None
    test_scores: dict[str, np.ndarray] | None = None
    training: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    followup: Followup = field(default_factory=Followup)
    data_start: pd.Timestamp | None = None  # the first order in the data (data-start artefacts)

    @property
    def words(self) -> dict[str, str]:
        """Every model feature in words (the catalogue's meanings)."""
        return labels(self.model.feature_names_)


def collect(models_dir: str | Path, out_dir: str | Path, config: Config, data_dir: str | Path | None = None,
            version: str | None = None) -> ReportInputs:
    """Read the champion model (or `version`), the latest run under `out_dir`, and the data if given."""
    from churn.data import contract
    from churn.model import registry

    model, meta = registry.load(models_dir, version)
    run = latest_run(out_dir)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    scores = pd.read_parquet(run / "scores.parquet")
    lists = {p.stem.removeprefix("winback_"): pd.read_csv(p, dtype={"customer_id": str})
             for p in sorted(run.glob("winback_*.csv"))}
    config = config.with_horizon(meta["horizon_days"])
    inputs = ReportInputs(model, meta, run.name, manifest, scores, lists, config)
    if manifest.get("model_version") != meta["version"]:
        inputs.notes.append(f"The latest run ({run.name}) was scored with model {manifest.get('model_version')}, "
                            f"not {meta['version']}: drivers use the features of that run with this model.")
    if data_dir is None:
        missing = "business KPIs and feature drift" if "gain_table" in (meta.get("backtest") or {}) else \
            "business KPIs, feature drift and the model's curves (its backtest holds none)"
        inputs.notes.append(f"No data directory given (--data): {missing} are left out.")
        inputs.followup = followup.collect(out_dir, models_dir, meta, config, None)
        return inputs
    dataset = contract.validate(data_dir, config)
    inputs.data_start = pd.Timestamp(valid_orders(dataset.orders)["order_ts"].min()).normalize()
    inputs.followup = followup.collect(out_dir, models_dir, meta, config, dataset)
    builder = FeatureBuilder(dataset, config.data.lookback_days)
    inputs.kpis = monthly_kpis(dataset, meta["horizon_days"], config.lifecycle, config.data.lookback_days)
    if meta.get("backtest") and "gain_table" not in meta["backtest"]:
        # An older backtest JSON without curves: re-run its split (this refits every model).
        inputs.test, inputs.test_scores = test_scores(dataset, meta["backtest"], config, builder)
    inputs.training = builder.build([pd.Timestamp(c) for c in meta["split"]["train_cutoffs"]])
    return inputs


# --- rendering --------------------------------------------------------------------------------


def _sample(frame: pd.DataFrame, n: int, random_state: int) -> pd.DataFrame:
    """At most `n` rows, drawn reproducibly (drivers of a large run are estimated on a sample)."""
    return frame if len(frame) <= n else frame.sample(n, random_state=random_state).sort_index()


def _headline(inputs: ReportInputs) -> dict[str, str]:
    m, bt = inputs.manifest, inputs.metadata.get("backtest") or {}
    xgb_metrics = (bt.get("models") or {}).get("xgboost")
    lists = m.get("lists", {})
    cards = {"Customers scored": f"{m.get('n_scored', len(inputs.scores)):,}",
             "High churn risk": f"{int((inputs.scores['risk_band'] == 'high').sum()):,}",
             "Listed for win-back": f"{sum(lists.values()):,}" if lists else "–"}
    if xgb_metrics:
        lo, hi = xgb_metrics["roc_auc_ci"]
        cards["Model ROC-AUC"] = f"{xgb_metrics['roc_auc']:.3f} ({lo:.3f}-{hi:.3f})"
        cards["Churn rate (backtest)"] = f"{bt['base_rate']:.1%}"
    return cards


def headline_numbers(inputs: ReportInputs) -> dict[str, str]:
    """The report's headline figures (also published as Prefect artifacts)."""
    return _headline(inputs)


def render(inputs: ReportInputs) -> str:
    """The whole report as one HTML string with every chart embedded."""
    meta = inputs.metadata
    parts = [_intro(inputs), _kpi_section(inputs),
             followup.outcomes_section(inputs.followup, inputs.config, meta["horizon_days"]),
             followup.realised_section(inputs.followup, meta, inputs.config), _quality_section(inputs),
             _driver_section(inputs), _stability_section(inputs), _lists_section(inputs)]
    title = f"Churn report: run {inputs.run_date}, model {meta['version']}"
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (("kpis", "Business"), ("winback", "Did win-back work?"),
                                                           ("realised", "Is the model still right?"),
                                                           ("quality", "Model quality"), ("drivers", "Drivers"),
                                                           ("stability", "Stability"),
                                                           ("lists", "Win-back lists")))
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1><nav>{nav}</nav></header>"
            f"<main>{''.join(parts)}</main></body></html>\n")


def _intro(inputs: ReportInputs) -> str:
    meta = inputs.metadata
    cards = "".join(f'<div class="card"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
                    for k, v in _headline(inputs).items())
    facts = (f"Model {meta['version']} trained as of {meta['as_of']} for a {meta['horizon_days']}-day horizon "
             f"(churned = no purchase in the {meta['horizon_days']} days after the scoring date); "
             f"latest run {inputs.run_date}.")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in inputs.notes)
    return f'<section id="summary"><div class="cards">{cards}</div>{_p(facts)}{notes}</section>'


def data_start_months(months: pd.DatetimeIndex, data_start: pd.Timestamp | None, stage_days: int) -> np.ndarray:
    """True for month ends less than `stage_days` (lifecycle.dormant_days) after the data starts: before
    then no customer can be lapsed, everyone first seen looks new, and repurchase and retention have
    little "before" to look at; those months describe the data's beginning, not the business."""
    if data_start is None:
        return np.zeros(len(months), dtype=bool)
    return np.asarray(months <= data_start + pd.Timedelta(days=stage_days))


KPI_HEADERS = {"month": "month", "new": "new", "active": "active", "dormant": "dormant", "lapsed": "lapsed",
               "churn_rate": "churn rate", "buyers": "buyers", "retention_rate": "retention",
               "repurchase_rate": "repurchase", "arpu": "ARPU", "coupon_redemption_rate": "coupon use"}


def _kpi_section(inputs: ReportInputs) -> str:
    k = inputs.kpis
    if k is None:
        return _section("Business over time", _p("Run `churn report --data DIR` to include the KPIs."), "kpis")
    currency = inputs.config.business.currency
    lookback = inputs.config.data.lookback_days
    stage_days = inputs.config.lifecycle.dormant_days
    partial = data_start_months(k.index, inputs.data_start, stage_days)
    body = [_p("Calendar months wholly inside the data. Stages at each month end (population: bought in the "
               f"last {lookback} days); churn rate: no purchase in the next "
               f"{inputs.metadata['horizon_days']} days; retention: last month's buyers who bought again; "
               f"repurchase: this month's buyers who had bought before; ARPU: net spend per buyer ({currency})."),
            _img(charts.kpi_panel(k, partial, currency), "Business KPIs per month")]
    if partial.any():
        body.append(f'<p class="note">Data-start artefacts: the data starts on {inputs.data_start.date()}. In the '
                    f"first {stage_days} days (lifecycle.dormant_days) no customer can be lapsed, every customer first "
                    f"seen looks new, and repurchase and retention have little history to look back on: those "
                    f"months (shaded, marked †) describe the data's beginning, not the business. Until a full "
                    f"lookback ({lookback} days) of data, customers who last bought before the data began are "
                    f"missing, so dormant and lapsed counts stay low.</p>")
    table = k.reset_index()
    table["month"] = table["month"].dt.strftime("%Y-%m") + np.where(partial, " †", "")
    fmt = {c: ".1%" for c in ("churn_rate", "retention_rate", "repurchase_rate", "coupon_redemption_rate")}
    fmt["arpu"] = ",.2f"
    table = table.rename(columns={**KPI_HEADERS, "arpu": f"ARPU ({currency})"})
    fmt = {KPI_HEADERS.get(c, c) if c != "arpu" else f"ARPU ({currency})": f for c, f in fmt.items()}
    body.append(_table(table, fmt))
    return _section("Business over time", "".join(body), "kpis")


MODEL = "xgboost"


def _model_first(names: Any) -> list[str]:
    """Model names with ours (xgboost) first, the baselines after in their order."""
    names = list(names)
    return sorted(names, key=lambda n: n != MODEL)


def backtest_curves(backtest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model, the `curves` layout from a backtest JSON's gain table and calibration curve.

    The ROC curve is read off the gain table at the decile thresholds (11 points).
    """
    out = {}
    for name, table in backtest["gain_table"].items():
        n = np.array([0] + [row["n"] for row in table]).cumsum()
        caught = np.array([0] + [row["churners"] for row in table]).cumsum()
        total, size = caught[-1], n[-1]
        tpr = caught / total if total else np.zeros(len(n))
        fpr = (n - caught) / (size - total) if size > total else np.zeros(len(n))
        calibration = [(row["mean_predicted"], row["observed"], row["n"])
                       for row in backtest.get("calibration_curve", {}).get(name, [])]
        out[name] = {"roc": (fpr, tpr), "gains": (n / size, tpr), "lift": [row["lift"] for row in table],
                     "calibration": calibration}
    return out


def _segments_from_backtest(backtest: dict[str, Any]) -> pd.DataFrame:
    """The backtest JSON's per-segment metrics as one table (ROC-AUC per model, CI of the first)."""
    rows = []
    for kind, segments in backtest["segments"].items():
        for label, seg in segments.items():
            row: dict[str, Any] = {"segmentation": kind.replace("_", " "), "segment": label, "n": seg["n"],
                                   "churn_rate": seg["base_rate"]}
            for i, name in enumerate(_model_first(seg["models"])):
                m = seg["models"][name]
                row[name] = np.nan if m["roc_auc"] is None else m["roc_auc"]
                if i == 0:
                    row["ci"] = m["roc_auc_ci"] or [np.nan, np.nan]
            rows.append(row)
    return pd.DataFrame(rows)


def _quality_section(inputs: ReportInputs) -> str:
    bt = inputs.metadata.get("backtest")
    if not bt:
        return _section("Model quality", _p("This model was registered without a backtest."), "quality")
    body = [_p(f"Out of time: trained on cutoffs {bt['train_cutoffs'][0]} to {bt['train_cutoffs'][-1]}, early-stopped "
               f"on {bt['val_cutoff']}, tested on {bt['test_cutoff']} ({bt['n_test']:,} customers, churn rate "
               f"{bt['base_rate']:.1%}). Intervals: bootstrap over customers."),
            _table(pd.DataFrame(metrics_rows({"models": {n: bt["models"][n] for n in _model_first(bt["models"])}})))]
    band = registry.quality(inputs.metadata)
    if band:
        body.insert(0, _p(f"Quality of the model served ({inputs.metadata.get('model_kind', 'xgboost')}): "
                          f"{band['text']}."))
    if bt.get("rolling"):
        rolling = pd.DataFrame([{"test cutoff": r["test_cutoff"], "n": r["n_test"],
                                 **{name: m["roc_auc"] for name, m in r["models"].items()}} for r in bt["rolling"]])
        body += [_p("ROC-AUC on earlier test cutoffs, each with its own out-of-time split."),
                 _table(rolling, {c: ".3f" for c in rolling.columns[2:]})]
    found, segments = None, None
    if "gain_table" in bt:
        found = {name: backtest_curves(bt)[name] for name in _model_first(bt["gain_table"])}
        segments = _segments_from_backtest(bt) if bt.get("segments") else None
        source = "the backtest's gain table and calibration curve (ROC read at the decile thresholds)"
    elif inputs.test_scores is not None:
        y = inputs.test["churned"].to_numpy()
        found = {name: curves(y, p) for name, p in inputs.test_scores.items()}
        test = inputs.test
        segs = {"lifecycle stage": lifecycle_stage(test, inputs.config.lifecycle).astype(str),
                "value tier": value_tier(test["spend_365d"] * inputs.config.score.margin_rate,
                                         inputs.config.score.value_tier_cuts).astype(str)}
        segments = segment_metrics(y, inputs.test_scores, segs, inputs.config.evaluate.n_bootstrap,
                                   inputs.config.evaluate.confidence, inputs.config.model.random_state)
        source = "scores re-computed on the backtest's split (its JSON holds no curves)"
    if found:
        body += [_p(f"Curves from {source}."),
                 _img(charts.quality_panel(found), "ROC, cumulative gains, lift per decile and calibration")]
    if segments is not None:
        first = _model_first(bt["models"])[0]
        segments["ci"] = segments["ci"].map(lambda c: "–" if c is None or c[0] != c[0] else f"{c[0]:.3f}-{c[1]:.3f}")
        segments = segments.rename(columns={"ci": f"{first} 95% CI"})
        body += [_p("ROC-AUC per segment of the test customers."),
                 _table(segments, {"churn_rate": ".1%", **{m: ".3f" for m in bt["models"]}})]
    return _section("Model quality against the baselines", "".join(body), "quality")


def base_log_odds(model: ChurnModel, features: pd.DataFrame, contributions: pd.DataFrame) -> np.ndarray:
    """SHAP's base value per customer: the booster's log-odds minus the sum of its contributions."""
    raw = np.clip(model.raw_proba(features), 1e-12, 1 - 1e-12)
    return np.log(raw / (1 - raw)) - contributions.to_numpy(dtype=float).sum(axis=1)


DRIVER_WORDS = ("A driver is the story a feature belongs to: " + ", ".join(explain.THEME_LABELS.values())
                + ". Features group into families (recency, frequency, spend, each event type, ...), families into "
                  "drivers; the lists' warning signs and \"Chosen because\" speak of the same drivers.")


def _driver_section(inputs: ReportInputs) -> str:
    cfg = inputs.config.report
    scores = _sample(inputs.scores, cfg.max_customers, inputs.config.model.random_state)
    feats = scores[inputs.model.feature_names_]
    contributions = inputs.model.contributions(feats)
    drivers = explain.global_drivers(contributions)
    top = drivers["feature"].head(cfg.top_features).tolist()
    words = inputs.words
    explained = charts.explanation(contributions, feats, base_log_odds(inputs.model, feats, contributions), words)
    body = [_p(f"SHAP values (XGBoost's exact contributions, in log-odds of churning; positive raises the risk) of "
               f"{len(scores):,} customers of the run {inputs.run_date}"
               + (f" (a sample of {len(inputs.scores):,})" if len(scores) < len(inputs.scores) else "")
               + ", drawn with shap's own plots. " + DRIVER_WORDS),
            '<div class="row">', _img(charts.global_bar(explained, cfg.top_features), "Global drivers"),
            _img(charts.beeswarm(explained, cfg.top_features), "Beeswarm of the top features"), "</div>"]
    segments = {"Lifecycle stage": scores["lifecycle_stage"].astype(str),
                "Value tier": scores["value_tier"].astype(str),
                "RFM segment": rfm_segment(scores).astype(str)}
    body.append(_p("Mean SHAP value per feature family and segment: red cells raise the segment's risk. "
                   "Below each map, the driver that sets each segment apart (the one furthest above the "
                   "average, in standard deviations) and how often it is a customer's strongest warning sign."))
    reasons = explain.reasons(feats, contributions, top=1)
    for name, segment in segments.items():
        by_family = explain.segment_drivers(contributions, segment, explain.family)
        body.append(f"<h3>{html.escape(name)}</h3>")
        body.append(_img(charts.segment_heatmap(by_family, name), f"Drivers per {name}"))
        body.append(_table(_distinctive_table(contributions, segment, reasons["reason_code_1"]),
                           {"share with it as strongest warning sign": ".0%", "lift (sd)": ".2f"}))
    body.append("<h3>Dependence of the top features</h3>")
    body.append(_img(charts.dependence(explained, [words.get(f, f) for f in top[:cfg.dependence_plots]]),
                     "Dependence plots"))
    return _section("Churn drivers", "".join(body), "drivers")


def _distinctive_table(contributions: pd.DataFrame, segment: pd.Series, top_codes: pd.Series) -> pd.DataFrame:
    lift = explain.distinctive_drivers(contributions, segment)
    shares = explain.top_reason_shares(top_codes, segment)
    rows = []
    for seg, values in lift.drop(columns="n").iterrows():
        best = values.idxmax()
        share = shares.loc[seg, best] if seg in shares.index and best in shares.columns else 0.0
        dominant = shares.loc[seg].idxmax() if seg in shares.index else None
        apart = explain.THEME_LABELS[best] if values[best] >= NOTABLE_LIFT else "nothing stands out"
        rows.append({"segment": seg, "customers": int(lift.loc[seg, "n"]),
                     "driver that sets it apart": apart, "lift (sd)": values[best],
                     "share with it as strongest warning sign": share,
                     "most frequent strongest warning sign": explain.THEME_LABELS.get(dominant, "–")})
    return pd.DataFrame(rows)


def _stability_section(inputs: ReportInputs) -> str:
    cfg = inputs.config.report
    latest = inputs.scores
    if inputs.training is None:
        body = [_p("Score distribution of the latest run (run with --data to compare with the training data)."),
                _img(charts.score_hist({"latest run": latest["p_churn"].to_numpy()}), "Score distribution")]
        return _section("Stability", "".join(body), "stability")
    train_scores = inputs.model.predict_proba(inputs.training)[:, 1]
    score_psi = psi(pd.Series(train_scores), latest["p_churn"], cfg.psi_bins)
    drift = feature_psi(inputs.training, latest, inputs.model.feature_names_, cfg.psi_bins)
    flagged = drift[drift > cfg.psi_threshold]
    body = [_p(f"Latest run against the training snapshots ({len(inputs.training):,} rows at "
               f"{len(inputs.metadata['split']['train_cutoffs'])} cutoffs). PSI of the score: {score_psi:.3f}. "
               f"Features above {cfg.psi_threshold}: "
               + (", ".join(flagged.index) if len(flagged) else "none") + "."),
            '<div class="row">',
            _img(charts.score_hist({"training snapshots": train_scores, f"run {inputs.run_date}":
                                    latest["p_churn"].to_numpy()}), "Score distribution"),
            _img(charts.psi_bars(drift.head(cfg.top_features), cfg.psi_threshold, inputs.words), "Feature drift (PSI)"),
            "</div>"]
    shown = max(cfg.top_features, len(flagged))
    table = drift.head(shown).rename_axis("feature").reset_index()
    words = inputs.words
    table.insert(1, "in words", table["feature"].map(lambda f: words.get(f, f)))
    why = drift_reasons(table["feature"], inputs.metadata["split"]["train_cutoffs"], inputs.data_start,
                        inputs.run_date)
    table["flag"] = np.where(table["psi"] > cfg.psi_threshold, why, "")
    table = table.rename(columns={"flag": "why it drifted"})
    if len(flagged):
        body.append(_p("Why a feature drifted: \"data start\" means its window needs more history than the training "
                       "cutoffs had (the data begins on " + (str(inputs.data_start.date()) if inputs.data_start is not
                                                             None else "an unknown day")
                       + "), so the latest run, with more history, reads larger values: an artefact of the data's "
                         "start that fades once the training cutoffs have the full window, not a change in "
                         "customers. Any other drift is a change in the customers or the feed: check it before "
                         "trusting the scores."))
    body.append(_table(table, {"psi": ".3f"}, table["psi"] > cfg.psi_threshold))
    if len(drift) > shown:
        body.append(_p(f"{len(drift) - shown} more features with a PSI of at most {drift.iloc[shown]:.3f}."))
    return _section("Stability", "".join(body), "stability")


def drift_reasons(features: pd.Series, train_cutoffs: list[str], data_start: pd.Timestamp | None,
                  run_date: str) -> list[str]:
    """Per feature, why it may drift: "data start: ..." when its window needs more history than the
    earliest training cutoff had, else "population or feed changed"."""
    windows = {f.name: f.window for f in catalogue(_event_kinds(features))}
    history = None if data_start is None else (pd.Timestamp(min(train_cutoffs)) - data_start).days
    out = []
    for name in features:
        need = history_days(windows.get(name, ""))
        if history is not None and need > history:
            window = "all history" if need == float("inf") else f"{need:.0f} days"
            out.append(f"data start: needs {window}; the first training cutoff had {history} days, run "
                       f"{run_date} has {(pd.Timestamp(run_date) - data_start).days}")
        else:
            out.append("population or feed changed")
    return out


def _event_kinds(features: pd.Series) -> list[str]:
    import re

    return [m.group(1) for m in (re.match(r"^event_(.+)_(30d|90d|all)$", f) for f in features) if m]


def _lists_section(inputs: ReportInputs) -> str:
    summary = list_summary(inputs.lists, inputs.manifest)
    holdout, share = summary.attrs["holdout"], summary.attrs["holdout_share"]
    body = [_p(f"Run {inputs.run_date}: {int(summary['listed'].sum()) if len(summary) else 0:,} customers listed; "
               f"{holdout if holdout is not None else '–'} held out and not contacted "
               f"({share:.1%} of listed plus held out; configured {inputs.config.winback.holdout_share:.0%}).")]
    if len(summary):
        cur = inputs.config.business.currency
        money = {"value": f"value at stake ({cur})", "expected_value": f"expected gain ({cur})",
                 "value_at_stake": f"value at stake ({cur})"}
        shown = summary.rename(columns={"mean_p_churn": "mean churn risk", **money})
        body.append(_table(shown, {"mean churn risk": ".1%", **{m: ",.0f" for m in money.values()}}))
        funnel = inputs.manifest.get("funnel") or {}
        if funnel:
            body.append(_p("What kept each list short: " + "; ".join(f"{a}: {f['blocked']}" for a, f in funnel.items())
                           + "."))
        codes = [c for c in ("reason_code_1",) if c in inputs.scores]
        listed = pd.concat([f[["customer_id"]].assign(action=a) for a, f in inputs.lists.items()])
        if codes and len(listed):
            top = inputs.scores.set_index("customer_id")["reason_code_1"].reindex(listed["customer_id"])
            themes = top.map(lambda c: explain.THEME_LABELS[explain.theme(c)] if isinstance(c, str) else "none")
            mix = pd.crosstab(listed["action"].to_numpy(), themes.to_numpy(), normalize="index")
            mix.index.name = "action"
            body += [_p("Driver of the listed customers' strongest warning sign, by action (share of the list)."),
                     _table(mix.reset_index(), {c: ".0%" for c in mix.columns})]
    return _section("Latest win-back lists", "".join(body), "lists")


_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:14px 28px}header h1{margin:0 0 6px;font-size:22px}
nav a{color:#cfe3ff;margin-right:18px;text-decoration:none;font-size:14px}
main{max-width:1320px;margin:0 auto;padding:8px 16px 40px}
section{background:#fff;border-radius:8px;padding:8px 18px 18px;margin:18px 0;box-shadow:0 1px 3px #0002}
h2{font-size:19px;border-bottom:1px solid #e3e6ea;padding-bottom:6px}h3{font-size:16px;margin:18px 0 6px}
p{font-size:14px;line-height:1.45}.note{color:#8a4b00}
img{max-width:100%;height:auto;margin:6px 0}.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.row img{max-width:calc(50% - 6px)}@media (max-width:1000px){.row img{max-width:100%}}
.scroll{max-width:100%;overflow-x:auto;margin:8px 0 14px}
table{border-collapse:collapse;font-size:12.5px}
th,td{border:1px solid #e3e6ea;padding:4px 7px;text-align:right}th{background:#eef1f5;vertical-align:bottom}
p.alert{color:#fff;background:#c0392b;padding:8px 12px;border-radius:4px;font-weight:600}
td:first-child,th:first-child,td.t{text-align:left}tr.flag td{background:#ffe3e0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#eef4ff;border-radius:6px;padding:10px 16px;min-width:150px}
.card .v{font-size:22px;font-weight:600}.card .k{font-size:12px;color:#4a5868}
"""
