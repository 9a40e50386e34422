"""Classical baselines a careful analyst would use, on the same snapshots as the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler


class _LogisticBaseline:
    """Logistic regression on log(1 + x) of a few RFM columns, fitted on training snapshots."""

    columns: tuple[str, ...] = ()

    def __init__(self, random_state: int = 0, horizon_days: int = 90):
        self.random_state = random_state
        self.horizon_days = horizon_days  # unused: the label already fixes the horizon

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


DAYS_PER_PERIOD = 7.0  # BG/NBD runs in weeks: parameters of order 1 make the optimiser's job easy


def bgnbd_log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6) of (r, alpha, a, b).

    x: repeat purchases, t_x: time of the last purchase, T: time since the first, all from the
    customer's first purchase.
    """
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    # The "dropped out after the last purchase" term exists only for repeat buyers.
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
                      -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def bgnbd_p_alive(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(still active at T | x, t_x, T); 1 for customers with no repeat purchase (the model's blind spot)."""
    r, alpha, a, b = params
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) + (r + x) * np.log((alpha + T) / (alpha + t_x))
    return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700.0))), 1.0)


def bgnbd_p_no_purchase(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                        horizon: float) -> np.ndarray:
    """P(no purchase in (T, T + horizon]) = 1 - P(alive) + P(alive) ((alpha+T)/(alpha+T+horizon))^(r+x)."""
    r, alpha, _, _ = params
    alive = bgnbd_p_alive(params, x, t_x, T)
    return 1.0 - alive + alive * ((alpha + T) / (alpha + T + horizon)) ** (r + x)


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Maximum-likelihood (r, alpha, a, b), optimised on the log scale so they stay positive."""
    x, t_x, T = (np.asarray(v, dtype="float64") for v in (x, t_x, T))

    def loss(log_params: np.ndarray) -> float:
        value = -bgnbd_log_likelihood(np.exp(log_params), x, t_x, T).mean()
        return float(value) if np.isfinite(value) else 1e10

    start = np.log([1.0, max(float(T.mean()), 1e-3), 1.0, 1.0])
    # Bounds keep every parameter within e^-12..e^12: wide, but no overflow in the gamma terms.
    result = minimize(loss, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
    return np.exp(result.x)


def bgnbd_inputs(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, t_x, T in weeks from a features frame: the same snapshot rows the other models see.

    orders_all counts purchase occasions, tenure_days is T and recency_days is T - t_x.
    """
    x = np.maximum(features["orders_all"].to_numpy(dtype="float64") - 1.0, 0.0)
    T = features["tenure_days"].to_numpy(dtype="float64") / DAYS_PER_PERIOD
    t_x = T - features["recency_days"].to_numpy(dtype="float64") / DAYS_PER_PERIOD
    return x, np.clip(t_x, 0.0, T), T


class BGNBDBaseline:
    """BG/NBD: P(no purchase in the next H days) from purchase counts and timing alone, no labels.

    Fitted by maximum likelihood on the training snapshots' (x, t_x, T); it never sees churn labels.
    """

    def __init__(self, random_state: int = 0, horizon_days: int = 90):
        self.random_state = random_state
        self.horizon_days = horizon_days

    def fit(self, train: pd.DataFrame) -> BGNBDBaseline:
        self.params_ = fit_bgnbd(*bgnbd_inputs(train))
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        p = bgnbd_p_no_purchase(self.params_, *bgnbd_inputs(features), self.horizon_days / DAYS_PER_PERIOD)
        return np.column_stack([1 - p, p])


BASELINES = {"recency": RecencyBaseline, "rfm_logistic": RFMLogistic, "bgnbd": BGNBDBaseline}


BGNBD_FILE = "bgnbd.json"
LOGISTIC_FILE = "logistic.json"
_BGNBD_INPUTS = ("orders_all", "tenure_days", "recency_days")


