"""Training for production: fit on the latest labelled cutoffs as of a date, with honest metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import churn
from churn.model.baselines import BASELINES, BGNBDChurnModel, LogisticChurnModel, served_baseline
from churn.config import Config
from churn.errors import DataError
from churn.model.backtest import backtest, metrics, quality_band, season_check_cutoffs
from churn.model.classifier import ChurnModel
from churn.progress import Progress, notify, prefixed
from churn.model.registry import data_fingerprint, model_version, promotion_decision
from churn.features.snapshots import build_snapshots, data_range
from churn.model.split import Split, plan_split
from churn.types import last_labelled_cutoff

if TYPE_CHECKING:
    from churn.data.contract import Dataset


@dataclass
class TrainingResult:
    """A fitted model, the split it was fitted on, and the metadata the registry stores."""

    model: ChurnModel | BGNBDChurnModel | LogisticChurnModel
    split: Split
    metadata: dict[str, Any]


def default_as_of(dataset: Dataset) -> pd.Timestamp:
    """The last day with an order: train on everything whose labels are known by then."""
    return data_range(dataset)[1]


def latest_test_cutoff(as_of: pd.Timestamp, horizon_days: int) -> pd.Timestamp:
    """The latest cutoff whose label window ends by `as_of`: where the backtest can look."""
    return last_labelled_cutoff(as_of, horizon_days)


def small_store_reason(train_rows: pd.DataFrame, config: Config) -> str | None:
    """Why the training data is too small for XGBoost (None when it is big enough).

    What a classifier learns from is the rarer class: in a shop where almost nobody comes
    back, the few customers who stayed are that class, however many churned.
    """
    customers, churners = train_rows["customer_id"].nunique(), int(train_rows["churned"].sum())
    stayers = int(len(train_rows) - churners)
    m = config.model
    if customers < m.min_train_customers or churners < m.min_train_churners:
        return (f"{customers} training customers and {churners} churned rows, below the "
                f"{m.min_train_customers} / {m.min_train_churners} of model.min_train_customers / "
                f"model.min_train_churners: scored with BG/NBD")
    if min(churners, stayers) < m.min_train_minority:
        rarer = "stayed" if stayers < churners else "churned"
        return (f"only {min(churners, stayers)} training rows {rarer} (of {len(train_rows)}), below "
                f"model.min_train_minority {m.min_train_minority}: too few to learn from; scored with BG/NBD")
    return None


def at_chance(metrics_: dict[str, Any] | None) -> bool:
    """True when a backtest cannot tell the model's ranking from a coin: its ROC-AUC interval reaches 0.5."""
    if not metrics_ or metrics_.get("roc_auc") is None:
        return True
    low = (metrics_.get("roc_auc_ci") or [metrics_["roc_auc"]])[0]
    return low <= 0.5


def serving_choice(backtest_: dict[str, Any] | None, kind: str) -> tuple[str, str | None]:
    """Which model to serve after the backtest: `kind`, or the best baseline and why.

    The model fitted (`kind`: xgboost, or bgnbd for a small store) is served unless its backtest
    is at chance (see `at_chance`) or its ROC-AUC is below the best baseline's on the same split;
    then the baseline with the highest ROC-AUC is served instead. Without a backtest nothing
    can be compared: `kind` stays.
    """
    models = (backtest_ or {}).get("models") or {}
    ours = models.get(kind)
    ranked = [(m["roc_auc"], name) for name, m in models.items()
              if name in BASELINES and m and m.get("roc_auc") is not None]
    if not ranked or ours is None:
        return kind, None
    best_auc, best = max(ranked)
    if best == kind:
        return kind, None
    auc = ours.get("roc_auc")
    if at_chance(ours):
        shown = "no ROC-AUC" if auc is None else f"ROC-AUC {auc:.3f} (interval reaching 0.5)"
        why = f"{kind} ranked no better than chance on the backtest ({shown})"
    elif auc < best_auc:
        why = f"{kind} ROC-AUC {auc:.3f} is below the best baseline's on the same split"
    else:
        return kind, None
    return best, f"{why}: {best} (ROC-AUC {best_auc:.3f}) is served instead"


