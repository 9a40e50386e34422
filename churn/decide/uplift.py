"""Uplift per customer, learned from the holdout: target who responds to an action, not only who is at risk.

Retention research (Ascarza 2018, "Retention futility") found that the customers most at risk
are often not those an action moves: a customer gone for months is at high risk and beyond
reach. The lists' holdout makes the response learnable. For each action a, from the measured
outcomes of listed customers (their features as of the list date, arm, came back or not):

- the *control* response mu0(x) = P(back | not contacted) is the churn model's own estimate,
  1 - p_churn, recalibrated on the holdout of every action together (two numbers, an intercept
  and a slope on its log-odds, so that a small holdout is enough);
- the *treated* response is mu1_a(x) = mu0(x) + (1 - mu0(x)) u_a(x): a treated customer comes
  back on their own or is won back, and the uplift u_a(x) (the share of would-be churners won
  back, the quantity EV multiplies by p_churn) is a logistic function of their features, fitted
  by maximum likelihood (L2-penalised) on the treated customers of that action. A T-learner
  whose control arm borrows the churn model, with the treated arm modelled as control plus
  uplift so that the data is spent on the uplift;
- shrunk towards the segment estimate (`churn.decide.outcomes.estimate_uplift`) by sample
  size: w = n_a / (n_a + outcomes.learned_strength), with n_a the action's treated customers.

Measured with the field's metrics: the Qini coefficient (how much better than random an
ordering finds the incremental customers) and uplift at capacity (the incremental response of
the customers a list of that size would take). No library: scikit-uplift is unmaintained since
2022 and causalml brings a heavy stack for what is here two logistic regressions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from churn.config import ACTIONS, DRIVERS, SEGMENTS, WinbackConfig

__all__ = ["LEARNED_FEATURES", "UpliftModel", "fit_uplift", "learn", "listed_with_features", "per_customer",
           "qini_coefficient", "qini_from_truth", "selection_weights", "uplift_at_capacity"]

# What the treated response is learned from: risk, how long gone, how often and how much they
# bought, whether buying slowed, how long they have been a customer, and their risk drivers.
LEARNED_FEATURES = ("p_churn", "recency_days", "orders_365d", "spend_365d", "frequency_trend_90d", "tenure_days",
                    "overdue_ratio",
                    # what reveals a customer's trait, beyond the yes/no drivers: coupons, service, breadth
                    "discount_share_365d", "coupon_share_365d", "returns_share_365d", "event_complaint_90d",
                    "event_support_ticket_90d", "categories_365d", "new_product_share_90d")
# An uplift that fades with every month a customer has been gone is linear in days, not in their log.
_DAYS_SCALE = 90.0
_CLIP = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _CLIP, 1 - _CLIP)
    return np.log(p / (1 - p))


def _design(frame: pd.DataFrame, drivers: pd.DataFrame | None) -> np.ndarray:
    """The learner's inputs: log-odds of risk, log(1 + x) of the counts, the driver flags."""
    cols = [_logit(frame["p_churn"].to_numpy(dtype=float))]
    for name in LEARNED_FEATURES[1:]:
        values = frame[name].to_numpy(dtype=float, na_value=np.nan) if name in frame else np.zeros(len(frame))
        cols.append(np.log1p(np.clip(np.nan_to_num(values), 0, None)))
    recency = frame["recency_days"].to_numpy(dtype=float, na_value=np.nan) if "recency_days" in frame else None
    if recency is not None:
        cols.append(np.nan_to_num(recency) / _DAYS_SCALE)
    if drivers is not None:
        cols += [drivers[d].to_numpy(dtype=float) for d in DRIVERS]
    return np.column_stack(cols)


