"""Erasure: customers who asked to be forgotten leave everything churn wrote, and are never scored again.

`churn forget` (`churn.pipeline.forget`) rewrites every published day without their rows
(`rewrite_day`: scores, lists, spreadsheet, quarantined rows), rewrites the warehouse without
them (`churn.publish.warehouse.erase`) and drops the feature cache. Because the source data may
still hold them, it also keeps a salted one-way hash of each id in the suppression store,
`OUT/erasure/forgotten.txt` (one SHA-256 HMAC per line; the salt, random per installation, in
`OUT/erasure/salt`). Every later run drops those customers from its data before computing
anything (`without`), and its manifest counts them (`forgotten_excluded`), never naming them.

The hash keeps ids out of plain sight, not out of reach of whoever reads the salt beside it and
tries candidate ids (short numeric ids can be tried in bulk): protect OUT as the data it is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn.data.contract import Dataset
from churn.data.io import fsync_dir

__all__ = ["STORE_DIR", "Store", "without", "found_in_day", "rewrite_day", "scrub_alerts", "quoted_in"]

STORE_DIR = "erasure"  # under the output root
MANIFEST = "manifest.json"  # a day's manifest carries counts only: rewritten by the caller


class Store:
    """The suppression store of an output root: salted hashes of the forgotten customers' ids."""

    def __init__(self, out_dir: str | Path):
        self.directory = Path(out_dir) / STORE_DIR
        self.path = self.directory / "forgotten.txt"
        self.salt_path = self.directory / "salt"

    def _salt(self, create: bool = False) -> bytes | None:
        if self.salt_path.exists():
            return bytes.fromhex(self.salt_path.read_text(encoding="ascii").strip())
        if not create:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.salt_path, secrets.token_hex(32) + "\n", mode=0o600)
        return self._salt()

    def hashes(self) -> frozenset[str]:
        """Every stored hash (empty when nobody has been forgotten)."""
        if not self.path.exists():
            return frozenset()
        return frozenset(line.strip() for line in self.path.read_text(encoding="ascii").splitlines() if line.strip())

    def version(self) -> str:
        """A short hash of the store's contents: changes whenever someone is added ("" while empty)."""
        hashes = self.hashes()
        return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:16] if hashes else ""

    def add(self, customer_ids: Iterable[str]) -> int:
        """Store the ids' hashes (written atomically); return how many were new."""
        salt = self._salt(create=True)
        known = self.hashes()
        new = {_digest(salt, cid) for cid in customer_ids} - known
        if new:
            _write_atomically(self.path, "".join(f"{h}\n" for h in sorted(known | new)))
        return len(new)

    def forgotten_among(self, customer_ids: Iterable[str]) -> set[str]:
        """The ids among `customer_ids` that are in the store."""
        hashes, salt = self.hashes(), self._salt()
        if not hashes or salt is None:
            return set()
        return {cid for cid in set(customer_ids) if _digest(salt, cid) in hashes}


def _digest(salt: bytes, customer_id: str) -> str:
    return hmac.digest(salt, str(customer_id).encode("utf-8"), "sha256").hex()


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def without(dataset: Dataset, store: Store) -> tuple[Dataset, int]:
    """The dataset without the forgotten customers' rows (every table, quarantined rows too); and how many there were."""
    if not store.hashes():
        return dataset, 0
    forgotten = store.forgotten_among(dataset.customer_ids())
    if not forgotten:
        return dataset, 0
    return dataset.without_customers(forgotten), len(forgotten)


# --- published days -----------------------------------------------------------------------------


# Only the cells that name a customer are compared with the ids: any cell would also match a rank,
# a risk %, a capacity, a currency or a date ("forget 1" dropped every list's first row).
ID_COLUMN = "customer_id"  # the id column of every published table (scores, lists, CRM import, quarantine)
HEADER_ROWS = 10  # a sheet's id column is found by its header in its first rows ("Customer", files.HEADERS)


def _matches(value: object, ids: set[str]) -> bool:
    """A cell that holds one of the ids (also as a spreadsheet keeps it, neutralised with a leading ')."""
    if not isinstance(value, str):
        value = None if value is None else str(value)
    return value is not None and (value in ids or (value.startswith("'") and value[1:] in ids))


