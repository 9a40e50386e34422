"""The data contract: check a data directory table by table and return canonical frames.

Every table is described by a `TableSpec` in `TABLES`. `validate` reads a directory,
`validate_tables` checks frames already in memory; both return a `Dataset` whose columns have
canonical types and one written form (ids `str` in the form of `churn.data.spelling`, labels
such as event types normalised, order statuses canonical (`churn.data.statuses`), timestamps
`datetime64[us]` naive local times of the shop's zone (`[data] timezone`), dates at midnight,
amounts float64, counts Int64, flags bool) or raise one `ContractError` listing every problem,
one per line: file, column, rule, count and up to five offending rows (1-based data rows as in
the file, header excluded) with their values. Soft problems (exact duplicate rows, customers
missing from `customers`, unknown statuses, implausible timestamps) follow `ContractConfig`:
fail, or set the rows aside in `Dataset.quarantine`; customer ids that match no customer are
counted in `Dataset.unmatched`. Validation never writes anything; `write_quarantine` does, on
request. `check_not_after` refuses data dated after the day of the run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.config import ORDER_STATUSES, Config, ContractConfig
from churn.errors import ContractError
from churn.data import spelling, statuses
from churn.data.io import SUFFIXES, read_raw, table_path

log = logging.getLogger(__name__)

__all__ = ["TABLES", "ColumnSpec", "TableSpec", "Dataset", "Unmatched", "validate", "validate_tables",
           "check_not_after", "write_quarantine"]

Kind = Literal["id", "label", "text", "timestamp", "date", "float", "int", "bool"]


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
                _col("status", "label"),
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
                _col("event_type", "label", True),
            ),
            customer_rows=True,
        ),
        TableSpec(
            "contacts",
            (
                _col("customer_id", "id", True),
                _col("list_date", "date", True),
                _col("action", "label", True),
                _col("arm", "label", True, allowed=frozenset({"treated", "holdout"})),
                _col("contacted_ts", "timestamp"),
                _col("outcome", "text"),
            ),
            customer_rows=True,
        ),
        TableSpec(
            "suppressions",
            (
                _col("customer_id", "id", True),
                _col("reason", "label", True, allowed=frozenset({"opt_out", "do_not_contact", "deleted", "complaint"})),
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


@dataclass(frozen=True)
class Unmatched:
    """Rows of a table whose customer_id matches no known customer (see `Dataset.unmatched`)."""

    rows: int  # rows with such an id
    customers: int  # distinct such ids
    first_ids: tuple[str, ...]  # the first few, in file order
    against: str  # the file the ids were looked up in: customers (when present), else orders
    handling: str  # "quarantined" (rows set aside) or "kept"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for a run manifest."""
        return {"rows": self.rows, "customers": self.customers, "first_ids": list(self.first_ids),
                "against": self.against, "handling": self.handling}

    def describe(self) -> str:
        """'3 rows (2 customer ids) match no customer in orders.csv, kept; first ids: '17', '18''."""
        ids = ", ".join(repr(i) for i in self.first_ids) + (", ..." if self.customers > len(self.first_ids) else "")
        return (f"{self.rows} row{'s' if self.rows != 1 else ''} ({self.customers} customer "
                f"id{'s' if self.customers != 1 else ''}) match{'es' if self.rows == 1 else ''} no customer in "
                f"{self.against}, "
                f"{self.handling}; first ids: {ids}")


@dataclass
class Dataset:
    """Validated tables with canonical dtypes; absent optional tables are None.

    `unmatched` says, per table (orders when a customers table exists, events, contacts,
    suppressions), how many rows name a customer_id that no known customer has: known
    customers are the `customers` table when present, else the customers in `orders`. Such
    rows are quarantined (orders, events, contacts, under `contract.unknown_customers`, when a
    customers table exists) or kept (a visitor who never bought; a suppression, which keeps
    applying should that customer appear). Nothing is dropped without being counted there.
    """

    orders: pd.DataFrame
    order_items: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    contacts: pd.DataFrame | None = None
    suppressions: pd.DataFrame | None = None
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)  # rows set aside, with file_row, reason
    fingerprints: dict[str, str] = field(default_factory=dict)  # sha256 of each file read
    row_counts: dict[str, int] = field(default_factory=dict)  # rows kept per present table
    unmatched: dict[str, Unmatched] = field(default_factory=dict)  # per table, ids matching no customer
    cleared: dict[str, dict[str, int]] = field(default_factory=dict)  # per table and column: implausible
    # optional timestamps (e.g. signup_ts = 1900-01-01) set to missing under the quarantine policy
    sources: dict[str, str] = field(default_factory=dict)  # the file (or name) each table came from

    def tables(self) -> dict[str, pd.DataFrame]:
        """The present tables, by name."""
        return {name: getattr(self, name) for name in TABLES if getattr(self, name) is not None}


