"""Outcomes of the win-back lists: who came back, treated against holdout, and what uplift that means.

A listed customer "came back" when they bought in the H days after the list date (H: the
horizon of the run that listed them). Only list dates whose whole window lies inside the data
are measured. Treated and holdout customers were taken from the same EV ranking (the holdout
is a stable hash, not a choice), so the difference of their win-back rates estimates the
effect of the action. Measured uplift per action and segment, as a share of would-be churners
won back, is shrunk towards the configured prior by sample size; the next run's EV uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from churn.config import ACTIONS, SEGMENTS, Config, OutcomesConfig, WinbackConfig
from churn.data import database
from churn.errors import NothingToMeasure
from churn.features.engine import valid_orders

__all__ = ["follow_up", "summary", "ranking", "estimate_uplift", "uplift_for_run", "measure", "Measured"]

SUMMARY_COLUMNS = ["action", "risk_band", "n_treated", "n_holdout", "rate_treated", "rate_holdout", "difference",
                   "ci_low", "ci_high", "incremental_revenue", "coupon_redemption", "contacted_share"]


def follow_up(assignments: pd.DataFrame, horizons: pd.Series, orders: pd.DataFrame,
              contacts: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per listed customer whose window (list date, list date + H] lies inside the data.

    `horizons`: horizon in days per run date. Columns: list_date, customer_id, action, arm,
    segment, risk_band, window_end, came_back, revenue, coupon_redeemed, contacted (None
    without a contacts table), and, when the assignments have them, rank, expected_value,
    p_churn, explored and selection_probability.
    """
    valid = valid_orders(orders)
    data_end = valid["order_ts"].max().normalize()
    listed = assignments.rename(columns={"run_date": "list_date"}).copy()
    listed["list_date"] = pd.to_datetime(listed["list_date"]).dt.normalize()
    days = listed["list_date"].map(pd.Series(horizons.to_numpy(), index=pd.to_datetime(horizons.index)))
    listed["window_end"] = listed["list_date"] + pd.to_timedelta(days, unit="D")
    listed = listed[listed["window_end"] <= data_end]
    con = database.connect()
    # The list's own ranking, when the assignments carry it, for the Qini of `ranking`.
    ranked = [c for c in ("rank", "expected_value", "p_churn") if c in listed]
    # Exploration (churn.decide.winback): who was drawn at random, and their chance of being drawn.
    if "explored" in listed:
        listed["explored"] = listed["explored"].fillna(False).astype(bool)  # lists from before: chosen by EV
        listed["selection_probability"] = pd.to_numeric(listed.get("selection_probability"),
                                                        errors="coerce").fillna(1.0)
        ranked += ["explored", "selection_probability"]
    con.register("listed", listed[["list_date", "customer_id", "action", "arm", "segment", "risk_band", "window_end",
                                   *ranked]])
    coupon = "coalesce(o.coupon_used, false)" if "coupon_used" in valid else "false"
    con.register("orders", valid[["customer_id", "order_ts", "amount"]
                                 + (["coupon_used"] if "coupon_used" in valid else [])])
    # Whole days: the window starts the day after the list date and ends with day list_date + H.
    frame = con.execute(f"""
        SELECT l.list_date, l.customer_id, l.action, l.arm, l.segment, CAST(l.risk_band AS VARCHAR) AS risk_band,
               l.window_end, {"".join(f"l.{c}, " for c in ranked)}count(o.customer_id) > 0 AS came_back,
               coalesce(sum(o.amount), 0) AS revenue,
               coalesce(bool_or({coupon}), false) AS coupon_redeemed
        FROM listed l LEFT JOIN orders o ON o.customer_id = l.customer_id
             AND o.order_ts >= l.list_date + INTERVAL 1 DAY AND o.order_ts < l.window_end + INTERVAL 1 DAY
        GROUP BY ALL ORDER BY l.list_date, l.action, l.customer_id""").df()
    con.close()
    frame["contacted"] = None
    if contacts is not None and len(contacts):
        done = contacts[contacts["contacted_ts"].notna()] if "contacted_ts" in contacts else contacts
        keys = set(zip(pd.to_datetime(done["list_date"]).dt.normalize(), done["customer_id"].astype(str),
                       done["action"].astype(str)))
        frame["contacted"] = [(d, c, a) in keys for d, c, a in
                              zip(frame["list_date"], frame["customer_id"], frame["action"])]
    return frame


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def summary(outcomes: pd.DataFrame, config: OutcomesConfig) -> pd.DataFrame:
    """Per action and risk band (and "all"): win-back rates, their difference with a CI, revenue, coupons."""
    rows = []
    z = _z(config.confidence)
    for (action, band), group in _groups(outcomes):
        t, h = group[group["arm"] == "treated"], group[group["arm"] == "holdout"]
        n_t, n_h = len(t), len(h)
        r_t = t["came_back"].mean() if n_t else np.nan
        r_h = h["came_back"].mean() if n_h else np.nan
        se = np.sqrt(r_t * (1 - r_t) / n_t + r_h * (1 - r_h) / n_h) if n_t and n_h else np.nan
        revenue = (t["revenue"].mean() - h["revenue"].mean()) * n_t if n_t and n_h else np.nan
        contacted = t["contacted"].dropna()
        rows.append({"action": action, "risk_band": band, "n_treated": n_t, "n_holdout": n_h,
                     "rate_treated": r_t, "rate_holdout": r_h, "difference": r_t - r_h,
                     "ci_low": r_t - r_h - z * se, "ci_high": r_t - r_h + z * se,
                     "incremental_revenue": revenue,
                     "coupon_redemption": t["coupon_redeemed"].mean() if n_t else np.nan,
                     "contacted_share": contacted.astype(float).mean() if len(contacted) else np.nan})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _groups(outcomes: pd.DataFrame):
    for action in ACTIONS:
        of_action = outcomes[outcomes["action"] == action]
        if of_action.empty:
            continue
        for band in sorted(of_action["risk_band"].dropna().unique()):
            yield (action, band), of_action[of_action["risk_band"] == band]
        yield (action, "all"), of_action


