"""The data contract: each rule broken on its own, in CSV and Parquet, and the messages it gives."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from churn.data import io
from churn.config import ContractConfig
from churn.data.contract import TABLES, Dataset, validate, validate_tables
from churn.errors import ContractError
from tests.data import corpus

FORMATS = ["csv", "parquet"]
FAIL = ContractConfig(duplicate_rows="fail", unknown_customers="fail")
TS = pd.Timestamp


def valid_tables() -> dict[str, pd.DataFrame]:
    """One small valid data set with every table, typed as a user's Parquet would be."""
    orders = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c3"],
            "order_id": ["o1", "o2", "o3", "o4"],
            "order_ts": [TS("2017-03-01"), TS("2017-03-01 10:20"), TS("2017-03-02 08:00"), TS("2017-04-01")],
            "amount": [10.5, 20.0, 0.0, 7.25],
            "discount": [0.0, 1.5, 0.0, 0.0],
            "coupon_used": [False, True, False, False],
            "n_items": [1, 3, 1, 2],
            "channel": ["web", "app", "web", "store"],
            "status": ["paid", "paid", "returned", "paid"],
        }
    )
    order_items = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o2", "o3"],
            "product_id": ["p1", "p1", "p2", "p3"],
            "category": ["tea", "tea", "cups", "tea"],
            "quantity": [1, 2, 1, 1],
            "amount": [10.5, 15.0, 5.0, 0.0],
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "signup_ts": [TS("2016-01-05"), TS("2016-02-01 12:00"), TS("2017-01-01")],
            "region": ["north", "south", "north"],
            "segment": ["gold", "silver", "gold"],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            "event_ts": [TS("2017-03-03 09:00"), TS("2017-03-04")],
            "event_type": ["login", "complaint"],
        }
    )
    contacts = pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            "list_date": [TS("2017-05-01"), TS("2017-05-01")],
            "action": ["callback", "trial"],
            "arm": ["treated", "holdout"],
            "contacted_ts": [TS("2017-05-02 11:00"), pd.NaT],
            "outcome": ["reached", None],
        }
    )
    suppressions = pd.DataFrame(
        {"customer_id": ["c3"], "reason": ["opt_out"], "since": [TS("2017-02-01")]}
    )
    return {
        "orders": orders,
        "order_items": order_items,
        "customers": customers,
        "events": events,
        "contacts": contacts,
        "suppressions": suppressions,
    }


def write(tmp_path, tables, fmt="csv"):
    io.write_tables(tables, tmp_path, fmt)
    return tmp_path


def as_text(frame: pd.DataFrame, **cells) -> pd.DataFrame:
    """A copy with every column as text, then cells set: as_text(f, amount={2: "abc"})."""
    out = frame.astype(str).astype(object).where(frame.notna(), None)
    for column, values in cells.items():
        for row, value in values.items():
            out.loc[row, column] = value
    return out


def broken(fmt, tmp_path, policy=ContractConfig(), **tables) -> str:
    """The ContractError message for the valid data set with some tables replaced."""
    with pytest.raises(ContractError) as err:
        validate(write(tmp_path, {**valid_tables(), **tables}, fmt), policy)
    return str(err.value)


# --- a valid directory ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_directory_round_trips_with_canonical_dtypes(tmp_path, fmt):
    data = validate(write(tmp_path, valid_tables(), fmt))

    expected = {
        "orders": {
            "customer_id": "str", "order_id": "str", "order_ts": "datetime64[us]", "amount": "float64",
            "discount": "float64", "coupon_used": "bool", "n_items": "Int64", "channel": "str", "status": "str",
        },
        "order_items": {
            "order_id": "str", "product_id": "str", "category": "str", "quantity": "Int64", "amount": "float64",
        },
        "customers": {"customer_id": "str", "signup_ts": "datetime64[us]", "region": "str", "segment": "str"},
        "events": {"customer_id": "str", "event_ts": "datetime64[us]", "event_type": "str"},
        "contacts": {
            "customer_id": "str", "list_date": "datetime64[us]", "action": "str", "arm": "str",
            "contacted_ts": "datetime64[us]", "outcome": "str",
        },
        "suppressions": {"customer_id": "str", "reason": "str", "since": "datetime64[us]"},
    }  # fmt: skip
    assert {name: {c: str(t) for c, t in frame.dtypes.items()} for name, frame in data.tables().items()} == expected
    assert data.orders["order_ts"].tolist() == valid_tables()["orders"]["order_ts"].tolist()
    assert data.orders["amount"].tolist() == [10.5, 20.0, 0.0, 7.25]
    assert data.orders["coupon_used"].tolist() == [False, True, False, False]
    assert data.orders["n_items"].tolist() == [1, 3, 1, 2]
    assert data.contacts["outcome"].isna().tolist() == [False, True]
    assert data.row_counts == {
        "orders": 4, "order_items": 4, "customers": 3, "events": 2, "contacts": 2, "suppressions": 1,
    }  # fmt: skip
    assert data.quarantine == {}
    path = tmp_path / f"orders.{fmt}"
    assert data.fingerprints["orders"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(data.fingerprints) == set(TABLES)


def test_parquet_int_ids_become_str(tmp_path):
    orders = pd.DataFrame(
        {"customer_id": [7, 8], "order_id": [100, 101], "order_ts": [TS("2017-01-01")] * 2, "amount": [1.0, 2.0]}
    )
    items = pd.DataFrame({"order_id": [100, 101], "product_id": [5, 6]})
    customers = pd.DataFrame({"customer_id": [7, 8]})
    data = validate(write(tmp_path, {"orders": orders, "order_items": items, "customers": customers}, "parquet"))

    assert data.orders["customer_id"].dtype == "str"
    assert data.orders["customer_id"].tolist() == ["7", "8"]
    assert data.order_items["product_id"].tolist() == ["5", "6"]
    assert data.customers["customer_id"].tolist() == ["7", "8"]


def test_csv_ids_are_stripped_text_with_leading_zeros_kept(tmp_path):
    orders = as_text(valid_tables()["orders"], customer_id={0: "  c1 ", 1: "007"}, order_id={0: " o1\t"})
    customers = pd.DataFrame({"customer_id": ["c1", "007", "c2", "c3"]})
    data = validate(write(tmp_path, {"orders": orders, "customers": customers}))

    assert data.orders["customer_id"].tolist() == ["c1", "007", "c2", "c3"]
    assert data.orders["order_id"].tolist()[0] == "o1"
    assert data.quarantine == {}


def test_csv_timestamps_accept_iso_8601_forms_and_offsets_become_utc(tmp_path):
    given = ["2017-03-01", "2017-03-01T10:20:00", "2017-03-01 10:20:00", "2017-03-01T10:20:00+02:00"]
    orders = as_text(valid_tables()["orders"], order_ts=dict(enumerate(given)))
    data = validate(write(tmp_path, {"orders": orders}))

    assert data.orders["order_ts"].dtype == "datetime64[us]"
    assert data.orders["order_ts"].tolist() == [
        TS("2017-03-01"), TS("2017-03-01 10:20"), TS("2017-03-01 10:20"), TS("2017-03-01 08:20"),
    ]  # fmt: skip


def test_tz_aware_parquet_timestamps_become_naive_utc(tmp_path):
    orders = valid_tables()["orders"]
    orders["order_ts"] = pd.to_datetime(["2017-03-01 10:00"] * 4).tz_localize("Europe/Berlin")
    data = validate(write(tmp_path, {"orders": orders}, "parquet"))

    assert str(data.orders["order_ts"].dtype) == "datetime64[us]"
    assert data.orders["order_ts"].tolist() == [TS("2017-03-01 09:00")] * 4


def test_coupon_used_accepts_common_spellings(tmp_path):
    orders = as_text(valid_tables()["orders"], coupon_used={0: "TRUE", 1: "no", 2: "Yes", 3: "0"})
    data = validate(write(tmp_path, {"orders": orders}))

    assert data.orders["coupon_used"].dtype == bool
    assert data.orders["coupon_used"].tolist() == [True, False, True, False]


@pytest.mark.parametrize("fmt", FORMATS)
def test_dates_are_normalized_to_midnight(tmp_path, fmt):
    contacts = valid_tables()["contacts"]
    contacts["list_date"] = [TS("2017-05-01 13:45"), TS("2017-05-02")]
    data = validate(write(tmp_path, {"orders": valid_tables()["orders"], "contacts": contacts}, fmt))

    assert data.contacts["list_date"].tolist() == [TS("2017-05-01"), TS("2017-05-02")]


def test_missing_optional_tables_are_none(tmp_path):
    data = validate(write(tmp_path, {"orders": valid_tables()["orders"]}))

    assert data.order_items is None and data.customers is None and data.events is None
    assert data.contacts is None and data.suppressions is None
    assert list(data.tables()) == ["orders"]
    assert data.row_counts == {"orders": 4}


def test_extra_columns_are_kept(tmp_path):
    orders = valid_tables()["orders"].assign(store_code=["s1", "s2", "s1", "s3"])
    data = validate(write(tmp_path, {"orders": orders}))

    assert data.orders["store_code"].tolist() == ["s1", "s2", "s1", "s3"]


# --- hard errors ---------------------------------------------------------------------------


def test_missing_orders_file_names_the_files_looked_for(tmp_path):
    write(tmp_path, {"customers": valid_tables()["customers"]})
    with pytest.raises(ContractError) as err:
        validate(tmp_path)

    assert "orders.parquet, orders.csv" in str(err.value)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_required_column_lists_columns_found(tmp_path, fmt):
    message = broken(fmt, tmp_path, events=valid_tables()["events"].drop(columns="event_ts"))

    assert message == f"events.{fmt}: missing required column event_ts (columns found: customer_id, event_type)"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("table", "column", "bad", "rule"),
    [
        ("orders", "order_ts", "2017-13-45", "not an ISO 8601 timestamp (e.g. 2017-03-01T10:20:00)"),
        ("orders", "amount", "12,50", "not a number"),
        ("orders", "amount", "inf", "not a number"),
        ("orders", "coupon_used", "maybe", "not a bool (true/false, 1/0, yes/no)"),
        ("orders", "n_items", "1.5", "not a whole number"),
        ("contacts", "list_date", "yesterday", "not an ISO 8601 date (e.g. 2017-03-01)"),
    ],
)
def test_unparsable_values_are_named_with_row_and_value(tmp_path, fmt, table, column, bad, rule):
    frame = as_text(valid_tables()[table], **{column: {1: bad}})
    message = broken(fmt, tmp_path, **{table: frame})

    assert message == f"{table}.{fmt}: column {column}: 1 row {rule} (row 2: '{bad}')"


