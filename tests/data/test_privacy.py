"""Contact details by column name and by value: the SQL and Arrow forms agree, cell by cell."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from churn.data import privacy

CONTACTS = ["ann@mail.example", "write to bob.smith+shop@mail.co.uk please", "+44 20 7946 0958",
            "0044 20 7946 0958", " +33 1 23 45 67 89 ", "020 7946 0958", "(020) 7946-0958", "(555) 123-4567",
            "555.123.4567", "555 123 4567"]
ORDINARY = ["web", "c123", "12.50", "-3", "2017-03-01", "01-03-2017", "2017/03/01", "31.12.2017", "02079460958",
            "0001234", "192.168.0.1", "+1", "A-1", "@home", "=HYPERLINK(\"x\")", "1 2", None, ""]


def in_sql(values, phones=True):
    con = duckdb.connect()
    con.register("t", pa.table({"x": pa.array(values, pa.large_string())}))
    return [bool(row[0]) for row in con.execute(f"SELECT coalesce({privacy.sql('x', phones)}, false) FROM t").fetchall()]


def test_contact_values_are_found_and_ordinary_ones_are_not():
    assert privacy.masks(CONTACTS).tolist() == [True] * len(CONTACTS)
    assert privacy.masks(ORDINARY).tolist() == [False] * len(ORDINARY)


@pytest.mark.parametrize("phones", [True, False])
def test_sql_and_arrow_give_the_same_answer_cell_by_cell(phones):
    values = CONTACTS + ORDINARY
    assert in_sql(values, phones) == privacy.masks(values, phones).tolist()


def test_without_phones_only_e_mail_addresses_are_found():
    assert privacy.masks(["ann@mail.example", "+44 20 7946 0958", "555-123-4567"], phones=False).tolist() == [
        True, False, False]


@pytest.mark.parametrize("name,found", [("email", True), ("E-Mail", True), ("phone", True), ("Phone Number", True),
                                        ("mobile_no", True), ("billing_email", True), ("first name", True),
                                        ("customer_name", True), ("post_code", True), ("address_line_2", True),
                                        ("channel", False), ("customer_id", False), ("segment", False),
                                        ("region", False), ("mail_opt_in", False)])
def test_contact_columns_by_name(name, found):
    assert privacy.contact_column(name) is found
