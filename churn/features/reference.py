"""A plain-pandas reference for the core features: the check on the DuckDB engine, and its yardstick.

It computes the core RFM, trend, gap and basket features of `churn.features` the obvious way
(occasions by groupby, one cutoff at a time) so that tests can compare the two engines to
1e-9 and `bench/features.py` can time both on the same data. Not used by the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from churn.features.catalogue import EPOCH, WINDOWS
from churn.features.engine import to_day, valid_orders

CORE_FEATURES = (
    ["recency_days", "tenure_days", "orders_all", "spend_all"]
    + [f"{kind}_{w}d" for w in WINDOWS for kind in ("orders", "spend")]
    + ["orders_prev_90d", "spend_prev_90d", "orders_prev_180d", "gap_mean_days", "gap_std_days", "gap_last_days",
       "max_order_value_365d", "frequency_trend_90d", "frequency_trend_180d", "spend_trend_90d",
       "avg_order_value_365d", "overdue_ratio", "discount_share_365d"]
)


def _orders_by_day(orders: pd.DataFrame) -> pd.DataFrame:
    """Valid orders with their integer day, sorted by customer and day."""
    valid = valid_orders(orders)
    frame = pd.DataFrame({
        "customer_id": valid["customer_id"].astype("str").to_numpy(),
        "day": ((valid["order_ts"].dt.floor("D") - EPOCH).dt.days).to_numpy(dtype="int64"),
        "amount": valid["amount"].to_numpy(dtype="float64"),
        "discount": valid["discount"].fillna(0).to_numpy(dtype="float64") if "discount" in valid else 0.0,
    })
    return frame.sort_values(["customer_id", "day"], kind="stable", ignore_index=True)


def _at_cutoff(orders: pd.DataFrame, t: int, lookback_days: int) -> pd.DataFrame:
    """Core features of the population at one cutoff day `t`."""
    o = orders[orders["day"] <= t]
    occ = o.groupby(["customer_id", "day"], as_index=False, sort=True)["amount"].sum()
    occ["gap"] = occ.groupby("customer_id")["day"].diff()
    by = occ.groupby("customer_id")
    out = pd.DataFrame({"recency_days": t - by["day"].max(), "tenure_days": t - by["day"].min(),
                        "orders_all": by.size(), "spend_all": o.groupby("customer_id")["amount"].sum()})
    out = out[out["recency_days"] < lookback_days]

    def count(lo: int, hi: int = 0) -> pd.Series:  # occasions with t - lo < day <= t - hi
        inside = occ[(occ["day"] > t - lo) & (occ["day"] <= t - hi)]
        return inside.groupby("customer_id").size().reindex(out.index, fill_value=0)

    def spend(lo: int, hi: int = 0, column: str = "amount") -> pd.Series:
        inside = o[(o["day"] > t - lo) & (o["day"] <= t - hi)]
        return inside.groupby("customer_id")[column].sum().reindex(out.index, fill_value=0.0)

    for w in WINDOWS:
        out[f"orders_{w}d"], out[f"spend_{w}d"] = count(w), spend(w)
    out["orders_prev_90d"], out["spend_prev_90d"] = count(180, 90), spend(180, 90)
    out["orders_prev_180d"] = count(360, 180)
    gaps = occ.dropna(subset=["gap"]).groupby("customer_id")["gap"]
    out["gap_mean_days"] = gaps.mean()
    out["gap_std_days"] = gaps.std()
    out["gap_last_days"] = gaps.last()
    year = o[o["day"] > t - 365]
    out["max_order_value_365d"] = year.groupby("customer_id")["amount"].max()
    out["frequency_trend_90d"] = (out["orders_90d"] + 1.0) / (out["orders_prev_90d"] + 1.0)
    out["frequency_trend_180d"] = (out["orders_180d"] + 1.0) / (out["orders_prev_180d"] + 1.0)
    out["spend_trend_90d"] = (out["spend_90d"] + 1.0) / (out["spend_prev_90d"] + 1.0)
    out["avg_order_value_365d"] = out["spend_365d"] / out["orders_365d"].replace(0, np.nan)
    out["overdue_ratio"] = out["recency_days"] / out["gap_mean_days"].replace(0, np.nan)
    gross = spend(365) + spend(365, column="discount")
    out["discount_share_365d"] = spend(365, column="discount") / gross.replace(0, np.nan)
    out.insert(0, "cutoff", EPOCH + pd.Timedelta(days=t))
    return out


def reference_features(orders: pd.DataFrame, cutoffs: Sequence[object], lookback_days: int = 365) -> pd.DataFrame:
    """Core features at each cutoff, one row per (customer_id, cutoff), sorted like the engine's."""
    by_day = _orders_by_day(orders)
    frames = [_at_cutoff(by_day, t, lookback_days) for t in sorted({to_day(c) for c in cutoffs})]
    frame = pd.concat(frames).rename_axis("customer_id").reset_index()
    frame = frame.sort_values(["cutoff", "customer_id"], ignore_index=True)
    return frame[["customer_id", "cutoff", *CORE_FEATURES]].astype({c: "float64" for c in CORE_FEATURES})