def estimate_uplift(outcomes: pd.DataFrame, winback: WinbackConfig, config: OutcomesConfig,
                    measured_through: str) -> pd.DataFrame:
    """Uplift per action and segment: measured, and shrunk towards the prior by sample size.

    measured = (rate treated - rate holdout) / (1 - rate holdout): the share of customers who
    would not have come back that the action brought back, the quantity EV multiplies by
    p_churn. shrunk = (n x measured + k x prior) / (n + k) with n the effective sample size
    n_t n_h / (n_t + n_h) and k = outcomes.prior_strength. Below outcomes.min_holdout holdout
    customers the prior stays (source "prior").
    """
    rows = []
    for action in ACTIONS:
        for segment in SEGMENTS:
            prior = float(winback.action(action).uplift.get(segment, 0.0))
            group = outcomes[(outcomes["action"] == action) & (outcomes["segment"] == segment)]
            t, h = group[group["arm"] == "treated"], group[group["arm"] == "holdout"]
            n_t, n_h = len(t), len(h)
            r_t = float(t["came_back"].mean()) if n_t else np.nan
            r_h = float(h["came_back"].mean()) if n_h else np.nan
            measured, shrunk, source = np.nan, prior, "prior"
            if n_t and n_h >= config.min_holdout:
                measured = float(np.clip((r_t - r_h) / max(1 - r_h, 1e-9), 0.0, 1.0))
                n_eff = n_t * n_h / (n_t + n_h)
                shrunk = (n_eff * measured + config.prior_strength * prior) / (n_eff + config.prior_strength)
                source = "measured"
            rows.append({"measured_through": pd.Timestamp(measured_through), "action": action, "segment": segment,
                         "n_treated": n_t, "n_holdout": n_h, "rate_treated": r_t, "rate_holdout": r_h,
                         "measured": measured, "prior": prior, "shrunk": shrunk, "source": source})
    return pd.DataFrame(rows)


def uplift_for_run(estimates: pd.DataFrame | None,
                   winback: WinbackConfig) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, object]]]:
    """The uplift a run uses per action and segment, and for the manifest what it is and where from."""
    used: dict[str, dict[str, float]] = {}
    report: dict[str, dict[str, object]] = {}
    measured = {} if estimates is None else {
        (r.action, r.segment): r for r in estimates.itertuples() if r.source == "measured"}
    for action in ACTIONS:
        used[action], report[action] = {}, {}
        for segment in SEGMENTS:
            prior = float(winback.action(action).uplift.get(segment, 0.0))
            row = measured.get((action, segment))
            if row is None:
                used[action][segment] = prior
                report[action][segment] = {"uplift": prior, "source": "prior"}
            else:
                used[action][segment] = round(float(row.shrunk), 6)
                report[action][segment] = {
                    "uplift": used[action][segment], "source": "measured (shrunk to prior)", "prior": prior,
                    "measured": round(float(row.measured), 6), "n_treated": int(row.n_treated),
                    "n_holdout": int(row.n_holdout),
                    "measured_through": pd.Timestamp(row.measured_through).date().isoformat()}
    return used, report


