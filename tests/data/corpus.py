"""A corpus of real shops' habits, generated in code: the same value written the ways exports write it.

Each kind lists variants seen in exports from shop systems, warehouses and spreadsheets. Tests
run every variant through the contract; a new habit met in the wild becomes one more line here.
"""

from __future__ import annotations

import pandas as pd

# --- ids: every spelling means the id 13482 --------------------------------------------------
ID = "13482"
ID_SPELLINGS_CSV = [
    "13482",  # as it should be
    "13482.0",  # an id column read as float upstream (pandas, R, Excel)
    "13482.00",  # ... with a fixed two-decimal format
    "13482.",  # ... printed by a tool that keeps the point
    " 13482 ",  # padded
    "\t13482.0",  # tab before a float
    "13482\u00a0",  # a no-break space pasted from a web page
]
# Parquet keeps types: the same id as integer, float (a column with gaps) and text.
ID_VALUES_PARQUET = [13482, 13482.0, "13482", " 13482.0 "]
# A spreadsheet's scientific notation: the exact id may be lost, so it is refused.
ID_SCIENTIFIC = ["1.3482E+04", "1.3482e4", "1.23457E+11"]
# The same id spelled differently in two files beyond what is normalised: refused, naming both.
ID_LOOSE_MISMATCHES = [("013482", "13482"), ("C-13482", "c13482"), ("AB13482", "ab13482")]

# --- order statuses: spelling variants of each kind --------------------------------------------
STATUS_PURCHASE = ["completed", "Completed", " COMPLETE ", "delivered", "Shipped", "invoiced", "paid",
                   "fulfilled", "processing", "approved", "partially_refunded", "Partially Refunded"]
STATUS_CANCELLED = ["cancelled", "canceled", "Canceled", "CANCELLED ", "unavailable", "failed", "voided",
                    "declined", "rejected"]
STATUS_RETURNED = ["returned", "Returned", "refunded", "REFUNDED", "chargeback", "charged-back"]
STATUS_UNKNOWN = ["pending", "on-hold", "Closed", "draft"]  # ambiguous: the shop must say what they mean

# --- event types: one type, many spellings -----------------------------------------------------
EVENT_TYPE_SPELLINGS = {
    "complaint": ["complaint", "Complaint", "COMPLAINT", " complaint "],
    "return_request": ["return_request", "Return Request", "return-request", "RETURN-REQUEST", "return  request"],
    "email_open": ["email_open", "Email Open", "email-open", "email.open"],
}

# --- timestamps --------------------------------------------------------------------------------
SENTINEL_TIMESTAMPS = ["9999-12-31", "9999-12-31T23:59:59", "2999-12-31", "2099-12-31", "1900-01-01",
                       "1899-12-30", "1970-01-01T00:00:00", "0001-01-01"]
# (text in the file, shop time zone, the shop's local wall-clock time it must become)
OFFSET_TIMESTAMPS = [
    ("2024-12-31T20:30:00-05:00", "America/New_York", "2024-12-31 20:30"),  # the case
    ("2025-01-01T01:30:00Z", "America/New_York", "2024-12-31 20:30"),  # the same instant in UTC
    ("2025-01-01T01:30:00+00:00", "America/New_York", "2024-12-31 20:30"),
    ("2024-12-31T20:30:00", "America/New_York", "2024-12-31 20:30"),  # naive: already local
    ("2024-07-01T00:30:00+02:00", "Europe/Paris", "2024-07-01 00:30"),  # summer time
    ("2024-06-30T22:30:00Z", "Europe/Paris", "2024-07-01 00:30"),
    ("2024-06-30T22:30:00Z", "UTC", "2024-06-30 22:30"),
    ("2024-07-01T09:00:00+09:00", "Asia/Tokyo", "2024-07-01 09:00"),
]


def orders(customer_ids: list[object], **columns: list[object]) -> pd.DataFrame:
    """Orders for the given customer ids (one each, a day apart), with extra columns given whole."""
    n = len(customer_ids)
    frame = pd.DataFrame({
        "customer_id": customer_ids,
        "order_id": [f"o{i}" for i in range(n)],
        "order_ts": [f"2024-01-{i % 28 + 1:02d}T10:00:00" for i in range(n)],
        "amount": ["10.0"] * n,
    })
    for name, values in columns.items():
        frame[name] = values
    return frame
