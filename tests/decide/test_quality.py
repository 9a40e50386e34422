"""The data-quality gate: stale, shrunken or reshaped data stops the run with a message saying what to do."""

import pandas as pd
import pytest

from churn.decide import quality
from churn.config import QualityConfig
from churn.errors import QualityError
from conftest import dataset_of, make_orders

CONFIG = QualityConfig(max_lag_days=3, volume_window_days=28, max_volume_change=0.5)


def _measured(last_day: str, n_orders: int = 20):
    days = pd.date_range(end=last_day, periods=n_orders, freq="D")
    dataset = dataset_of(make_orders([(f"c{i % 5}", d) for i, d in enumerate(days)]))
    return quality.figures(dataset, "2024-05-31", n_scored=5, config=CONFIG)


def _previous(measured, **changes):
    return {"run_date": "2024-05-30", **{k: measured[k] for k in ("n_scored", "orders_window", "table_schema")},
            **changes}


def test_fresh_data_like_yesterdays_passes_every_check():
    measured = _measured("2024-05-31")
    assert measured["latest_order"] == "2024-05-31" and measured["orders_window"] == 20
    assert quality.check(measured, "2024-05-31", _previous(measured), CONFIG) == ["freshness", "volume", "schema"]


def test_stale_data_fails_on_freshness():
    measured = _measured("2024-05-20")
    with pytest.raises(QualityError, match=r"freshness: the latest order is from 2024-05-20, 11 days before.*"
                                           r"max_lag_days = 3"):
        quality.check(measured, "2024-05-31", None, CONFIG)


def test_orders_after_the_run_date_do_not_make_old_data_fresh():
    measured = _measured("2024-06-30", n_orders=60)
    assert measured["latest_order"] == "2024-05-31"


def test_a_collapse_in_volume_fails_and_names_both_figures():
    measured = _measured("2024-05-31")
    with pytest.raises(QualityError, match=r"volume: orders in the 28 days .*: 20 against 50 .*-60%"):
        quality.check(measured, "2024-05-31", _previous(measured, orders_window=50), CONFIG)
    assert "volume" in quality.check(measured, "2024-05-31", _previous(measured, orders_window=30), CONFIG)


def test_a_lost_table_or_column_fails_on_schema():
    measured = _measured("2024-05-31")
    before = {**measured["table_schema"], "events": ["customer_id", "event_ts", "event_type"]}
    before["orders"] = before["orders"] + ["coupon_used"]
    with pytest.raises(QualityError) as err:
        quality.check(measured, "2024-05-31", _previous(measured, table_schema=before), CONFIG)
    assert "table events" in str(err.value) and "orders lost column(s) coupon_used" in str(err.value)
    assert "nothing was published" in str(err.value)
