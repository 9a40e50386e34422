"""Training snapshots: the data's range of purchase days."""

from __future__ import annotations

import pandas as pd
import pytest

from churn.errors import DataError
from churn.features.snapshots import data_range
from tests.conftest import dataset_of, make_orders


def test_data_range_spans_the_purchase_days_only():
    orders = make_orders([("a", "2024-01-05 10:00"), ("a", "2024-03-01", 5.0, "cancelled"), ("b", "2024-02-10")])

    assert data_range(dataset_of(orders)) == (pd.Timestamp("2024-01-05"), pd.Timestamp("2024-02-10"))


def test_data_without_a_single_purchase_is_a_data_error_not_a_crash():
    # Before: AttributeError 'NaTType' object has no attribute 'normalize' (exit 70 from `churn train`).
    orders = make_orders([("a", "2024-01-05", 5.0, "cancelled"), ("b", "2024-02-10", 5.0, "returned")])

    with pytest.raises(DataError, match="none of the 2 orders is a purchase"):
        data_range(dataset_of(orders))