@dataclass
class UpliftModel:
    """Per-action treated-response models, the holdout-calibrated control, and the segment fallback.

    Stored as plain numbers (`to_dict`): the standardisation, coefficients and sample sizes.
    """

    control: tuple[float, float] = (0.0, 1.0)  # mu0 = sigmoid(a + b x logit(1 - p_churn))
    treated: dict[str, dict[str, Any]] = field(default_factory=dict)  # action -> mean, scale, coef, intercept, n
    segment: dict[str, dict[str, float]] = field(default_factory=dict)  # action -> segment -> uplift
    strength: float = 500.0
    n_holdout: int = 0

    def control_response(self, scores: pd.DataFrame) -> np.ndarray:
        """mu0: P(comes back within the horizon without contact), from the churn model recalibrated."""
        a, b = self.control
        return 1 / (1 + np.exp(-(a + b * _logit(1 - scores["p_churn"].to_numpy(dtype=float)))))

    def treated_response(self, action: str, scores: pd.DataFrame, drivers: pd.DataFrame) -> np.ndarray | None:
        """mu1_a: P(comes back within the horizon when given action a); None when not learned."""
        share = self.learned_share(action, scores, drivers)
        if share is None:
            return None
        mu0 = self.control_response(scores)
        return mu0 + (1 - mu0) * share

    def learned_share(self, action: str, scores: pd.DataFrame, drivers: pd.DataFrame) -> np.ndarray | None:
        """u_a(x): the learned share of would-be churners that action a wins back; None when not learned."""
        fit = self.treated.get(action)
        if fit is None:
            return None
        x = (_design(scores, drivers) - np.asarray(fit["mean"])) / np.asarray(fit["scale"])
        return 1 / (1 + np.exp(-(x @ np.asarray(fit["coef"]) + fit["intercept"])))

    def predict(self, scores: pd.DataFrame, drivers: pd.DataFrame, segments: dict[str, np.ndarray]) -> pd.DataFrame:
        """Uplift per customer (rows of `scores`) and action: learned, shrunk to the segment estimate.

        `segments`: per action, each customer's segment (a name of SEGMENTS) as the policy reads it.
        """
        out = {}
        for action in ACTIONS:
            table = self.segment.get(action, {})
            fallback = np.array([table.get(s, table.get("none", 0.0)) for s in segments[action]], dtype=float)
            learned = self.learned_share(action, scores, drivers)
            if learned is None:
                out[action] = fallback
                continue
            n = self.treated[action]["n"]
            w = n / (n + self.strength)
            out[action] = w * learned + (1 - w) * fallback
        return pd.DataFrame(out, index=scores.index)

    def to_dict(self) -> dict[str, Any]:
        return {"control": list(self.control), "treated": self.treated, "segment": self.segment,
                "strength": self.strength, "n_holdout": self.n_holdout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpliftModel:
        return cls(tuple(data["control"]), data["treated"], data["segment"], data["strength"], data["n_holdout"])


def fit_uplift(listed: pd.DataFrame, drivers: pd.DataFrame, segment_uplift: dict[str, dict[str, float]],
               strength: float = 500.0, min_treated: int = 100, min_holdout: int = 30,
               penalty: float = 1.0, max_weight: float = 1.0) -> UpliftModel:
    """Learn per-customer uplift from measured outcomes of listed customers.

    `listed`: one row per listed customer with `action`, `arm` (treated/holdout), `came_back`
    and the score columns as of the list date (`p_churn` and LEARNED_FEATURES), optionally
    `selection_probability` (see below); `drivers`: their driver flags (same index).
    `segment_uplift`: action -> segment -> the segment estimate to shrink to. An action with
    fewer than `min_treated` treated customers keeps the segment estimate; with fewer than
    `min_holdout` holdout customers overall the control is the churn model's 1 - p_churn as it is.

    A customer the lists drew at random (`selection_probability` < 1: exploration, see
    `churn.decide.winback`) stands for the candidates not drawn: weight 1 / selection_probability,
    capped at `max_weight` (`outcomes.max_selection_weight`; 1: everyone alike). The draw depends
    only on recorded features, so the unweighted fit is not biased by it; the weights matter when
    the model cannot follow the true uplift, and cost variance.
    """
    model = UpliftModel(segment={a: dict(segment_uplift.get(a, {})) for a in ACTIONS}, strength=strength)
    y = listed["came_back"].to_numpy(dtype=float)
    weight = selection_weights(listed, max_weight)
    held = (listed["arm"] == "holdout").to_numpy()
    model.n_holdout = int(held.sum())
    if held.sum() >= min_holdout and 0 < y[held].mean() < 1:
        x0 = _logit(1 - listed.loc[held, "p_churn"].to_numpy(dtype=float)).reshape(-1, 1)
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(x0, y[held], sample_weight=weight[held])
        model.control = (float(lr.intercept_[0]), float(lr.coef_[0, 0]))
    for action in ACTIONS:
        rows = ((listed["action"] == action) & (listed["arm"] == "treated")).to_numpy()
        if rows.sum() < min_treated or y[rows].min() == y[rows].max():
            continue
        x = _design(listed[rows], drivers[rows])
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        mu0 = model.control_response(listed[rows])
        z = np.column_stack([np.ones(int(rows.sum())), (x - mean) / scale])  # the intercept first
        theta = _fit_share(z, y[rows], mu0, np.r_[0.0, np.full(x.shape[1], penalty)], weight[rows])
        model.treated[action] = {"mean": mean.tolist(), "scale": scale.tolist(), "coef": theta[1:].tolist(),
                                 "intercept": float(theta[0]), "n": int(rows.sum())}
    return model


def selection_weights(listed: pd.DataFrame, max_weight: float = 20.0) -> np.ndarray:
    """Each listed customer's weight in the fit: 1 / selection_probability, capped at `max_weight`.

    1 for a customer the EV ranking chose (or when the column is absent: lists from before
    exploration); a customer drawn at random with chance p stands for 1 / p candidates.
    """
    if "selection_probability" not in listed:
        return np.ones(len(listed))
    p = pd.to_numeric(listed["selection_probability"], errors="coerce").fillna(1.0).to_numpy(dtype=float)
    return np.minimum(1.0 / np.clip(p, 1e-12, 1.0), max_weight)


def _fit_share(x: np.ndarray, y: np.ndarray, mu0: np.ndarray, penalty: np.ndarray,
               weight: np.ndarray) -> np.ndarray:
    """Weighted maximum likelihood of y ~ Bernoulli(mu0 + (1 - mu0) u(x)), u = sigmoid(x . theta).

    The treated customer comes back on their own (mu0, known) or because the action won them
    back (a share u of the rest): modelling u directly spends the data on the uplift, not on
    re-learning who comes back anyway. An L2 `penalty` per coefficient (0: none, for the
    intercepts) keeps a small sample's estimates near the average uplift; `weight` per customer.
    """
    free = penalty == 0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        u = 1 / (1 + np.exp(-(x @ theta)))
        p = np.clip(mu0 + (1 - mu0) * u, 1e-9, 1 - 1e-9)
        nll = -np.sum(weight * (y * np.log(p) + (1 - y) * np.log(1 - p))) + 0.5 * np.sum(penalty * theta ** 2)
        # d nll / d z = -(y / p - (1 - y) / (1 - p)) (1 - mu0) u (1 - u)
        dz = -weight * (y / p - (1 - y) / (1 - p)) * (1 - mu0) * u * (1 - u)
        return float(nll), x.T @ dz + penalty * theta

    start = np.where(free, -2.0, 0.0)  # an uplift of about 12%: where priors sit
    return minimize(loss, start, jac=True, method="L-BFGS-B").x


def segment_of(drivers: pd.DataFrame, table: dict[str, float]) -> np.ndarray:
    """Each customer's segment for one action as the policy reads it (see `churn.decide.winback`)."""
    from churn.decide.winback import _segment

    return np.asarray(SEGMENTS)[_segment(drivers, table)[0]]


# --- metrics --------------------------------------------------------------------------------------


def _area_above_random(gains: np.ndarray, total: float, n: int) -> float:
    """Mean height of a cumulative-gain curve above the random line, as a share of `n` customers."""
    if n == 0:
        return float("nan")
    share = np.arange(1, len(gains) + 1) / len(gains)
    return float(np.mean(gains - share * total) / n)


def qini_coefficient(score: np.ndarray, came_back: np.ndarray, treated: np.ndarray) -> float:
    """Qini coefficient of an ordering on measured outcomes (Radcliffe 2007).

    Customers sorted by `score`, highest first; the Qini curve at the top k is the incremental
    customers found there, treated responders minus holdout responders scaled to the treated
    count: R_t(k) - R_h(k) x N_t(k) / N_h(k). The coefficient is the mean height of that curve
    above the random line (the straight line to the total), per customer: 0 for an ordering
    no better than chance, positive when the top holds the responders.
    """
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    y, t = np.asarray(came_back, dtype=float)[order], np.asarray(treated, dtype=bool)[order]
    n_t, n_h = np.cumsum(t), np.cumsum(~t)
    r_t, r_h = np.cumsum(y * t), np.cumsum(y * ~t)
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = np.where(n_h > 0, r_t - r_h * n_t / n_h, 0.0)
    return _area_above_random(curve, curve[-1], len(y))


def qini_from_truth(score: np.ndarray, incremental: np.ndarray) -> float:
    """Qini coefficient against known incremental probabilities (simulation ground truth): no sampling noise."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    gains = np.cumsum(np.asarray(incremental, dtype=float)[order])
    return _area_above_random(gains, gains[-1], len(gains))


def uplift_at_capacity(came_back: np.ndarray, treated: np.ndarray) -> tuple[float, float, float]:
    """Measured uplift of the customers within a list's capacity: rate treated - rate holdout, and its 95% interval."""
    y, t = np.asarray(came_back, dtype=float), np.asarray(treated, dtype=bool)
    if not t.any() or t.all():
        return float("nan"), float("nan"), float("nan")
    r_t, r_h = y[t].mean(), y[~t].mean()
    se = np.sqrt(r_t * (1 - r_t) / t.sum() + r_h * (1 - r_h) / (~t).sum())
    return float(r_t - r_h), float(r_t - r_h - 1.96 * se), float(r_t - r_h + 1.96 * se)


# --- from the published lists to the next run ------------------------------------------------------


def listed_with_features(follow: pd.DataFrame, scores_by_date: dict[str, pd.DataFrame],
                         winback: WinbackConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The measured listed customers with their scores and features as of their list date, and drivers.

    `follow`: `churn.decide.outcomes.follow_up` rows (list_date, customer_id, action, arm,
    came_back); `scores_by_date`: each list date's published scores (YYYY-MM-DD -> the
    scores.parquet of that day: p_churn and the features). Drivers are read on each day's whole
    scored population, as the policy read them that day. Customers whose day's scores are gone
    (erased, or a list from before scores were kept) are left out.
    """
    listed, drivers = [], []
    for day, rows in follow.groupby(pd.to_datetime(follow["list_date"]).dt.strftime("%Y-%m-%d")):
        scores = scores_by_date.get(day)
        if scores is None:
            continue
        flags = _drivers_of(scores, winback)
        position = pd.Series(np.arange(len(scores)), index=scores["customer_id"].astype(str))
        at = position.reindex(rows["customer_id"].astype(str)).to_numpy()
        known = ~np.isnan(at)
        at = at[known].astype(int)
        facts = scores.iloc[at].drop(columns=["customer_id"]).reset_index(drop=True)
        mine = rows[known].reset_index(drop=True)
        kept = ["list_date", "customer_id", "action", "arm", "came_back",
                *[c for c in ("explored", "selection_probability") if c in mine]]
        listed.append(pd.concat([mine[kept],
                                 facts.drop(columns=[c for c in mine.columns if c in facts and c != "p_churn"],
                                            errors="ignore")], axis=1))
        drivers.append(flags.iloc[at].reset_index(drop=True))
    if not listed:
        return pd.DataFrame(), pd.DataFrame(columns=list(DRIVERS))
    return pd.concat(listed, ignore_index=True), pd.concat(drivers, ignore_index=True)


def _drivers_of(scores: pd.DataFrame, winback: WinbackConfig, cuts: dict[str, float] | None = None) -> pd.DataFrame:
    from churn.decide.winback import drivers

    return drivers(scores, winback, cuts)


def learn(follow: pd.DataFrame, scores_by_date: dict[str, pd.DataFrame], segment_uplift: dict[str, dict[str, float]],
          winback: WinbackConfig, strength: float, max_weight: float = 1.0) -> UpliftModel | None:
    """The per-customer uplift model the next runs use, or None when no action has enough treated customers."""
    listed, flags = listed_with_features(follow, scores_by_date, winback)
    if listed.empty:
        return None
    model = fit_uplift(listed, flags, segment_uplift, strength=strength, max_weight=max_weight)
    return model if model.treated else None


def per_customer(model: UpliftModel, scores: pd.DataFrame, segment_uplift: dict[str, dict[str, float]],
                 winback: WinbackConfig, cuts: dict[str, float] | None = None) -> pd.DataFrame:
    """Uplift per customer (rows of `scores`) and action for a daily run: `UpliftModel.predict` with the
    segments the policy reads from today's drivers and today's segment uplift (`cuts`: the drivers'
    thresholds of all partitions, on the Dask engine)."""
    flags = _drivers_of(scores, winback, cuts)
    segments = {action: segment_of(flags, segment_uplift[action]) for action in ACTIONS}
    return model.predict(scores, flags, segments)