# --- public entry points -------------------------------------------------------------------


def validate(data_dir: str | Path, config: Config | ContractConfig = ContractConfig()) -> Dataset:
    """Read every table file in `data_dir` and check it against the contract.

    `config`: the whole `Config` (its `[contract]` policies and `[data] timezone`, the shop's
    zone, to which timestamps with an offset are converted), or just a `ContractConfig` (the
    zone is then UTC).
    """
    policy, timezone = _settings(config)
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
    dataset = _check(raw, policy, timezone, source, problems)
    dataset.fingerprints = fingerprints
    return dataset


def validate_tables(
    tables: dict[str, pd.DataFrame],
    config: Config | ContractConfig = ContractConfig(),
    source: dict[str, str] | None = None,
    file_rows: dict[str, np.ndarray] | None = None,
) -> Dataset:
    """Check in-memory frames against the contract (no files, so no fingerprints); `config` as in `validate`.

    `file_rows` (per table, each row's 0-based position in its file) is for frames that are a
    part of a file, such as one partition of the Dask engine: messages and the quarantine then
    quote those file rows, and an empty part, or one whose rows were all set aside, is no
    problem here (the caller judges the whole file).
    """
    policy, timezone = _settings(config)
    problems = []
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        problems.append(f"unknown table(s) {', '.join(unknown)}; known tables: {', '.join(TABLES)}")
    if "orders" not in tables:
        problems.append("orders: table not given (it is required)")
    known = {name: frame for name, frame in tables.items() if name in TABLES}
    return _check(known, policy, timezone, {name: (source or {}).get(name, name) for name in known}, problems,
                  file_rows)