@pytest.mark.parametrize("fmt", FORMATS)
def test_negative_amount_message(tmp_path, fmt):
    orders = valid_tables()["orders"]
    orders["amount"] = [10.5, -1.5, 3.0, -2.0]
    message = broken(fmt, tmp_path, orders=orders)

    assert message == f"orders.{fmt}: column amount: 2 rows < 0 (rows 2, 4: -1.5, -2.0)"


def test_negative_discount(tmp_path):
    orders = valid_tables()["orders"]
    orders["discount"] = [0.0, 0.0, -0.3, 0.0]

    assert broken("csv", tmp_path, orders=orders) == "orders.csv: column discount: 1 row < 0 (row 3: -0.3)"


def test_only_five_offending_rows_are_quoted(tmp_path):
    n = 8
    orders = pd.DataFrame(
        {
            "customer_id": ["c1"] * n,
            "order_id": [f"o{i}" for i in range(n)],
            "order_ts": [TS("2017-01-01")] * n,
            "amount": [-1.0] * n,
        }
    )
    with pytest.raises(ContractError) as err:
        validate(write(tmp_path, {"orders": orders}))

    expected = "orders.csv: column amount: 8 rows < 0 (rows 1, 2, 3, 4, 5, ...: -1.0, -1.0, -1.0, -1.0, -1.0, ...)"
    assert str(err.value) == expected


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("orders", "customer_id"),
        ("orders", "order_id"),
        ("order_items", "product_id"),
        ("orders", "order_ts"),
        ("orders", "coupon_used"),
    ],
)
def test_empty_required_cells(tmp_path, fmt, table, column):
    frame = as_text(valid_tables()[table], **{column: {1: None, 3: "" if fmt == "parquet" else None}})
    tables = {"orders": valid_tables()["orders"], table: frame}  # no order_items: they would point at nothing
    with pytest.raises(ContractError) as err:
        validate(write(tmp_path, tables, fmt))
    message = str(err.value)

    assert message == f"{table}.{fmt}: column {column}: 2 rows empty (rows 2, 4)"


