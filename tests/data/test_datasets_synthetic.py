"""The synthetic generator: reproducible, contract-shaped, and with its churn drivers visible in the data."""

import numpy as np
import pandas as pd
import pytest

from churn.data.datasets import synthetic
from churn.data.io import read_raw

START, END = "2023-01-01", "2024-12-31"
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def data() -> synthetic.SyntheticData:
    return synthetic.generate(4000, start=START, end=END, random_state=7)


@pytest.fixture(scope="module")
def orders(data) -> pd.DataFrame:
    """Valid orders with the customer's truth alongside."""
    o = data.tables["orders"]
    return o[o["status"] == "completed"].merge(data.truth, on="customer_id", validate="many_to_one")


def assert_same(a: synthetic.SyntheticData, b: synthetic.SyntheticData) -> None:
    assert a.tables.keys() == b.tables.keys()
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True)
    pd.testing.assert_frame_equal(a.truth, b.truth, check_exact=True)


# --- reproducibility ---------------------------------------------------------------------------


def test_same_seed_gives_identical_data():
    assert_same(synthetic.generate(300, random_state=3), synthetic.generate(300, random_state=3))


def test_different_seeds_give_different_data():
    a, b = synthetic.generate(300, random_state=3), synthetic.generate(300, random_state=4)
    assert not a.tables["orders"].equals(b.tables["orders"])
    assert not a.truth.equals(b.truth)


def test_leaving_out_items_and_events_keeps_the_other_tables():
    full = synthetic.generate(300, random_state=5)
    lean = synthetic.generate(300, random_state=5, items=False, events=False)
    assert set(lean.tables) == {"orders", "customers", "suppressions"}
    for name in lean.tables:
        pd.testing.assert_frame_equal(lean.tables[name], full.tables[name], check_exact=True)
    pd.testing.assert_frame_equal(lean.truth, full.truth, check_exact=True)


# --- contract shape ----------------------------------------------------------------------------


def test_tables_have_the_contract_columns_and_types(data):
    t = data.tables
    assert list(t) == ["orders", "order_items", "customers", "events", "suppressions"]
    assert list(t["orders"].columns) == [
        "customer_id", "order_id", "order_ts", "amount", "discount", "coupon_used", "n_items", "channel", "status",
    ]  # fmt: skip
    assert list(t["order_items"].columns) == ["order_id", "line", "product_id", "category", "quantity", "amount"]
    assert list(t["customers"].columns) == ["customer_id", "signup_ts", "region", "channel", "segment"]
    assert list(t["events"].columns) == ["customer_id", "event_ts", "event_type"]
    assert list(t["suppressions"].columns) == ["customer_id", "reason", "since"]
    for name, column in [
        ("orders", "customer_id"), ("orders", "order_id"), ("order_items", "order_id"),
        ("order_items", "product_id"), ("order_items", "category"), ("customers", "customer_id"),
        ("events", "customer_id"), ("events", "event_type"), ("suppressions", "customer_id"),
    ]:  # fmt: skip
        assert pd.api.types.is_string_dtype(t[name][column]), (name, column)
        assert t[name][column].notna().all(), (name, column)
    for name, column in [("orders", "order_ts"), ("customers", "signup_ts"), ("events", "event_ts")]:
        assert pd.api.types.is_datetime64_dtype(t[name][column]), (name, column)
    assert t["orders"]["coupon_used"].dtype == bool
    assert pd.api.types.is_integer_dtype(t["orders"]["n_items"])
    assert pd.api.types.is_integer_dtype(t["order_items"]["quantity"])


