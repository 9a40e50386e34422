"""The data contract: check a data directory table by table and return canonical frames.

Every table is described by a `TableSpec` in `TABLES`. `validate` reads a directory,
`validate_tables` checks frames already in memory; both return a `Dataset` whose columns have
canonical types (ids `str` stripped, timestamps `datetime64[us]` naive UTC, dates at midnight,
amounts float64, counts Int64, flags bool) or raise one `ContractError` listing every problem,
one per line: file, column, rule, count and up to five offending rows (1-based data rows as in
the file, header excluded) with their values. Soft problems (exact duplicate rows, customers
missing from `customers`) follow `ContractConfig`: fail, or set the rows aside in
`Dataset.quarantine`. Validation never writes anything; `write_quarantine` does, on request.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.config import ContractConfig
from churn.errors import ContractError
from churn.data.io import SUFFIXES, read_raw, table_path

__all__ = ["TABLES", "ColumnSpec", "TableSpec", "Dataset", "validate", "validate_tables", "write_quarantine"]

Kind = Literal["id", "text", "timestamp", "date", "float", "int", "bool"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    required: bool = False
    allowed: frozenset[str] | None = None
    min: float | None = None

    @property
    def nullable(self) -> bool:
        # A bool column has no missing value once canonical, so an empty cell is a problem too.
        return not self.required and self.kind != "bool"


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    required: bool = False  # the file must exist
    key: str | None = None  # a column whose values must be unique
    customer_rows: bool = False  # customer_id must be in `customers` when that table exists
    no_contact_details: bool = False  # refuse names, e-mails, phones, addresses

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)


def _col(name: str, kind: Kind, required: bool = False, **rules) -> ColumnSpec:
    return ColumnSpec(name, kind, required, **rules)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "orders",
            (
                _col("customer_id", "id", True),
                _col("order_id", "id", True),
                _col("order_ts", "timestamp", True),
                _col("amount", "float", True, min=0.0),
                _col("discount", "float", min=0.0),
                _col("coupon_used", "bool"),
                _col("n_items", "int"),
                _col("channel", "text"),
                _col("status", "text"),
            ),
            required=True,
            key="order_id",
            customer_rows=True,
        ),
        TableSpec(
            "order_items",
            (
                _col("order_id", "id", True),
                _col("product_id", "id", True),
                _col("category", "text"),
                _col("quantity", "int"),
                _col("amount", "float"),
            ),
        ),
        TableSpec(
            "customers",
            (
                _col("customer_id", "id", True),
                _col("signup_ts", "timestamp"),
                _col("region", "text"),
                _col("channel", "text"),
                _col("segment", "text"),
            ),
            key="customer_id",
            no_contact_details=True,
        ),
        TableSpec(
            "events",
            (
                _col("customer_id", "id", True),
                _col("event_ts", "timestamp", True),
                _col("event_type", "text", True),
            ),
            customer_rows=True,
        ),
        TableSpec(
            "contacts",
            (
                _col("customer_id", "id", True),
                _col("list_date", "date", True),
                _col("action", "text", True),
                _col("arm", "text", True, allowed=frozenset({"treated", "holdout"})),
                _col("contacted_ts", "timestamp"),
                _col("outcome", "text"),
            ),
            customer_rows=True,
        ),
        TableSpec(
            "suppressions",
            (
                _col("customer_id", "id", True),
                _col("reason", "text", True, allowed=frozenset({"opt_out", "do_not_contact", "deleted", "complaint"})),
                _col("since", "date"),
            ),
        ),
    )
}

# Matched against the lower-cased column name with separators turned into "_".
_CONTACT_DETAIL = re.compile(
    r"^(?:(?:first|last|full|given|family|sur|customer|contact|user|client)_?)?name$"
    r"|^(?:e_?mail|phone|mobile|telephone|address|street|post_?code|postal_?code|zip)"
    r"(?:_?(?:code|number|no|address|phone|line_?\d*|\d+))?$"
    r"|^\w+_(?:e_?mail|phone|mobile|telephone|address|street|post_?code|postal_?code|zip_?code)$"
)
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_SHOWN = 5  # offending rows quoted per problem


@dataclass
class Dataset:
    """Validated tables with canonical dtypes; absent optional tables are None."""

    orders: pd.DataFrame
    order_items: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    contacts: pd.DataFrame | None = None
    suppressions: pd.DataFrame | None = None
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)  # rows set aside, with file_row, reason
    fingerprints: dict[str, str] = field(default_factory=dict)  # sha256 of each file read
    row_counts: dict[str, int] = field(default_factory=dict)  # rows kept per present table

    def tables(self) -> dict[str, pd.DataFrame]:
        """The present tables, by name."""
        return {name: getattr(self, name) for name in TABLES if getattr(self, name) is not None}


# --- public entry points -------------------------------------------------------------------


def validate(data_dir: str | Path, policy: ContractConfig = ContractConfig()) -> Dataset:
    """Read every table file in `data_dir` and check it against the contract."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ContractError(f"{data_dir}: data directory not found")
    problems: list[str] = []
    raw: dict[str, pd.DataFrame] = {}
    source: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    for name, spec in TABLES.items():
        path = table_path(data_dir, name)
        if path is None:
            if spec.required:
                looked_for = ", ".join(f"{name}{suffix}" for suffix in SUFFIXES)
                problems.append(f"{name}: file not found in {data_dir} (looked for {looked_for})")
            continue
        try:
            raw[name] = read_raw(path)
        except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException) as err:
            problems.append(f"{path.name}: cannot be read ({err})")
            continue
        source[name] = path.name
        fingerprints[name] = _sha256(path)
    dataset = _check(raw, policy, source, problems)
    dataset.fingerprints = fingerprints
    return dataset