@pytest.mark.parametrize("layout", [[10.0, 20.0, "nan", 5.0], ["nan", 20.0, 10.0, 5.0], [10.0, "nan", "nan", 5.0]])
def test_a_nan_amount_in_parquet_written_by_arrow_is_named(tmp_path, layout):
    """Arrow leaves NaN out of a column's min/max; DuckDB had folded isnan() from them and said "0 rows empty (rows )"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    orders = valid_tables()["orders"]
    table = pa.Table.from_pandas(orders.drop(columns="amount"), preserve_index=False)
    table = table.append_column("amount", pa.array([float(v) for v in layout], pa.float64()))  # NaN, not null
    pq.write_table(table, tmp_path / "orders.parquet")
    rows = [i + 1 for i, v in enumerate(layout) if v == "nan"]
    listed = ", ".join(map(str, rows))
    expected = f"orders.parquet: column amount: {len(rows)} row{'s' if len(rows) > 1 else ''} empty (row{'s' if len(rows) > 1 else ''} {listed})"
    with pytest.raises(ContractError) as err:
        validate(tmp_path)
    assert str(err.value) == expected


def test_blank_ids_count_as_empty(tmp_path):
    orders = as_text(valid_tables()["orders"], customer_id={2: "   "})

    assert broken("csv", tmp_path, orders=orders) == "orders.csv: column customer_id: 1 row empty (row 3)"


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_order_id_names_the_ids(tmp_path, fmt):
    orders = valid_tables()["orders"]
    orders["order_id"] = ["o1", "o2", "o1", "o2"]  # same ids, different orders: not exact duplicates
    with pytest.raises(ContractError) as err:
        validate(write(tmp_path, {"orders": orders}, fmt))
    message = str(err.value)

    rows = "(rows 1, 2, 3, 4: 'o1', 'o2', 'o1', 'o2')"
    assert message == f"orders.{fmt}: column order_id: 4 rows with a duplicate order_id {rows}"


def test_duplicate_customer_id_in_customers(tmp_path):
    customers = valid_tables()["customers"]
    customers["customer_id"] = ["c1", "c2", "c2"]
    customers["region"] = ["north", "south", "east"]
    message = broken("csv", tmp_path, customers=customers)

    assert message == "customers.csv: column customer_id: 2 rows with a duplicate customer_id (rows 2, 3: 'c2', 'c2')"


@pytest.mark.parametrize("fmt", FORMATS)
def test_order_items_must_point_at_orders(tmp_path, fmt):
    items = valid_tables()["order_items"]
    items.loc[2, "order_id"] = "o99"
    message = broken(fmt, tmp_path, order_items=items)

    assert message == f"order_items.{fmt}: column order_id: 1 row not in orders.{fmt} (row 3: 'o99')"


@pytest.mark.parametrize(
    ("table", "column", "bad", "allowed"),
    [
        ("contacts", "arm", "control", "holdout, treated"),
        ("suppressions", "reason", "spam", "complaint, deleted, do_not_contact, opt_out"),
    ],
)
def test_values_outside_their_set(tmp_path, table, column, bad, allowed):
    frame = valid_tables()[table]
    frame.loc[0, column] = bad
    message = broken("csv", tmp_path, **{table: frame})

    assert message == f"{table}.csv: column {column}: 1 row not one of {allowed} (row 1: '{bad}')"


@pytest.mark.parametrize(
    "column",
    [
        *("email", "E-Mail", "Phone", "postcode", "zip_code"),
        *("first_name", "customer_name", "address_line1", "home_address"),
    ],
)
def test_contact_details_in_customers_are_refused(column):
    customers = valid_tables()["customers"].assign(**{column: ["x", "y", "z"]})
    with pytest.raises(ContractError) as err:
        tables = {"orders": valid_tables()["orders"], "customers": customers}
        validate_tables(tables, source={"customers": "customers.csv"})
    message = str(err.value)

    assert message.startswith(f"customers.csv: column {column}: looks like a contact detail")
    assert "privacy" in message and "remove the column" in message


def test_ordinary_customer_attributes_are_not_mistaken_for_contact_details(tmp_path):
    customers = valid_tables()["customers"].assign(segment_name=["a", "b", "c"], email_domain=["x.io", "y.io", "z.io"])

    data = validate(write(tmp_path, {"orders": valid_tables()["orders"], "customers": customers}))

    assert list(data.customers)[-2:] == ["segment_name", "email_domain"]


def test_several_problems_are_reported_together(tmp_path):
    tables = valid_tables()
    orders = as_text(tables["orders"], amount={0: "-5"}, order_ts={3: "soon"})
    contacts = tables["contacts"].drop(columns="arm")
    suppressions = tables["suppressions"].assign(reason=["spam"])
    message = broken("csv", tmp_path, orders=orders, contacts=contacts, suppressions=suppressions)

    assert message.splitlines() == [
        "orders.csv: column order_ts: 1 row not an ISO 8601 timestamp (e.g. 2017-03-01T10:20:00) (row 4: 'soon')",
        "orders.csv: column amount: 1 row < 0 (row 1: -5.0)",
        "contacts.csv: missing required column arm "
        "(columns found: customer_id, list_date, action, contacted_ts, outcome)",
        "suppressions.csv: column reason: 1 row not one of complaint, deleted, do_not_contact, opt_out (row 1: 'spam')",
    ]


def test_missing_columns_do_not_break_the_cross_table_checks(tmp_path):
    tables = with_unknown_customers()
    tables["orders"] = tables["orders"].drop(columns="order_id")
    tables["events"] = tables["events"].drop(columns="customer_id")
    message = broken("csv", tmp_path, **tables)

    assert message.splitlines() == [
        "orders.csv: missing required column order_id (columns found: customer_id, order_ts, amount, discount, "
        "coupon_used, n_items, channel, status)",
        "events.csv: missing required column customer_id (columns found: event_ts, event_type)",
    ]


def test_unknown_table_and_missing_orders_in_memory():
    with pytest.raises(ContractError) as err:
        validate_tables({"refunds": pd.DataFrame()})

    assert "unknown table(s) refunds" in str(err.value)
    assert "orders: table not given" in str(err.value)


# --- soft problems and their policies ------------------------------------------------------


def with_duplicates() -> dict[str, pd.DataFrame]:
    tables = valid_tables()
    tables["orders"] = pd.concat([tables["orders"], tables["orders"].iloc[[1]]], ignore_index=True)  # row 5 = row 2
    tables["suppressions"] = pd.concat([tables["suppressions"]] * 3, ignore_index=True)  # rows 2, 3 = row 1
    return tables


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_rows_are_quarantined_and_counted(tmp_path, fmt):
    data = validate(write(tmp_path, with_duplicates(), fmt))

    assert data.row_counts["orders"] == 4 and data.orders["order_id"].tolist() == ["o1", "o2", "o3", "o4"]
    assert data.row_counts["suppressions"] == 1
    assert data.quarantine["orders"][["file_row", "reason", "order_id"]].to_dict("records") == [
        {"file_row": 5, "reason": "duplicate_row", "order_id": "o2"}
    ]
    assert data.quarantine["suppressions"]["file_row"].tolist() == [2, 3]
    assert data.quarantine["suppressions"]["reason_in_file"].tolist() == ["opt_out", "opt_out"]
    assert set(data.quarantine) == {"orders", "suppressions"}


def test_duplicate_rows_fail_policy_names_table_count_and_rows(tmp_path):
    message = broken("csv", tmp_path, FAIL, **with_duplicates())

    assert message.splitlines() == [
        'orders.csv: 1 exact duplicate row (row 5); contract.duplicate_rows is "fail": fix the file, '
        'or set it to "quarantine" to set these rows aside',
        'suppressions.csv: 2 exact duplicate rows (rows 2, 3); contract.duplicate_rows is "fail": fix the file, '
        'or set it to "quarantine" to set these rows aside',
    ]


def with_unknown_customers() -> dict[str, pd.DataFrame]:
    tables = valid_tables()
    tables["customers"] = tables["customers"].iloc[:2]  # c3 is no longer a customer
    tables["events"].loc[1, "customer_id"] = "c9"
    return tables


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_customers_are_quarantined_and_their_order_items_follow(tmp_path, fmt):
    tables = with_unknown_customers()
    tables["order_items"].loc[3, "order_id"] = "o4"  # an item of c3's order
    data = validate(write(tmp_path, tables, fmt))

    assert data.orders["order_id"].tolist() == ["o1", "o2", "o3"]
    assert data.events["customer_id"].tolist() == ["c1"]
    assert data.order_items["order_id"].tolist() == ["o1", "o2", "o2"]
    summary = {name: rows[["file_row", "reason"]].to_dict("records") for name, rows in data.quarantine.items()}
    assert summary == {
        "orders": [{"file_row": 4, "reason": "unknown_customer"}],
        "order_items": [{"file_row": 4, "reason": "unknown_customer"}],
        "events": [{"file_row": 2, "reason": "unknown_customer"}],
    }
    assert data.row_counts["orders"] == 3 and data.row_counts["suppressions"] == 1  # suppressions are not checked


def test_unknown_customers_fail_policy(tmp_path):
    message = broken("csv", tmp_path, FAIL, **with_unknown_customers())

    orders_line, events_line = message.splitlines()
    assert orders_line.startswith("orders.csv: column customer_id: 1 row not in customers.csv (row 4: 'c3'); ")
    assert events_line.startswith("events.csv: column customer_id: 1 row not in customers.csv (row 2: 'c9'); ")
    assert 'contract.unknown_customers is "fail"' in orders_line


def test_without_customers_table_any_customer_is_accepted(tmp_path):
    tables = valid_tables()
    del tables["customers"]
    tables["events"].loc[1, "customer_id"] = "c9"
    data = validate(write(tmp_path, tables), FAIL)

    assert data.events["customer_id"].tolist() == ["c1", "c9"]


def test_row_numbers_stay_file_rows_after_quarantine(tmp_path):
    orders = with_duplicates()["orders"]
    orders = pd.concat([orders, orders.iloc[[0]].assign(order_id="o5", amount=-3.0)], ignore_index=True)
    message = broken("csv", tmp_path, orders=orders)

    assert message == "orders.csv: column amount: 1 row < 0 (row 6: -3.0)"


def test_validation_writes_nothing(tmp_path):
    write(tmp_path, with_duplicates())
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    validate(tmp_path)

    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


# --- in-memory validation ------------------------------------------------------------------


def test_validate_tables_uses_source_names_and_leaves_input_alone():
    tables = {"orders": as_text(valid_tables()["orders"], amount={0: "-1"})}
    before = tables["orders"].copy()
    with pytest.raises(ContractError) as err:
        validate_tables(tables, source={"orders": "shop_orders.csv"})

    assert str(err.value) == "shop_orders.csv: column amount: 1 row < 0 (row 1: -1.0)"
    pd.testing.assert_frame_equal(tables["orders"], before)


def test_validate_tables_default_source_is_table_name_and_no_fingerprints():
    data = validate_tables(with_duplicates())

    assert isinstance(data, Dataset) and data.fingerprints == {}
    assert data.row_counts["orders"] == 4
    with pytest.raises(ContractError, match=r"^orders: 1 exact duplicate row \(row 5\)"):
        validate_tables(with_duplicates(), FAIL)


# --- ids written differently by different tools (issue 13, case 1) -------------------------


def _mixed_dir(tmp_path, **tables):
    """A data directory with each table in its own format: tables given as (frame, "csv" | "parquet")."""
    for name, (frame, fmt) in tables.items():
        io.write_tables({name: frame}, tmp_path, fmt)
    return tmp_path


@pytest.mark.parametrize("written", corpus.ID_SPELLINGS_CSV)
def test_float_and_padded_ids_in_csv_match_the_customers(tmp_path, written):
    customers = pd.DataFrame({"customer_id": [corpus.ID, "13483"]})
    orders = corpus.orders([written, "13483"])
    events = pd.DataFrame({"customer_id": [written], "event_ts": ["2024-01-02"], "event_type": ["visit"]})
    data = validate(_mixed_dir(tmp_path, orders=(orders, "csv"), customers=(customers, "csv"),
                               events=(events, "csv")))

    assert data.orders["customer_id"].tolist() == [corpus.ID, "13483"]
    assert data.events["customer_id"].tolist() == [corpus.ID]
    assert data.quarantine == {} and data.unmatched == {}


@pytest.mark.parametrize("value", corpus.ID_VALUES_PARQUET)
@pytest.mark.parametrize("customers_fmt", FORMATS)
def test_parquet_ids_of_any_type_match_csv_ids(tmp_path, value, customers_fmt):
    customers = pd.DataFrame({"customer_id": ["13482.0", " 13483"]})
    orders = corpus.orders([value, 13483 if not isinstance(value, str) else "13483"])
    data = validate(_mixed_dir(tmp_path, orders=(orders, "parquet"), customers=(customers, customers_fmt)))

    assert data.orders["customer_id"].tolist() == data.customers["customer_id"].tolist() == [corpus.ID, "13483"]
    assert data.quarantine == {}


def test_float_ids_with_gaps_in_parquet_become_integer_text(tmp_path):
    suppressions = pd.DataFrame({"customer_id": [13482.0, float("nan"), 13483.0], "reason": ["opt_out"] * 3})
    orders = corpus.orders([corpus.ID, "13483"])
    with pytest.raises(ContractError, match=r"suppressions.parquet: column customer_id: 1 row empty \(row 2\)"):
        validate(_mixed_dir(tmp_path, orders=(orders, "csv"), suppressions=(suppressions, "parquet")))


@pytest.mark.parametrize("written", corpus.ID_SCIENTIFIC)
def test_ids_in_scientific_notation_are_refused_naming_the_rows(tmp_path, written):
    orders = corpus.orders(["13481", written])
    with pytest.raises(ContractError) as err:
        validate(_mixed_dir(tmp_path, orders=(orders, "csv")))

    assert str(err.value).startswith(f"orders.csv: column customer_id: 1 row in scientific notation")
    assert f"(row 2: '{written}')" in str(err.value) and "export the column as text" in str(err.value)


def test_scientific_looking_codes_among_letter_codes_are_ordinary_ids(tmp_path):
    orders = corpus.orders(["A12", "1E5", "7E4B"])
    data = validate(_mixed_dir(tmp_path, orders=(orders, "csv")))

    assert data.orders["customer_id"].tolist() == ["A12", "1E5", "7E4B"]


def test_the_issue_case_float_orders_int_customers_keeps_every_order(tmp_path):
    # Issue 13, case 1: orders carry 13482.0, customers 13482; before, every order was quarantined.
    ids = [str(12346 + i) for i in range(50)]
    customers = pd.DataFrame({"customer_id": [int(i) for i in ids]})
    orders = corpus.orders([f"{i}.0" for i in ids])
    data = validate(_mixed_dir(tmp_path, orders=(orders, "csv"), customers=(customers, "parquet")))

    assert data.row_counts["orders"] == 50 and data.quarantine == {} and data.unmatched == {}


def test_suppressions_written_as_floats_keep_customers_off_the_lists(tmp_path):
    # Issue 13, case 1: a suppressions.csv listing every customer as opt_out with ids like 12346.0
    # was ignored, and the lists were full of opted-out customers.
    from churn.config import WinbackConfig
    from churn.decide import winback

    ids = [str(12346 + i) for i in range(40)]
    orders = corpus.orders([int(i) for i in ids])
    suppressions = pd.DataFrame({"customer_id": [f"{i}.0" for i in ids], "reason": ["opt_out"] * 40})
    data = validate(_mixed_dir(tmp_path, orders=(orders, "parquet"), suppressions=(suppressions, "csv")))
    scores = pd.DataFrame({"customer_id": data.orders["customer_id"], "p_churn": 0.9, "value": 500.0,
                           "lifecycle_stage": "active", "value_tier": "high", "avg_basket": 50.0,
                           "risk_band": "high"})
    suppressed = set(data.suppressions["customer_id"])

    assert suppressed == set(scores["customer_id"]) and data.unmatched == {}
    for column in ("service", "price", "variety"):
        scores[f"driver_{column}"] = False
    taken = winback.assign(scores, suppressed, WinbackConfig(), "2024-06-30")
    assert len(taken) == 0


def test_without_customers_events_and_float_orders_stay_attached(tmp_path):
    # Issue 13, case 1: no customers table, events 12346 and orders 12346.0 used to detach.
    from churn.features.engine import build_features

    orders = corpus.orders(["12346.0", "12347.0"])
    events = pd.DataFrame({"customer_id": ["12346", "12347"], "event_ts": ["2024-01-05", "2024-01-06"],
                           "event_type": ["complaint", "complaint"]})
    data = validate(_mixed_dir(tmp_path, orders=(orders, "csv"), events=(events, "csv")))
    got = build_features(data, ["2024-01-31"]).set_index("customer_id")

    assert got["event_complaint_all"].to_dict() == {"12346": 1.0, "12347": 1.0}
    assert data.unmatched == {}


def test_unmatched_suppressions_are_kept_counted_and_warned(tmp_path, caplog):
    orders = corpus.orders(["1", "2"])
    suppressions = pd.DataFrame({"customer_id": ["2", "8", "9", "9"], "reason": ["opt_out", "opt_out", "deleted",
                                                                                   "complaint"]})
    with caplog.at_level("WARNING", logger="churn.data.contract"):
        data = validate(_mixed_dir(tmp_path, orders=(orders, "csv"), suppressions=(suppressions, "csv")))

    assert data.suppressions["customer_id"].tolist() == ["2", "8", "9", "9"]
    assert data.unmatched["suppressions"].as_dict() == {
        "rows": 3, "customers": 2, "first_ids": ["8", "9"], "against": "orders.csv", "handling": "kept"}
    assert "suppressions.csv: 3 rows (2 customer ids) match no customer in orders.csv, kept; first ids: '8', '9'" \
        in caplog.text


def test_unmatched_suppressions_fail_policy(tmp_path):
    orders = corpus.orders(["1", "2"])
    suppressions = pd.DataFrame({"customer_id": ["2", "8"], "reason": ["opt_out", "opt_out"]})
    with pytest.raises(ContractError) as err:
        validate(_mixed_dir(tmp_path, orders=(orders, "csv"), suppressions=(suppressions, "csv")),
                 ContractConfig(unmatched_suppressions="fail"))

    assert str(err.value).startswith("suppressions.csv: column customer_id: 1 row not in orders.csv (row 2: '8'); "
                                     'contract.unmatched_suppressions is "fail"')


def test_events_and_contacts_of_people_who_never_bought_are_kept_and_counted(tmp_path):
    orders = corpus.orders(["1", "2"])
    events = pd.DataFrame({"customer_id": ["1", "7", "7"], "event_ts": ["2024-01-05", "2024-01-05", "2024-01-06"],
                           "event_type": ["visit"] * 3})
    data = validate(_mixed_dir(tmp_path, orders=(orders, "csv"), events=(events, "csv")))

    assert data.events["customer_id"].tolist() == ["1", "7", "7"]
    assert data.unmatched["events"].as_dict() == {
        "rows": 2, "customers": 1, "first_ids": ["7"], "against": "orders.csv", "handling": "kept"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_quarantined_unknown_customers_are_counted_as_unmatched(tmp_path, fmt):
    data = validate(write(tmp_path, with_unknown_customers(), fmt))

    assert {name: u.handling for name, u in data.unmatched.items()} == {
        "orders": "quarantined", "events": "quarantined", "suppressions": "kept"}  # c3 is suppressed, not a customer
    assert data.unmatched["orders"].first_ids == ("c3",) and data.unmatched["events"].rows == 1


@pytest.mark.parametrize(("in_table", "in_customers"), corpus.ID_LOOSE_MISMATCHES)
@pytest.mark.parametrize("table", ["orders", "suppressions"])
def test_ids_spelled_differently_across_files_are_refused_naming_the_rows(tmp_path, table, in_table, in_customers):
    customers = pd.DataFrame({"customer_id": [in_customers, "99"]})
    frames = {"orders": corpus.orders(["99"]), "customers": customers}
    if table == "orders":
        frames["orders"] = corpus.orders(["99", in_table])
    else:
        frames["suppressions"] = pd.DataFrame({"customer_id": [in_table], "reason": ["opt_out"]})
    with pytest.raises(ContractError) as err:
        validate(_mixed_dir(tmp_path, **{name: (frame, "csv") for name, frame in frames.items()}))
    message = str(err.value)

    row = 2 if table == "orders" else 1
    assert message == (f"{table}.csv: column customer_id: 1 row not in customers.csv as written, but in it once case, "
                       f"separators and leading zeros are ignored (row {row}: '{in_table}'); the two files spell the "
                       f"same ids differently: export both with the same ids")


def test_a_policy_that_would_empty_the_orders_stops_the_run(tmp_path):
    # Before, `churn validate` said "orders: 0 rows ok, 46629 quarantined" and exited 0.
    customers = pd.DataFrame({"customer_id": ["a1", "a2"]})
    orders = corpus.orders(["x1", "x2", "x3"])
    with pytest.raises(ContractError) as err:
        validate(_mixed_dir(tmp_path, orders=(orders, "csv"), customers=(customers, "csv")))

    assert str(err.value) == ("orders.csv: column customer_id: 3 rows not in customers.csv (rows 1, 2, 3: 'x1', 'x2', "
                              "'x3'); not one row matches, so these are not the same ids as in customers.csv ('a1', "
                              "'a2', ...): export both with the same ids")


# --- labels: one event type, action, arm or reason in several spellings (issue 13, case 3) ---


@pytest.mark.parametrize(("kind", "spellings"), corpus.EVENT_TYPE_SPELLINGS.items())
@pytest.mark.parametrize("fmt", FORMATS)
def test_event_type_spellings_become_one_type(tmp_path, fmt, kind, spellings):
    n = len(spellings)
    events = pd.DataFrame({"customer_id": ["c1"] * n, "event_ts": [f"2017-03-{i + 1:02d}" for i in range(n)],
                           "event_type": spellings})
    data = validate(write(tmp_path, {"orders": valid_tables()["orders"], "events": events}, fmt))

    assert data.events["event_type"].tolist() == [kind] * n


def test_the_issue_case_complaint_beside_Complaint_counts_as_one_type():
    # Issue 13, case 3: before, `churn score` and `churn train` exited 70 with KeyError 'event_complaint_30d'.
    from churn.features.engine import build_features

    orders = corpus.orders(["a", "b"])
    events = pd.DataFrame({"customer_id": ["a", "a", "b"], "event_ts": ["2024-01-20", "2024-01-25", "2024-01-26"],
                           "event_type": ["complaint", "Complaint", "COMPLAINT "]})
    got = build_features(validate_tables({"orders": orders, "events": events}), ["2024-01-31"]).set_index("customer_id")

    assert got["event_complaint_30d"].to_dict() == {"a": 2.0, "b": 1.0}
    assert [c for c in got.columns if "omplaint" in c] == ["event_complaint_30d", "event_complaint_90d",
                                                             "event_complaint_all"]


def test_arms_reasons_and_actions_are_read_in_any_spelling(tmp_path):
    contacts = valid_tables()["contacts"].assign(arm=["Treated", " HOLDOUT"], action=["Callback", "Exclusive Discount"])
    suppressions = valid_tables()["suppressions"].assign(reason=["Opt-Out"])
    data = validate(write(tmp_path, {**valid_tables(), "contacts": contacts, "suppressions": suppressions}))

    assert data.contacts["arm"].tolist() == ["treated", "holdout"]
    assert data.contacts["action"].tolist() == ["callback", "exclusive_discount"]
    assert data.suppressions["reason"].tolist() == ["opt_out"]


def test_event_types_sharing_a_feature_name_are_a_clear_error_without_the_contract():
    from churn.errors import DataError
    from churn.features.catalogue import catalogue

    with pytest.raises(DataError, match=r"event types \['Complaint', 'complaint'\] would share feature names"):
        catalogue(["complaint", "Complaint"])


# --- the shop's day: time zones (issue 13, case 7) -------------------------------------------


def _zone(name: str):
    from churn.config import Config, DataConfig

    return Config(data=DataConfig(timezone=name))


@pytest.mark.parametrize(("written", "zone", "local"), corpus.OFFSET_TIMESTAMPS)
def test_timestamps_become_local_times_of_the_shops_zone(tmp_path, written, zone, local):
    orders = corpus.orders(["a", "b"]).assign(order_ts=["2024-03-01T10:00:00", written])
    data = validate(write(tmp_path, {"orders": orders}), _zone(zone))

    assert data.orders["order_ts"].tolist() == [TS("2024-03-01 10:00"), TS(local)]
    assert str(data.orders["order_ts"].dtype) == "datetime64[us]"


def test_tz_aware_parquet_timestamps_become_local_times(tmp_path):
    orders = valid_tables()["orders"]
    orders["order_ts"] = pd.to_datetime(["2017-03-01 10:00"] * 4).tz_localize("Europe/Berlin")
    data = validate(write(tmp_path, {"orders": orders}, "parquet"), _zone("America/New_York"))

    assert data.orders["order_ts"].tolist() == [TS("2017-03-01 04:00")] * 4


def test_naive_timestamps_are_already_in_the_shops_zone(tmp_path):
    data = validate(write(tmp_path, valid_tables(), "parquet"), _zone("Asia/Tokyo"))

    assert data.orders["order_ts"].tolist() == valid_tables()["orders"]["order_ts"].tolist()


def test_the_issue_case_a_new_york_evening_order_stays_in_the_31_december_run(tmp_path):
    # Issue 13, case 7: before, 20:30 on 31 December at -05:00 became 1 January (UTC) and the
    # customer left the 31 December run.
    from churn.features.engine import build_features

    orders = corpus.orders(["ny", "ny"]).assign(order_ts=["2024-10-02T12:00:00-04:00", "2024-12-31T20:30:00-05:00"])
    data = validate(write(tmp_path, {"orders": orders}), _zone("America/New_York"))
    got = build_features(data, ["2024-12-31"]).set_index("customer_id").loc["ny"]

    assert (got["recency_days"], got["orders_all"], got["orders_30d"]) == (0, 2, 1)
    assert data.orders["order_ts"].iloc[1] == TS("2024-12-31 20:30")


# --- implausible timestamps (issue 13, case 4) ---------------------------------------------


@pytest.mark.parametrize("sentinel", corpus.SENTINEL_TIMESTAMPS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_placeholder_order_dates_are_quarantined_by_default(tmp_path, fmt, sentinel):
    orders = as_text(valid_tables()["orders"], order_ts={2: sentinel})
    data = validate(write(tmp_path, {"orders": orders}, fmt))

    assert data.orders["order_id"].tolist() == ["o1", "o2", "o4"]
    assert data.quarantine["orders"][["file_row", "reason", "order_id"]].to_dict("records") == [
        {"file_row": 3, "reason": "implausible_timestamp", "order_id": "o3"}]


def test_placeholder_order_dates_fail_policy_names_column_rows_and_range(tmp_path):
    orders = as_text(valid_tables()["orders"], order_ts={1: "9999-12-31", 3: "1970-01-01"})
    message = broken("csv", tmp_path, ContractConfig(implausible_timestamps="fail"), orders=orders)

    assert message == ("orders.csv: column order_ts: 2 rows outside 1990-01-01 .. 2089-12-31 (rows 2, 4: "
                       "9999-12-31 00:00:00, 1970-01-01 00:00:00); placeholders or typos; if these dates are real, "
                       'widen [contract] min_date / max_date; contract.implausible_timestamps is "fail": fix the '
                       'file, or set it to "quarantine" to set these rows aside')


def test_placeholder_dates_in_optional_columns_are_cleared_and_counted(tmp_path, caplog):
    customers = as_text(valid_tables()["customers"], signup_ts={0: "1900-01-01", 2: "9999-12-31"})
    with caplog.at_level("WARNING", logger="churn.data.contract"):
        data = validate(write(tmp_path, {**valid_tables(), "customers": customers}))

    assert data.customers["signup_ts"].isna().tolist() == [True, False, True]
    assert data.row_counts["customers"] == 3 and data.cleared == {"customers": {"signup_ts": 2}}
    assert "customers.csv: column signup_ts: 2 implausible timestamps set to missing" in caplog.text
    with pytest.raises(ContractError, match=r"customers.csv: column signup_ts: 2 rows outside"):
        validate(tmp_path, ContractConfig(implausible_timestamps="fail"))


def test_the_plausible_range_is_a_setting(tmp_path):
    orders = as_text(valid_tables()["orders"], order_ts={0: "1985-06-01"})
    data = validate(write(tmp_path, {"orders": orders}), ContractConfig(min_date="1980-01-01"))

    assert data.orders["order_ts"].iloc[0] == TS("1985-06-01") and data.quarantine == {}


def test_orders_all_placeholders_stop_the_run(tmp_path):
    orders = as_text(valid_tables()["orders"], order_ts={i: "9999-12-31" for i in range(4)})

    assert broken("csv", tmp_path, orders=orders) == (
        "orders.csv: all 4 rows were set aside (4 implausible_timestamp): nothing is left to work with; see the "
        "quarantine, fix the file or the [contract] policy")


def test_the_issue_case_a_9999_order_leaves_the_as_of_on_the_last_real_day(tmp_path):
    # Issue 13, case 4: before, `churn train` set its default as-of to year 9999 and exited 70.
    from churn.model.training import default_as_of

    orders = as_text(valid_tables()["orders"], order_ts={1: "9999-12-31"})
    data = validate(write(tmp_path, {"orders": orders}))

    assert default_as_of(data) == TS("2017-04-01")


def test_check_not_after_names_table_column_and_file_rows(tmp_path):
    from churn.data.contract import check_not_after

    orders = pd.concat([valid_tables()["orders"]] * 2, ignore_index=True)
    orders["order_id"] = [f"o{i}" for i in range(8)]
    orders.loc[1, "order_ts"] = TS("9999-12-31")  # quarantined: later rows keep their file numbers
    orders.loc[[5, 7], "order_ts"] = [TS("2017-05-02 08:00"), TS("2017-06-01")]
    events = valid_tables()["events"]
    data = validate(write(tmp_path, {**valid_tables(), "orders": orders, "events": events}))
    check_not_after(data, "2017-06-01")
    with pytest.raises(ContractError) as err:
        check_not_after(data, "2017-05-01")

    assert str(err.value).splitlines() == [
        "orders.csv: column order_ts: 2 rows after 2017-05-01, the day of the run (rows 6, 8: 2017-05-02 08:00:00, "
        "2017-06-01 00:00:00)",
        "contacts.csv: column contacted_ts: 1 row after 2017-05-01, the day of the run (row 1: 2017-05-02 11:00:00)",
        "fix these dates at the source: data cannot come from the future",
    ]


@pytest.mark.parametrize(("column", "value", "reason", "policy"), [
    ("order_ts", "9999-12-31", "implausible_timestamp", ContractConfig()),
    ("status", "pending", "unknown_status", ContractConfig(unknown_statuses="quarantine")),
])
def test_items_of_an_order_set_aside_go_with_it(tmp_path, column, value, reason, policy):
    orders = as_text(valid_tables()["orders"], **{column: {1: value}})  # o2, which has two items
    data = validate(write(tmp_path, {"orders": orders, "order_items": valid_tables()["order_items"]}), policy)

    assert data.order_items["order_id"].tolist() == ["o1", "o3"]
    assert data.quarantine["order_items"][["file_row", "reason"]].to_dict("records") == [
        {"file_row": 2, "reason": reason}, {"file_row": 3, "reason": reason}]


# --- file habits: encodings and separators ---------------------------------------------------


def test_a_windows_1252_file_is_refused_naming_the_line(tmp_path):
    # Issue 13: the cp1252 decode error named the file but no row.
    lines = ["customer_id,order_id,order_ts,amount", "a,1,2024-01-01,5", "b,2,2024-01-02,3", "caf\xe9,3,2024-01-03,4"]
    (tmp_path / "orders.csv").write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    with pytest.raises(ContractError) as err:
        validate(tmp_path)

    assert str(err.value) == ('orders.csv: cannot be read (line 4, data row 3, is not UTF-8: byte 0xe9 at character 4, '
                              'probably saved as Windows-1252 (Excel\'s plain "CSV"); save the file as UTF-8 (in '
                              'Excel: "CSV UTF-8"))')


def test_a_utf16_file_is_refused_as_such(tmp_path):
    (tmp_path / "orders.csv").write_bytes("customer_id,order_id,order_ts,amount\na,1,2024-01-01,5\n".encode("utf-16"))
    with pytest.raises(ContractError, match=r"orders.csv: cannot be read \(the file is UTF-16, not UTF-8"):
        validate(tmp_path)


def test_a_utf8_file_with_a_byte_order_mark_reads_as_usual(tmp_path):
    (tmp_path / "orders.csv").write_bytes(b"\xef\xbb\xbfcustomer_id,order_id,order_ts,amount\na,1,2024-01-01,5\n")

    assert validate(tmp_path).orders["customer_id"].tolist() == ["a"]


def test_a_semicolon_file_is_refused_showing_the_columns_found(tmp_path):
    (tmp_path / "orders.csv").write_text("customer_id;order_id;order_ts;amount\na;1;2024-01-01;5,5\n")
    with pytest.raises(ContractError) as err:
        validate(tmp_path)

    assert str(err.value) == ("orders.csv: missing required columns customer_id, order_id, order_ts, amount (columns "
                              "found: customer_id;order_id;order_ts;amount)")


@pytest.mark.parametrize("day_first", ["31/01/2024", "31.01.2024", "01/31/2024"])
def test_day_first_and_month_first_dates_are_refused(tmp_path, day_first):
    orders = as_text(valid_tables()["orders"], order_ts={0: day_first})

    assert broken("csv", tmp_path, orders=orders).startswith(
        f"orders.csv: column order_ts: 1 row not an ISO 8601 timestamp (e.g. 2017-03-01T10:20:00) (row 1: '{day_first}')")


# --- Parquet files checked where they lie ------------------------------------------------------


def dirty_tables() -> dict[str, pd.DataFrame]:
    """Every soft problem at once, in Parquet types: the in-place checks must agree with the pandas ones."""
    tables = with_duplicates()
    tables["customers"] = tables["customers"].iloc[:2].assign(signup_ts=[TS("1900-01-01"), TS("2016-02-01 12:00")])
    tables["orders"]["status"] = ["Paid", "paid", "REFUNDED", "canceled", "paid"]
    tables["orders"] = pd.concat([tables["orders"], tables["orders"].iloc[[0]].assign(
        order_id="o9", order_ts=TS("9999-12-31").as_unit("us"))], ignore_index=True)
    tables["events"] = pd.concat([tables["events"], pd.DataFrame(
        {"customer_id": ["c9", "c1"], "event_ts": [TS("2017-03-05"), TS("2017-03-06")],
         "event_type": ["Email Open", "email-open"]})], ignore_index=True)
    tables["order_items"].loc[3, "order_id"] = "o4"  # an item of c3's order (c3 is unknown now)
    tables["suppressions"].loc[2, "customer_id"] = "ghost"
    return tables


def as_read(data):
    """What a validation returns, as comparable plain values (tables read as frames)."""
    return ({name: frame for name, frame in data.tables().items()}, data.quarantine, data.row_counts,
            {name: found.as_dict() for name, found in data.unmatched.items()}, data.cleared)


def test_clean_parquet_is_checked_in_place_and_reads_as_the_pandas_path(tmp_path):
    data = validate(write(tmp_path, valid_tables(), "parquet"))
    in_memory = validate_tables({name: pd.read_parquet(path) for name, path in
                                 ((p.stem, p) for p in tmp_path.glob("*.parquet"))},
                                source={p.stem: p.name for p in tmp_path.glob("*.parquet")})

    assert all(data.stored(name) for name in data.names())
    got, want = as_read(data), as_read(in_memory)
    for name in want[0]:
        pd.testing.assert_frame_equal(got[0][name], want[0][name])
    assert got[1:] == want[1:]


def test_soft_problems_in_parquet_give_what_the_pandas_path_gives(tmp_path):
    write(tmp_path, dirty_tables(), "parquet")
    data = validate(tmp_path)
    in_memory = validate_tables({p.stem: pd.read_parquet(p) for p in tmp_path.glob("*.parquet")},
                                source={p.stem: p.name for p in tmp_path.glob("*.parquet")})

    assert data.stored("orders") and data.stored("events")
    got, want = as_read(data), as_read(in_memory)
    for name in want[0]:
        pd.testing.assert_frame_equal(got[0][name], want[0][name])
    assert set(got[1]) == set(want[1]) == {"orders", "order_items", "events", "suppressions"}
    for name in want[1]:
        pd.testing.assert_frame_equal(got[1][name], want[1][name])
    assert got[2:] == want[2:]
    assert data.orders["status"].tolist() == ["completed", "completed", "returned"]
    assert data.quarantine["orders"]["reason"].tolist() == ["unknown_customer", "duplicate_row",
                                                             "implausible_timestamp"]
    assert data.cleared == {"customers": {"signup_ts": 1}}


def test_a_parquet_id_with_a_trailing_space_is_trimmed_as_in_csv(tmp_path):
    tables = valid_tables()
    tables["orders"]["customer_id"] = ["c1 ", "c1", "c2\t", "c3"]  # matched once trimmed, as in a CSV file
    data = validate(write(tmp_path, tables, "parquet"))

    assert data.orders["customer_id"].tolist() == ["c1", "c1", "c2", "c3"]
    assert not data.stored("orders") and data.stored("customers")
    assert data.unmatched == {}


@pytest.mark.parametrize("values", [["1", "2.0", "3", "4"], [" 1", "2", "3", "4"], ["1", "2", "3", "4\u00a0"]])
def test_parquet_ids_to_rewrite_are_parsed_in_pandas(tmp_path, values):
    tables = valid_tables()
    del tables["order_items"]
    tables["orders"]["order_id"] = values
    data = validate(write(tmp_path, tables, "parquet"))

    assert not data.stored("orders") and data.stored("customers")
    assert data.orders["order_id"].tolist() == ["1", "2", "3", "4"]


def test_stored_tables_read_by_column_and_sql_as_their_frame(tmp_path):
    import duckdb

    data = validate(write(tmp_path, dirty_tables(), "parquet"))
    frame = pd.read_parquet(tmp_path / "orders.parquet")  # the file, untouched
    ts = data.column("orders", "order_ts")
    con = duckdb.connect()
    assert data.register(con, ("orders", "events"), suffix="_src") == ["orders", "events"]
    via_sql = con.execute("SELECT * FROM orders_src").df()

    assert data.stored("orders") and len(frame) == 6
    pd.testing.assert_series_equal(ts, data.orders["order_ts"])
    assert data.columns("orders") == list(data.orders.columns)
    assert via_sql["order_id"].tolist() == data.orders["order_id"].tolist()
    assert via_sql["status"].tolist() == data.orders["status"].tolist()
    assert sorted(con.execute("SELECT event_type FROM events_src").fetchall()) == [
        ("complaint",), ("email_open",), ("login",)]  # "Email Open" of c9 set aside, "email-open" read as email_open


def test_validate_files_checks_one_partitions_files_under_any_name(tmp_path):
    from churn.data.contract import validate_files

    write(tmp_path / "all", valid_tables(), "parquet")
    part = tmp_path / "part-0"
    part.mkdir()
    for name in ("orders", "customers"):
        (tmp_path / "all" / f"{name}.parquet").rename(part / f"{name}-part-0.parquet")
    data = validate_files({"orders": part / "orders-part-0.parquet", "customers": part / "customers-part-0.parquet"})

    assert data.names() == ["orders", "customers"] and data.row_counts == {"orders": 4, "customers": 3}
    assert data.sources == {"orders": "orders-part-0.parquet", "customers": "customers-part-0.parquet"}
    with pytest.raises(ContractError, match="orders: file not given"):
        validate_files({"customers": part / "customers-part-0.parquet"})


# --- a CSV file cut short (issue 14, item 9) ----------------------------------------------------


def cut_orders_csv(tmp_path, ending: str = ""):
    """The valid shop as CSV, orders.csv (amount last) cut inside its last row's amount (7.25 -> 7.2), plus `ending`."""
    tables = valid_tables()
    tables["orders"] = tables["orders"][["customer_id", "order_id", "order_ts", "amount"]]
    write(tmp_path, tables, "csv")
    path = tmp_path / "orders.csv"
    text = path.read_text()
    assert text.endswith(",7.25\n")
    path.write_text(text[: -len("5\n")] + ending)
    return path