def test_orders_are_valid(data):
    orders = data.tables["orders"]
    assert orders["order_id"].is_unique
    assert orders["customer_id"].str.fullmatch(r"c\d{6}").all()
    assert (orders["amount"] >= 0).all() and (orders["discount"] >= 0).all()
    assert np.allclose(orders["amount"], orders["amount"].round(2))
    assert (orders["n_items"] >= 1).all()
    assert set(orders["channel"]) == {"web", "app", "store"}
    shares = orders["status"].value_counts(normalize=True)
    assert 0.01 < shares["returned"] < 0.06 and 0.005 < shares["cancelled"] < 0.02
    assert shares["completed"] > 0.9
    assert orders["order_ts"].between(pd.Timestamp(START), pd.Timestamp(END) + DAY, inclusive="left").all()
    assert orders["order_ts"].dt.hour.nunique() > 10, "orders have a time of day"
    assert set(orders["customer_id"]) <= set(data.tables["customers"]["customer_id"])


def test_order_items_belong_to_orders_and_add_up(data):
    orders, items = data.tables["orders"], data.tables["order_items"]
    assert set(items["order_id"]) == set(orders["order_id"])
    lines = items.groupby("order_id").size()
    assert lines.between(1, 6).all()
    total = items.groupby("order_id")["amount"].sum().reindex(orders["order_id"])
    assert np.allclose(total.to_numpy(), orders["amount"].to_numpy(), atol=0.011)
    assert (items["quantity"] >= 1).all() and (items["amount"] >= 0).all()
    units = items.groupby("order_id")["quantity"].sum().reindex(orders["order_id"])
    assert (units.to_numpy() == orders["n_items"].to_numpy()).all()
    assert 1000 < items["product_id"].nunique() <= 2000
    assert items["category"].nunique() == 15
    assert items.groupby("product_id")["category"].nunique().max() == 1


def test_customers_events_and_suppressions_are_valid(data):
    customers, events, suppressions = (data.tables[n] for n in ("customers", "events", "suppressions"))
    assert customers["customer_id"].is_unique and len(customers) == 4000
    assert set(events["event_type"]) == set(synthetic.EVENT_TYPES)
    assert set(synthetic.EVENT_TYPES) >= {"login", "visit", "email_open", "complaint", "support_ticket", "return_request"}
    assert set(events["customer_id"]) <= set(customers["customer_id"])
    assert events["event_ts"].is_monotonic_increasing
    assert 0.005 < len(suppressions) / len(customers) < 0.02
    assert suppressions["customer_id"].is_unique
    assert set(suppressions["reason"]) <= {"opt_out", "do_not_contact", "deleted", "complaint"}
    signup = customers.set_index("customer_id")["signup_ts"]
    assert (suppressions["since"] >= signup[suppressions["customer_id"]].dt.normalize().to_numpy()).all()


def test_returned_orders_come_with_return_requests(data):
    orders, events = data.tables["orders"], data.tables["events"]
    assert (events["event_type"] == "return_request").sum() == (orders["status"] == "returned").sum()


def test_no_orders_before_signup_or_after_churn(data):
    o = data.tables["orders"].merge(data.truth, on="customer_id")
    assert (o["order_ts"] >= o["signup_ts"]).all()
    churned = o["churn_ts"].notna()
    assert churned.any()
    assert (o.loc[churned, "order_ts"] < o.loc[churned, "churn_ts"]).all()


def test_truth_describes_each_customer(data):
    truth = data.truth
    assert list(truth["customer_id"]) == list(data.tables["customers"]["customer_id"])
    assert 0.25 < truth["price_sensitive"].mean() < 0.35
    assert 0.20 < truth["variety_seeker"].mean() < 0.30
    assert 0.1 < truth["churn_ts"].notna().mean() < 0.7
    assert truth["churn_reason"].notna().equals(truth["churn_ts"].notna())
    assert set(truth["churn_reason"].dropna()) == {"drift", "service", "price", "variety"}


def test_a_bigger_population_generates_without_items_and_events():
    big = synthetic.generate(20_000, random_state=1, items=False, events=False)
    assert len(big.tables["customers"]) == 20_000
    assert 8 < len(big.tables["orders"]) / 20_000 < 25
    assert big.tables["orders"]["customer_id"].str.fullmatch(r"c\d{6}").all()