def backtest_recipe(dataset: Dataset, metadata: dict[str, Any], config: Config,
                    progress: Progress | None = None) -> dict[str, Any] | None:
    """The backtest of a trained model's recipe one horizon before its as-of date, where labels are known.

    For a small store's BG/NBD model it is None when the data cannot support one.
    """
    # The test labels must be known by the as-of date and inside the data (it may end a day earlier).
    known_by = min(pd.Timestamp(metadata["as_of"]), data_range(dataset)[1])
    test_cutoff = latest_test_cutoff(known_by, config.data.horizon_days)
    try:
        return backtest(dataset, test_cutoff, config, n_rolling=config.evaluate.n_rolling, progress=progress)
    except DataError:
        if metadata["model_kind"] == "xgboost":
            raise  # a store big enough for XGBoost has the history for a backtest: a real problem
        return None


def train(dataset: Dataset, as_of: object, config: Config, evaluate: bool = True,
          progress: Progress | None = None) -> TrainingResult:
    """Fit the production model as of a date; backtest the same recipe on the latest testable cutoff.

    The production model trains on monthly cutoffs whose labels are known at `as_of` and
    early-stops, tunes and calibrates on the latest of them. The backtest shifts the same recipe
    one horizon back, so its test labels are known too: the metrics are out of time, never on
    training data. A store too small for XGBoost (see `small_store_reason`) gets BG/NBD instead.
    Without `evaluate` the metadata's backtest is None (see `backtest_recipe`). `progress`
    (optional) hears of the steps.
    """
    as_of = pd.Timestamp(as_of).normalize()
    h = config.data.horizon_days
    start, end = data_range(dataset)
    split = plan_split(as_of, h, config.model.n_train_cutoffs, start, min(end, as_of),
                       config.model.min_history_days, with_test=False)
    notify(progress, "production model: features of every cutoff", 0, 1)
    checks = season_check_cutoffs(dataset, split.val_cutoff, config)
    snaps = build_snapshots(dataset, sorted(set(split.all_cutoffs()) | set(checks)), h, config.data.lookback_days)
    train_rows = snaps[snaps["cutoff"].isin(split.train_cutoffs)]
    val_rows = snaps[snaps["cutoff"] == split.val_cutoff]
    fallback = small_store_reason(train_rows, config)
    extra: dict[str, Any]
    model: ChurnModel | BGNBDChurnModel | LogisticChurnModel
    if fallback:
        model = BGNBDChurnModel(horizon_days=h).fit(train_rows, val_rows)
        extra = {"model_kind": "bgnbd", "fallback_reason": fallback, "best_iteration": None,
                 "bgnbd_params": dict(zip(("r", "alpha", "a", "b"), map(float, model.params_)))}
    else:
        model = ChurnModel(h, config.model).fit(train_rows, val_rows, prefixed(progress, "production model"))
        model.fit_season(snaps[snaps["cutoff"].isin(checks)], split.val_cutoff)
        extra = {"model_kind": "xgboost", "best_iteration": model.best_iteration_, "best_params": model.best_params_,
                 "search_candidates": len(model.search_results_),
                 "calibration": {"method": model.calibrator_.method, "briers": model.calibration_briers_},
                 "season": {"method": model.season_.method, "reason": model.season_.reason}}
    metadata = {
        "as_of": as_of.date().isoformat(),
        "horizon_days": h,
        **extra,
        "split": split.to_dict(),
        "n_train": int(len(train_rows)),
        "train_churn_rate": float(train_rows["churned"].mean()),
        "data_fingerprint": data_fingerprint(dataset.fingerprints),
        "table_fingerprints": dataset.fingerprints,
        "backtest": None,
        "config": config.to_dict(),
        "churn_version": churn.__version__,
        "xgboost_version": __import__("xgboost").__version__,
    }
    if evaluate:
        metadata["backtest"] = backtest_recipe(dataset, metadata, config, progress)
        served, why = serving_choice(metadata["backtest"], extra["model_kind"])
        if why:
            model = served_baseline(served, h, config.model.random_state).fit(train_rows, val_rows)
            # fallback_reason says, wherever a model is not XGBoost, why (the run prints it).
            metadata.update({"model_kind": served, "fitted_kind": extra["model_kind"], "served_reason": why,
                             "fallback_reason": why, "best_iteration": None})
            if served == "bgnbd":
                metadata["bgnbd_params"] = dict(zip(("r", "alpha", "a", "b"), map(float, model.params_)))
    # Only the settings that shape the model and its backtest: scheduling or list policy changes
    # must not make a new model version.
    shaping = {k: v for k, v in config.to_dict().items() if k in ("data", "contract", "model", "evaluate")}
    recipe = {"config": shaping, "features": model.feature_names_, "churn_version": churn.__version__,
              "model_kind": metadata["model_kind"]}
    fingerprint = metadata["data_fingerprint"]
    metadata = {"version": model_version(metadata["as_of"], h, fingerprint, recipe),
                **metadata, "features": model.feature_names_}
    if metadata["backtest"]:
        bt = metadata["backtest"]
        metadata["quality"] = quality_band(bt["models"].get(metadata["model_kind"]), bt["base_rate"],
                                           config.evaluate, config.registry.max_ece)
    return TrainingResult(model, split, metadata)


