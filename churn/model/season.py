"""Calibration that survives a season: a log-odds shift learned from the same time last year.

A model calibrated on one cutoff (its validation month) gives probabilities at that month's
churn rate. At a seasonal shop the rate moves with the calendar (more customers go a quarter
without buying in the low season), so the probabilities of another month are off even when
the ranking is right. The correction ("prior shift"): at date D, add to the model's log-odds
the shift that, one year before D, made its mean probability match the churn rate observed
then (known at D, since D - 1 year + horizon < D):

    shift(c) = delta such that mean_i sigmoid(logit p_i(c) + delta) = observed churn rate at c

Whether to apply it is decided by a backtest on earlier cutoffs: at each monthly cutoff c of
the last year whose twin c - 1 year is labelled too, would last year's shift have brought the
model's mean closer to the churn rate observed at c than no shift? `prior_shift` is chosen
when, on average over at least `model.season_min_checks` such cutoffs, it would have, by more
than two standard errors of the observed rates (a smaller gain is sampling noise or a slow
drift, not a season); else `none` (a shop without a season, or without two years of history,
keeps its probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

if TYPE_CHECKING:
    from churn.model.classifier import ChurnModel

METHODS = ("auto", "none", "prior_shift")
MONTHS_BACK = 23  # the year of shifts the model keeps, and the year before it to check them against
_CLIP = 1e-6
_MAX_SHIFT = 6.0  # log-odds: far beyond any season, only there to bound the root search


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _CLIP, 1 - _CLIP)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def intercept_shift(p: np.ndarray, rate: float) -> float:
    """The log-odds shift that makes the mean of `p` equal `rate` (0 for empty input)."""
    if not len(p):
        return 0.0
    z = _logit(np.asarray(p, dtype=float))
    rate = float(np.clip(rate, _CLIP, 1 - _CLIP))
    return float(brentq(lambda d: _sigmoid(z + d).mean() - rate, -_MAX_SHIFT, _MAX_SHIFT))


def apply_shift(p: np.ndarray, shift: np.ndarray | float) -> np.ndarray:
    """Probabilities moved by a log-odds shift (0 leaves them unchanged)."""
    return _sigmoid(_logit(np.asarray(p, dtype=float)) + shift)


def check_cutoffs(anchor: pd.Timestamp, earliest: pd.Timestamp) -> list[pd.Timestamp]:
    """Monthly cutoffs from `anchor` back 23 months (not before `earliest`), oldest first."""
    months = [anchor - pd.DateOffset(months=k) for k in range(MONTHS_BACK + 1)]
    return sorted(c for c in months if c >= earliest)


@dataclass
class SeasonalCorrection:
    """The chosen correction, the shifts it applies by day of the year, and the checks behind the choice.

    `shifts`: ISO cutoff -> log-odds shift measured there (the last year before the anchor).
    `checks`: one row per earlier cutoff with a twin a year before: the churn rate observed,
    the model's mean, and its mean with last year's shift.
    """

    method: str = "none"
    reason: str = "no seasonal correction fitted"
    shifts: dict[str, float] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def shift_for(self, dates: pd.Series | np.ndarray) -> np.ndarray:
        """The log-odds shift for scoring dates: last year's shift at the same day of the year.

        Shifts are interpolated around the year by day of the year (a date between two monthly
        cutoffs gets a mix of both). 0 everywhere when the method is `none`.
        """
        dates = pd.to_datetime(pd.Series(np.asarray(dates)))
        if self.method != "prior_shift" or not self.shifts:
            return np.zeros(len(dates))
        days = np.array([pd.Timestamp(c).day_of_year for c in self.shifts], dtype=float)
        values = np.array(list(self.shifts.values()), dtype=float)
        order = np.argsort(days)
        days, values = days[order], values[order]
        # Around the year: the table repeated a year before and after, so interpolation wraps.
        x = np.concatenate([days - 365.25, days, days + 365.25])
        y = np.tile(values, 3)
        return np.interp(dates.dt.day_of_year.to_numpy(dtype=float), x, y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "reason": self.reason, "shifts": self.shifts, "checks": self.checks}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SeasonalCorrection:
        return cls(**data) if data else cls()


def fit_correction(model: ChurnModel, snapshots: pd.DataFrame, anchor: pd.Timestamp, method: str = "auto",
                   min_checks: int = 3, min_customers: int = 100) -> SeasonalCorrection:
    """Measure the model's shift at each monthly cutoff up to `anchor` and choose the correction.

    `snapshots`: labelled features at (some of) the cutoffs of `check_cutoffs(anchor, ...)`;
    `anchor`: the latest cutoff whose labels are known (the validation cutoff). A cutoff with
    fewer than `min_customers` or a single class is left out. `method` "none" or "prior_shift"
    forces the choice (the checks are still reported); "auto" decides by the checks.
    """
    anchor = pd.Timestamp(anchor)
    raw_shift: dict[pd.Timestamp, tuple[float, float, np.ndarray]] = {}
    for cutoff, rows in snapshots.groupby("cutoff"):
        if cutoff > anchor or len(rows) < min_customers or rows["churned"].nunique() < 2:
            continue
        p = model.predict_proba(rows, seasonal=False)[:, 1]
        rate = float(rows["churned"].mean())
        raw_shift[pd.Timestamp(cutoff)] = (intercept_shift(p, rate), rate, p)
    year_ago = {c: c - pd.DateOffset(months=12) for c in raw_shift}
    checks = []
    for c, (_, rate, p) in sorted(raw_shift.items()):
        twin = year_ago[c]
        if twin not in raw_shift:
            continue
        shifted = apply_shift(p, raw_shift[twin][0])
        checks.append({"cutoff": c.date().isoformat(), "n": int(len(p)), "observed": round(rate, 4),
                       "mean_none": round(float(p.mean()), 4), "mean_prior_shift": round(float(shifted.mean()), 4),
                       "shift_a_year_before": round(raw_shift[twin][0], 4)})
    last_year = {c.date().isoformat(): round(s, 6) for c, (s, _, _) in sorted(raw_shift.items())
                 if c > anchor - pd.DateOffset(months=12)}
    err_none = float(np.mean([abs(r["mean_none"] - r["observed"]) for r in checks])) if checks else np.nan
    err_shift = float(np.mean([abs(r["mean_prior_shift"] - r["observed"]) for r in checks])) if checks else np.nan
    figures = (f"over {len(checks)} earlier cutoffs with a labelled twin a year before, the model's mean was "
               f"{err_none:.3f} from the observed churn rate without a correction and {err_shift:.3f} with "
               f"last year's shift") if checks else ""
    if method == "none":
        return SeasonalCorrection("none", "turned off (model.season_correction = none)" +
                                  (f"; {figures}" if figures else ""), last_year, checks)
    if method == "prior_shift":
        return SeasonalCorrection("prior_shift", "forced (model.season_correction = prior_shift)" +
                                  (f"; {figures}" if figures else ""), last_year, checks)
    if len(checks) < min_checks:
        return SeasonalCorrection("none", f"not enough history to check a seasonal correction: {len(checks)} "
                                  f"earlier cutoffs with a labelled twin a year before, {min_checks} needed "
                                  f"(two years of orders)", last_year, checks)
    # Two standard errors of an observed churn rate: a gain smaller than that is noise, not a season.
    noise = float(np.mean([2 * np.sqrt(r["observed"] * (1 - r["observed"]) / r["n"]) for r in checks]))
    if err_none - err_shift > noise:
        spread = max(last_year.values()) - min(last_year.values()) if last_year else 0.0
        return SeasonalCorrection("prior_shift", f"the churn rate is seasonal: {figures}; the shift ranges "
                                  f"over {spread:.2f} log-odds across the year", last_year, checks)
    return SeasonalCorrection("none", f"no season to correct: {figures}, a gain below the {noise:.3f} that "
                              f"sampling noise in the observed rates explains", last_year, checks)