def test_write_makes_a_data_dir_with_the_truth_only_when_asked(tmp_path):
    data = synthetic.generate(200, random_state=2)
    paths = synthetic.write(data, tmp_path, truth=True)
    assert set(paths) == set(data.tables) | {"_truth", "_responses"}
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "_responses.parquet"), data.responses)
    for name, frame in data.tables.items():
        pd.testing.assert_frame_equal(pd.read_parquet(paths[name]), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "_truth.parquet"), data.truth)

    synthetic.write(data, tmp_path, fmt="csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.csv" for name in data.tables)
    orders = read_raw(tmp_path / "orders.csv")
    assert list(orders["order_id"]) == list(data.tables["orders"]["order_id"])


# --- planted churn drivers, seen in the data -----------------------------------------------------


def test_churners_buy_less_often_before_churning(orders, data):
    truth = data.truth
    churners = truth[truth["churn_ts"].notna() & (truth["churn_ts"] - truth["signup_ts"] > 180 * DAY)]
    o = orders[orders["customer_id"].isin(churners["customer_id"])]
    before = o["churn_ts"] - o["order_ts"]
    last_90 = (before <= 90 * DAY).groupby(o["customer_id"]).sum().reindex(churners["customer_id"], fill_value=0)
    prior_90 = ((before > 90 * DAY) & (before <= 180 * DAY)).groupby(o["customer_id"]).sum()
    prior_90 = prior_90.reindex(churners["customer_id"], fill_value=0)
    assert len(churners) > 200
    assert (last_90 < prior_90).mean() > 0.5
    assert last_90.sum() < 0.7 * prior_90.sum()


def test_churners_complain_before_churning(data):
    truth, events = data.truth, data.tables["events"]
    complaints = events[events["event_type"] == "complaint"].merge(truth, on="customer_id")
    churners, stayers = truth[truth["churn_ts"].notna()], truth[truth["churn_ts"].isna()]
    before_churn = complaints["churn_ts"].notna() & complaints["event_ts"].between(
        complaints["churn_ts"] - 60 * DAY, complaints["churn_ts"], inclusive="left"
    )
    # stayers over the period's last 60 days, counting those signed up by then
    window_start = pd.Timestamp(END) + DAY - 60 * DAY
    stayer_window = complaints["churn_ts"].isna() & (complaints["event_ts"] >= window_start)
    churner_rate = before_churn.sum() / len(churners)
    stayer_rate = stayer_window.sum() / (stayers["signup_ts"] < window_start).sum()
    assert churner_rate > 5 * stayer_rate


def test_price_sensitive_customers_live_on_discounts(orders):
    totals = orders.groupby("price_sensitive")[["discount", "amount"]].sum()
    share = totals["discount"] / (totals["discount"] + totals["amount"])
    assert share[True] > 3 * share[False]
    coupons = orders.groupby("price_sensitive")["coupon_used"].mean()
    assert coupons[True] > 4 * coupons[False]


def test_price_sensitive_customers_churn_more_after_their_discounts_fall(orders):
    cutoff = pd.Timestamp("2024-01-01")
    o = orders[orders["price_sensitive"]]

    def discount_share(frame):
        totals = frame.groupby("customer_id")[["discount", "amount"]].sum()
        return totals["discount"] / (totals["discount"] + totals["amount"])

    recent = discount_share(o[o["order_ts"].between(cutoff - 60 * DAY, cutoff, inclusive="left")])
    earlier = discount_share(o[o["order_ts"].between(cutoff - 240 * DAY, cutoff - 60 * DAY, inclusive="left")])
    shares = pd.concat({"recent": recent, "earlier": earlier}, axis=1).dropna()
    fell = shares["recent"] < 0.5 * shares["earlier"]
    buyers_after = set(o.loc[o["order_ts"].between(cutoff, cutoff + 120 * DAY, inclusive="left"), "customer_id"])
    lapsed = ~shares.index.isin(buyers_after)
    assert fell.sum() > 30
    assert lapsed[fell.to_numpy()].mean() > 1.5 * lapsed[~fell.to_numpy()].mean()


