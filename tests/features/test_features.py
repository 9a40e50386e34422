from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from pathlib import Path

from churn.features.catalogue import catalogue, features_markdown
from churn.features.engine import FeatureBuilder, build_features, occasions
from churn.features.segments import rfm_segment
from tests.conftest import dataset_of, make_orders


def test_rfm_and_gaps_by_hand():
    orders = make_orders([
        ("a", "2024-01-01", 10), ("a", "2024-01-11", 20), ("a", "2024-01-11 18:00", 5), ("a", "2024-01-31", 30),
        ("b", "2024-01-05", 100),
        ("a", "2024-02-01", 999),  # after the cutoff: must not count
    ])
    got = build_features(dataset_of(orders), ["2024-01-31"]).set_index("customer_id")
    a, b = got.loc["a"], got.loc["b"]
    assert a["recency_days"] == 0 and b["recency_days"] == 26
    assert a["tenure_days"] == 30
    assert a["orders_all"] == 3  # two orders on Jan 11 are one purchase occasion
    assert a["spend_all"] == 65 and a["spend_30d"] == 55  # Jan 1 is 30 days before Jan 31: outside
    assert a["orders_30d"] == 2
    assert a["gap_mean_days"] == 15 and a["gap_last_days"] == 20
    assert a["gap_std_days"] == pytest.approx(pd.Series([10, 20]).std())
    assert a["overdue_ratio"] == 0
    assert pd.isna(b["gap_mean_days"]) and pd.isna(b["overdue_ratio"])
    assert b["avg_order_value_365d"] == 100


def test_frequency_trend_compares_last_90_days_with_the_90_before():
    orders = make_orders([("a", f"2024-0{m}-15") for m in (1, 2, 3, 4)] + [("a", "2024-06-20")])
    got = build_features(dataset_of(orders), ["2024-06-30"]).iloc[0]
    # Last 90 days (Apr 2 - Jun 30): Apr 15, Jun 20 -> 2; the 90 before (Jan 3 - Apr 1): Jan, Feb, Mar -> 3
    assert (got["orders_90d"], got["orders_prev_90d"]) == (2, 3)
    assert got["frequency_trend_90d"] == pytest.approx(3 / 4)


def test_returned_and_cancelled_orders_are_not_purchases():
    orders = make_orders([("a", "2024-01-01"), ("a", "2024-01-20", 50, "returned"),
                          ("a", "2024-01-25", 50, "cancelled")])
    got = build_features(dataset_of(orders), ["2024-01-31"]).iloc[0]
    assert got["recency_days"] == 30 and got["orders_all"] == 1 and got["spend_all"] == 10
    assert got["returns_share_365d"] == pytest.approx(2 / 3)


def test_population_is_customers_with_an_occasion_in_the_lookback():
    orders = make_orders([("old", "2022-01-01"), ("recent", "2023-12-01"), ("future", "2024-02-01")])
    got = build_features(dataset_of(orders), ["2024-01-01"], lookback_days=365)
    assert got["customer_id"].tolist() == ["recent"]


def test_missing_tables_remove_their_features_instead_of_zeros():
    orders = make_orders([("a", "2024-01-01")]).drop(columns=["status"])
    builder = FeatureBuilder(dataset_of(orders))
    names = {f.name for f in builder.features}
    assert "categories_90d" not in names and "returns_share_365d" not in names and "days_since_event" not in names
    assert set(builder.build(["2024-01-31"]).columns) == {"customer_id", "cutoff"} | names


def test_event_features_count_each_type_and_leave_no_event_as_unknown():
    orders = make_orders([("a", "2024-01-01"), ("b", "2024-01-01")])
    events = pd.DataFrame({"customer_id": ["a", "a", "a"], "event_type": ["complaint", "complaint", "login"],
                           "event_ts": pd.to_datetime(["2023-09-01", "2024-01-20", "2024-01-30"])})
    got = build_features(dataset_of(orders, events=events), ["2024-01-31"]).set_index("customer_id")
    assert got.loc["a", "event_complaint_90d"] == 1 and got.loc["a", "event_login_90d"] == 1
    assert got.loc["a", "days_since_event"] == 1
    assert got.loc["b", "event_complaint_90d"] == 0 and pd.isna(got.loc["b", "days_since_event"])