RANKING_COLUMNS = ["action", "n_treated", "n_holdout", "uplift_at_capacity", "ci_low", "ci_high", "qini_list",
                   "qini_learned", "claim"]


def ranking(outcomes: pd.DataFrame, config: OutcomesConfig, learned_score: pd.Series | None = None) -> pd.DataFrame:
    """Per action: uplift at the list's capacity and the Qini coefficient of the list's ranking.

    uplift_at_capacity: rate treated - rate holdout of the customers the lists took (all within
    capacity; the holdout is drawn from the same ranking), with its interval. qini_list: the
    Qini coefficient (`churn.decide.uplift.qini_coefficient`) of the lists' own order, by
    expected value at list time: positive when the top of the lists held more of the customers
    the action brought back. qini_learned: the same for a learned uplift score (cross-fitted,
    `learned_score`, aligned with `outcomes`), when given. Below outcomes.min_claim_treated
    treated or outcomes.min_claim_holdout holdout customers an action's figures stay empty and
    `claim` says it is too few to tell.
    """
    from churn.decide.uplift import qini_coefficient, uplift_at_capacity

    rows = []
    for action in ACTIONS:
        mine = outcomes[outcomes["action"] == action]
        if mine.empty:
            continue
        treated = (mine["arm"] == "treated").to_numpy()
        n_t, n_h = int(treated.sum()), int((~treated).sum())
        row = {"action": action, "n_treated": n_t, "n_holdout": n_h, "uplift_at_capacity": np.nan,
               "ci_low": np.nan, "ci_high": np.nan, "qini_list": np.nan, "qini_learned": np.nan}
        if n_t < config.min_claim_treated or n_h < config.min_claim_holdout:
            row["claim"] = (f"too few to tell: {n_t} treated and {n_h} holdout measured, "
                            f"{config.min_claim_treated} and {config.min_claim_holdout} needed")
            rows.append(row)
            continue
        y = mine["came_back"].to_numpy(dtype=float)
        row["uplift_at_capacity"], row["ci_low"], row["ci_high"] = uplift_at_capacity(y, treated)
        if "expected_value" in mine:
            row["qini_list"] = qini_coefficient(mine["expected_value"].to_numpy(dtype=float), y, treated)
        if learned_score is not None:
            row["qini_learned"] = qini_coefficient(learned_score.loc[mine.index].to_numpy(dtype=float), y, treated)
        row["claim"] = "measured"
        rows.append(row)
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)


@dataclass(frozen=True)
class Measured:
    """What one measurement found: per-customer outcomes, uplift estimates, the summary table.

    `ranking`: uplift at capacity and Qini per action (see `ranking`).
    """

    follow: pd.DataFrame
    estimates: pd.DataFrame
    table: pd.DataFrame
    orders_through: str
    ranking: pd.DataFrame | None = None

    @property
    def list_dates(self) -> list[str]:
        return [d.isoformat() for d in sorted(pd.to_datetime(self.follow["list_date"]).dt.date.unique())]


def measure(assignments: pd.DataFrame, runs: pd.DataFrame, orders: pd.DataFrame, contacts: pd.DataFrame | None,
            config: Config, where: str = "the warehouse") -> Measured:
    """Measure every list whose horizon window lies inside the orders; NothingToMeasure when there is none yet."""
    if assignments.empty:
        raise NothingToMeasure(f"no win-back lists in {where}: run `churn score` first (same --out)")
    follow = follow_up(assignments, runs.set_index("run_date")["horizon_days"], orders, contacts)
    if follow.empty:
        raise NothingToMeasure(f"no list has its whole horizon window inside the data yet (orders end "
                        f"{orders['order_ts'].max().date()}); measure again when later orders are in")
    # The estimates use orders up to the last window's end: runs from that day on may use them.
    through = str(pd.Timestamp(follow["window_end"].max()).date())
    estimates = estimate_uplift(follow, config.winback, config.outcomes, through)
    return Measured(follow, estimates, summary(follow, config.outcomes), through, ranking(follow, config.outcomes))
