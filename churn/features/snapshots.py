"""Training snapshots: features at each cutoff stacked, with the churn label beside them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Sequence

import pandas as pd

from churn.errors import DataError
from churn.features.engine import FeatureBuilder, occasions, valid_orders
from churn.features.labels import churn_labels

if TYPE_CHECKING:
    from churn.data.contract import Dataset


def data_range(dataset: Dataset) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day with a valid order; DataError when no order is a purchase."""
    ts = valid_orders(dataset.orders)["order_ts"]
    if ts.empty:
        raise DataError(f"none of the {len(dataset.orders)} orders is a purchase (all cancelled or returned): "
                        f"nothing to learn from or score")
    return ts.min().normalize(), ts.max().normalize()


def build_snapshots(dataset: Dataset, cutoffs: Sequence[object], horizon_days: int,
                    lookback_days: int = 365, builder: FeatureBuilder | None = None) -> pd.DataFrame:
    """Features of the population at every cutoff plus `churned` (no occasion in (T, T+H])."""
    builder = builder or FeatureBuilder(dataset, lookback_days)
    frame = builder.build(cutoffs)
    frame["churned"] = churn_labels(frame, occasions(dataset.orders), horizon_days)
    return frame
