"""Training on the Dask engine: snapshots per partition, the booster fitted on the cluster.

The building blocks for training beyond one machine (docs/scale.md; `bench/scale.py --train`
measures them; the training job itself gathers the validated data, see `churn.pipeline`). The
snapshots (features at every cutoff and the churn label) are built per partition with
`build_snapshots`, the RFM scores re-ranked among all partitions (`churn.engine.ranks`); they stay
on the workers. The model is then fitted one of two ways (`[engine] training`):

- "xgboost_dask": `xgboost.dask.train` on the stacked snapshots where they are, with the local
  recipe: the validation cutoff's customers split by stable hash into a search half (early
  stopping, the choice among `search_budget` seeded candidates) and a calibration half (Platt or
  isotonic, fitted here on the half's raw predictions, computed on the workers). Distributed
  `hist` builds its quantile sketches per worker, so the booster is not the local one bit for bit;
  its ROC-AUC is held within 0.005 of it (tests/engine).
- "gather": the snapshots gathered to one worker, which runs `ChurnModel.fit` itself: exactly
  the local engine's model, for snapshots that fit one worker's memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss
from xgboost import dask as dxgb

from churn.config import Config
from churn.data import contract
from churn.errors import DataError
from churn.features.engine import FeatureBuilder, feature_columns
from churn.features.snapshots import build_snapshots
from churn.model.classifier import Calibrator, ChurnModel, _stable_half, choose_calibrator
from churn.model.split import Split
from churn.progress import Progress, notify

if TYPE_CHECKING:
    from churn.engine.dask import DaskEngine, PartitionedData

__all__ = ["snapshots", "fit"]


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
    tried: list = []
    notify(progress, "hyper-parameter search", 0, len(candidates))
    # The search, then the winner's lean twin, chosen as in ChurnModel.fit (`ChurnModel.choose`).
    for i, candidate in enumerate([*candidates, None], start=1):
        if candidate is None:
            candidate = model.lean_twin(min(tried, key=lambda r: r[0])[1])
            if candidate is None:
                break
        params = {**model._xgb_params(candidate), "nthread": engine.config.threads_per_worker}
        out = dxgb.train(engine.client, params, dtrain, num_boost_round=settings.n_estimators,
                             evals=[(dstop, "validation")], early_stopping_rounds=settings.early_stopping_rounds,
                             verbose_eval=False)
        booster = out["booster"]
        p = dxgb.predict(engine.client, booster, dstop, iteration_range=(0, booster.best_iteration + 1))
        loss = float(log_loss(y_stop, np.asarray(p.compute()), labels=[0, 1]))
        tried.append((loss, candidate, booster))
        if i <= len(candidates):
            notify(progress, "hyper-parameter search", i, len(candidates))
    model.search_results_ = model.search_table(tried)
    best = model.choose(tried)
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
