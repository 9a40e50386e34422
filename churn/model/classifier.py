"""The churn classifier: XGBoost on stacked snapshots, tuned and early-stopped on a later cutoff, calibrated.

The validation cutoff (later than every training label window) is split by a stable hash of
customer id into two halves: the *search* half early-stops the booster and picks among a small,
seeded set of hyper-parameter candidates; the *calibration* half, which neither the booster nor
the search has seen, fits the probability calibrator (Platt or isotonic, chosen by Brier score).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss

from churn.config import ModelConfig
from churn.data.hashing import stable_shares
from churn.errors import DataError
from churn.features.engine import feature_columns
from churn.model.season import SeasonalCorrection, apply_shift, fit_correction
from churn.model.treeshap import pattern_contributions
from churn.progress import Progress, notify

BOOSTER_FILE = "booster.json"
PARAMS_FILE = "params.json"
CALIBRATOR_FILE = "calibrator.json"

# The bounded search draws `search_budget - 1` candidates from this grid (the configured
# parameters are always candidate 0). Shallow-to-medium trees with strong regularisation
# options: churn signals are few and monotone-ish, so depth beyond 6 only memorises.
SEARCH_SPACE: dict[str, tuple[float, ...]] = {
    "max_depth": (2, 3, 4, 5, 6),
    "min_child_weight": (1.0, 5.0, 20.0, 50.0),
    "subsample": (0.7, 0.8, 1.0),
    "colsample_bytree": (0.5, 0.8, 1.0),
    "reg_lambda": (1.0, 10.0),
}
CALIBRATORS = ("platt", "isotonic")
# Isotonic calibration is a step function: within a step, the raw score still breaks ties so
# that the ranking (ROC-AUC, lift) is the booster's. The nudge is far below any useful precision.
_TIE_BREAK = 1e-6
_CLIP = 1e-6


def _stable_half(customer_id: pd.Series, share: float) -> np.ndarray:
    """True for the customers (stable hash of the id) whose rows go to the calibration half."""
    return stable_shares(customer_id) < share


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _CLIP, 1 - _CLIP)
    return np.log(p / (1 - p))


class Calibrator:
    """Maps raw booster probabilities to calibrated ones; stored as plain JSON (no pickle)."""

    def __init__(self, method: str = "identity", params: dict[str, Any] | None = None):
        self.method = method
        self.params = params or {}

    @classmethod
    def fit(cls, method: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Fit a Platt (logistic on the log-odds) or isotonic calibrator."""
        if method == "platt":
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw).reshape(-1, 1), y)
            return cls("platt", {"coef": float(lr.coef_[0, 0]), "intercept": float(lr.intercept_[0])})
        if method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            return cls("isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})
        raise ValueError(f"unknown calibrator {method!r}")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "platt":
            z = self.params["coef"] * _logit(raw) + self.params["intercept"]
            return 1 / (1 + np.exp(-z))
        if self.method == "isotonic":
            p = np.interp(raw, self.params["x"], self.params["y"])
            return np.clip(p + _TIE_BREAK * raw, 0.0, 1.0)
        return raw

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        data = dict(data)
        return cls(data.pop("method"), data)


def choose_calibrator(raw: np.ndarray, y: np.ndarray, random_state: int) -> tuple[Calibrator, dict[str, float]]:
    """Pick Platt or isotonic by 2-fold cross-validated Brier score, then refit it on all rows."""
    folds = np.random.default_rng(random_state).permutation(len(y)) % 2
    briers = {}
    for method in CALIBRATORS:
        losses = []
        for k in (0, 1):
            fit_rows, test_rows = folds != k, folds == k
            if len(np.unique(y[fit_rows])) < 2:
                losses.append(np.inf)
                continue
            calib = Calibrator.fit(method, raw[fit_rows], y[fit_rows])
            losses.append(brier_score_loss(y[test_rows], calib(raw[test_rows])))
        briers[method] = float(np.mean(losses))
    best = min(briers, key=briers.get)
    return Calibrator.fit(best, raw, y), briers


def explain_cost(booster: xgb.Booster) -> int:
    """TreeSHAP work per customer for the trees early stopping kept: the sum over them of leaves x depth^2.

    Exact TreeSHAP costs O(T L D^2) per row for T trees of L leaves and depth D (Lundberg et al.,
    "From local explanations to global understanding with explainable AI for trees", 2020).
    """
    cost = 0
    for tree in booster.get_dump()[:booster.best_iteration + 1]:
        leaves = [line for line in tree.splitlines() if "leaf=" in line]
        depth = max(len(line) - len(line.lstrip("\t")) for line in leaves)
        cost += len(leaves) * max(depth, 1) ** 2
    return cost


class ChurnModel(ClassifierMixin, BaseEstimator):
    """Calibrated XGBoost churn classifier, a scikit-learn estimator.

    `ChurnModel(horizon_days=90, config=ModelConfig(...), random_state=None)`: the hyper-parameters
    are the horizon, the `[model]` settings (a frozen `ModelConfig`) and the seed (None: the
    config's `random_state`). `get_params`, `set_params` and `sklearn.base.clone` work as usual.
    `fit(train, validation)` takes snapshot frames (features plus a `churned` label) where the
    validation snapshots are from a later cutoff than every training label window. Learned state:
    `booster_`, `feature_names_`, `n_features_in_`, `classes_` ([0, 1]: 1 is churned),
    `best_iteration_`, `best_params_`, `search_results_`, `calibrator_`, and `season_` (the seasonal
    correction, `fit_season`; none until then). `predict_proba` gives calibrated probabilities
    (column 1 is p(churn)); `predict` flags p(churn) >= 0.5.
    """

    def __init__(self, horizon_days: int = 90, config: ModelConfig | None = None, random_state: int | None = None):
        self.horizon_days = horizon_days
        self.config = config
        self.random_state = random_state

    @property
    def _settings(self) -> ModelConfig:
        return self.config if self.config is not None else ModelConfig()

    @property
    def _seed(self) -> int:
        return self._settings.random_state if self.random_state is None else self.random_state

    def _base_params(self) -> dict[str, Any]:
        c = self._settings
        return {"max_depth": c.max_depth, "min_child_weight": c.min_child_weight, "subsample": c.subsample,
                "colsample_bytree": c.colsample_bytree, "reg_lambda": 1.0}

    def _candidates(self) -> list[dict[str, Any]]:
        """The configured parameters, then `search_budget - 1` distinct seeded draws from SEARCH_SPACE."""
        rng = np.random.default_rng(self._seed)
        out = [self._base_params()]
        grid_size = int(np.prod([len(v) for v in SEARCH_SPACE.values()]))
        while len(out) < min(self._settings.search_budget, grid_size + 1):
            cand = {k: values[rng.integers(len(values))] for k, values in SEARCH_SPACE.items()}
            cand = {k: (int(v) if k == "max_depth" else float(v)) for k, v in cand.items()}
            if cand not in out:
                out.append(cand)
        return out

    def lean_twin(self, candidate: dict[str, Any]) -> dict[str, Any] | None:
        """The search winner at `lean_learning_rate` (about a third of the trees), or None when off or the same."""
        c = self._settings
        if c.lean_tolerance <= 0 or c.lean_learning_rate == c.learning_rate:
            return None
        return {**candidate, "learning_rate": c.lean_learning_rate}

    def choose(self, tried: list[tuple[float, dict[str, Any], xgb.Booster]]) -> tuple[float, dict[str, Any], xgb.Booster]:
        """The booster kept among the (validation log-loss, candidate, booster) tried.

        The cheapest to explain (`explain_cost`) among those whose log-loss is within `lean_tolerance`
        (a share) of the lowest; ties go to the lower log-loss, then to the earlier candidate. With
        `lean_tolerance = 0`: the lowest log-loss (the earliest of equals).
        """
        best = min(loss for loss, _, _ in tried)
        if self._settings.lean_tolerance <= 0:
            return next(r for r in tried if r[0] == best)
        near = [i for i, (loss, _, _) in enumerate(tried) if loss <= best * (1 + self._settings.lean_tolerance)]
        return tried[min(near, key=lambda i: (explain_cost(tried[i][2]), tried[i][0], i))]

    def search_table(self, tried: list[tuple[float, dict[str, Any], xgb.Booster]]) -> list[dict[str, Any]]:
        """One row per candidate tried: its parameters, trees kept, validation log-loss and TreeSHAP cost."""
        return [{**candidate, "trees": int(booster.best_iteration) + 1, "validation_logloss": round(loss, 6),
                 "explain_cost": explain_cost(booster)} for loss, candidate, booster in tried]

    def _xgb_params(self, candidate: dict[str, Any]) -> dict[str, Any]:
        return {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
                "learning_rate": self._settings.learning_rate, "seed": self._seed, "nthread": self._settings.n_jobs,
                **candidate}

    def _train_one(self, candidate: dict[str, Any], dtrain: xgb.DMatrix, dstop: xgb.DMatrix) -> xgb.Booster:
        return xgb.train(self._xgb_params(candidate), dtrain, num_boost_round=self._settings.n_estimators,
                         evals=[(dstop, "validation")], early_stopping_rounds=self._settings.early_stopping_rounds,
                         verbose_eval=False)

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame, progress: Progress | None = None) -> ChurnModel:
        """Search, early-stop and calibrate on the validation snapshots; fit the booster on training ones.

        `progress` (optional) hears of each hyper-parameter candidate tried.
        """
        for name, frame in (("training", train), ("validation", validation)):
            if frame["churned"].nunique() < 2:
                raise DataError(f"{name} snapshots have a single class ({len(frame)} rows): "
                                f"need churners and stayers; use more history or another horizon")
        self.feature_names_ = feature_columns(train)
        self.n_features_in_ = len(self.feature_names_)
        self.classes_ = np.array([0, 1])
        ids = validation["customer_id"] if "customer_id" in validation else validation.index.to_series()
        calib_rows = _stable_half(ids, self._settings.calibration_share)
        search, calib = validation[~calib_rows], validation[calib_rows]
        if self._settings.calibration == "none" or min(search["churned"].nunique(), calib["churned"].nunique()) < 2:
            search, calib = validation, None
        dtrain = xgb.DMatrix(train[self.feature_names_], label=train["churned"], feature_names=self.feature_names_)
        dstop = xgb.DMatrix(search[self.feature_names_], label=search["churned"], feature_names=self.feature_names_)
        self.search_results_ = []
        tried: list[tuple[float, dict[str, Any], xgb.Booster]] = []
        candidates = self._candidates()
        notify(progress, "hyper-parameter search", 0, len(candidates))
        for i, candidate in enumerate([*candidates, None], start=1):
            if candidate is None:  # after the search: the winner's lean twin, if any
                candidate = self.lean_twin(min(tried, key=lambda r: r[0])[1])
                if candidate is None:
                    break
            booster = self._train_one(candidate, dtrain, dstop)
            p = booster.predict(dstop, iteration_range=(0, booster.best_iteration + 1))
            loss = float(log_loss(search["churned"], p, labels=[0, 1]))
            tried.append((loss, candidate, booster))
            if i <= len(candidates):
                notify(progress, "hyper-parameter search", i, len(candidates))
        self.search_results_ = self.search_table(tried)
        best = self.choose(tried)
        _, self.best_params_, self.booster_ = best
        self.best_iteration_ = int(self.booster_.best_iteration)
        self.calibrator_ = Calibrator()
        self.season_ = SeasonalCorrection()
        self.calibration_briers_: dict[str, float] = {}
        if calib is not None:
            method = self._settings.calibration
            raw, y = self.raw_proba(calib), calib["churned"].to_numpy()
            if method == "auto":
                self.calibrator_, self.calibration_briers_ = choose_calibrator(raw, y, self._seed)
            else:
                self.calibrator_ = Calibrator.fit(method, raw, y)
            self.n_calibration_ = int(len(calib))
        return self

    def _check_features(self, features: pd.DataFrame) -> None:
        missing = [c for c in self.feature_names_ if c not in features]
        if missing:
            raise DataError(f"the data lacks features the model was trained on: {missing}; "
                            f"retrain on this data directory (churn train)")

    def _matrix(self, features: pd.DataFrame) -> xgb.DMatrix:
        self._check_features(features)
        return xgb.DMatrix(features[self.feature_names_], feature_names=self.feature_names_)

    def raw_proba(self, features: pd.DataFrame) -> np.ndarray:
        """The booster's own p(churn), before calibration (what `contributions` add up to, in log-odds)."""
        return self.booster_.predict(self._matrix(features), iteration_range=(0, self.best_iteration_ + 1))

    def predict_proba(self, features: pd.DataFrame, seasonal: bool = True) -> np.ndarray:
        """Calibrated probabilities as scikit-learn returns them: column 1 is p(churn).

        With a seasonal correction (`season_`) and a `cutoff` column, each row's log-odds move by
        the shift for its date; `seasonal=False` gives the probabilities before that.
        """
        p = self.calibrator_(self.raw_proba(features))
        season = getattr(self, "season_", None)
        if seasonal and season is not None and season.method != "none" and "cutoff" in features:
            p = apply_shift(p, season.shift_for(features["cutoff"]))
        return np.column_stack([1 - p, p])

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """1 (churned) where the calibrated p(churn) is at least 0.5, else 0."""
        return (self.predict_proba(features)[:, 1] >= 0.5).astype(int)

    def fit_season(self, snapshots: pd.DataFrame, anchor: object) -> ChurnModel:
        """Choose and fit the seasonal correction (churn.model.season) from labelled monthly snapshots.

        `anchor`: the latest cutoff whose labels are known (the validation cutoff); `snapshots`
        at the monthly cutoffs of `churn.model.season.check_cutoffs(anchor, ...)`.
        """
        self.season_ = fit_correction(self, snapshots, pd.Timestamp(anchor), self._settings.season_correction,
                                      self._settings.season_min_checks)
        return self

    def use_threads(self, n_jobs: int) -> ChurnModel:
        """Predict and explain with `n_jobs` XGBoost threads (0: all cores); the results do not depend on it."""
        self.booster_.set_param({"nthread": int(n_jobs)})
        return self

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Exact TreeSHAP contributions (raw booster log-odds) per feature, XGBoost's `pred_contribs` values.

        Computed once per tree decision pattern (churn.model.treeshap), or by the plain call on
        every row where that does not pay (fewer than 2,000 rows, deep or categorical trees).
        """
        self._check_features(features)
        contribs, _ = pattern_contributions(self.booster_, features, self.feature_names_, self.best_iteration_ + 1)
        return pd.DataFrame(contribs[:, :-1], columns=self.feature_names_, index=features.index)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first (features never used get 0)."""
        gain = self.booster_.get_score(importance_type="total_gain")
        return pd.Series({f: gain.get(f, 0.0) for f in self.feature_names_}).sort_values(ascending=False)

    def save(self, directory: str | Path) -> None:
        """Save in XGBoost's own JSON format (not pickle), the calibrator and the parameters beside it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(directory / BOOSTER_FILE)
        (directory / CALIBRATOR_FILE).write_text(json.dumps(self.calibrator_.to_dict()) + "\n", encoding="utf-8")
        params = {"horizon_days": self.horizon_days, "random_state": self._seed,
                  "feature_names": self.feature_names_, "best_iteration": self.best_iteration_,
                  "best_params": self.best_params_, "search_results": self.search_results_,
                  "calibration_briers": self.calibration_briers_, "config": dataclasses.asdict(self._settings),
                  "season": getattr(self, "season_", SeasonalCorrection()).to_dict()}
        (directory / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> ChurnModel:
        """Load a model saved with `save` (a model saved before calibration existed loads uncalibrated)."""
        directory = Path(directory)
        params = json.loads((directory / PARAMS_FILE).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        config = ModelConfig(**{k: v for k, v in params["config"].items() if k in known})
        model = cls(params["horizon_days"], config, params["random_state"])
        model.booster_ = xgb.Booster()
        model.booster_.load_model(directory / BOOSTER_FILE)
        model.feature_names_ = params["feature_names"]
        model.n_features_in_ = len(model.feature_names_)
        model.classes_ = np.array([0, 1])
        model.best_iteration_ = params["best_iteration"]
        model.best_params_ = params.get("best_params", {})
        model.search_results_ = params.get("search_results", [])
        model.calibration_briers_ = params.get("calibration_briers", {})
        model.season_ = SeasonalCorrection.from_dict(params.get("season"))
        calib_path = directory / CALIBRATOR_FILE
        model.calibrator_ = (Calibrator.from_dict(json.loads(calib_path.read_text(encoding="utf-8")))
                             if calib_path.exists() else Calibrator())
        return model
