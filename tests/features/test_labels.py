import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from churn.features.engine import occasions
from churn.features.labels import churn_labels
from tests.conftest import make_orders


def _keys(pairs):
    return pd.DataFrame({"customer_id": pd.Series([p[0] for p in pairs], dtype="str"),
                         "cutoff": pd.to_datetime([p[1] for p in pairs])})


def test_churned_means_no_occasion_in_the_horizon_after_the_cutoff():
    orders = make_orders([
        ("stays", "2024-01-31"),            # on the cutoff day itself: not after it
        ("stays", "2024-03-01"),            # day 30 after the cutoff: inside (T, T+30]
        ("leaves", "2024-03-02"),           # day 31: outside
        ("returns_only", "2024-02-10", 10, "returned"),
    ])
    keys = _keys([("stays", "2024-01-31"), ("leaves", "2024-01-31"), ("returns_only", "2024-01-31"),
                  ("stays", "2024-03-01")])
    got = churn_labels(keys, occasions(orders), horizon_days=30)
    assert got.tolist() == [0, 1, 1, 1]
    assert got.index.equals(keys.index)


@settings(max_examples=50, deadline=None)
@given(days=st.lists(st.integers(-100, 100), min_size=1, max_size=15), h=st.integers(1, 60),
       noise=st.lists(st.integers(-100, 0), max_size=10))
def test_label_depends_only_on_the_window_after_the_cutoff(days, h, noise):
    cutoff = pd.Timestamp("2024-06-01")
    orders = make_orders([("a", cutoff + pd.Timedelta(days=d)) for d in days])
    keys = _keys([("a", cutoff)])
    expected = int(not any(0 < d <= h for d in days))
    assert churn_labels(keys, occasions(orders), h).iloc[0] == expected
    # Anything on or before the cutoff does not change the label.
    more = make_orders([("a", cutoff + pd.Timedelta(days=d)) for d in days + noise])
    assert churn_labels(keys, occasions(more), h).iloc[0] == expected


def test_no_rows_to_label_gives_an_empty_label_column():
    keys = pd.DataFrame({"customer_id": pd.Series([], dtype=object), "cutoff": pd.Series([], dtype="datetime64[us]")})
    orders = make_orders([("a", "2024-01-05")])

    got = churn_labels(keys, occasions(orders), horizon_days=30)
    assert len(got) == 0 and got.name == "churned"