def test_item_breadth_features():
    orders = make_orders([("a", "2024-01-10"), ("a", "2023-09-15")])
    items = pd.DataFrame({"order_id": ["o0", "o0", "o0", "o1"], "product_id": ["p1", "p2", "p2", "p9"],
                          "category": ["dairy", "bakery", "bakery", "meat"]})
    got = build_features(dataset_of(orders, order_items=items), ["2024-01-31"]).iloc[0]
    assert (got["categories_90d"], got["products_90d"], got["categories_prev_90d"]) == (2, 2, 1)


def test_many_cutoffs_at_once_equal_one_at_a_time(synthetic_small):
    dataset = dataset_of(**{"orders": synthetic_small.tables["orders"]},
                         **{k: v for k, v in synthetic_small.tables.items() if k in ("order_items", "events")})
    cutoffs = ["2023-09-30", "2023-12-31", "2024-03-31"]
    builder = FeatureBuilder(dataset)
    together = builder.build(cutoffs)
    one_by_one = pd.concat([builder.build([c]) for c in cutoffs], ignore_index=True)
    assert_frame_equal(together, one_by_one)


def test_catalogue_names_are_unique_and_documented():
    feats = catalogue(["complaint", "login"])
    names = [f.name for f in feats]
    assert len(names) == len(set(names))
    assert all(f.meaning and f.window and f.sql for f in feats)


# --- the point-in-time law -------------------------------------------------------------------

CUTOFF = pd.Timestamp("2024-03-31")
days = st.integers(min_value=-400, max_value=120)  # days relative to the cutoff
order_rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), days, st.floats(0, 500),
                                st.sampled_from(["completed", "completed", "returned"]),
                                st.integers(0, 86399)), min_size=1, max_size=40)
event_rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), days, st.sampled_from(["complaint", "login"])),
                      max_size=20)


def _orders(rows, anchor: bool = True) -> pd.DataFrame:
    # One order well before T keeps every variant non-empty (an empty orders table is an error).
    fixed = [("a", CUTOFF - pd.Timedelta(days=10), 1.0, "completed")] if anchor else []
    orders = make_orders(fixed + [(c, CUTOFF + pd.Timedelta(days=d, seconds=s), amt, status)
                                  for c, d, amt, status, s in rows])
    # Basket columns derived from the row, so that altering a late order alters them too.
    orders["discount"] = (orders["amount"] * 0.1).round(2)
    orders["n_items"] = (orders["amount"] // 50 + 1).astype("int64")
    orders["coupon_used"] = orders["amount"] > 250
    return orders


def _events(rows) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series([r[0] for r in rows], dtype="str"),
                         "event_ts": pd.Series([CUTOFF + pd.Timedelta(days=r[1], hours=12) for r in rows],
                                               dtype="datetime64[us]"),
                         "event_type": pd.Series([r[2] for r in rows], dtype="str")})


