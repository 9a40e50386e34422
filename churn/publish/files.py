"""Publishing a run's outputs: all of `<out>/<D>/` replaced at once, or nothing.

The lists go out three ways, each for its reader:

- `winback.xlsx`, for the service team: a Summary sheet (what each list holds and what kept it
  short, what the columns mean), then one sheet per action with true values (a customer id
  `+2228` or `007` stays exactly that: a string cell is never run as a formula, so nothing is
  prefixed), real dates, money in the business currency, drop-downs for the outcome columns, an
  autofilter and print titles;
- `winback_<action>.csv`, the same rows as plain text: text that a spreadsheet would run as a
  formula (starting with `=`, `+`, `-`, `@`, or a `'` that the guard itself would add) is
  prefixed with `'`. The guard is reversible (`unguard`), so `churn contacts import` reads the
  true id back from a filled-in CSV;
- `crm_import.csv`, for machines (a CRM or dialler import, a script): the treated customers of
  every list with their true ids and no guard. Not meant to be opened in a spreadsheet.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from churn.data.contract import TABLES
from churn.publish import publication

SHEET_TITLES = {"callback": "Callback", "exclusive_discount": "Comeback discount", "trial": "Product trial"}
SUMMARY_SHEET = "Summary"
# Readable widths (characters) for the spreadsheet; long text columns wrap.
COLUMN_WIDTHS = {"rank": 6, "customer_id": 14, "lifecycle_stage": 10, "value_tier": 8, "p_churn_pct": 9,
                 "value": 12, "expected_value": 12, "reason_1": 40, "reason_2": 40, "reason_3": 40,
                 "chosen_because": 36, "suggested_offer": 36, "talking_points": 55, "list_date": 11,
                 "due_date": 11, "called": 9, "reached": 9, "outcome": 20, "offer_accepted": 10, "notes": 30}
# Column headers in the workbook; "{currency}" is the business currency.
HEADERS = {"rank": "Rank", "customer_id": "Customer", "lifecycle_stage": "Stage", "value_tier": "Value tier",
           "p_churn_pct": "Churn risk %", "value": "Value at stake ({currency})",
           "expected_value": "Expected gain ({currency})", "reason_1": "Warning sign 1", "reason_2": "Warning sign 2",
           "reason_3": "Warning sign 3", "chosen_because": "Chosen because", "suggested_offer": "Offer",
           "talking_points": "Talking points", "list_date": "Listed on", "due_date": "Due by",
           "called": "Called?", "reached": "Reached?", "outcome": "Outcome", "offer_accepted": "Offer accepted?",
           "notes": "Notes"}
# What each column means, on the Summary sheet.
MEANINGS = {
    "value": "Value at stake: the customer's margin over the last 12 months (net spend x margin rate): "
             "what we lose in a year if they leave.",
    "expected_value": "Expected gain: churn risk x the share of such customers this action wins back x value at "
                      "stake, minus the action's cost. The lists are sorted by it.",
    "p_churn_pct": "Churn risk %: the chance the customer buys nothing in the model's horizon.",
    "reason_1": "Warning signs: why this customer worries us, strongest first, with their own numbers.",
    "chosen_because": "Chosen because: the driver that chose this action for the customer; the offer and the "
                      "talking points follow it.",
    "called": "Fill in: Called? and Reached? (yes/no), Outcome (accepted, declined, call back later, wrong number, "
              "do not contact again), Offer accepted? (yes/no). Notes stay in this file: they are not imported.",
    "due_date": "Due by: work the list by this date.",
}
# Plain number formats: never scientific notation; money with two decimals and the currency.
NUMBER_FORMATS = {"rank": "0", "p_churn_pct": "0.0"}
MONEY_COLUMNS = ("value", "expected_value")
DATE_COLUMNS = ("list_date", "due_date")
DATE_FORMAT = "yyyy-mm-dd"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula
GUARD = "'"
CRM_COLUMNS = ["list_date", "action", "rank", "customer_id", "due_date", "offer_value", "currency"]


def guard(value: object) -> object:
    """Text a spreadsheet would run as a formula, prefixed with `'` to show as text (CSV only).

    Reversible: text that starts with the guard itself is guarded too, so `unguard` gives back
    exactly the value written.
    """
    if isinstance(value, str) and value[:1] in (*FORMULA_STARTS, GUARD):
        return GUARD + value
    return value


def unguard(value: object) -> object:
    """The true value of a cell read from a guarded CSV (the inverse of `guard`)."""
    if isinstance(value, str) and value[:1] == GUARD and value[1:2] in (*FORMULA_STARTS, GUARD):
        return value[1:]
    return value


def header(column: str, currency: str) -> str:
    """A list column's header in the workbook."""
    text = HEADERS.get(column, column)
    return text.format(currency=currency) if currency else text.replace(" ({currency})", "")


