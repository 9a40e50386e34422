"""The team's filled-in lists read back: what each agent did with each customer, checked row by row.

`read_filled_lists` reads a workbook (`winback.xlsx`, every action sheet) or one list's CSV
(`winback_<action>.csv`, its formula guard undone), keeps the rows the team filled in
(any of Called?, Reached?, Outcome, Offer accepted?), and checks every one: known choices,
a real list date, answers that agree with each other, and a customer who really was on that
list (the warehouse's assignments). All problems are reported together, each naming its sheet
and row as the agent sees them; nothing is recorded unless every row is right.

Notes are not read: free text may hold a phone number or a name, and churn stores no contact
details.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churn.decide.winback import OUTCOMES
from churn.errors import ContractError
from churn.publish.files import HEADERS, SHEET_TITLES, SUMMARY_SHEET, unguard

__all__ = ["FilledList", "read_filled_lists", "to_contacts", "DO_NOT_CONTACT", "SUPPRESSION_REASON"]

DO_NOT_CONTACT = "do not contact again"
SUPPRESSION_REASON = "do_not_contact"  # the data contract's suppression reason
MAX_PROBLEMS_SHOWN = 10
ANSWERS = ("called", "reached", "outcome", "offer_accepted")
_TRUE, _FALSE = {"yes", "y", "true", "1"}, {"no", "n", "false", "0"}


@dataclass(frozen=True)
class FilledList:
    """The rows the team filled in (one per customer and list), and how many rows were left blank."""

    rows: pd.DataFrame  # list_date, action, customer_id, called, reached, outcome, offer_accepted, row (where)
    n_read: int
    n_blank: int


def _column_of(heading: object) -> str | None:
    """The list column a heading names: the workbook's header ("Value at stake (USD)") or the CSV's."""
    if not isinstance(heading, str):
        return None
    text = heading.strip()
    if text in HEADERS:
        return text
    bare = re.sub(r"\s*\([^)]*\)$", "", text).strip().lower()
    for column, title in HEADERS.items():
        if title.replace(" ({currency})", "").lower() == bare:
            return column
    return None


def _sheets(path: Path) -> list[tuple[str, str | None, pd.DataFrame, int]]:
    """(where, action, frame of text-or-native cells, first data row number) for each list in the file."""
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook

        try:
            book = load_workbook(path, read_only=True, data_only=True)
        except Exception as err:  # noqa: BLE001 - a corrupt or foreign file: say so plainly
            raise ContractError(f"{path}: not a readable .xlsx workbook ({err})") from None
        actions = {title: action for action, title in SHEET_TITLES.items()}
        found = []
        for name in book.sheetnames:
            if name == SUMMARY_SHEET:
                continue
            values = list(book[name].iter_rows(values_only=True))
            if not values:
                continue
            frame = pd.DataFrame(values[1:], columns=[_column_of(h) or f"?{h}" for h in values[0]], dtype=object)
            found.append((f"sheet {name!r}", actions.get(name), frame, 2))
        book.close()
        return found
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
        frame = frame.map(unguard)
        frame.columns = [_column_of(h) or f"?{h}" for h in frame.columns]
        match = re.fullmatch(r"winback_(\w+)", path.stem)
        action = match.group(1) if match and match.group(1) in SHEET_TITLES else None
        return [("", action, frame, 2)]
    raise ContractError(f"{path}: give the filled-in winback.xlsx or a winback_<action>.csv")


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _yes_no(value: object) -> bool | None:
    text = _text(value)
    if text is None:
        return None
    if isinstance(value, bool):
        return value
    low = text.lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    raise ValueError(f"{text!r} is not yes or no")


def _day(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = _text(value)
    if text is None:
        raise ValueError("the list date (Listed on) is empty")
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"list date {text!r} is not a date (YYYY-MM-DD)") from None


def _customer(value: object) -> str | None:
    """The id as text; a number a spreadsheet made of an id reads back without a trailing .0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _text(value)