def _parquet_mask(table: pa.Table, ids: set[str]) -> pa.Array:
    """Rows of a Parquet table whose customer_id is one of the ids (as text, or guarded with a ')."""
    wanted = pa.array(sorted(ids) + [f"'{i}" for i in sorted(ids)], pa.string())
    if ID_COLUMN not in table.column_names:
        return pa.array(np.zeros(table.num_rows, dtype=bool))
    column = table.column(ID_COLUMN)
    values = pc.cast(column, pa.string())  # ids stored as numbers or dictionaries compare as text
    return pc.fill_null(pc.is_in(values, value_set=wanted), False)


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _csv_hits(frame: pd.DataFrame, ids: set[str]) -> pd.Series:
    """Rows of a CSV table whose customer_id is one of the ids; none when it has no such column."""
    if ID_COLUMN not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame[ID_COLUMN].map(lambda v: _matches(v, ids)).astype(bool)


def _id_cells(sheet) -> Iterator:
    """The customer-id cells of a worksheet: those below its "Customer" header (none without one)."""
    from churn.publish.files import HEADERS

    label = HEADERS[ID_COLUMN]
    for row in sheet.iter_rows(max_row=min(HEADER_ROWS, sheet.max_row)):
        for cell in row:
            if cell.value == label:
                yield from (c for (c,) in sheet.iter_rows(min_row=cell.row + 1, min_col=cell.column,
                                                           max_col=cell.column))
                return


def _workbook_rows(path: Path, ids: set[str]):
    from openpyxl import load_workbook

    book = load_workbook(path)
    hits = {sheet.title: {c.row: str(c.value).lstrip("'") for c in _id_cells(sheet) if _matches(c.value, ids)}
            for sheet in book.worksheets}
    return book, hits  # sheet title -> {row number: the id it holds}


def found_in_day(directory: Path, ids: set[str]) -> set[str]:
    """Which of the ids a published day's files hold as a customer id (read as tables, not only as bytes)."""
    found: set[str] = set()
    for path in sorted(directory.rglob("*")):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            if ID_COLUMN in table.column_names:
                values = pc.cast(table.filter(_parquet_mask(table, ids)).column(ID_COLUMN), pa.string())
                found |= {str(v).lstrip("'") for v in values.to_pylist() if _matches(v, ids)}
        elif path.suffix == ".csv":
            frame = _csv(path)
            hit = _csv_hits(frame, ids)  # only true where the table has a customer_id column
            if hit.any():
                found |= {v.lstrip("'") for v in frame.loc[hit, ID_COLUMN]}
        elif path.suffix == ".xlsx":
            _, hits = _workbook_rows(path, ids)
            found |= {i for rows in hits.values() for i in rows.values()}
        elif path.is_file() and path.name != MANIFEST and _bytes_hold(path, ids):
            found |= {i for i in ids if i.encode() in path.read_bytes()}
    return found


def rewrite_day(source: Path, target: Path, ids: set[str], run_date: str) -> int:
    """Copy a published day's files (not its manifest) from `source` into `target` without the ids' rows.

    Parquet and CSV rows whose `customer_id`, and spreadsheet rows whose "Customer" cell, is one of
    the ids are dropped (no other cell is compared: a rank or a risk of 1 is not customer 1); files
    without them are copied unchanged. Returns the rows removed. Raises ValueError for a file of
    another kind that holds an id (it would be left behind).
    """
    from churn.publish.files import _stamp_zip

    removed = 0
    for path in sorted(source.rglob("*")):
        name = path.relative_to(source)
        out = target / name
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        if name.as_posix() == MANIFEST:
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            mask = _parquet_mask(table, ids)
            n = pc.sum(mask).as_py() or 0
            if n:
                pq.write_table(table.filter(pc.invert(mask)), out)
        elif path.suffix == ".csv":
            frame = _csv(path)
            hit = _csv_hits(frame, ids)
            n = int(hit.sum())
            if n:
                frame[~hit].to_csv(out, index=False)
        elif path.suffix == ".xlsx":
            book, hits = _workbook_rows(path, ids)
            n = sum(len(rows) for rows in hits.values())
            if n:
                for title, rows in hits.items():
                    for row in sorted(rows, reverse=True):
                        book[title].delete_rows(row)
                book.save(out)
                _stamp_zip(out, run_date)
        elif _bytes_hold(path, ids):
            raise ValueError(f"{path} holds a customer to erase and is not a table churn can rewrite")
        if not n:
            shutil.copyfile(path, out)
        removed += n
    return removed


