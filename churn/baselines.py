"""Classical baselines a careful analyst would use, on the same snapshots as the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler


class _LogisticBaseline:
    """Logistic regression on log(1 + x) of a few RFM columns, fitted on training snapshots."""

    columns: tuple[str, ...] = ()

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, train: pd.DataFrame) -> _LogisticBaseline:
        self.pipeline_ = make_pipeline(
            FunctionTransformer(np.log1p), StandardScaler(),
            LogisticRegression(max_iter=1000, random_state=self.random_state))
        self.pipeline_.fit(self._x(train), train["churned"].to_numpy())
        return self

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[list(self.columns)].fillna(0).clip(lower=0).to_numpy(dtype="float64")

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(self._x(features))


class RecencyBaseline(_LogisticBaseline):
    """Days since the last purchase, mapped to a probability: the rule of thumb every team uses."""

    columns = ("recency_days",)


class RFMLogistic(_LogisticBaseline):
    """Recency, frequency and monetary value over the last year in a logistic regression."""

    columns = ("recency_days", "orders_365d", "spend_365d")


BASELINES = {"recency": RecencyBaseline, "rfm_logistic": RFMLogistic}
