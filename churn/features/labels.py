"""Churn labels: churned at T with horizon H means no purchase occasion in (T, T + H]."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.features.catalogue import EPOCH


def churn_labels(keys: pd.DataFrame, occasions: pd.DataFrame, horizon_days: int) -> pd.Series:
    """Label each (customer_id, cutoff) row of `keys`: 1 if no occasion in (cutoff, cutoff + H].

    `occasions` has one row per (customer_id, day) with `day` in whole days since 1970-01-01,
    as made by `churn.features.occasions`. Only data after the cutoff is looked at.
    """
    if len(keys) == 0:  # nobody at these cutoffs: nothing to label (and no key dtypes to match)
        return pd.Series(np.zeros(0, dtype="int8"), index=keys.index, name="churned")
    left = pd.DataFrame({
        "row": np.arange(len(keys)),
        "customer_id": keys["customer_id"].to_numpy(),
        "t": ((keys["cutoff"] - EPOCH).dt.days).to_numpy(dtype="int64"),
    }).sort_values("t", kind="stable")
    right = pd.DataFrame({
        "customer_id": occasions["customer_id"].to_numpy(),
        "t": occasions["day"].to_numpy(dtype="int64"),
        "next_day": occasions["day"].to_numpy(dtype="int64"),
    }).sort_values("t", kind="stable")
    nxt = pd.merge_asof(left, right, on="t", by="customer_id", direction="forward", allow_exact_matches=False)
    churned = nxt["next_day"].isna() | (nxt["next_day"] > nxt["t"] + horizon_days)
    return pd.Series(churned.to_numpy(dtype="int8"), index=nxt["row"].to_numpy(), name="churned").sort_index().set_axis(keys.index)
