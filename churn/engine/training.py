"""Training on the Dask engine: snapshots per partition, the booster fitted on the cluster.

The snapshots (features at every cutoff and the churn label) are built per partition with
`build_snapshots`, the RFM scores re-ranked among all partitions (`churn.engine.ranks`); they stay
on the workers. The model is then fitted one of two ways (`[engine] training`):

- "xgboost_dask": `xgboost.dask.train` on the stacked snapshots where they are, with the local
  recipe: the validation cutoff's customers split by stable hash into a search half (early
  stopping, the choice among `search_budget` seeded candidates) and a calibration half (Platt or
  isotonic, fitted here on the half's raw predictions, computed on the workers). Distributed
  `hist` builds its quantile sketches per worker, so the booster is not the local one bit for bit;
  its ROC-AUC is held within 0.005 of it (tests/engine).
- "gather": the snapshots gathered to one worker, which runs `ChurnModel.fit` itself: exactly
  the local engine's model, for snapshots that fit one worker's memory (docs/scale.md measures both).

The backtest does the same on the backtest's split: the model fitted as above, the baselines
(recency, RFM-logistic, BG/NBD, a few columns each) on the gathered columns they read, and the
metrics, gain table, calibration curve and segment metrics with `churn.model.backtest`'s functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb
from xgboost import dask as dxgb
from sklearn.metrics import log_loss

import churn
from churn.config import Config
from churn.data import contract
from churn.errors import DataError
from churn.features.engine import FeatureBuilder, feature_columns
from churn.features.snapshots import build_snapshots, data_range
from churn.model import backtest as evaluation
from churn.model.baselines import BASELINES, BGNBDChurnModel
from churn.model.classifier import Calibrator, ChurnModel, _stable_half, choose_calibrator
from churn.model.registry import data_fingerprint, model_version
from churn.model.split import Split, assert_out_of_time, plan_split, rolling_test_cutoffs
from churn.model.training import TrainingResult, latest_test_cutoff, small_store_reason
from churn.progress import Progress, notify

if TYPE_CHECKING:
    from churn.engine.dask import DaskEngine, PartitionedData

__all__ = ["data_range_of", "snapshots", "fit", "train", "backtest", "test_snapshots"]

# Columns the baselines and the segment metrics read (gathered; the model's features stay on the workers).
NARROW = ("customer_id", "cutoff", "churned", "recency_days", "orders_365d", "spend_365d", "orders_all",
          "tenure_days")


def data_range_of(engine: DaskEngine, data: PartitionedData) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day with a valid order, over all partitions (`snapshots.data_range`)."""
    ranges = [r for r in engine.gather(engine.map(_range, data.parts)) if r is not None]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _range(dataset: contract.Dataset) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    start, end = data_range(dataset)
    return None if pd.isna(start) else (start, end)


def snapshots(engine: DaskEngine, data: PartitionedData, cutoffs: list[pd.Timestamp], horizon_days: int,
              lookback_days: int) -> list[Any]:
    """Futures of each partition's snapshots at the cutoffs (features and `churned`), RFM ranked globally."""
    parts = engine.map(_snapshots, data.parts, cutoffs=list(cutoffs), horizon_days=horizon_days,
                       lookback_days=lookback_days, event_types=data.event_types,
                       threads=engine.config.threads_per_worker)
    return engine.rank_rfm(parts, cutoffs)


def _snapshots(dataset: contract.Dataset, cutoffs: list[pd.Timestamp], horizon_days: int, lookback_days: int,
               event_types: list[str], threads: int) -> pd.DataFrame:
    builder = FeatureBuilder(dataset, lookback_days, event_types=event_types)
    builder.con.execute(f"SET threads = {int(threads)}")
    return build_snapshots(dataset, cutoffs, horizon_days, lookback_days, builder)


def _rows(frame: pd.DataFrame, cutoffs: list[pd.Timestamp], half: str | None = None, share: float = 0.5
          ) -> pd.DataFrame:
    """The rows at `cutoffs`; `half` = "search" / "calibration" keeps that stable-hash half of the customers."""
    rows = frame[frame["cutoff"].isin(cutoffs)]
    if half is not None:
        calib = _stable_half(rows["customer_id"], share)
        rows = rows[calib if half == "calibration" else ~calib]
    return rows