def candidate_metrics(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The new model's own metrics on its backtest (XGBoost's, or BG/NBD's for a fallback model)."""
    bt = metadata.get("backtest") or {}
    return bt.get("models", {}).get(metadata.get("model_kind", "xgboost"))


def champion_on_same_backtest(dataset: Dataset, candidate_meta: dict[str, Any],
                              champion: ChurnModel | BGNBDChurnModel | None, champion_meta: dict[str, Any] | None,
                              config: Config) -> tuple[dict[str, Any] | None, str]:
    """The champion's metrics on the candidate's backtest test cutoff, and how they were obtained.

    Recorded metrics count when the champion's backtest is the same (test cutoff, horizon, data);
    otherwise a champion trained with labels known by the test cutoff is scored on the same test
    customers. A champion that may have seen those labels cannot be compared honestly: None.
    """
    bt = candidate_meta.get("backtest")
    if champion is None or champion_meta is None or not bt:
        return None, "no champion"
    if champion_meta["horizon_days"] != candidate_meta["horizon_days"]:
        return None, f"the champion has another horizon ({champion_meta['horizon_days']} days)"
    old = champion_meta.get("backtest") or {}
    if (old.get("test_cutoff") == bt["test_cutoff"] and champion_meta.get("data_fingerprint")
            == candidate_meta["data_fingerprint"]):
        return candidate_metrics(champion_meta), "recorded backtest on the same test cutoff and data"
    test_cutoff = pd.Timestamp(bt["test_cutoff"])
    if pd.Timestamp(champion_meta["as_of"]) > test_cutoff:
        return None, "the champion was trained after the test cutoff and may have seen its labels"
    test = build_snapshots(dataset, [test_cutoff], candidate_meta["horizon_days"], config.data.lookback_days)
    if any(f not in test for f in champion.feature_names_):
        return None, "the champion needs features this data lacks"
    ev = config.evaluate
    p = champion.predict_proba(test)[:, 1]
    return metrics(test["churned"].to_numpy(), np.asarray(p), ev.n_bootstrap, ev.confidence,
                   config.model.random_state), "champion re-scored on the same test customers"


def gate(dataset: Dataset, candidate_meta: dict[str, Any], champion: ChurnModel | BGNBDChurnModel | None,
         champion_meta: dict[str, Any] | None, config: Config) -> dict[str, Any]:
    """The promotion decision for a newly trained model, with the reason the run prints."""
    theirs, how = champion_on_same_backtest(dataset, candidate_meta, champion, champion_meta, config)
    if champion_meta is not None and theirs is None and how.startswith("the champion was trained after"):
        return {"promoted": False, "champion": champion_meta["version"],
                "reason": f"{how}: kept as challenger; promote it by hand with `churn rollback "
                          f"{candidate_meta['version']}`"}
    # An existing champion that cannot be compared ({}) still leaves the ECE limit in force.
    comparable = theirs if theirs is not None or champion_meta is None else {}
    promoted, reason = promotion_decision(candidate_metrics(candidate_meta), comparable,
                                          config.registry.max_auc_drop, config.registry.max_ece)
    if champion_meta is not None and champion_meta["version"] == candidate_meta["version"]:
        promoted, reason = True, "same version as the champion (same data and recipe): re-registered"
    return {"promoted": promoted, "reason": reason, "compared_with": how,
            "champion": None if champion_meta is None else champion_meta["version"],
            "champion_metrics": theirs}


__all__ = ["TrainingResult", "default_as_of", "latest_test_cutoff", "small_store_reason", "at_chance",
           "serving_choice", "train", "backtest_recipe",
           "candidate_metrics", "champion_on_same_backtest", "gate"]
