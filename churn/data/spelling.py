"""One written form for ids and for labels, whatever tool exported the file.

Real exports spell the same value several ways: an id column read as float somewhere upstream
writes `13482.0` where another table has `13482`; people type `Complaint`, `complaint ` and
`return-request`. The contract passes every id and label column through these functions, so
every table agrees and a value is matched, counted and grouped once.

- **ids** (`normal_ids`): surrounding whitespace stripped; a number with a zero fraction
  (`13482.0`, `13482.`, `-7.00`) is the integer's text (`13482`), as Parquet float ids already
  are; anything else is kept as written (leading zeros and case matter: `007` and `7`, `A1` and
  `a1` are different ids). An id in scientific notation (`1.3482E+04`) in a column of numeric ids
  is refused (`scientific_ids`): spreadsheets round such numbers to six digits, so the exact id
  may be lost.
- **labels** (`normal_labels`: statuses, event types, actions, arms, reasons): trimmed,
  lower-cased, and every run of characters other than letters and digits made one `_`
  (`Return Request`, `return-request` and `RETURN_REQUEST` are all `return_request`).
- **loose keys** (`loose_ids`): ids with case, separators and leading zeros ignored. Never used
  to match; only to tell the user that two files spell the same ids differently.

All work on whole columns with Arrow compute (and labels on their distinct values), so a
column of tens of millions of ids costs well under a second.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["normal_id", "normal_ids", "normal_label", "normal_labels", "scientific_ids", "loose_ids"]

_ZERO_FRACTION = r"^[+-]?\d+\.0*$"
_SCIENTIFIC = r"^[+-]?\d+(?:\.\d+)?[eE][+-]?\d+$"
_NUMERIC = r"^[+-]?\d+(?:\.0*)?$"


def _arrow(values: pd.Series) -> pa.Array:
    arr = pa.array(values, from_pandas=True)  # no copy for pandas' Arrow-backed strings
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else arr.cast(pa.large_string())


def _series(values: pa.Array, like: pd.Series) -> pd.Series:
    return pd.Series(values, index=like.index, dtype="str", name=like.name)


def normal_ids(ids: pd.Series) -> pd.Series:
    """Ids (text, stripped, missing kept) in their one written form: `13482.0` becomes `13482`."""
    arr = _arrow(ids)
    if not pc.any(pc.match_substring(arr, ".")).as_py():  # a plain search first: most id columns have no point
        return ids
    zero_fraction = pc.match_substring_regex(arr, _ZERO_FRACTION)
    if not pc.any(zero_fraction).as_py():
        return ids
    return _series(pc.if_else(zero_fraction, pc.replace_substring_regex(arr, r"\.0*$", ""), arr), ids)


def scientific_ids(ids: pd.Series) -> pd.Series:
    """True where an id is a number in scientific notation in a column of otherwise numeric ids.

    `1.3482E+04` beside `13482` is a number mangled by a spreadsheet (which keeps six digits),
    not an id: the exact value may be lost. In a column of codes like `A12` or `7E4B`, a value
    such as `1E5` is an ordinary code and is not flagged.
    """
    arr = _arrow(ids)
    first = arr.drop_null()[:1000]  # one id that is not a number rules the whole column out, cheaply
    if not pc.all(pc.match_substring_regex(first, f"{_NUMERIC}|{_SCIENTIFIC}")).as_py():
        return pd.Series(False, index=ids.index)
    scientific = pc.fill_null(pc.match_substring_regex(arr, _SCIENTIFIC), False)
    if not pc.any(scientific).as_py():
        return pd.Series(False, index=ids.index)
    numeric = pc.or_(scientific, pc.fill_null(pc.match_substring_regex(arr, _NUMERIC), True))
    if not pc.all(numeric).as_py():
        return pd.Series(False, index=ids.index)
    return pd.Series(scientific.to_numpy(zero_copy_only=False), index=ids.index)


def normal_id(text: str) -> str:
    """One id (e.g. typed on the command line) in the written form the contract gives ids."""
    return normal_ids(pd.Series([text.strip()], dtype="str")).iloc[0]


def normal_labels(labels: pd.Series) -> pd.Series:
    """Labels trimmed, lower-cased, other characters than letters and digits made one `_`.

    Missing and blank cells (or cells with no letter or digit) come back missing. Computed on
    the distinct values, which are few in a label column.
    """
    encoded = pc.dictionary_encode(_arrow(labels))
    words = pc.utf8_lower(encoded.dictionary)
    words = pc.utf8_trim(pc.replace_substring_regex(words, r"[^\pL\pN]+", "_"), "_")
    words = pc.if_else(pc.equal(words, ""), pa.scalar(None, words.type), words)
    return _series(pc.take(words, encoded.indices), labels)


def normal_label(text: str) -> str:
    """One label in its written form: `Return Request` -> `return_request` ('' when nothing is left)."""
    got = normal_labels(pd.Series([text], dtype="str")).iloc[0]
    return "" if pd.isna(got) else got


def loose_ids(ids: pd.Series) -> pd.Series:
    """Ids with case, separators and leading zeros ignored: `00-12346.0` and `12346` share one key."""
    arr = pc.utf8_lower(pc.utf8_trim_whitespace(_arrow(ids)))
    arr = pc.replace_substring_regex(arr, r"(\d)\.0*$", r"\1")
    arr = pc.replace_substring_regex(arr, r"[^\pL\pN]+", "")
    arr = pc.replace_substring_regex(arr, r"^0+(.)", r"\1")
    return _series(arr, ids)