class BGNBDChurnModel(BGNBDBaseline):
    """BG/NBD as a scoring model: the small-store fallback, or the baseline served instead of XGBoost.

    Same surface as `ChurnModel`: `predict_proba`, `contributions` (exact Shapley values of the
    log-odds over its three inputs, against the median training customer), `save`/`load` as JSON.
    """

    feature_names_ = list(_BGNBD_INPUTS)

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None = None) -> BGNBDChurnModel:
        rows = train if validation is None else pd.concat([train, validation])
        super().fit(rows)
        self.reference_ = {c: float(rows[c].median()) for c in _BGNBD_INPUTS}
        return self

    def _log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        p = np.clip(self.predict_proba(frame)[:, 1], 1e-9, 1 - 1e-9)
        return np.log(p / (1 - p))

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Exact Shapley values over (orders_all, tenure_days, recency_days): they add up to the log-odds
        minus the reference customer's."""
        from itertools import permutations

        inputs = features[list(_BGNBD_INPUTS)].astype("float64")
        out = pd.DataFrame(0.0, index=features.index, columns=list(_BGNBD_INPUTS))
        orders = list(permutations(_BGNBD_INPUTS))
        for order in orders:
            current = pd.DataFrame({c: np.full(len(inputs), v) for c, v in self.reference_.items()},
                                   index=inputs.index)
            before = self._log_odds(current)
            for column in order:
                current[column] = inputs[column]
                after = self._log_odds(current)
                out[column] += (after - before) / len(orders)
                before = after
        return out

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"horizon_days": self.horizon_days, "params": list(map(float, self.params_)),
                 "reference": self.reference_, "feature_names": self.feature_names_}
        (directory / BGNBD_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> BGNBDChurnModel:
        state = json.loads((Path(directory) / BGNBD_FILE).read_text(encoding="utf-8"))
        model = cls(horizon_days=state["horizon_days"])
        model.params_ = np.asarray(state["params"])
        model.reference_ = state["reference"]
        return model


class LogisticChurnModel:
    """A logistic baseline (recency or RFM logistic) as the scoring model, served when XGBoost does not beat it.

    Same surface as `ChurnModel`: `predict_proba`, `contributions` (exact: the log-odds are linear
    in the standardised log(1 + x) inputs, so each input's share against the median training
    customer is its coefficient times its distance from that customer), `save`/`load` as JSON.
    """

    def __init__(self, kind: str = "rfm_logistic", horizon_days: int = 90, random_state: int = 0):
        if kind not in ("recency", "rfm_logistic"):
            raise ValueError(f"kind must be 'recency' or 'rfm_logistic', not {kind!r}")
        self.kind = kind
        self.horizon_days = horizon_days
        self.random_state = random_state

    @property
    def feature_names_(self) -> list[str]:
        return list(BASELINES[self.kind].columns)

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None = None) -> LogisticChurnModel:
        """Fit on the training and validation snapshots together (the latest labels are the most useful)."""
        rows = train if validation is None else pd.concat([train, validation])
        pipeline = BASELINES[self.kind](random_state=self.random_state).fit(rows).pipeline_
        scaler, logistic = pipeline[1], pipeline[2]
        # Folded into one weight per input on log(1 + x): w = coef / scale, b = intercept - sum(w x mean).
        self.weights_ = (logistic.coef_[0] / scaler.scale_).tolist()
        self.intercept_ = float(logistic.intercept_[0] - np.dot(self.weights_, scaler.mean_))
        self.reference_ = {c: float(rows[c].fillna(0).clip(lower=0).median()) for c in self.feature_names_}
        return self

    def _inputs(self, frame: pd.DataFrame) -> np.ndarray:
        return np.log1p(frame[self.feature_names_].fillna(0).clip(lower=0).to_numpy(dtype="float64"))

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        z = self.intercept_ + self._inputs(features) @ np.asarray(self.weights_)
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Each input's share of the log-odds against the median training customer (they add up exactly)."""
        ref = np.log1p(np.array([self.reference_[c] for c in self.feature_names_]))
        shares = (self._inputs(features) - ref) * np.asarray(self.weights_)
        return pd.DataFrame(shares, index=features.index, columns=self.feature_names_)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"kind": self.kind, "horizon_days": self.horizon_days, "random_state": self.random_state,
                 "feature_names": self.feature_names_, "weights": self.weights_, "intercept": self.intercept_,
                 "reference": self.reference_}
        (directory / LOGISTIC_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> LogisticChurnModel:
        state = json.loads((Path(directory) / LOGISTIC_FILE).read_text(encoding="utf-8"))
        model = cls(state["kind"], state["horizon_days"], state["random_state"])
        model.weights_, model.intercept_, model.reference_ = state["weights"], state["intercept"], state["reference"]
        return model


def served_baseline(kind: str, horizon_days: int, random_state: int = 0) -> BGNBDChurnModel | LogisticChurnModel:
    """An unfitted scoring model for one of the baselines (by its name in BASELINES)."""
    if kind == "bgnbd":
        return BGNBDChurnModel(random_state=random_state, horizon_days=horizon_days)
    return LogisticChurnModel(kind, horizon_days, random_state)
