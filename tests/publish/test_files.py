import datetime as dt

import pandas as pd
import pytest
from openpyxl import load_workbook

from churn.data.io import atomic_dir
from churn.config import ContractConfig
from churn.data.contract import validate
from churn.publish.files import guard, publish, unguard, write_quarantine
from tests.data.test_contract import valid_tables, with_duplicates, write


def _row(**values) -> dict:
    row = {"rank": 1, "customer_id": "c1", "lifecycle_stage": "active", "value_tier": "high", "p_churn_pct": 81.5,
           "value": 120.0, "expected_value": 9.75, "reason_1": "Stopped ordering: no order for 40 days",
           "reason_2": None, "reason_3": None, "chosen_because": "No specific driver",
           "suggested_offer": "A personal call", "talking_points": "1) ask", "list_date": dt.date(2024, 5, 1),
           "due_date": dt.date(2024, 5, 3), "called": None, "reached": None, "outcome": None,
           "offer_accepted": None, "notes": None}
    return {**row, **values}


def _lists():
    return {"callback": pd.DataFrame([_row()]), "trial": pd.DataFrame([_row()]).iloc[:0]}


def test_publish_writes_every_output_and_a_rerun_replaces_them(tmp_path):
    scores = pd.DataFrame({"customer_id": ["c1"], "p_churn": [0.8]})
    path = publish(tmp_path, "2024-05-01", scores, _lists(), {"run_date": "2024-05-01"})
    assert sorted(p.name for p in path.iterdir()) == [
        "crm_import.csv", "manifest.json", "scores.parquet", "winback.xlsx", "winback_callback.csv",
        "winback_trial.csv"]
    book = load_workbook(path / "winback.xlsx")
    assert book.sheetnames == ["Summary", "Callback", "Product trial"]
    sheet = book["Callback"]
    assert sheet.freeze_panes == "C2" and sheet["A1"].value == "Rank" and sheet["E2"].value == 81.5
    (path / "stray.txt").write_text("from an older run")
    publish(tmp_path, "2024-05-01", scores, _lists(), {"run_date": "2024-05-01"})
    assert not (path / "stray.txt").exists()


# The ids quoted in the issue, and their kind: anything a spreadsheet would run or reformat.
TRICKY_IDS = ["+2228", "-17", "=1+1", "@sum", "'=x", "007", "0012345678901234567", "2228"]


def test_the_workbook_keeps_true_values_the_csv_guards_them_reversibly(tmp_path):
    frame = pd.DataFrame([_row(rank=i + 1, customer_id=cid, reason_1="=HYPERLINK(\"http://x\")")
                          for i, cid in enumerate(TRICKY_IDS)])
    path = publish(tmp_path, "2024-05-01", pd.DataFrame({"customer_id": TRICKY_IDS}), {"callback": frame},
                   {"run_date": "2024-05-01"}, currency="EUR", offers={"callback": pd.Series([5.0] * len(frame))})
    sheet = load_workbook(path / "winback.xlsx")["Callback"]
    ids = [sheet.cell(row=i, column=2) for i in range(2, len(TRICKY_IDS) + 2)]
    # The xlsx: the exact ids as string cells (never formulas, nothing prefixed); leading zeros kept.
    assert [c.value for c in ids] == TRICKY_IDS and {c.data_type for c in ids} == {"s"}
    assert sheet.cell(row=2, column=8).value == "=HYPERLINK(\"http://x\")" and sheet.cell(row=2, column=8).data_type == "s"
    assert sheet.cell(row=4, column=2).quotePrefix  # "=1+1": Excel shows it as typed
    # Real dates, money in the currency, headers that say so.
    assert isinstance(sheet["N2"].value, dt.datetime) and sheet["N2"].number_format == "yyyy-mm-dd"
    assert sheet["F1"].value == "Value at stake (EUR)" and sheet["F2"].number_format == '#,##0.00 "EUR"'
    # The agent's CSV: formula-like text guarded, and unguard gives the true values back.
    text = (path / "winback_callback.csv").read_text()
    assert "\n1,'+2228," in text and ",007," in text and ",''=x," in text
    read = pd.read_csv(path / "winback_callback.csv", dtype=str)
    assert read["customer_id"].map(unguard).tolist() == TRICKY_IDS
    assert [unguard(guard(v)) for v in TRICKY_IDS] == TRICKY_IDS
    # The machine CSV: true ids, no guard.
    crm = pd.read_csv(path / "crm_import.csv", dtype=str)
    assert crm["customer_id"].tolist() == TRICKY_IDS and set(crm["currency"]) == {"EUR"}
    assert list(crm.columns) == ["list_date", "action", "rank", "customer_id", "due_date", "offer_value", "currency"]