def _features(orders: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    # Products and categories vary with the order, so breadth and "new product" features are exercised.
    items = pd.DataFrame({"order_id": orders["order_id"],
                          "product_id": "p" + (orders["amount"] // 100).astype("int64").astype("str"),
                          "category": orders["status"]})
    # Which event types get a column is a property of the data set, not of time: fix it here.
    return build_features(dataset_of(orders, events=events, order_items=items), [CUTOFF],
                          event_types=["complaint", "login"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=order_rows, later=order_rows, ev=event_rows, later_ev=event_rows, data=st.data())
def test_features_as_of_t_ignore_everything_after_t(rows, later, ev, later_ev, data):
    orders, events = _orders(rows), _events(ev)
    before = orders[orders["order_ts"] < CUTOFF + pd.Timedelta(days=1)]
    ev_before = events[events["event_ts"] < CUTOFF + pd.Timedelta(days=1)]
    # What happens after T: new orders and events, removed ones, altered amounts and statuses.
    after = _orders([(c, abs(d) + 1, amt, status, s) for c, d, amt, status, s in later], anchor=False)
    after["order_id"] = "late-" + after["order_id"]
    altered = orders.copy()
    late = altered["order_ts"] >= CUTOFF + pd.Timedelta(days=1)
    altered.loc[late, "amount"] = data.draw(st.floats(0, 1000))
    altered.loc[late, "status"] = "cancelled"
    late_events = _events([(c, abs(d) + 1, kind) for c, d, kind in later_ev])

    reference = _features(before, ev_before)
    for variant_orders, variant_events in [
        (pd.concat([orders, after], ignore_index=True), pd.concat([events, late_events], ignore_index=True)),
        (altered, events),
        (before, ev_before),
    ]:
        assert_frame_equal(_features(variant_orders, variant_events), reference)


def test_occasions_merge_orders_of_the_same_day():
    orders = make_orders([("a", "2024-01-01 08:00", 5), ("a", "2024-01-01 20:00", 7), ("a", "2024-01-02", 1)])
    occ = occasions(orders)
    assert occ["spend"].tolist() == [12, 1] and occ["day"].diff().iloc[1] == 1


def test_pit_variants_cover_every_feature_family():
    """The point-in-time property test above sees every family, or it would prove nothing for them."""
    orders = _orders([("b", -100, 20.0, "completed", 0)])
    got = _features(orders, _events([("a", -5, "login"), ("b", -1, "complaint")]))
    families = {f.family for f in catalogue(["complaint", "login"]) if f.name in got.columns}
    assert families == {"rfm", "warning", "basket", "breadth", "engagement"}
    assert {"coupon_share_365d", "new_product_share_90d", "visit_trend_90d", "r_score"} <= set(got.columns)


# --- new families by hand ------------------------------------------------------------------------


def test_six_month_trend_and_valuable_drop_by_hand():
    # "big" bought every month until 90 days ago; "small" buys rarely but steadily.
    big = [("big", d, 100) for d in pd.date_range("2023-07-01", "2024-03-31", freq="14D")]
    small = [("small", "2023-08-01", 5), ("small", "2024-05-01", 5), ("s2", "2024-06-01", 1),
             ("s3", "2024-06-02", 1), ("s4", "2024-06-03", 1)]
    got = build_features(dataset_of(make_orders(big + small)), ["2024-06-30"]).set_index("customer_id")
    b = got.loc["big"]
    # Last 180 days (Jan 3 - Jun 30) vs days 181-360 (Jul 7 2023 - Jan 2): count the 14-day steps.
    days = pd.date_range("2023-07-01", "2024-03-31", freq="14D")
    now = ((days > pd.Timestamp("2024-01-02")) & (days <= pd.Timestamp("2024-06-30"))).sum()
    before = ((days > pd.Timestamp("2023-07-06")) & (days <= pd.Timestamp("2024-01-02"))).sum()
    assert (b["orders_180d"], b["orders_prev_180d"]) == (now, before)
    assert b["frequency_trend_180d"] == pytest.approx((now + 1) / (before + 1))
    assert b["orders_90d"] == 0 and b["m_score"] == 5 and b["valuable_frequency_drop"] == 1
    assert got.loc["small", "valuable_frequency_drop"] == 0  # its trend is steady and its spend low
    assert b["max_order_value_365d"] == 100 and b["spend_trend_90d"] == pytest.approx(1 / (b["spend_prev_90d"] + 1))


def test_rfm_quintile_scores_rank_within_each_cutoff():
    rows = [(c, "2024-01-01", 10 * (i + 1)) for i, c in enumerate("abcde")]
    rows += [("a", f"2024-01-{d:02d}", 1) for d in (5, 9, 13, 17)]  # a buys most often and last
    got = build_features(dataset_of(make_orders(rows)), ["2024-01-31", "2024-02-29"]).set_index(["cutoff", "customer_id"])
    jan = got.loc[pd.Timestamp("2024-01-31")]
    assert jan.loc["a", ["r_score", "f_score"]].tolist() == [5, 5]
    # b-e: same recency and frequency, so they share the lowest scores; spend ranks them all.
    assert jan.loc[list("bcde"), "r_score"].tolist() == [1, 1, 1, 1]
    assert jan["m_score"].to_dict() == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    # A month later nobody bought again: recency ranks are unchanged, each cutoff ranked on its own.
    assert got.loc[pd.Timestamp("2024-02-29"), "m_score"].equals(jan["m_score"])


def test_rfm_segments_follow_the_classic_grid():
    scores = pd.DataFrame({"r_score": [5, 4, 5, 4, 3, 3, 1, 2, 1], "f_score": [5, 4, 1, 1, 3, 1, 5, 3, 1]})
    assert rfm_segment(scores).tolist() == ["champions", "loyal", "new", "promising", "needs_attention",
                                            "about_to_sleep", "cant_lose", "at_risk", "hibernating"]


def test_basket_features_by_hand():
    orders = make_orders([("a", "2024-01-10", 40), ("a", "2024-01-20", 60), ("a", "2024-01-25", 30, "returned")])
    orders["n_items"] = [2, 4, 9]
    orders["coupon_used"] = [True, False, True]
    orders["discount"] = [10.0, 0.0, 5.0]
    got = build_features(dataset_of(orders), ["2024-01-31"]).iloc[0]
    assert got["items_per_order_365d"] == 3 and got["coupon_share_365d"] == 0.5  # the returned order is no purchase
    assert got["discount_share_365d"] == pytest.approx(10 / 110) and got["max_order_value_365d"] == 60
    assert got["returns_share_365d"] == pytest.approx(1 / 3) and got["avg_order_value_365d"] == 50


def test_missing_optional_columns_remove_their_features():
    orders = make_orders([("a", "2024-01-01")]).drop(columns=["discount"])
    names = set(build_features(dataset_of(orders), ["2024-01-31"]).columns)
    assert "discount_share_365d" not in names and "coupon_share_365d" not in names
    assert "items_per_order_365d" not in names and "returns_share_365d" in names


def test_breadth_and_new_product_features_by_hand():
    orders = make_orders([("a", "2023-09-15"), ("a", "2024-01-10"), ("a", "2024-01-20")])
    items = pd.DataFrame({"order_id": ["o0", "o0", "o1", "o1", "o2"], "product_id": ["p1", "p2", "p1", "p3", "p4"],
                          "category": ["dairy", "meat", "dairy", "bakery", "fruit"]})
    got = build_features(dataset_of(orders, order_items=items), ["2024-01-31"]).iloc[0]
    # Last 90 days: p1 (bought before), p3, p4 (new); categories dairy, bakery, fruit vs meat+dairy before.
    assert (got["products_90d"], got["new_products_90d"], got["products_365d"]) == (3, 2, 4)
    assert got["new_product_share_90d"] == pytest.approx(2 / 3)
    assert (got["categories_90d"], got["categories_prev_90d"], got["categories_365d"]) == (3, 2, 4)
    assert got["category_trend_90d"] == pytest.approx(4 / 3)


def test_engagement_features_by_hand():
    orders = make_orders([("a", "2024-01-01"), ("b", "2024-01-01")])
    events = pd.DataFrame({
        "customer_id": ["a"] * 6,
        "event_type": ["visit", "login", "visit", "campaign_received", "campaign_received", "support_ticket"],
        "event_ts": pd.to_datetime(["2023-09-01", "2023-12-01", "2024-01-21", "2023-01-05", "2024-01-02",
                                    "2024-01-30"])})
    got = build_features(dataset_of(orders, events=events), ["2024-01-31"]).set_index("customer_id")
    a, b = got.loc["a"], got.loc["b"]
    assert a["days_since_visit"] == 10 and (a["visits_90d"], a["visits_prev_90d"]) == (2, 1)
    assert a["visit_trend_90d"] == pytest.approx(3 / 2)
    assert (a["event_campaign_received_all"], a["event_campaign_received_90d"]) == (2, 1)
    assert (a["event_support_ticket_30d"], a["days_since_event"]) == (1, 1)
    assert b["visits_90d"] == 0 and pd.isna(b["days_since_visit"]) and b["visit_trend_90d"] == 1


def test_parquet_directory_gives_the_same_features_as_frames(synthetic_small, synthetic_dir):
    dataset = dataset_of(**{"orders": synthetic_small.tables["orders"]},
                         **{k: v for k, v in synthetic_small.tables.items() if k in ("order_items", "events")})
    cutoffs = ["2023-12-31", "2024-03-31"]
    assert_frame_equal(FeatureBuilder(synthetic_dir).build(cutoffs), FeatureBuilder(dataset).build(cutoffs))


def test_docs_features_md_is_generated_from_the_catalogue():
    committed = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text(encoding="utf-8")
    assert committed == features_markdown(), "regenerate: python -m churn.features.catalogue docs/features.md"


def test_a_directory_without_orders_parquet_is_a_clear_error(tmp_path):
    from churn.errors import DataError

    with pytest.raises(DataError, match="orders.parquet not found"):
        FeatureBuilder(tmp_path)