def validate_tables(
    tables: dict[str, pd.DataFrame],
    policy: ContractConfig = ContractConfig(),
    source: dict[str, str] | None = None,
    file_rows: dict[str, np.ndarray] | None = None,
) -> Dataset:
    """Check in-memory frames against the contract (no files, so no fingerprints).

    `file_rows` (per table, each row's 0-based position in its file) is for frames that are a
    part of a file, such as one partition of the Dask engine: messages and the quarantine then
    quote those file rows, and an empty part is no problem (the caller judges the whole file).
    """
    problems = []
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        problems.append(f"unknown table(s) {', '.join(unknown)}; known tables: {', '.join(TABLES)}")
    if "orders" not in tables:
        problems.append("orders: table not given (it is required)")
    known = {name: frame for name, frame in tables.items() if name in TABLES}
    return _check(known, policy, {name: (source or {}).get(name, name) for name in known}, problems, file_rows)


def write_quarantine(quarantine: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, int]:
    """Write each non-empty quarantine (`Dataset.quarantine`) as `<out_dir>/<table>.csv`; return rows per table."""
    counts = {}
    for name, rows in quarantine.items():
        if len(rows) == 0:
            continue
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        rows.to_csv(Path(out_dir) / f"{name}.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
        counts[name] = len(rows)
    return counts


# --- the checks, in the order they run -----------------------------------------------------


@dataclass
class _Findings:
    """What the checks found: hard problems, and rows set aside by a soft policy."""

    policy: ContractConfig
    problems: list[str]
    quarantine: dict[str, list[pd.DataFrame]] = field(default_factory=dict)

    def soft(self, table: str, frame: pd.DataFrame, flagged: pd.Series, setting: str, reason: str, message: str):
        """Apply the policy `setting` to the flagged rows; either way, later checks no longer see them."""
        if not flagged.any():
            return frame
        if getattr(self.policy, setting) == "fail":
            hint = 'fix the file, or set it to "quarantine" to set these rows aside'
            self.problems.append(f'{message}; contract.{setting} is "fail": {hint}')
            return frame[~flagged]
        return self.set_aside(table, frame, flagged, reason)

    def set_aside(self, table: str, frame: pd.DataFrame, flagged: pd.Series, reason: str) -> pd.DataFrame:
        """Move the flagged rows to the quarantine, with their file row and the reason."""
        rows = frame[flagged].rename(columns={"file_row": "file_row_in_file", "reason": "reason_in_file"})
        rows.insert(0, "reason", reason)
        rows.insert(0, "file_row", rows.index + 1)
        self.quarantine.setdefault(table, []).append(rows)
        return frame[~flagged]


def _check(
    raw: dict[str, pd.DataFrame], policy: ContractConfig, source: dict[str, str], problems: list[str],
    file_rows: dict[str, np.ndarray] | None = None,
) -> Dataset:
    """Run every rule family over the tables; raise one ContractError listing all problems."""
    found = _Findings(policy, problems)
    frames = {
        name: _parse_table(spec, raw[name], source[name], problems, (file_rows or {}).get(name))
        for name, spec in TABLES.items() if name in raw
    }
    for name, frame in frames.items():
        dup = _exact_duplicates(frame)
        message = _rows(source[name], None, dup, "", noun="exact duplicate row")
        frames[name] = found.soft(name, frame, dup, "duplicate_rows", "duplicate_row", message)
        _check_unique_key(frames[name], TABLES[name], source[name], problems)
    _check_order_items(frames, source, problems)
    _handle_unknown_customers(frames, source, found)
    if problems:
        raise ContractError("\n".join(problems))
    kept = {name: frame.reset_index(drop=True) for name, frame in frames.items()}
    set_aside = {
        name: pd.concat(parts).sort_values("file_row", kind="stable").reset_index(drop=True)
        for name, parts in found.quarantine.items()
    }
    return Dataset(**kept, quarantine=set_aside, row_counts={name: len(frame) for name, frame in kept.items()})


def _parse_table(spec: TableSpec, raw: pd.DataFrame, source: str, problems: list[str],
                 file_rows: np.ndarray | None = None) -> pd.DataFrame:
    """Column checks, then each known column parsed to its canonical type and its values checked.

    The index is kept as the 0-based position in the file (`file_rows` when the frame is a part
    of the file), so later messages quote file rows.
    """
    raw = raw.reset_index(drop=True) if file_rows is None else raw.set_axis(pd.Index(file_rows))
    raw.columns = [str(c).strip() for c in raw.columns]
    problems.extend(_check_columns(spec, raw, source))
    if spec.required and len(raw) == 0 and file_rows is None:
        problems.append(f"{source}: no data rows")
    parsed = {}
    for name in raw.columns:
        column = spec.column(name)
        if column is None:  # unknown columns travel as they are
            parsed[name] = raw[name]
            continue
        values, unparsable = _PARSERS[column.kind](raw[name])
        if unparsable.any():
            problems.append(_rows(source, name, unparsable, _UNPARSABLE[column.kind], raw[name]))
        problems.extend(_check_values(column, values, unparsable, source))
        parsed[name] = values
    return pd.DataFrame(parsed, index=raw.index)


def _check_columns(spec: TableSpec, raw: pd.DataFrame, source: str) -> list[str]:
    """Required columns present; no contact details where the table forbids them."""
    problems = []
    missing = [c.name for c in spec.columns if c.required and c.name not in raw.columns]
    if missing:
        s = "s" if len(missing) > 1 else ""
        found = ", ".join(raw.columns) or "none"
        problems.append(f"{source}: missing required column{s} {', '.join(missing)} (columns found: {found})")
    if spec.no_contact_details:
        for name in raw.columns:
            if _CONTACT_DETAIL.match(re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")):
                problems.append(
                    f"{source}: column {name}: looks like a contact detail; for privacy churn holds no names, "
                    f"e-mails, phones or addresses: remove the column from the file"
                )
    return problems


def _check_values(column: ColumnSpec, values: pd.Series, unparsable: pd.Series, source: str) -> list[str]:
    """No empty cells where a value is needed; minimum and allowed values respected."""
    problems = []
    if not column.nullable:
        empty = values.isna() & ~unparsable
        if empty.any():
            problems.append(_rows(source, column.name, empty, "empty"))
    if column.min is not None:
        low = values < column.min
        if low.any():
            problems.append(_rows(source, column.name, low, f"< {column.min:g}", values))
    if column.allowed is not None:
        outside = values.notna() & ~values.isin(sorted(column.allowed))
        if outside.any():
            rule = f"not one of {', '.join(sorted(column.allowed))}"
            problems.append(_rows(source, column.name, outside, rule, values))
    return problems


def _exact_duplicates(frame: pd.DataFrame) -> pd.Series:
    """Rows equal in every column to an earlier row (the first copy is not flagged)."""
    candidates = _may_repeat(frame)
    flagged = np.zeros(len(frame), dtype=bool)
    if candidates.any():
        flagged[candidates] = frame[candidates].duplicated(keep="first").to_numpy()
    return pd.Series(flagged, index=frame.index)


def _check_unique_key(frame: pd.DataFrame, spec: TableSpec, source: str, problems: list[str]) -> None:
    """Each key value (order_id in orders, customer_id in customers) on one row only."""
    if spec.key is None or spec.key not in frame:
        return
    ids = frame[spec.key]
    if ids.is_unique:  # the common case, much cheaper than duplicated()
        return
    repeated = ids.notna() & ids.duplicated(keep=False)
    if repeated.any():
        problems.append(_rows(source, spec.key, repeated, f"with a duplicate {spec.key}", ids))


def _check_order_items(frames: dict[str, pd.DataFrame], source: dict[str, str], problems: list[str]) -> None:
    """Every order_items row points at an order in orders."""
    items, orders = frames.get("order_items"), frames.get("orders")
    if items is None or orders is None or "order_id" not in items or "order_id" not in orders:
        return
    orphan = items["order_id"].notna() & ~_isin(items["order_id"], orders["order_id"])
    if orphan.any():
        rule = f"not in {source['orders']}"
        problems.append(_rows(source["order_items"], "order_id", orphan, rule, items["order_id"]))


def _handle_unknown_customers(frames: dict[str, pd.DataFrame], source: dict[str, str], found: _Findings) -> None:
    """Rows whose customer is not in `customers` (when it exists) fail or go to quarantine.

    The items of a quarantined order follow it, so order_items never points at a missing order.
    """
    customers = frames.get("customers")
    if customers is None or "customer_id" not in customers:
        return
    for name in [name for name, spec in TABLES.items() if spec.customer_rows and name in frames]:
        frame = frames[name]
        if "customer_id" not in frame:
            continue
        ids = frame["customer_id"]
        unknown = ids.notna() & ~_isin(ids, customers["customer_id"])
        message = _rows(source[name], "customer_id", unknown, f"not in {source['customers']}", ids)
        frames[name] = found.soft(name, frame, unknown, "unknown_customers", "unknown_customer", message)
        items = frames.get("order_items")
        if name == "orders" and items is not None and found.policy.unknown_customers == "quarantine" and unknown.any():
            if "order_id" in frame and "order_id" in items:
                kept_orders = frames["orders"]["order_id"]
                gone = frame.loc[unknown, "order_id"]
                follow = _isin(items["order_id"], gone) & ~_isin(items["order_id"], kept_orders)
                frames["order_items"] = found.set_aside("order_items", items, follow, "unknown_customer")


# --- parsers: raw column -> (canonical values, mask of present but unparsable cells) -------


def _as_text(raw: pd.Series) -> pd.Series:
    """A column as `str` dtype, missing cells kept missing (integer ids print without .0)."""
    if raw.dtype == "str":
        return raw
    if pd.api.types.is_float_dtype(raw) and (raw.dropna() % 1 == 0).all():
        raw = raw.astype("Int64")
    if pd.api.types.is_integer_dtype(raw):
        return pd.Series(pc.cast(pa.array(raw), pa.large_string()), index=raw.index, dtype="str")
    return raw.astype("str")


def _cells(raw: pd.Series) -> pd.Series:
    """Text with surrounding whitespace stripped; blank cells are missing."""
    text = _as_text(raw).str.strip()
    return text.mask(text == "")


def _parse_id(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    return _cells(raw), _none(raw)


def _parse_text(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    return _as_text(raw), _none(raw)


def _parse_timestamp(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("us"), _none(raw)
    if pd.api.types.is_datetime64_dtype(raw):
        return raw.dt.as_unit("us"), _none(raw)
    text = _cells(raw)
    try:  # Arrow parses plain ISO timestamps ten times faster than pandas
        values = pd.Series(pc.cast(pa.array(text), pa.timestamp("us")), index=raw.index, dtype="datetime64[us]")
    except pa.ArrowException:  # offsets, 'Z', odd spacing, or bad cells: let pandas decide
        values = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        values = values.dt.tz_localize(None).dt.as_unit("us")
    return values, text.notna() & values.isna()


def _parse_date(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    values, unparsable = _parse_timestamp(raw)
    return values.dt.normalize(), unparsable


def _parse_float(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.astype("float64")
        return values, pd.Series(np.isinf(values.to_numpy()), index=raw.index)
    text = _cells(raw)
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
    text = _cells(raw).str.lower()
    true = text.isin(_TRUE)
    unparsable = text.notna() & ~true & ~text.isin(_FALSE)
    # Missing cells come back as NaN (object dtype) so the "empty" rule sees them; they never pass.
    values = true.astype(bool) if not text.hasnans else true.astype(object).mask(text.isna())
    return values, unparsable


_PARSERS = {
    "id": _parse_id,
    "text": _parse_text,
    "timestamp": _parse_timestamp,
    "date": _parse_date,
    "float": _parse_float,
    "int": _parse_int,
    "bool": _parse_bool,
}
_UNPARSABLE = {
    "timestamp": "not an ISO 8601 timestamp (e.g. 2017-03-01T10:20:00)",
    "date": "not an ISO 8601 date (e.g. 2017-03-01)",
    "float": "not a number",
    "int": "not a whole number",
    "bool": "not a bool (true/false, 1/0, yes/no)",
}


# --- small helpers -------------------------------------------------------------------------


def _none(raw: pd.Series) -> pd.Series:
    return pd.Series(False, index=raw.index)


def _isin(values: pd.Series, known: pd.Series) -> pd.Series:
    """values.isin(known) for id columns, through Arrow (pandas is 5x slower on strings)."""
    hit = pc.is_in(pa.array(values), value_set=pa.array(known), skip_nulls=True)
    return pd.Series(hit.to_numpy(zero_copy_only=False), index=values.index)


def _may_repeat(frame: pd.DataFrame) -> np.ndarray:
    """A cheap superset of the rows that repeat another row: equal hashes of the numeric columns.

    Sorting 64-bit hashes is far cheaper than hashing strings, and true duplicates always
    share a hash; only the candidates go through pandas' exact comparison.
    """
    types = pd.api.types
    numeric = [
        name
        for name, dtype in frame.dtypes.items()
        if types.is_integer_dtype(dtype) or types.is_float_dtype(dtype) or types.is_bool_dtype(dtype)
        or types.is_datetime64_dtype(dtype)
    ]
    if not numeric or len(frame) < 2:
        return np.ones(len(frame), dtype=bool)
    mixed = np.zeros(len(frame), dtype=np.uint64)
    for name in numeric:
        column = frame[name]
        if types.is_datetime64_dtype(column):
            bits = column.to_numpy().view("i8").astype(np.uint64)
        else:  # -0.0 and 0.0 are equal, and so are all NaNs: give them the same bits
            floats = column.to_numpy(dtype="float64", na_value=np.nan) + 0.0
            bits = np.where(np.isnan(floats), np.nan, floats).view(np.uint64)
        mixed = mixed * np.uint64(0x9E3779B97F4A7C15) + bits
    ordered = np.sort(mixed)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    return np.isin(mixed, repeated) if len(repeated) else np.zeros(len(frame), dtype=bool)


def _rows(
    source: str, column: str | None, bad: pd.Series, rule: str, values: pd.Series | None = None, noun: str = "row"
) -> str:
    """'orders.csv: column amount: 3 rows < 0 (rows 17, 204, 9001: -1.5, -2.0, -0.3)'."""
    positions = bad.index[bad.to_numpy(dtype=bool)]
    shown = positions[:_SHOWN]
    more = ", ..." if len(positions) > _SHOWN else ""
    detail = ("row " if len(positions) == 1 else "rows ") + ", ".join(str(p + 1) for p in shown) + more
    if values is not None:
        detail += ": " + ", ".join(_show(values.at[p]) for p in shown) + more
    where = f"{source}: column {column}: " if column else f"{source}: "
    count = f"{len(positions)} {noun}{'' if len(positions) == 1 else 's'}"
    return f"{where}{count}{' ' + rule if rule else ''} ({detail})"


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