def scrub_alerts(directory: Path, ids: set[str]) -> int:
    """Blank the ids out of the alerts of failed runs (`OUT/alerts/*.json`); return how many files changed.

    An alert quotes its run's one-line error, and an error about the data may quote an offending
    value, a customer id among them (`churn.publish.alerts`). Only the message and text are
    edited; each file is rewritten through a temporary name.
    """
    if not directory.is_dir():
        return 0
    changed = 0
    for path in sorted(directory.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        if not any(i in text for i in ids):
            continue
        document = json.loads(text)
        for key in ("message", "text"):
            if isinstance(document.get(key), str):
                for cid in sorted(ids, key=len, reverse=True):
                    document[key] = document[key].replace(cid, "[erased]")
        _write_atomically(path, json.dumps(document, indent=2, sort_keys=True) + "\n")
        changed += 1
    return changed


def _bytes_hold(path: Path, ids: set[str]) -> bool:
    """Does a file hold one of the ids, in its bytes or (for a zip, e.g. a spreadsheet) in a member's?"""
    needles = [i.encode("utf-8") for i in ids]
    data = path.read_bytes()
    if any(n in data for n in needles):
        return True
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(any(n in archive.read(m) for n in needles) for m in archive.namelist())
    return False


def quoted_in(directory: str | Path, ids: set[str]) -> list[Path]:
    """JSON files under `directory` (a model registry) that hold one of the ids as text: a string value or a key.

    Read as JSON, not as bytes. A model's numbers (split values, counts) may contain the digits of
    a short numeric id by chance, and XGBoost's model file writes its own parameters as text
    (`"num_feature": "46"`, `"num_parallel_tree": "1"`, `"num_class": "0"`): neither is a trace of
    a customer. So inside an XGBoost model (`_is_xgboost_model`) the values of its parameter
    objects (keys ending in `_param`) and of the attributes XGBoost's training writes
    (`best_iteration`, `best_score`) are skipped; its feature names, categories and other
    attributes, and every text of every other file (metadata, parameters, calibrator, pointer),
    are searched whole. A file that does not read as JSON is searched for the quoted id in its
    bytes. Returns the files, sorted.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    wanted = {str(i) for i in ids}
    found = []
    for path in sorted(directory.rglob("*.json")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            if any(json.dumps(i).encode("utf-8") in data for i in wanted):
                found.append(path)
            continue
        skip = _xgboost_parameter if _is_xgboost_model(document) else None
        if any(text in wanted for text in _texts(document, (), skip)):
            found.append(path)
    return found


# Attributes XGBoost itself sets on a booster (early stopping): numbers written as text.
_XGBOOST_ATTRIBUTES = ("best_iteration", "best_score", "best_ntree_limit")


def _is_xgboost_model(document: object) -> bool:
    """XGBoost's JSON model format: {"learner": {...}, "version": [major, minor, patch]}."""
    return isinstance(document, dict) and isinstance(document.get("learner"), dict) and "version" in document


def _xgboost_parameter(path: tuple[str, ...]) -> bool:
    """A place in an XGBoost model that holds one of XGBoost's own parameters, never data."""
    return any(key.endswith("_param") for key in path) or (
        len(path) >= 2 and path[-2] == "attributes" and path[-1] in _XGBOOST_ATTRIBUTES)


def _texts(value: object, path: tuple[str, ...], skip) -> Iterator[str]:
    """Every key and string value of a JSON document, but those at a path `skip` says are not data."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            if skip is None or not skip((*path, key)):
                yield from _texts(item, (*path, key), skip)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, path, skip)
    elif isinstance(value, str):
        yield value
