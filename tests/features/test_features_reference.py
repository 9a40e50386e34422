"""The DuckDB engine and the plain-pandas reference agree on the core features."""

from __future__ import annotations

from pandas.testing import assert_frame_equal

from churn.features.engine import FeatureBuilder
from churn.features.reference import CORE_FEATURES, reference_features
from tests.conftest import dataset_of, make_orders


def test_engines_agree_on_synthetic_data(synthetic_small):
    orders = synthetic_small.tables["orders"]
    cutoffs = ["2023-06-30", "2023-12-31", "2024-06-30"]
    engine = FeatureBuilder(dataset_of(orders)).build(cutoffs)
    reference = reference_features(orders, cutoffs)
    assert len(engine) > 1000
    assert_frame_equal(engine[reference.columns], reference, check_exact=False, rtol=1e-9, atol=1e-9)


def test_engines_agree_on_same_day_orders_and_returns():
    orders = make_orders([("a", "2024-01-01 08:00", 5), ("a", "2024-01-01 20:00", 7), ("a", "2024-01-05", 3, "returned"),
                          ("a", "2024-01-09", 4), ("b", "2023-03-01", 9), ("b", "2024-01-02", 1)])
    engine = FeatureBuilder(dataset_of(orders)).build(["2024-01-10"])
    assert_frame_equal(engine[["customer_id", "cutoff", *CORE_FEATURES]],
                       reference_features(orders, ["2024-01-10"]), check_exact=False, rtol=1e-9, atol=1e-9)
