"""The churn classifier: XGBoost on stacked snapshots, early-stopped on a later cutoff."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from churn.config import ModelConfig
from churn.errors import DataError
from churn.features import feature_columns

BOOSTER_FILE = "booster.json"
PARAMS_FILE = "params.json"


class ChurnModel:
    """XGBoost churn classifier with a scikit-learn-like surface.

    `fit(train, validation)` takes snapshot frames (features plus a `churned` label) where the
    validation snapshots are from a later cutoff than every training label window: early
    stopping then picks the number of trees on data the model has not seen, out of time.
    """

    def __init__(self, horizon_days: int = 90, config: ModelConfig | None = None, random_state: int | None = None):
        self.horizon_days = horizon_days
        self.config = config or ModelConfig()
        self.random_state = self.config.random_state if random_state is None else random_state

    def _params(self) -> dict[str, object]:
        c = self.config
        return {
            "objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
            "learning_rate": c.learning_rate, "max_depth": c.max_depth, "min_child_weight": c.min_child_weight,
            "subsample": c.subsample, "colsample_bytree": c.colsample_bytree, "seed": self.random_state,
            "nthread": 0,
        }

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame) -> ChurnModel:
        """Fit on training snapshots, early-stopping on validation snapshots."""
        for name, frame in (("training", train), ("validation", validation)):
            if frame["churned"].nunique() < 2:
                raise DataError(f"{name} snapshots have a single class ({len(frame)} rows): "
                                f"need churners and stayers; use more history or another horizon")
        self.feature_names_ = feature_columns(train)
        dtrain = xgb.DMatrix(train[self.feature_names_], label=train["churned"], feature_names=self.feature_names_)
        dval = xgb.DMatrix(validation[self.feature_names_], label=validation["churned"],
                           feature_names=self.feature_names_)
        self.booster_ = xgb.train(
            self._params(), dtrain, num_boost_round=self.config.n_estimators, evals=[(dval, "validation")],
            early_stopping_rounds=self.config.early_stopping_rounds, verbose_eval=False)
        self.best_iteration_ = int(self.booster_.best_iteration)
        return self

    def _matrix(self, features: pd.DataFrame) -> xgb.DMatrix:
        missing = [c for c in self.feature_names_ if c not in features]
        if missing:
            raise DataError(f"the data lacks features the model was trained on: {missing}; "
                            f"retrain on this data directory (churn train)")
        return xgb.DMatrix(features[self.feature_names_], feature_names=self.feature_names_)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Probabilities as scikit-learn returns them: column 1 is p(churn)."""
        p = self.booster_.predict(self._matrix(features), iteration_range=(0, self.best_iteration_ + 1))
        return np.column_stack([1 - p, p])

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Exact TreeSHAP contributions (log-odds) per feature, XGBoost's native `pred_contribs`."""
        contribs = self.booster_.predict(self._matrix(features), pred_contribs=True,
                                         iteration_range=(0, self.best_iteration_ + 1))
        return pd.DataFrame(contribs[:, :-1], columns=self.feature_names_, index=features.index)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first (features never used get 0)."""
        gain = self.booster_.get_score(importance_type="total_gain")
        return pd.Series({f: gain.get(f, 0.0) for f in self.feature_names_}).sort_values(ascending=False)

    def save(self, directory: str | Path) -> None:
        """Save in XGBoost's own JSON format (not pickle) with the parameters beside it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(directory / BOOSTER_FILE)
        params = {"horizon_days": self.horizon_days, "random_state": self.random_state,
                  "feature_names": self.feature_names_, "best_iteration": self.best_iteration_,
                  "config": vars(self.config)}
        (directory / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> ChurnModel:
        """Load a model saved with `save`."""
        directory = Path(directory)
        params = json.loads((directory / PARAMS_FILE).read_text(encoding="utf-8"))
        model = cls(params["horizon_days"], ModelConfig(**params["config"]), params["random_state"])
        model.booster_ = xgb.Booster()
        model.booster_.load_model(directory / BOOSTER_FILE)
        model.feature_names_ = params["feature_names"]
        model.best_iteration_ = params["best_iteration"]
        return model