def money_format(currency: str) -> str:
    """An Excel number format with thousands, two decimals and the currency (symbol first, code after)."""
    if not currency:
        return "#,##0.00"
    quoted = '"' + currency.replace('"', "") + '"'
    return f"#,##0.00 {quoted}" if currency.isalpha() else f"{quoted}#,##0.00"


def _cell(sheet, row: int, column: int, value: object):
    """Write a value as its true type: text as a string cell (never a formula), dates as dates."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return sheet.cell(row=row, column=column)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime().date()
    if hasattr(value, "item") and not isinstance(value, (str, dt.date)):
        value = value.item()  # numpy scalar
    cell = sheet.cell(row=row, column=column, value=value)
    if isinstance(value, str):
        cell.data_type = "s"  # openpyxl would store "=..." as a formula; a string cell is only ever text
        if value[:1] in FORMULA_STARTS:
            cell.quotePrefix = True  # and Excel shows it as typed, as if entered with a leading '
    return cell


LINE_HEIGHT = 15  # points per line of wrapped text
PRINT_PAGES_WIDE = 3  # a printed list spreads its columns over three landscape pages, titles repeated


def _lines(text: str, width: float) -> int:
    """How many lines `text` takes wrapped in a column `width` characters wide."""
    return sum(max(1, -(-len(part) // max(int(width), 1))) for part in text.split("\n"))


def _list_sheet(book, action: str, frame: pd.DataFrame, currency: str) -> None:
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    from churn.decide.winback import OUTCOMES, YES_NO

    sheet = book.create_sheet(SHEET_TITLES.get(action, action)[:31])
    columns = list(frame.columns)
    for j, column in enumerate(columns, start=1):
        cell = _cell(sheet, 1, j, header(column, currency))
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        sheet.column_dimensions[get_column_letter(j)].width = COLUMN_WIDTHS.get(column, 14)
    number = {**NUMBER_FORMATS, **{c: money_format(currency) for c in MONEY_COLUMNS},
              **{c: DATE_FORMAT for c in DATE_COLUMNS}}
    wrap = Alignment(wrap_text=True, vertical="top")
    sheet.row_dimensions[1].height = LINE_HEIGHT * 2
    for i, record in enumerate(frame.itertuples(index=False), start=2):
        lines = 1
        for j, (column, value) in enumerate(zip(columns, record), start=1):
            cell = _cell(sheet, i, j, value)
            cell.alignment = wrap
            if column in number:
                cell.number_format = number[column]
            if isinstance(value, str):
                lines = max(lines, _lines(value, COLUMN_WIDTHS.get(column, 14)))
        # Rows as tall as their wrapped text: not every program grows them when it opens the file.
        sheet.row_dimensions[i].height = LINE_HEIGHT * lines
    last = len(frame) + 1
    sheet.freeze_panes = "C2"  # rank and customer stay in view
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{last}"
    # Printed: landscape pages of readable size; the header row and the rank and customer columns
    # repeat on every page, so a page of talking points still says whose they are.
    sheet.print_title_rows, sheet.print_title_cols = "1:1", "A:B"
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight = PRINT_PAGES_WIDE, 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    if len(frame):
        choices = {"called": YES_NO, "reached": YES_NO, "offer_accepted": YES_NO, "outcome": OUTCOMES}
        for column, options in choices.items():
            if column not in columns:
                continue
            letter = get_column_letter(columns.index(column) + 1)
            rule = DataValidation(type="list", formula1='"' + ",".join(options) + '"', allow_blank=True,
                                  showErrorMessage=True, errorTitle="Pick from the list",
                                  error="Choose one of: " + ", ".join(options))
            rule.add(f"{letter}2:{letter}{last}")
            sheet.add_data_validation(rule)


def _summary_sheet(book, run_date: str, lists: dict[str, pd.DataFrame], manifest: dict[str, Any],
                   currency: str) -> None:
    from openpyxl.styles import Alignment, Font

    sheet = book.create_sheet(SUMMARY_SHEET, 0)
    bold = Font(bold=True)
    rows: list[list[object]] = [[f"Win-back lists for {run_date}"],
                                [f"Model {manifest.get('model_version', '-')}; {manifest.get('n_scored', '-')} "
                                 f"customers scored; money in {currency or 'the shop currency'}."], [],
                                ["List", "Listed", "Capacity", "Held out (not contacted)", "Eligible", "Above risk floor",
                                 "Suppressed", "In cooldown", "EV > 0", "Went to another list", "Why not more"]]
    funnel = manifest.get("funnel") or {}
    for action, frame in lists.items():
        f = funnel.get(action, {})
        rows.append([SHEET_TITLES.get(action, action), len(frame), f.get("capacity"), f.get("held_out"),
                     f.get("eligible"), f.get("above_risk_floor"), f.get("suppressed"), f.get("in_cooldown"),
                     f.get("ev_positive"), f.get("to_other_action"), f.get("blocked")])
    rows += [[], ["What the columns mean"]]
    explained_from = len(rows) + 1
    rows += [[text] for text in MEANINGS.values()]
    widths = [20, 8, 9, 12, 10, 11, 11, 11, 9, 12, 60]
    wrap = Alignment(wrap_text=True, vertical="top")
    for i, row in enumerate(rows, start=1):
        for j, value in enumerate(row, start=1):
            cell = _cell(sheet, i, j, value)
            if i in (1, 4) or value == "What the columns mean":
                cell.font = bold
            if 4 <= i < explained_from - 1:  # the table: top-aligned, numbers beside the start of their sentence
                cell.alignment = wrap
        if i == 4:
            sheet.row_dimensions[i].height = LINE_HEIGHT * 3
        elif 4 < i < explained_from - 2 and isinstance(row[-1], str):
            sheet.row_dimensions[i].height = LINE_HEIGHT * _lines(row[-1], widths[-1])
        elif i >= explained_from:  # a sentence across the whole table's width
            sheet.merge_cells(start_row=i, start_column=1, end_row=i, end_column=len(widths))
            sheet.cell(row=i, column=1).alignment = wrap
            sheet.row_dimensions[i].height = LINE_HEIGHT * _lines(row[0], sum(widths))
    for j, width in enumerate(widths, start=1):
        sheet.column_dimensions[chr(ord("A") + j - 1)].width = width
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight = 1, 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True


def write_workbook(lists: dict[str, pd.DataFrame], path: Path, run_date: str, manifest: dict[str, Any] | None = None,
                   currency: str = "") -> None:
    """The team's workbook: a Summary sheet, then one sheet per action (see the module docstring)."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    # Stamp the run date, not the wall clock, so that a rerun writes the same bytes.
    stamp = pd.Timestamp(run_date).to_pydatetime()
    book.properties.created = book.properties.modified = stamp
    _summary_sheet(book, run_date, lists, manifest or {}, currency)
    for action, frame in lists.items():
        _list_sheet(book, action, frame, currency)
    book.save(path)
    _stamp_zip(path, run_date)