def read_filled_lists(path: str | Path) -> FilledList:
    """Read and check the filled-in lists (raises ContractError naming every bad row; see the module)."""
    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path}: no such file")
    problems: list[str] = []
    rows, n_read, n_blank = [], 0, 0
    for where, action, frame, first in _sheets(path):
        prefix = f"{path.name}: {where + ': ' if where else ''}"
        missing = [HEADERS[c].replace(" ({currency})", "") for c in ("customer_id", "list_date") if c not in frame]
        if missing or not any(c in frame for c in ANSWERS):
            need = missing or [HEADERS[c] for c in ANSWERS]
            raise ContractError(f"{prefix}missing column(s) {', '.join(need)}: import the list churn published, "
                                f"filled in, with its headers unchanged")
        if action is None and "action" not in frame:
            raise ContractError(f"{prefix}cannot tell which list this is: keep the file name winback_<action>.csv "
                                f"(or the workbook's sheet names)")
        for i, record in enumerate(frame.to_dict("records")):
            row_no = first + i
            if all(_text(record.get(c)) is None for c in frame.columns if not str(c).startswith("?")):
                continue  # an empty line at the end of a sheet
            n_read += 1
            answers = {c: record.get(c) for c in ANSWERS}
            if all(_text(v) is None for v in answers.values()):
                n_blank += 1
                continue
            try:
                rows.append({**_check_row(record, answers, action), "row": f"{prefix}row {row_no}"})
            except ValueError as err:
                problems.append(f"{prefix}row {row_no}: {err}")
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = f" (and {len(problems) - MAX_PROBLEMS_SHOWN} more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise ContractError(f"{len(problems)} row(s) cannot be imported, nothing was recorded: {shown}{more}")
    frame = pd.DataFrame(rows, columns=["list_date", "action", "customer_id", *ANSWERS, "row"])
    return FilledList(frame, n_read, n_blank)


def _check_row(record: dict, answers: dict, action: str | None) -> dict:
    """One filled-in row, checked; ValueError says what is wrong in the team's words."""
    customer = _customer(record.get("customer_id"))
    if customer is None:
        raise ValueError("the customer id is empty")
    day = _day(record.get("list_date"))
    called, reached, accepted = (_yes_no(answers["called"]), _yes_no(answers["reached"]),
                                 _yes_no(answers["offer_accepted"]))
    outcome = _text(answers["outcome"])
    if outcome is not None:
        outcome = outcome.lower()
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {answers['outcome']!r} is not one of: {', '.join(OUTCOMES)}")
    if called is False and (reached or (outcome is not None)):
        raise ValueError("Called? is no, but Reached? or Outcome is filled in")
    if reached is False and outcome in ("accepted", "declined"):
        raise ValueError(f"Reached? is no, but the outcome is {outcome!r}")
    if accepted and outcome == "declined":
        raise ValueError("Offer accepted? is yes, but the outcome is 'declined'")
    named = _text(record.get("action"))
    if named is not None and action is not None and named != action:
        raise ValueError(f"action {named!r} on the {action} list")
    return {"list_date": day, "action": action or named, "customer_id": customer, "called": called,
            "reached": reached, "outcome": outcome, "offer_accepted": accepted}


def to_contacts(filled: pd.DataFrame, assignments: pd.DataFrame, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match the filled rows to the customers churn listed; the contacts rows and the new suppressions.

    A row must name a customer on that day's list for that action (treated arm). Contacts rows:
    the data contract's columns (customer_id, list_date, action, arm, contacted_ts, outcome) plus
    reached and offer_accepted; a call made (Called? yes, or any answer that implies one) is dated
    with the list date, since the sheet does not ask when. "do not contact again" becomes a
    suppression (reason do_not_contact, since the list date). Raises ContractError naming the rows
    that match no listed customer, or name one twice.
    """
    listed = assignments.assign(list_date=pd.to_datetime(assignments["run_date"]).dt.date)
    listed = listed[listed["arm"] == "treated"].set_index(["list_date", "customer_id"])["action"]
    problems = []
    keys = list(zip(filled["list_date"], filled["customer_id"]))
    seen: set[tuple] = set()
    for key, action, row in zip(keys, filled["action"], filled["row"]):
        got = listed.get(key)
        if got is None:
            problems.append(f"{row}: customer {key[1]!r} was not on the {action} list of {key[0]}")
        elif got != action:
            problems.append(f"{row}: customer {key[1]!r} was on the {got} list of {key[0]}, not the {action} list")
        elif key in seen:
            problems.append(f"{row}: customer {key[1]!r} of the list of {key[0]} is filled in twice")
        seen.add(key)
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        raise ContractError(f"{len(problems)} row(s) do not match the lists in {where}, nothing was recorded: "
                            f"{shown}: import lists published into this output root (--out)")
    made = filled["called"].fillna(False) | filled["reached"].fillna(False) | filled["outcome"].notna()
    contacts = pd.DataFrame({
        "customer_id": filled["customer_id"].astype(str), "list_date": pd.to_datetime(filled["list_date"]),
        "action": filled["action"], "arm": "treated",
        "contacted_ts": pd.to_datetime(filled["list_date"]).where(made.to_numpy(dtype=bool)),
        "outcome": filled["outcome"], "reached": filled["reached"], "offer_accepted": filled["offer_accepted"]})
    stop = filled[filled["outcome"] == DO_NOT_CONTACT]
    suppressions = pd.DataFrame({"customer_id": stop["customer_id"].astype(str), "reason": SUPPRESSION_REASON,
                                 "since": pd.to_datetime(stop["list_date"]), "source": "contacts import"})
    return contacts, suppressions.drop_duplicates("customer_id").reset_index(drop=True)
