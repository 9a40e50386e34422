"""The team's filled-in lists read back: true ids from the xlsx and the guarded CSV, every bad row named."""

import datetime as dt

import pandas as pd
import pytest
from openpyxl import load_workbook

from churn.errors import ContractError
from churn.publish.contacts import read_filled_lists, to_contacts
from churn.publish.files import publish
from tests.publish.test_files import TRICKY_IDS, _row


def _published(tmp_path):
    frame = pd.DataFrame([_row(rank=i + 1, customer_id=cid) for i, cid in enumerate(TRICKY_IDS)])
    return publish(tmp_path, "2024-05-01", pd.DataFrame({"customer_id": TRICKY_IDS}), {"callback": frame},
                   {"run_date": "2024-05-01"}, currency="USD")


ASSIGNMENTS = pd.DataFrame({"run_date": pd.Timestamp("2024-05-01"), "customer_id": TRICKY_IDS, "action": "callback",
                            "arm": "treated"})


def test_ids_come_back_exactly_from_the_workbook_and_from_the_guarded_csv(tmp_path):
    path = _published(tmp_path)
    book = load_workbook(path / "winback.xlsx")
    sheet = book["Callback"]
    for row in range(2, len(TRICKY_IDS) + 2):
        sheet.cell(row=row, column=16, value="yes")  # Called?
        sheet.cell(row=row, column=18, value="Accepted" if row % 2 else "call back later")  # any case
    book.save(tmp_path / "filled.xlsx")
    from_xlsx = read_filled_lists(tmp_path / "filled.xlsx")
    assert from_xlsx.rows["customer_id"].tolist() == TRICKY_IDS and from_xlsx.n_blank == 0
    assert set(from_xlsx.rows["outcome"]) == {"accepted", "call back later"}
    assert set(from_xlsx.rows["list_date"]) == {dt.date(2024, 5, 1)} and set(from_xlsx.rows["action"]) == {"callback"}

    csv = pd.read_csv(path / "winback_callback.csv", dtype=str, keep_default_na=False)
    csv.loc[:, "called"] = "no"
    csv.to_csv(tmp_path / "winback_callback.csv", index=False)
    from_csv = read_filled_lists(tmp_path / "winback_callback.csv")
    assert from_csv.rows["customer_id"].tolist() == TRICKY_IDS  # the guard undone: '+2228 reads +2228
    contacts, stop = to_contacts(from_csv.rows, ASSIGNMENTS, "the warehouse")
    assert contacts["contacted_ts"].isna().all() and stop.empty  # not called: no contact made


def test_a_sheet_whose_headers_were_changed_or_a_foreign_file_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ContractError, match="give the filled-in winback.xlsx"):
        read_filled_lists(tmp_path / "notes.txt")
    pd.DataFrame({"Customer": ["1"], "Whatever": ["yes"]}).to_csv(tmp_path / "winback_trial.csv", index=False)
    with pytest.raises(ContractError, match="missing column"):
        read_filled_lists(tmp_path / "winback_trial.csv")


def test_do_not_contact_again_becomes_a_suppression_and_rows_are_matched_to_the_lists(tmp_path):
    filled = pd.DataFrame({"list_date": [dt.date(2024, 5, 1)] * 2, "action": "callback", "customer_id": ["007", "x"],
                           "called": [True, True], "reached": [True, True],
                           "outcome": ["do not contact again", "accepted"], "offer_accepted": [None, True],
                           "row": ["sheet 'Callback': row 2", "sheet 'Callback': row 3"]})
    with pytest.raises(ContractError, match=r"row 3: customer 'x' was not on the callback list of 2024-05-01"):
        to_contacts(filled, ASSIGNMENTS, "out/warehouse.duckdb")
    contacts, stop = to_contacts(filled.iloc[:1], ASSIGNMENTS, "out/warehouse.duckdb")
    assert contacts.loc[0, "contacted_ts"] == pd.Timestamp("2024-05-01") and contacts.loc[0, "arm"] == "treated"
    assert stop.to_dict("records") == [{"customer_id": "007", "reason": "do_not_contact",
                                        "since": pd.Timestamp("2024-05-01"), "source": "contacts import"}]
    wrong_list = filled.iloc[:1].assign(action="trial")
    with pytest.raises(ContractError, match="was on the callback list of 2024-05-01, not the trial list"):
        to_contacts(wrong_list, ASSIGNMENTS, "w")