def test_a_csv_file_without_a_final_newline_is_reported_as_probably_truncated(tmp_path):
    cut_orders_csv(tmp_path)
    with pytest.raises(ContractError) as err:
        validate(tmp_path)

    message = str(err.value)
    assert message.startswith("orders.csv: the file does not end with a newline, so it is probably truncated: "
                              "its last line (data row 4) may be cut short")
    assert "echo >> orders.csv" in message  # how to fix a complete file that only lacks the line break
    assert "cannot be read" not in message


def test_a_complete_file_given_its_final_newline_is_accepted(tmp_path):
    cut_orders_csv(tmp_path, ending="\n")  # what the message tells the user to do, when the file is complete
    data = validate(tmp_path)
    assert data.orders["amount"].tolist() == [10.5, 20.0, 0.0, 7.2]


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_windows_and_old_mac_line_ends_count_as_final_newlines(tmp_path, ending):
    write(tmp_path, valid_tables(), "csv")
    path = tmp_path / "customers.csv"
    path.write_bytes(path.read_bytes().rstrip(b"\n") + ending.encode())
    assert validate(tmp_path).row_counts["customers"] == 3


@pytest.mark.parametrize("table", ["customers", "events", "suppressions"])
def test_every_csv_table_is_checked_for_a_final_newline(tmp_path, table):
    write(tmp_path, valid_tables(), "csv")
    path = tmp_path / f"{table}.csv"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    message = broken_dir(tmp_path)
    assert message.startswith(f"{table}.csv: the file does not end with a newline, so it is probably truncated: "
                              f"its last line (data row {len(valid_tables()[table])})")


