"""Order statuses: which of a shop's status values are purchases, cancellations or returns.

Shop systems name the same outcome many ways (Olist's `canceled` and `unavailable`, Shopify's
`paid` and `refunded`, WooCommerce's `completed` and `failed`, ...). The contract reads each
status as a label (trimmed, lower-cased, separators made `_`: see `churn.data.spelling`) and
maps it to one of three canonical statuses:

- `completed`: the order counts as a purchase;
- `cancelled`: it never became a purchase (cancelled, unavailable, failed, ...);
- `returned`: the goods or the money went back (returned, refunded, chargeback).

After validation `orders.status` holds only these (or nothing: an order without a status is a
purchase), so every later step asks one question, `is_purchase`. A value that is neither here
nor in `[contract.statuses]` of churn.toml is refused (or quarantined, by policy): `pending`,
`on_hold` or `closed` mean different things in different systems, so the shop says which.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from churn.config import ORDER_STATUSES
from churn.data.spelling import normal_label

__all__ = ["PURCHASE", "NOT_PURCHASE", "SPELLINGS", "status_map", "canonical", "is_purchase", "purchase_sql"]

PURCHASE = "completed"
NOT_PURCHASE = tuple(s for s in ORDER_STATUSES if s != PURCHASE)  # cancelled, returned

# Spellings (as labels) of the common values, by canonical status. Add a shop's own in churn.toml.
_BY_STATUS = {
    "completed": ("completed", "complete", "delivered", "shipped", "partially_shipped", "in_transit",
                  "out_for_delivery", "picked_up", "invoiced", "paid", "partially_paid", "fulfilled",
                  "partially_fulfilled", "partially_refunded", "processing", "approved", "ready_to_ship",
                  "ready_for_pickup", "success", "successful", "settled", "captured", "done"),
    "cancelled": ("cancelled", "canceled", "cancel", "unavailable", "failed", "payment_failed", "voided", "void",
                  "declined", "rejected", "expired", "abandoned"),
    "returned": ("returned", "return", "refunded", "refund", "chargeback", "charged_back", "returned_to_sender"),
}
SPELLINGS: dict[str, str] = {spelling: status for status, names in _BY_STATUS.items() for spelling in names}


def status_map(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Label -> canonical status: the built-in spellings, then a shop's own (which win)."""
    return {**SPELLINGS, **{normal_label(k): v for k, v in (extra or {}).items()}}


def canonical(labels: pd.Series, extra: Mapping[str, str] | None = None) -> tuple[pd.Series, pd.Series]:
    """Status labels mapped to canonical statuses, and the mask of present values with no mapping.

    `labels` are already normalised (`churn.data.spelling.normal_labels`); unknown values come
    back unchanged, flagged by the mask; missing stays missing.
    """
    mapping = status_map(extra)
    mapped = labels.map(mapping)
    unknown = labels.notna() & mapped.isna()
    return mapped.where(~unknown, labels).astype("str"), unknown


def is_purchase(status: pd.Series) -> np.ndarray:
    """True for orders that count as purchases: a canonical status other than cancelled or returned."""
    return ~status.isin(NOT_PURCHASE).to_numpy(dtype=bool)


def purchase_sql(column: str) -> str:
    """`is_purchase` in SQL, over a canonical status column."""
    excluded = ", ".join(f"'{s}'" for s in NOT_PURCHASE)
    return f"coalesce({column}, '') NOT IN ({excluded})"