def check_not_after(dataset: Dataset, last_day: object) -> None:
    """Refuse data dated after `last_day`: raise one ContractError naming table, column and file rows.

    The contract cannot know what day it is; the edge that runs the pipeline does. Call this
    with the day the run happens (the clock, read at the edge, in the shop's zone): a timestamp
    later than the end of that day cannot be real (a placeholder or a clock error), and it
    would move "the last day of the data" to the future. Every timestamp and date column is
    checked but suppressions' `since` (a suppression applies whatever its date).
    """
    end = pd.Timestamp(last_day).normalize() + pd.Timedelta(days=1)
    problems = []
    for name, frame in dataset.tables().items():
        if name == "suppressions":
            continue
        for column in TABLES[name].columns:
            if column.kind not in ("timestamp", "date") or column.name not in frame:
                continue
            later = frame[column.name] >= end
            if later.any():
                rows = _file_rows(dataset, name, later)
                problems.append(_rows(dataset.sources.get(name, name), column.name, rows,
                                      f"after {end.date() - pd.Timedelta(days=1)}, the day of the run",
                                      pd.Series(frame.loc[later, column.name].to_numpy(), index=rows.index)))
    if problems:
        raise ContractError("\n".join(problems) + "\nfix these dates at the source: data cannot come from the future")


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
    raw: dict[str, pd.DataFrame], policy: ContractConfig, timezone: str, source: dict[str, str], problems: list[str],
    file_rows: dict[str, np.ndarray] | None = None,
) -> Dataset:
    """Run every rule family over the tables; raise one ContractError listing all problems."""
    found = _Findings(policy, problems)
    frames = {
        name: _parse_table(spec, raw[name], source[name], problems, timezone, (file_rows or {}).get(name))
        for name, spec in TABLES.items() if name in raw
    }
    order_ids = frames["orders"]["order_id"] if "orders" in frames and "order_id" in frames["orders"] else None
    if "orders" in frames and "status" in frames["orders"]:
        frames["orders"] = _map_statuses(frames["orders"], source["orders"], found)
    cleared: dict[str, dict[str, int]] = {}
    for name in frames:
        frames[name] = _check_plausible_dates(name, frames[name], source[name], found, cleared)
    for name, frame in frames.items():
        dup = _exact_duplicates(frame)
        message = _rows(source[name], None, dup, "", noun="exact duplicate row")
        frames[name] = found.soft(name, frame, dup, "duplicate_rows", "duplicate_row", message)
        _check_unique_key(frames[name], TABLES[name], source[name], problems)
    _check_order_items(frames, order_ids, source, problems)
    unmatched = _match_customers(frames, source, found)
    _follow_orders(frames, found)
    if file_rows is None:  # a part of a file (a partition): its caller judges the whole
        _check_required_left(frames, raw, source, found)
    if problems:
        raise ContractError("\n".join(problems))
    kept = {name: frame.reset_index(drop=True) for name, frame in frames.items()}
    set_aside = {
        name: pd.concat(parts).sort_values("file_row", kind="stable").reset_index(drop=True)
        for name, parts in found.quarantine.items()
    }
    for name, what in unmatched.items():
        (log.warning if name == "suppressions" else log.info)("%s: %s", source[name], what.describe())
    for name, columns in cleared.items():
        for column, n in columns.items():
            log.warning("%s: column %s: %d implausible timestamp%s set to missing", source[name], column, n,
                        "s" if n != 1 else "")
    return Dataset(**kept, quarantine=set_aside, row_counts={name: len(frame) for name, frame in kept.items()},
                   unmatched=unmatched, sources=dict(source), cleared=cleared)


