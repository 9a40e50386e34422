"""Parsers: a raw column (CSV text or a Parquet type) -> its canonical values, and the cells that cannot be read.

Each parser returns `(values, unparsable)`: the column in its canonical type (ids and labels
`str` in their one written form, see `churn.data.spelling`; timestamps `datetime64[us]` naive
local times of the shop's zone; dates at midnight; floats `float64`; counts `Int64`; flags
`bool`) and the mask of cells that hold something that is not such a value. `parse_frame`
applies them to a whole table; the contract (`churn.data.contract`) turns the masks into its
messages.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.data import spelling

__all__ = ["PARSERS", "UNPARSABLE", "cells", "parse", "parse_frame", "strip_names"]

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def _as_text(raw: pd.Series) -> pd.Series:
    """A column as `str` dtype, missing cells kept missing (integer ids print without .0)."""
    if raw.dtype == "str":
        return raw
    if pd.api.types.is_float_dtype(raw) and (raw.dropna() % 1 == 0).all():
        raw = raw.astype("Int64")
    if pd.api.types.is_integer_dtype(raw):
        return pd.Series(pc.cast(pa.array(raw), pa.large_string()), index=raw.index, dtype="str")
    return raw.astype("str")


def cells(raw: pd.Series) -> pd.Series:
    """Text with surrounding whitespace stripped; blank cells are missing."""
    text = _as_text(raw).str.strip()
    return text.mask(text == "")


def _parse_id(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Ids in one written form (see `churn.data.spelling`); scientific notation is unparsable."""
    ids = spelling.normal_ids(cells(raw))
    return ids, spelling.scientific_ids(ids)


def _parse_label(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Labels in one written form: `Return Request` and `return-request` are `return_request`."""
    return spelling.normal_labels(_as_text(raw)), _none(raw)


def _parse_text(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    return _as_text(raw), _none(raw)


# A time of day followed by a zone: Z or an offset (+02:00, -0500, +09).
_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


def _parse_timestamp(raw: pd.Series, timezone: str = "UTC") -> tuple[pd.Series, pd.Series]:
    """Naive local times of the shop's zone: values with a zone are converted to it, naive ones kept.

    So the calendar day of every timestamp is the shop's day (a New York order at 20:30 on 31
    December stays on 31 December), whatever zone the export wrote.
    """
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert(timezone).dt.tz_localize(None).dt.as_unit("us"), _none(raw)
    if pd.api.types.is_datetime64_dtype(raw):
        return raw.dt.as_unit("us"), _none(raw)
    text = cells(raw)
    try:  # Arrow parses plain ISO timestamps ten times faster than pandas
        values = pd.Series(pc.cast(pa.array(text), pa.timestamp("us")), index=raw.index, dtype="datetime64[us]")
    except pa.ArrowException:  # offsets, 'Z', odd spacing, or bad cells: let pandas decide
        zoned = text.str.contains(_OFFSET, regex=True).fillna(False).astype(bool)
        instants = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        local = instants.dt.tz_convert(timezone).dt.tz_localize(None)
        values = local.where(zoned, instants.dt.tz_localize(None)).dt.as_unit("us")
    return values, text.notna() & values.isna()


def _parse_date(raw: pd.Series, timezone: str = "UTC") -> tuple[pd.Series, pd.Series]:
    values, unparsable = _parse_timestamp(raw, timezone)
    return values.dt.normalize(), unparsable


def _parse_float(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.astype("float64")
        return values, pd.Series(np.isinf(values.to_numpy()), index=raw.index)
    text = cells(raw)
    try:
        values = pd.Series(pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False), index=raw.index)
    except pa.ArrowException:
        values = pd.to_numeric(text, errors="coerce").astype("float64")
    return values, text.notna() & ~np.isfinite(values)


def _parse_int(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_integer_dtype(raw):
        return raw.astype("Int64"), _none(raw)
    values, unparsable = _parse_float(raw)
    unparsable = unparsable | (values % 1 != 0) & values.notna()
    return values.mask(unparsable).astype("Int64"), unparsable


def _parse_bool(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_bool_dtype(raw) and not raw.hasnans:
        return raw.astype(bool), _none(raw)
    text = cells(raw).str.lower()
    true = text.isin(_TRUE)
    unparsable = text.notna() & ~true & ~text.isin(_FALSE)
    # Missing cells come back as NaN (object dtype) so the "empty" rule sees them; they never pass.
    values = true.astype(bool) if not text.hasnans else true.astype(object).mask(text.isna())
    return values, unparsable


PARSERS = {
    "id": _parse_id,
    "label": _parse_label,
    "text": _parse_text,
    "timestamp": _parse_timestamp,
    "date": _parse_date,
    "float": _parse_float,
    "int": _parse_int,
    "bool": _parse_bool,
}
UNPARSABLE = {
    "id": "in scientific notation, among numeric ids: a spreadsheet keeps six digits of such numbers, so the "
          "exact id may be lost; export the column as text",
    "timestamp": "not an ISO 8601 timestamp (e.g. 2017-03-01T10:20:00)",
    "date": "not an ISO 8601 date (e.g. 2017-03-01)",
    "float": "not a number",
    "int": "not a whole number",
    "bool": "not a bool (true/false, 1/0, yes/no)",
}


def parse(kind: str, raw: pd.Series, timezone: str = "UTC") -> tuple[pd.Series, pd.Series]:
    """`(values, unparsable)` of a raw column of a given kind (see `churn.data.contract.Kind`)."""
    if kind in ("timestamp", "date"):
        return PARSERS[kind](raw, timezone)
    return PARSERS[kind](raw)


def strip_names(raw: pd.DataFrame) -> pd.DataFrame:
    """The raw table with a 0-based position index and column names stripped of surrounding spaces."""
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    return raw


def parse_frame(raw: pd.DataFrame, kinds: Mapping[str, str], timezone: str = "UTC") -> pd.DataFrame:
    """A raw table in canonical form: each column named in `kinds` parsed, the others as they are.

    The index is the 0-based position in the file. Unparsable cells come back missing; the
    contract has refused such tables already, so a table it validated parses cleanly.
    """
    raw = strip_names(raw)
    return pd.DataFrame({name: parse(kinds[name], raw[name], timezone)[0] if name in kinds else raw[name]
                         for name in raw.columns}, index=raw.index)


def _none(raw: pd.Series) -> pd.Series:
    return pd.Series(False, index=raw.index)