def test_a_header_without_a_final_newline_is_named_as_such(tmp_path):
    write(tmp_path, valid_tables(), "csv")
    (tmp_path / "events.csv").write_text("customer_id,event_ts,event_type")
    assert "its last line (the header) may be cut short" in broken_dir(tmp_path)


def broken_dir(path, policy=ContractConfig()) -> str:
    with pytest.raises(ContractError) as err:
        validate(path, policy)
    return str(err.value)


# --- contact details in any table, by name and by value (issue 14, item 12) ----------------------

DROP = ContractConfig(contact_details="drop")
EMAIL, PHONE = "ann.smith@mail.example", "+44 20 7946 0958"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("table", ["orders", "order_items", "customers", "events", "contacts", "suppressions"])
def test_contact_detail_columns_are_refused_in_every_table(tmp_path, fmt, table):
    tables = valid_tables()
    n = len(tables[table])
    tables[table] = tables[table].assign(email=[EMAIL] * n, **{"Phone Number": [PHONE] * n})
    message = broken(fmt, tmp_path, **{table: tables[table]})

    assert message.splitlines() == [
        f"{table}.{fmt}: column email: looks like a contact detail; for privacy churn holds no names, e-mails, "
        f"phones or addresses: remove the column from the file, or set [contract] contact_details = \"drop\" to "
        f"leave it out (counted in the run manifest)",
        f"{table}.{fmt}: column Phone Number: looks like a contact detail; for privacy churn holds no names, "
        f"e-mails, phones or addresses: remove the column from the file, or set [contract] contact_details = "
        f"\"drop\" to leave it out (counted in the run manifest)"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_under_drop_contact_detail_columns_are_left_out_and_counted(tmp_path, fmt):
    """The issue's probe: email and phone columns in orders were accepted and carried along."""
    tables = valid_tables()
    tables["orders"] = tables["orders"].assign(email=[EMAIL, EMAIL, None, "x@y.example"], phone=[PHONE] * 4)
    data = validate(write(tmp_path, tables, fmt), DROP)

    assert "email" not in data.orders and "phone" not in data.orders
    assert data.contact_details == {"orders": {"email": 3, "phone": 4}}
    assert data.row_counts["orders"] == 4


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value", [EMAIL, "write to bob@shop.example", PHONE, "0044 20 7946 0958", "020 7946 0958",
                                   "(555) 123-4567", "555.123.4567"])