def _parse_table(spec: TableSpec, raw: pd.DataFrame, source: str, problems: list[str], timezone: str,
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
        if column.kind in ("timestamp", "date"):
            values, unparsable = _PARSERS[column.kind](raw[name], timezone)
        else:
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


def _check_plausible_dates(name: str, frame: pd.DataFrame, source: str, found: _Findings,
                           cleared: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Timestamps outside [contract] min_date .. max_date fail, or are set aside by policy.

    Outside that range are warehouse placeholders (9999-12-31, 1900-01-01, 1970-01-01) and
    typos. Under "quarantine", rows with such a required timestamp (an order's, an event's) go
    to the quarantine; an optional one (a signup date, a contact time) is set to missing, which
    is what such a placeholder means, and counted in `Dataset.cleared`.
    """
    low = pd.Timestamp(found.policy.min_date)
    high = pd.Timestamp(found.policy.max_date) + pd.Timedelta(days=1)
    span = f"outside {found.policy.min_date} .. {found.policy.max_date}"
    hint = "placeholders or typos; if these dates are real, widen [contract] min_date / max_date"
    for column in TABLES[name].columns:
        if column.kind not in ("timestamp", "date") or column.name not in frame:
            continue
        values = frame[column.name]
        outside = (values < low) | (values >= high)
        if not outside.any():
            continue
        message = _rows(source, column.name, outside, span, values) + f"; {hint}"
        if column.required:
            frame = found.soft(name, frame, outside, "implausible_timestamps", "implausible_timestamp", message)
        elif found.policy.implausible_timestamps == "fail":
            found.problems.append(f'{message}; contract.implausible_timestamps is "fail": fix the file, or set it to '
                                  f'"quarantine" to clear these cells')
        else:
            frame = frame.assign(**{column.name: values.mask(outside)})
            cleared.setdefault(name, {})[column.name] = int(outside.sum())
    return frame


def _map_statuses(orders: pd.DataFrame, source: str, found: _Findings) -> pd.DataFrame:
    """orders.status as canonical statuses (`churn.data.statuses`); unknown values fail or go to quarantine."""
    mapped, unknown = statuses.canonical(orders["status"], found.policy.statuses)
    orders = orders.assign(status=mapped)
    if not unknown.any():
        return orders
    counts = orders.loc[unknown, "status"].value_counts().sort_index().sort_values(ascending=False, kind="stable")
    values = ", ".join(f"{value!r} ({n} row{'s' if n != 1 else ''})" for value, n in counts.iloc[:10].items())
    values += ", ..." if len(counts) > 10 else ""
    example = counts.index[0]
    message = (_rows(source, "status", unknown, "with a status churn does not know", orders["status"])
               + f"; unknown values: {values}; say what each means in churn.toml, e.g. [contract.statuses] "
                 f'{example} = "cancelled" (one of {", ".join(ORDER_STATUSES)}: only completed orders are purchases)')
    return found.soft("orders", orders, unknown, "unknown_statuses", "unknown_status", message)


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


def _check_order_items(frames: dict[str, pd.DataFrame], order_ids: pd.Series | None, source: dict[str, str],
                       problems: list[str]) -> None:
    """Every order_items row points at an order of the orders file (`order_ids`: all of them, even set aside)."""
    items = frames.get("order_items")
    if items is None or order_ids is None or "order_id" not in items:
        return
    orphan = items["order_id"].notna() & ~_isin(items["order_id"], order_ids)
    if orphan.any():
        rule = f"not in {source['orders']}"
        problems.append(_rows(source["order_items"], "order_id", orphan, rule, items["order_id"]))


def _match_customers(frames: dict[str, pd.DataFrame], source: dict[str, str], found: _Findings) -> dict[str, Unmatched]:
    """Look every table's customer_id up among the known customers; return what matched nothing.

    Known customers are the `customers` table when present, else the customers in `orders`.
    With a customers table, unknown orders, events and contacts fail or go to quarantine
    (`contract.unknown_customers`). Suppressions are kept and counted, or refused
    under `contract.unmatched_suppressions = "fail"`. Always an error, whatever the policy: ids
    that match a known customer once case, separators and leading zeros are ignored (two files
    spell ids differently), and orders, events or contacts none of whose rows is in the customers
    table (not the same ids: the policy would set the whole table aside). A suppression list may
    hold only people who never bought, so it is not refused for that; its unmatched ids are
    counted and logged as a warning.
    """
    customers = frames.get("customers")
    reference = "customers" if customers is not None else "orders"
    known_frame = frames.get(reference)
    if known_frame is None or "customer_id" not in known_frame:
        return {}
    known = known_frame["customer_id"].dropna()
    unmatched = {}
    for name in ("orders", "events", "contacts", "suppressions"):
        frame = frames.get(name)
        if name == reference or frame is None or "customer_id" not in frame:
            continue
        ids = frame["customer_id"]
        unknown = ids.notna() & ~_isin(ids, known)
        if not unknown.any():
            continue
        against = source[reference]
        loose = _loosely_known(ids[unknown], known)
        if loose.any():
            found.problems.append(_rows(
                source[name], "customer_id", loose.reindex(ids.index, fill_value=False),
                f"not in {against} as written, but in it once case, separators and leading zeros are ignored", ids)
                + "; the two files spell the same ids differently: export both with the same ids")
            continue
        if unknown.all() and customers is not None and name != "suppressions":
            first = ", ".join(repr(i) for i in known.iloc[:3])
            found.problems.append(_rows(source[name], "customer_id", unknown, f"not in {against}", ids)
                                  + f"; not one row matches, so these are not the same ids as in {against} "
                                    f"({first}, ...): export both with the same ids")
            continue
        quarantine = customers is not None and name != "suppressions" and found.policy.unknown_customers == "quarantine"
        unmatched[name] = _unmatched(ids[unknown], against, "quarantined" if quarantine else "kept")
        if name == "suppressions":
            if found.policy.unmatched_suppressions == "fail":
                found.problems.append(_rows(source[name], "customer_id", unknown, f"not in {against}", ids)
                                      + '; contract.unmatched_suppressions is "fail": fix the ids, or set it to '
                                        '"warn" to keep them (they still apply should these customers appear)')
            continue
        if customers is None:
            continue  # events or contacts of people who never bought: kept, counted
        message = _rows(source[name], "customer_id", unknown, f"not in {against}", ids)
        frames[name] = found.soft(name, frame, unknown, "unknown_customers", "unknown_customer", message)
    return unmatched


def _follow_orders(frames: dict[str, pd.DataFrame], found: _Findings) -> None:
    """The items of an order set aside go with it, with its reason: order_items never points at a missing order."""
    items, gone = frames.get("order_items"), found.quarantine.get("orders")
    if items is None or not gone or "order_id" not in items or "order_id" not in frames["orders"]:
        return
    gone_orders = pd.concat(gone)
    orphaned = ~_isin(items["order_id"], frames["orders"]["order_id"])
    for reason, rows in gone_orders.groupby("reason", sort=True):
        follow = orphaned & _isin(items["order_id"], rows["order_id"])
        if follow.any():
            items = found.set_aside("order_items", items, follow, reason)
            orphaned = orphaned.loc[items.index]
    frames["order_items"] = items


def _unmatched(ids: pd.Series, against: str, handling: str) -> Unmatched:
    distinct = ids.drop_duplicates()
    return Unmatched(rows=len(ids), customers=len(distinct), first_ids=tuple(distinct.iloc[:_SHOWN]),
                     against=against, handling=handling)


def _loosely_known(ids: pd.Series, known: pd.Series) -> pd.Series:
    """True where an id matches a known id only loosely (case, separators, leading zeros ignored)."""
    loose_known = spelling.loose_ids(known.drop_duplicates())
    return _isin(spelling.loose_ids(ids), loose_known)


def _check_required_left(frames: dict[str, pd.DataFrame], raw: dict[str, pd.DataFrame], source: dict[str, str],
                         found: _Findings) -> None:
    """A required table whose every row a policy set aside is an error, never an empty run."""
    for name, spec in TABLES.items():
        if not spec.required or name not in frames or len(frames[name]) or not len(raw[name]):
            continue
        parts = found.quarantine.get(name, [])
        reasons = pd.concat(parts)["reason"].value_counts() if parts else pd.Series(dtype=int)
        if not len(reasons):
            continue  # already reported as a problem
        why = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
        found.problems.append(f"{source[name]}: all {len(raw[name])} rows were set aside ({why}): nothing is "
                              f"left to work with; see the quarantine, fix the file or the [contract] policy")


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
    """Ids in one written form (see `churn.data.spelling`); scientific notation is unparsable."""
    ids = spelling.normal_ids(_cells(raw))
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
    text = _cells(raw)
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
    "label": _parse_label,
    "text": _parse_text,
    "timestamp": _parse_timestamp,
    "date": _parse_date,
    "float": _parse_float,
    "int": _parse_int,
    "bool": _parse_bool,
}
_UNPARSABLE = {
    "id": "in scientific notation, among numeric ids: a spreadsheet keeps six digits of such numbers, so the "
          "exact id may be lost; export the column as text",
    "timestamp": "not an ISO 8601 timestamp (e.g. 2017-03-01T10:20:00)",
    "date": "not an ISO 8601 date (e.g. 2017-03-01)",
    "float": "not a number",
    "int": "not a whole number",
    "bool": "not a bool (true/false, 1/0, yes/no)",
}


# --- small helpers -------------------------------------------------------------------------


def _settings(config: Config | ContractConfig) -> tuple[ContractConfig, str]:
    """The contract policies and the shop's time zone from a Config (or a ContractConfig: UTC)."""
    if isinstance(config, Config):
        return config.contract, config.data.timezone
    return config, "UTC"


def _file_rows(dataset: Dataset, name: str, flagged: pd.Series) -> pd.Series:
    """`flagged` (over a validated table) re-indexed by 0-based file position, for messages.

    The rows the contract set aside are in the quarantine with their file row; the kept rows
    fill the other positions in order.
    """
    positions = np.flatnonzero(flagged.to_numpy(dtype=bool))
    quarantined = dataset.quarantine.get(name)
    if quarantined is not None and len(quarantined):
        removed = np.sort(quarantined["file_row"].to_numpy(dtype="int64") - 1)
        positions = positions + np.searchsorted(removed - np.arange(len(removed)), positions, side="right")
    return pd.Series(True, index=positions)


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