def _narrow(frame: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    rows = frame[frame["cutoff"].isin(cutoffs)]
    return rows[[c for c in NARROW if c in rows]]


def _class_counts(frame: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> tuple[int, int, int]:
    rows = frame[frame["cutoff"].isin(cutoffs)]
    return len(rows), int(rows["churned"].sum()), int(rows["customer_id"].nunique())


def _predict(frame: pd.DataFrame, model: Any, cutoffs: list[pd.Timestamp], raw: bool = False) -> pd.DataFrame:
    """p(churn) of the rows at `cutoffs` with their label and id (raw: the booster's own, before calibration)."""
    rows = frame[frame["cutoff"].isin(cutoffs)]
    p = model.raw_proba(rows) if raw else model.predict_proba(rows)[:, 1]
    return pd.DataFrame({"customer_id": rows["customer_id"].to_numpy(), "cutoff": rows["cutoff"].to_numpy(),
                         "churned": rows["churned"].to_numpy(), "p": np.asarray(p, dtype="float64")})


def _fit_gathered(*parts: pd.DataFrame, train_cutoffs: list, val_cutoff: pd.Timestamp, horizon_days: int,
                  config: Any) -> ChurnModel:
    """`ChurnModel.fit` on the stacked snapshots, in the local engine's row order (cutoff, customer)."""
    snaps = pd.concat(parts).sort_values(["cutoff", "customer_id"], kind="stable", ignore_index=True)
    return ChurnModel(horizon_days, config).fit(snaps[snaps["cutoff"].isin(train_cutoffs)],
                                                snaps[snaps["cutoff"] == val_cutoff])


def fit(engine: DaskEngine, snaps: list[Any], split: Split, horizon_days: int, config: Config,
        progress: Progress | None = None) -> ChurnModel:
    """The churn model fitted on the snapshots of the split's training cutoffs (`[engine] training`)."""
    train_cutoffs, val = list(split.train_cutoffs), [split.val_cutoff]
    for name, cutoffs in (("training", train_cutoffs), ("validation", val)):
        n, churned, _ = np.sum(engine.gather(engine.map(_class_counts, snaps, cutoffs=cutoffs)), axis=0)
        if churned in (0, n):
            raise DataError(f"{name} snapshots have a single class ({n} rows): "
                            f"need churners and stayers; use more history or another horizon")
    if engine.config.training == "gather":
        future = engine.client.submit(_fit_gathered, *snaps, train_cutoffs=train_cutoffs, val_cutoff=split.val_cutoff,
                                      horizon_days=horizon_days, config=config.model, pure=False)
        return future.result()
    return _fit_xgboost_dask(engine, snaps, train_cutoffs, split.val_cutoff, horizon_days, config, progress)


def _dask_matrix(engine: DaskEngine, snaps: list[Any], cutoffs: list, features: list[str], half: str | None,
                 share: float, label: bool = True) -> Any:
    import dask.dataframe as dd

    rows = engine.map(_rows, snaps, cutoffs=cutoffs, half=half, share=share)
    frame = dd.from_delayed(rows, meta=engine.client.submit(_empty, rows[0]).result())
    return dxgb.DaskDMatrix(engine.client, frame[features], frame["churned"] if label else None,
                                feature_names=features)


def _fit_xgboost_dask(engine: DaskEngine, snaps: list[Any], train_cutoffs: list, val_cutoff: pd.Timestamp,
                      horizon_days: int, config: Config, progress: Progress | None) -> ChurnModel:
    """`ChurnModel.fit`'s recipe with `xgboost.dask`: search and early stopping on the cluster."""
    model = ChurnModel(horizon_days, config.model)
    settings = config.model
    meta = engine.client.submit(_empty, snaps[0]).result()
    model.feature_names_ = feature_columns(meta)
    model.n_features_in_ = len(model.feature_names_)
    model.classes_ = np.array([0, 1])
    share = settings.calibration_share
    val = [val_cutoff]
    halves = {h: np.sum(engine.gather(engine.map(_class_counts, engine.map(_rows, snaps, cutoffs=val, half=h,
                                                                              share=share), cutoffs=val)), axis=0)
              for h in ("search", "calibration")}
    calibrate = settings.calibration != "none" and all(0 < c < n for n, c, _ in halves.values())
    search_half = "search" if calibrate else None
    dtrain = _dask_matrix(engine, snaps, train_cutoffs, model.feature_names_, None, share)
    dstop = _dask_matrix(engine, snaps, val, model.feature_names_, search_half, share)
    y_stop = np.concatenate(engine.gather(engine.map(_labels, snaps, cutoffs=val, half=search_half, share=share)))
    candidates = model._candidates()
    model.search_results_, best = [], None
    notify(progress, "hyper-parameter search", 0, len(candidates))
    for i, candidate in enumerate(candidates, start=1):
        params = {**model._xgb_params(candidate), "nthread": engine.config.threads_per_worker}
        out = dxgb.train(engine.client, params, dtrain, num_boost_round=settings.n_estimators,
                             evals=[(dstop, "validation")], early_stopping_rounds=settings.early_stopping_rounds,
                             verbose_eval=False)
        booster = out["booster"]
        p = dxgb.predict(engine.client, booster, dstop, iteration_range=(0, booster.best_iteration + 1))
        loss = float(log_loss(y_stop, np.asarray(p.compute()), labels=[0, 1]))
        model.search_results_.append({**candidate, "trees": int(booster.best_iteration) + 1,
                                      "validation_logloss": round(loss, 6)})
        if best is None or loss < best[0]:
            best = (loss, candidate, booster)
        notify(progress, "hyper-parameter search", i, len(candidates))
    _, model.best_params_, model.booster_ = best
    model.best_iteration_ = int(model.booster_.best_iteration)
    model.calibrator_, model.calibration_briers_ = Calibrator(), {}
    if calibrate:
        got = pd.concat(engine.gather(engine.map(_predict, snaps, model=engine.ship(model),
                                                 cutoffs=val, raw=True)))
        got = got[_stable_half(got["customer_id"], share)].sort_values("customer_id", kind="stable")
        raw, y = got["p"].to_numpy(), got["churned"].to_numpy()
        if settings.calibration == "auto":
            model.calibrator_, model.calibration_briers_ = choose_calibrator(raw, y, model._seed)
        else:
            model.calibrator_ = Calibrator.fit(settings.calibration, raw, y)
        model.n_calibration_ = int(len(got))
    return model


def _labels(frame: pd.DataFrame, cutoffs: list, half: str | None, share: float) -> np.ndarray:
    return _rows(frame, cutoffs, half, share)["churned"].to_numpy()


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[:0]


def _narrow_frame(engine: DaskEngine, snaps: list[Any], cutoffs: list) -> pd.DataFrame:
    return engine.collect(engine.map(_narrow, snaps, cutoffs=cutoffs), by=["cutoff", "customer_id"])


def test_snapshots(engine: DaskEngine, data: PartitionedData, config: Config) -> Any:
    """A function of a test cutoff giving its snapshots gathered here (for the gate's champion re-score)."""
    def build(cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        snaps = snapshots(engine, data, [pd.Timestamp(cutoff)], horizon_days, config.data.lookback_days)
        return engine.collect(snaps, by=["cutoff", "customer_id"])
    return build


# --- the training job's steps ---------------------------------------------------------------------


def train(engine: DaskEngine, data: PartitionedData, as_of: object, config: Config,
          progress: Progress | None = None) -> TrainingResult:
    """`churn.model.training.train` on the partitions (without its backtest: see `backtest`)."""
    as_of = pd.Timestamp(as_of).normalize()
    h = config.data.horizon_days
    start, end = data_range_of(engine, data)
    split = plan_split(as_of, h, config.model.n_train_cutoffs, start, min(end, as_of),
                       config.model.min_history_days, with_test=False)
    notify(progress, "production model: features of every cutoff", 0, 1)
    snaps = snapshots(engine, data, split.all_cutoffs(), h, config.data.lookback_days)
    train_rows = _narrow_frame(engine, snaps, list(split.train_cutoffs))
    fallback = small_store_reason(train_rows, config)
    extra: dict[str, Any]
    if fallback:
        val_rows = _narrow_frame(engine, snaps, [split.val_cutoff])
        model: ChurnModel | BGNBDChurnModel = BGNBDChurnModel(horizon_days=h).fit(train_rows, val_rows)
        extra = {"model_kind": "bgnbd", "fallback_reason": fallback, "best_iteration": None,
                 "bgnbd_params": dict(zip(("r", "alpha", "a", "b"), map(float, model.params_)))}
    else:
        model = fit(engine, snaps, split, h, config, progress)
        extra = {"model_kind": "xgboost", "best_iteration": model.best_iteration_, "best_params": model.best_params_,
                 "search_candidates": len(model.search_results_),
                 "calibration": {"method": model.calibrator_.method, "briers": model.calibration_briers_}}
    fingerprint = data_fingerprint(data.fingerprints)
    shaping = {k: v for k, v in config.to_dict().items() if k in ("data", "contract", "model", "evaluate")}
    recipe = {"config": shaping, "features": model.feature_names_, "churn_version": churn.__version__,
              "model_kind": extra["model_kind"]}
    if extra["model_kind"] == "xgboost" and engine.config.training == "xgboost_dask":
        recipe["training"] = "xgboost_dask"  # another booster than the local one: another version ("gather" is the same)
    metadata = {
        "version": model_version(as_of.date().isoformat(), h, fingerprint, recipe),
        "as_of": as_of.date().isoformat(), "horizon_days": h, "features": model.feature_names_, **extra,
        "split": split.to_dict(), "n_train": int(len(train_rows)),
        "train_churn_rate": float(train_rows["churned"].mean()), "data_fingerprint": fingerprint,
        "table_fingerprints": data.fingerprints, "backtest": None, "config": config.to_dict(),
        "churn_version": churn.__version__, "xgboost_version": xgb.__version__,
        "engine": {"kind": "dask", "partitions": engine.k, "training": engine.config.training},
    }
    return TrainingResult(model, split, metadata)


def _evaluate_split(engine: DaskEngine, data: PartitionedData, split: Split, config: Config, detail: bool,
                    progress: Progress | None) -> dict[str, Any]:
    """`churn.model.backtest.evaluate_split` on the partitions."""
    assert_out_of_time(split)
    h = config.data.horizon_days
    notify(progress, "features of every cutoff", 0, 1)
    snaps = snapshots(engine, data, split.all_cutoffs(), h, config.data.lookback_days)
    model = fit(engine, snaps, split, h, config, progress)
    test_cutoffs = [split.test_cutoff]
    tested = engine.collect(engine.map(_predict, snaps, model=engine.ship(model), cutoffs=test_cutoffs))
    test = _narrow_frame(engine, snaps, test_cutoffs)
    train = _narrow_frame(engine, snaps, list(split.train_cutoffs))
    scores = {"xgboost": tested["p"].to_numpy()}
    for name, baseline in BASELINES.items():
        scores[name] = (baseline(random_state=config.model.random_state, horizon_days=h)
                        .fit(train).predict_proba(test)[:, 1])
    y = test["churned"].to_numpy()
    ev = config.evaluate
    report: dict[str, Any] = {
        "horizon_days": h, "test_cutoff": split.test_cutoff.date().isoformat(),
        "val_cutoff": split.val_cutoff.date().isoformat(),
        "train_cutoffs": [c.date().isoformat() for c in split.train_cutoffs],
        "n_train": int(len(train)), "n_test": int(len(test)), "base_rate": float(y.mean()),
        "models": {name: evaluation.metrics(y, p, ev.n_bootstrap, ev.confidence, config.model.random_state)
                   for name, p in scores.items()},
    }
    if detail:
        report["xgboost_params"] = {**model.best_params_, "trees": model.best_iteration_ + 1,
                                    "calibrator": model.calibrator_.method,
                                    "candidates_tried": len(model.search_results_)}
        report["gain_table"] = {name: evaluation.gain_table(y, p) for name, p in scores.items()}
        report["calibration_curve"] = {name: evaluation.calibration_curve(y, p) for name, p in scores.items()}
        report["segments"] = evaluation.segment_report(test, scores, config)
    return report


def backtest(engine: DaskEngine, data: PartitionedData, metadata: dict[str, Any], config: Config,
             progress: Progress | None = None) -> dict[str, Any] | None:
    """`churn.model.training.backtest_recipe` on the partitions: the recipe one horizon before its as-of date."""
    h = config.data.horizon_days
    test_cutoff = latest_test_cutoff(pd.Timestamp(metadata["as_of"]), h)
    start, end = data_range_of(engine, data)
    try:
        split = plan_split(test_cutoff, h, config.model.n_train_cutoffs, start, end,
                           config.model.min_history_days, with_test=True)
    except DataError:
        if metadata["model_kind"] == "xgboost":
            raise
        return None
    report = _evaluate_split(engine, data, split, config, True, progress)
    others = [c for c in rolling_test_cutoffs(split.test_cutoff, config.evaluate.n_rolling) if c != split.test_cutoff]
    if others:
        runs = [_evaluate_split(engine, data, plan_split(c, h, config.model.n_train_cutoffs, start, end,
                                                         config.model.min_history_days, with_test=True),
                                config, False, progress) for c in others]
        runs.append({k: v for k, v in report.items() if k not in ("gain_table", "calibration_curve", "segments",
                                                                   "xgboost_params")})
        runs.sort(key=lambda r: r["test_cutoff"])
        report["rolling"] = runs
        report["rolling_mean"] = {
            name: {key: float(np.nanmean([np.nan if r["models"][name][key] is None else r["models"][name][key]
                                          for r in runs]))
                   for key in ("roc_auc", "pr_auc", "top_decile_lift", "brier", "ece")}
            for name in report["models"]}
    return report