def test_variety_seekers_buy_broadly_until_they_narrow_before_churning(data):
    items = data.tables["order_items"].merge(data.tables["orders"][["order_id", "customer_id", "order_ts"]])
    items = items.merge(data.truth, on="customer_id")
    breadth = items.groupby(["variety_seeker", "order_id"])["category"].nunique().groupby(level=0).mean()
    assert breadth[True] > 1.5 * breadth[False]

    churned = items[items["churn_reason"] == "variety"]
    late = churned["order_ts"] >= churned["churn_ts"] - 60 * DAY
    per_order = churned.groupby(["order_id", late.rename("late")])["category"].nunique().groupby(level="late").mean()
    assert per_order[True] < 0.75 * per_order[False]


# --- ground-truth win-back responses -------------------------------------------------------------


def test_responses_answer_the_planted_traits_and_leave_the_tables_alone():
    a = synthetic.generate(2000, random_state=11, response_horizon_days=90)
    b = synthetic.generate(2000, random_state=11, response_horizon_days=30)
    for name in a.tables:  # the responses' own stream: the tables do not depend on it
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True)
    r = a.responses.merge(a.truth, on="customer_id")
    assert len(r) == 2000 and (b.responses["p_back_none"] <= r["p_back_none"] + 1e-12).all()
    assert (r.loc[r["churn_ts"].notna(), "p_back_none"] == 0).all()  # churners never come back unaided
    for action, trait in synthetic.RESPONSE_TRAITS.items():
        gain = r[f"p_back_{action}"] - r["p_back_none"]
        assert (gain >= 0).all() and r[f"p_back_{action}"].le(1).all()
        assert gain[r[trait]].mean() > 4 * gain[~r[trait]].mean()


def test_a_planted_season_moves_the_orders_with_the_calendar_and_nothing_else():
    flat = synthetic.generate(1500, random_state=9, items=False, events=False)
    peaky = synthetic.generate(1500, random_state=9, items=False, events=False, season_amplitude=0.6,
                               season_peak_day=300)
    pd.testing.assert_frame_equal(flat.truth, peaky.truth)  # the same customers, churn and traits
    def share_near_peak(data):  # orders in the 3 months around late October, over those 6 months away
        month = data.tables["orders"]["order_ts"].dt.month
        return month.isin([9, 10, 11]).sum() / month.isin([3, 4, 5]).sum()
    assert share_near_peak(peaky) > 2.0 * share_near_peak(flat)  # the shop grows too: compare with no season
    with pytest.raises(ValueError):
        synthetic.generate(10, season_amplitude=1.0)


def test_responses_on_any_list_day_know_who_was_gone_then():
    data = synthetic.generate(2000, random_state=11)
    assert_frame = pd.testing.assert_frame_equal
    assert_frame(data.responses_at("2024-12-31"), data.responses)  # the last day: the same as `responses`
    mid = data.responses_at("2024-03-31").merge(data.truth, on="customer_id")
    assert len(mid) == (data.truth["signup_ts"] < pd.Timestamp("2024-04-01")).sum()  # signed up by then
    gone = mid["churn_ts"] < pd.Timestamp("2024-04-01")
    assert (mid.loc[gone, "p_back_none"] == 0).all() and (mid.loc[~gone, "p_back_none"] > 0).all()
    # Frequent buyers answer more, and long-gone churners hardly at all (features can tell both).
    # The uplift: the share of would-be churners won back.
    gain = (mid["p_back_callback"] - mid["p_back_none"]) / (1 - mid["p_back_none"])
    hurt = mid["service_hurt"]
    frequent = mid["rate_30d"] > mid["rate_30d"].median()
    assert gain[hurt & frequent].mean() > 1.3 * gain[hurt & ~frequent].mean()
    days_gone = (pd.Timestamp("2024-04-01") - mid["churn_ts"]).dt.days
    assert gain[hurt & gone & (days_gone > 180)].mean() < 0.3 * gain[hurt & gone & (days_gone < 30)].mean()