def _stamp_zip(path: Path, run_date: str) -> None:
    """Stamp an .xlsx with the run date: member times and 'modified' (openpyxl writes the clock)."""
    stamp = pd.Timestamp(run_date).timetuple()[:6]
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    iso = pd.Timestamp(run_date).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    members = [(info, re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + iso, data)
                if info.filename == "docProps/core.xml" else data) for info, data in members]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info, data in members:
            fixed = zipfile.ZipInfo(info.filename, date_time=stamp)
            fixed.compress_type, fixed.external_attr = zipfile.ZIP_DEFLATED, info.external_attr
            dst.writestr(fixed, data)


def write_list_csv(frame: pd.DataFrame, path: Path) -> None:
    """One action's list as CSV for people: formula-like text guarded, fixed decimals, ISO dates."""
    # Fixed decimals: a spreadsheet opening the CSV never sees scientific notation.
    frame.map(guard).to_csv(path, index=False, float_format="%.2f")


def crm_rows(lists: dict[str, pd.DataFrame], offers: dict[str, pd.Series] | None, currency: str) -> pd.DataFrame:
    """The treated customers of every list for a machine import: true ids, no guard."""
    frames = []
    for action, frame in lists.items():
        rows = frame[["list_date", "rank", "customer_id", "due_date"]].assign(action=action, currency=currency)
        offer = (offers or {}).get(action)
        rows["offer_value"] = 0.0 if offer is None else pd.Series(offer).to_numpy(dtype="float64")
        frames.append(rows)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CRM_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CRM_COLUMNS]