def test_contact_details_in_text_cells_are_refused_without_quoting_them(tmp_path, fmt, value):
    tables = valid_tables()
    tables["orders"]["channel"] = ["web", value, "web", "store"]
    tables["customers"]["note"] = ["vip", None, value]  # a column the contract does not know
    message = broken(fmt, tmp_path, **tables)

    assert message.splitlines() == [
        f"orders.{fmt}: column channel: 1 row holding an e-mail address or a phone number (row 2); churn keeps "
        f"no contact details: remove them from the file, or set [contract] contact_details = \"drop\" to blank "
        f"such cells (counted in the run manifest)",
        f"customers.{fmt}: column note: 1 row holding an e-mail address or a phone number (row 3); churn keeps "
        f"no contact details: remove them from the file, or set [contract] contact_details = \"drop\" to blank "
        f"such cells (counted in the run manifest)"]
    assert value not in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_under_drop_contact_details_in_optional_text_cells_are_blanked_and_counted(tmp_path, fmt):
    tables = valid_tables()
    tables["orders"]["channel"] = ["web", EMAIL, PHONE, "store"]
    tables["contacts"]["outcome"] = ["call me on 555-123-4567 or ann@mail.example", None]
    data = validate(write(tmp_path, tables, fmt), DROP)

    assert data.orders["channel"].tolist()[::3] == ["web", "store"] and data.orders["channel"][1:3].isna().all()
    assert data.contacts["outcome"].isna().all()
    assert data.contact_details == {"orders": {"channel": 2}, "contacts": {"outcome": 1}}


