"""Order statuses: every spelling of the corpus lands on its canonical status; unknown ones are refused."""

from __future__ import annotations

import pandas as pd
import pytest

from churn.config import ContractConfig
from churn.data import statuses
from churn.data.contract import validate_tables
from churn.errors import ContractError
from churn.features.engine import build_features, valid_orders
from tests.data import corpus


@pytest.mark.parametrize(("written", "status"), [
    *[(s, "completed") for s in corpus.STATUS_PURCHASE],
    *[(s, "cancelled") for s in corpus.STATUS_CANCELLED],
    *[(s, "returned") for s in corpus.STATUS_RETURNED],
])
def test_each_spelling_becomes_its_canonical_status(written, status):
    data = validate_tables({"orders": corpus.orders(["a"], status=[written])})

    assert data.orders["status"].tolist() == [status]
    assert len(valid_orders(data.orders)) == (status == "completed")


def test_an_order_without_a_status_is_a_purchase():
    data = validate_tables({"orders": corpus.orders(["a", "b"], status=["delivered", None])})

    assert data.orders["status"].isna().tolist() == [False, True]
    assert valid_orders(data.orders)["customer_id"].tolist() == ["a", "b"]


def test_unknown_statuses_are_refused_naming_values_rows_and_the_setting():
    orders = corpus.orders(list("abcde"), status=["delivered", *corpus.STATUS_UNKNOWN])
    with pytest.raises(ContractError) as err:
        validate_tables({"orders": orders}, source={"orders": "orders.csv"})
    message = str(err.value)

    assert message.startswith("orders.csv: column status: 4 rows with a status churn does not know "
                              "(rows 2, 3, 4, 5: 'pending', 'on_hold', 'closed', 'draft'); unknown values: "
                              "'closed' (1 row), 'draft' (1 row), 'on_hold' (1 row), 'pending' (1 row); "
                              "say what each means in churn.toml, e.g. [contract.statuses] closed = \"cancelled\"")
    assert 'contract.unknown_statuses is "fail"' in message and len(message.splitlines()) == 1


def test_unknown_statuses_quarantined_by_policy():
    orders = corpus.orders(["a", "b"], status=["delivered", "pending"])
    data = validate_tables({"orders": orders}, ContractConfig(unknown_statuses="quarantine"))

    assert data.orders["order_id"].tolist() == ["o0"]
    assert data.quarantine["orders"][["file_row", "reason", "status"]].to_dict("records") == [
        {"file_row": 2, "reason": "unknown_status", "status": "pending"}]


def test_a_shops_own_statuses_extend_and_override_the_built_in_ones():
    own = ContractConfig(statuses={"On Hold": "cancelled", "awaiting-pickup": "completed", "Shipped": "returned"})
    orders = corpus.orders(list("abc"), status=["on_hold", "Awaiting Pickup", "shipped"])

    assert validate_tables({"orders": orders}, own).orders["status"].tolist() == ["cancelled", "completed", "returned"]


def test_every_built_in_spelling_is_already_a_label():
    from churn.data.spelling import normal_label

    assert all(normal_label(s) == s for s in statuses.SPELLINGS)
    assert set(statuses.SPELLINGS.values()) == {"completed", "cancelled", "returned"}


def test_the_issue_case_canceled_and_unavailable_are_not_purchases():
    # Issue 13, case 2: one delivered order and two cancelled ones (Olist's spellings): before,
    # orders_all 3 and recency 6; right, 1 and 60.
    orders = pd.DataFrame({"customer_id": ["a"] * 3, "order_id": ["1", "2", "3"],
                           "order_ts": ["2024-05-01T10:00:00", "2024-06-10T10:00:00", "2024-06-24T10:00:00"],
                           "amount": ["30.0", "20.0", "25.0"], "status": ["delivered", "canceled", "unavailable"]})
    got = build_features(validate_tables({"orders": orders}), ["2024-06-30"]).iloc[0]

    assert (got["orders_all"], got["recency_days"], got["spend_all"]) == (1, 60, 30.0)
    assert got["returns_share_365d"] == pytest.approx(2 / 3)


def test_sql_and_pandas_agree_on_purchases():
    import duckdb

    status = pd.Series(["completed", "cancelled", "returned", None], dtype="str")
    got = duckdb.sql(f"SELECT {statuses.purchase_sql('status')} AS p FROM (SELECT unnest($1::VARCHAR[]) AS status)",
                     params=[status.tolist()]).df()["p"]

    assert got.tolist() == statuses.is_purchase(status).tolist() == [True, False, False, True]


def test_the_readme_lists_every_built_in_spelling():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")}
    for status in ("completed", "cancelled", "returned"):
        row = next(line for key, line in rows.items() if key.startswith(f"`{status}`"))
        listed = {cell.strip(" `") for cell in row.split("|")[2].split(",")}
        assert listed == {s for s, c in statuses.SPELLINGS.items() if c == status}, status