def quarantine_rows(name: str, rows: pd.DataFrame) -> pd.DataFrame:
    """A table's quarantined rows as written beside the lists: the contract's columns only, text guarded.

    `file_row` and `reason` (why the row was set aside) first, then the table's contract columns
    the file has, in the contract's order (a contract column that was itself named `reason` or
    `file_row` is `reason_in_file`, `file_row_in_file`); columns the contract does not know are
    left out (they may hold anything). Text that a spreadsheet would run as a formula is guarded
    like the lists' CSV files (`guard`).
    """
    columns = ["file_row", "reason"]
    for column in TABLES[name].columns if name in TABLES else ():
        written = f"{column.name}_in_file" if column.name in ("file_row", "reason") else column.name
        if written in rows.columns:
            columns.append(written)
    kept = rows[[c for c in columns if c in rows.columns]]
    return kept.apply(lambda values: values.map(guard) if values.dtype in (object, "str") else values)


def write_quarantine(quarantine: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, int]:
    """Write each non-empty quarantine (`Dataset.quarantine`) as `<out_dir>/<table>.csv`; return rows per table."""
    counts = {}
    for name, rows in quarantine.items():
        if len(rows) == 0:
            continue
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        quarantine_rows(name, rows).to_csv(Path(out_dir) / f"{name}.csv", index=False,
                                           date_format="%Y-%m-%dT%H:%M:%S")
        counts[name] = len(rows)
    return counts


def write_outputs(directory: Path, run_date: str, scores: pd.DataFrame, lists: dict[str, pd.DataFrame],
                  manifest: dict[str, Any], quarantine: dict[str, pd.DataFrame] | None = None, currency: str = "",
                  offers: dict[str, pd.Series] | None = None) -> None:
    """Write a day's files into `directory`: scores, lists (CSV, CRM import, spreadsheet), quarantined rows.

    The manifest itself is written by the publication (`churn.publish.publication.stage`), with
    the files' token. `offers`: per action, each listed customer's offer value (for `crm_import.csv`).
    """
    scores.to_parquet(directory / "scores.parquet", index=False)
    for action, frame in lists.items():
        write_list_csv(frame, directory / f"winback_{action}.csv")
    crm_rows(lists, offers, currency).to_csv(directory / "crm_import.csv", index=False, float_format="%.2f")
    write_workbook(lists, directory / "winback.xlsx", run_date, manifest, currency)
    write_quarantine(quarantine or {}, directory / "quarantine")


def publish(out_dir: str | Path, run_date: str, scores: pd.DataFrame, lists: dict[str, pd.DataFrame],
            manifest: dict[str, Any], quarantine: dict[str, pd.DataFrame] | None = None, currency: str = "",
            offers: dict[str, pd.Series] | None = None) -> Path:
    """Write scores, lists, manifest (and quarantined rows) under `out_dir/<run_date>/`, atomically.

    Files only: a daily run also commits its history between staging and swapping
    (`churn.pipeline`, `churn.publish.publication`).
    """
    staged = publication.stage(out_dir, run_date, lambda staging: write_outputs(
        staging, run_date, scores, lists, manifest, quarantine, currency, offers), manifest)
    return publication.swap_in(staged)