def test_the_workbook_has_drop_downs_a_filter_print_titles_and_a_summary(tmp_path):
    manifest = {"run_date": "2024-05-01", "funnel": {"callback": {
        "capacity": 25, "held_out": 0, "eligible": 900, "above_risk_floor": 120, "suppressed": 2, "in_cooldown": 4,
        "ev_positive": 3, "to_other_action": 2, "blocked": "1 of 25: only 3 of the 114 left have EV > 0"}}}
    path = publish(tmp_path, "2024-05-01", pd.DataFrame({"customer_id": ["c1"]}), _lists(), manifest)
    book = load_workbook(path / "winback.xlsx")
    sheet = book["Callback"]
    rules = {str(r.sqref): r.formula1 for r in sheet.data_validations.dataValidation}
    assert rules == {"P2": '"yes,no"', "Q2": '"yes,no"', "S2": '"yes,no"',
                     "R2": '"accepted,declined,call back later,wrong number,do not contact again"'}
    assert sheet.auto_filter.ref == "A1:T2" and sheet.print_title_rows == "$1:$1" and sheet.print_title_cols == "$A:$B"
    summary = [[c.value for c in row] for row in book["Summary"].iter_rows()]
    assert ["Callback", 1, 25, 0, 900, 120, 2, 4, 3, 2, "1 of 25: only 3 of the 114 left have EV > 0"] in summary
    assert any("Value at stake" in str(row[0]) for row in summary)


def test_a_failed_publish_leaves_the_previous_outputs_untouched(tmp_path):
    target = tmp_path / "2024-05-01"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as staging:
            (staging / "manifest.json").write_text("half new")
            raise RuntimeError("disk full")
    assert (target / "manifest.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["2024-05-01"]  # no staging left behind


def test_published_folders_respect_the_umask_not_owner_only(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "2024-05-01") as staging:
            (staging / "manifest.json").write_text("{}")
        assert (tmp_path / "2024-05-01").stat().st_mode & 0o777 == 0o755  # a team share can read it
        os.umask(0o077)
        with atomic_dir(tmp_path / "2024-05-02") as staging:
            pass
        assert (tmp_path / "2024-05-02").stat().st_mode & 0o777 == 0o700  # a private umask stays private
    finally:
        os.umask(old)


# --- quarantined rows beside the lists (issue 14, item 12) --------------------------------------


def test_write_quarantine_writes_one_csv_per_table(tmp_path):
    data = validate(write(tmp_path / "data", with_duplicates()))
    counts = write_quarantine(data.quarantine, tmp_path / "quarantine")

    assert counts == {"orders": 1, "suppressions": 2}
    assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == ["orders.csv", "suppressions.csv"]
    written = pd.read_csv(tmp_path / "quarantine" / "orders.csv")
    assert written[["file_row", "reason", "order_id"]].to_dict("records") == [
        {"file_row": 5, "reason": "duplicate_row", "order_id": "o2"}
    ]
    suppressions = pd.read_csv(tmp_path / "quarantine" / "suppressions.csv")
    assert list(suppressions.columns) == ["file_row", "reason", "customer_id", "reason_in_file", "since"]


def test_quarantine_files_carry_only_the_contract_columns_with_formulas_made_inert(tmp_path):
    """The issue's probe: a quarantined order was written raw: e-mail, phone and an =HYPERLINK(...) id."""
    tables = valid_tables()
    hyperlink = '=HYPERLINK("http://evil.example","click")'
    orders = tables["orders"].assign(email="ann@mail.example", phone="+44 20 7946 0958", note="vip",
                                     channel=["web", "\tweb", "-1+2", "@SUM(A1)"])
    orders.loc[3, "customer_id"] = hyperlink  # not a customer: quarantined
    tables["orders"] = orders
    data = validate(write(tmp_path / "data", tables), ContractConfig(contact_details="drop"))
    write_quarantine(data.quarantine, tmp_path / "quarantine")

    text = (tmp_path / "quarantine" / "orders.csv").read_text()
    written = pd.read_csv(tmp_path / "quarantine" / "orders.csv", dtype=str, keep_default_na=False)
    assert list(written.columns) == ["file_row", "reason", "customer_id", "order_id", "order_ts", "amount",
                                     "discount", "coupon_used", "n_items", "channel", "status"]
    assert written["customer_id"].tolist() == ["'" + hyperlink] and written["channel"].tolist() == ["'@SUM(A1)"]
    assert "ann@mail.example" not in text and "7946" not in text and "vip" not in text
    assert data.contact_details == {"orders": {"email": 4, "phone": 4}}


@pytest.mark.parametrize("value", ["=1+1", "+2228", "-3", "@A1", "\tcmd", "\rcmd", "'=x"])
def test_the_guard_makes_every_formula_start_inert_and_is_reversible(value):
    assert guard(value) == "'" + value and unguard(guard(value)) == value