@pytest.mark.parametrize("fmt", FORMATS)
def test_ordinary_values_are_not_taken_for_contact_details(tmp_path, fmt):
    tables = valid_tables()
    tables["orders"]["channel"] = ["2017-03-01", "01-03-2017", "02079460958", "12.50"]  # dates, a code, an amount
    tables["customers"]["segment"] = ["A-1", "192.168.0.1", "+1"]
    data = validate(write(tmp_path, tables, fmt))
    assert data.contact_details == {} and data.orders["channel"].notna().all()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("policy", [ContractConfig(), DROP])
def test_e_mail_addresses_as_customer_ids_are_refused_whatever_the_policy(tmp_path, fmt, policy):
    tables = valid_tables()
    for name in ("orders", "customers", "events", "contacts", "suppressions"):
        tables[name]["customer_id"] = tables[name]["customer_id"].replace({"c1": EMAIL})
    message = broken(fmt, tmp_path, policy, **tables)

    assert (f"customers.{fmt}: column customer_id: 1 row holding an e-mail address (row 1); churn keeps no contact "
            f"details: ids must not be contact details; export a pseudonymous customer number instead"
            in message.splitlines())
    assert EMAIL not in message
    if fmt == "csv":  # a Parquet file's ids that match the customers' are checked there (the first line)
        assert message.splitlines()[0].startswith("orders.csv: column customer_id: 2 rows holding an e-mail address")


