"""Publishing a run's outputs: all of `<out>/<D>/` replaced at once, or nothing."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from churn.data.contract import write_quarantine
from churn.publish import publication

SHEET_TITLES = {"callback": "Callback", "exclusive_discount": "Comeback discount", "trial": "Product trial"}
# Readable widths (characters) for the spreadsheet; long text columns wrap.
COLUMN_WIDTHS = {"rank": 6, "customer_id": 14, "lifecycle_stage": 10, "value_tier": 8, "p_churn_pct": 9,
                 "value": 10, "expected_value": 10, "value_at_stake": 10, "reason_1": 45, "reason_2": 45,
                 "reason_3": 45, "suggested_offer": 40, "talking_points": 60, "due_date": 11}
HEADERS = {"rank": "Rank", "customer_id": "Customer", "lifecycle_stage": "Stage", "value_tier": "Value tier",
           "p_churn_pct": "Churn risk %", "value": "Value", "expected_value": "Expected value",
           "value_at_stake": "Value at stake", "reason_1": "Why (1)", "reason_2": "Why (2)", "reason_3": "Why (3)",
           "suggested_offer": "Offer", "talking_points": "Talking points", "due_date": "Due"}
# Plain number formats: never scientific notation, money with two decimals.
NUMBER_FORMATS = {"rank": "0", "p_churn_pct": "0.0", "value": "#,##0.00", "expected_value": "#,##0.00",
                  "value_at_stake": "#,##0.00"}


def write_workbook(lists: dict[str, pd.DataFrame], path: Path, run_date: str) -> None:
    """One sheet per action: frozen header, set widths, wrapped text, plain number formats."""
    from openpyxl.styles import Alignment, Font

    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        # Stamp the run date, not the wall clock, so that a rerun writes the same bytes.
        stamp = pd.Timestamp(run_date).to_pydatetime()
        writer.book.properties.created = writer.book.properties.modified = stamp
        for action, frame in lists.items():
            sheet_name = SHEET_TITLES.get(action, action)[:31]
            frame.rename(columns=HEADERS).to_excel(writer, sheet_name=sheet_name, index=False)
            sheet = writer.sheets[sheet_name]
            sheet.freeze_panes = "A2"
            for i, column in enumerate(frame.columns, start=1):
                letter = sheet.cell(row=1, column=i).column_letter
                sheet.column_dimensions[letter].width = COLUMN_WIDTHS.get(column, 14)
                sheet.cell(row=1, column=i).font = Font(bold=True)
                number_format = NUMBER_FORMATS.get(column)
                for cell in sheet[letter][1:]:
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
                    if number_format:
                        cell.number_format = number_format
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


def write_outputs(directory: Path, run_date: str, scores: pd.DataFrame, lists: dict[str, pd.DataFrame],
                  quarantine: dict[str, pd.DataFrame] | None = None) -> None:
    """Write scores, lists (CSV and spreadsheet) and quarantined rows into `directory` (not the manifest)."""
    scores.to_parquet(directory / "scores.parquet", index=False)
    for action, frame in lists.items():
        # Fixed decimals: a spreadsheet opening the CSV never sees scientific notation.
        frame.to_csv(directory / f"winback_{action}.csv", index=False, float_format="%.2f")
    write_workbook(lists, directory / "winback.xlsx", run_date)
    write_quarantine(quarantine or {}, directory / "quarantine")


def publish(out_dir: str | Path, run_date: str, scores: pd.DataFrame, lists: dict[str, pd.DataFrame],
            manifest: dict[str, Any], quarantine: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write scores, lists, manifest (and quarantined rows) under `out_dir/<run_date>/`, atomically.

    Files only: a daily run also commits its history between staging and swapping
    (`churn.pipeline`, `churn.publish.publication`).
    """
    staged = publication.stage(out_dir, run_date, lambda staging: write_outputs(
        staging, run_date, scores, lists, quarantine), manifest)
    return publication.swap_in(staged)