def test_a_required_label_holding_a_contact_detail_is_refused_under_drop(tmp_path):
    tables = valid_tables()
    tables["events"]["event_type"] = ["login", EMAIL]
    message = broken("csv", tmp_path, DROP, events=tables["events"])
    assert message == ("events.csv: column event_type: 1 row holding an e-mail address or a phone number (row 2); "
                       "churn keeps no contact details: remove them from the file")


def test_unmatched_e_mail_ids_in_a_parquet_file_are_refused_not_quarantined(tmp_path):
    tables = valid_tables()
    tables["orders"]["customer_id"] = ["c1", "c1", "c2", EMAIL]  # not a customer: would go to the quarantine
    message = broken("parquet", tmp_path, **tables)
    assert message.startswith("orders.parquet: column customer_id: 1 row holding an e-mail address (row 4)")


@pytest.mark.parametrize("ids", [["o1", "o2", "o2", "o3"], ["o1", "o2", "o3", "o1"], ["o4", "o3", "o2", "o1"]])
def test_order_ids_in_or_out_of_order_in_parquet_are_judged_as_in_csv(tmp_path, ids):
    # Parquet ids that increase row by row are unique by their order (churn.data.keys); any other
    # order is judged by the sort of their hashes: either way the result is the CSV file's.
    orders = valid_tables()["orders"].assign(order_id=ids)
    results = {}
    for fmt in FORMATS:
        try:
            data = validate(write(tmp_path / fmt, {"orders": orders}, fmt))
            results[fmt] = data.orders["order_id"].tolist()
        except ContractError as err:
            results[fmt] = str(err).replace(f"orders.{fmt}", "orders")
    assert results["parquet"] == results["csv"]
    if len(set(ids)) < len(ids):
        assert results["csv"].startswith("orders: column order_id: ")
    else:
        assert results["csv"] == ids


def test_repeated_order_ids_in_another_row_group_of_a_parquet_file_are_found(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    orders = valid_tables()["orders"].assign(order_id=["o1", "o2", "o1", "o3"])  # each row group increases
    pq.write_table(pa.Table.from_pandas(orders, preserve_index=False), tmp_path / "orders.parquet", row_group_size=2)
    with pytest.raises(ContractError) as err:
        validate(tmp_path)

    assert str(err.value) == "orders.parquet: column order_id: 2 rows with a duplicate order_id (rows 1, 3: 'o1', 'o1')"
