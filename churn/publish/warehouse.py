"""The history warehouse: one DuckDB file (`<out>/warehouse.duckdb`) with every run's rows.

Tables: `runs` (one row per run date: model, data fingerprint, counts, schema, manifest),
`scores` (every scored customer per run date), `assignments` (the customers taken for the
lists per run date, with action, arm, EV and the uplift used), `contacts` (what the service
team reported doing: rows of the data directory's contacts table, source "data", and rows
read back from the filled-in lists by `churn contacts import`, source "import"), `suppressions`
(customers the team marked "do not contact again"; the daily run adds them to the data's own
suppressions), `outcomes` (per listed customer: did they come back in the horizon) and
`uplift` (measured uplift per action and segment, shrunk towards the prior).

Writing a run replaces that run date's rows in one transaction: a rerun never duplicates
history, and a failure leaves the previous rows in place. The run's row also records the
publication token of the files of OUT/D/ it goes with (`churn.publish.publication`).

Readers never block the writer. DuckDB lets many processes read a file or one write it, not
both; when another process has the warehouse open (an analyst's read-only session), a write goes
to a copy of the file that then replaces it by rename: the reader keeps the snapshot it opened,
the next session sees the new rows. With no one reading, the write is in place (no copy).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from churn import faults
from churn.config import WinbackConfig
from churn.data import database
from churn.data.io import fsync_dir
from churn.decide.outcomes import uplift_for_run
from churn.decide.uplift import UpliftModel
from churn.errors import OutputError, writing_to

__all__ = ["FILE_NAME", "History", "path_in", "connect", "history", "write_run", "previous_run", "last_listed",
           "uplift_estimates", "read_table", "write_outcomes", "write_contacts", "imported_contacts",
           "contacts_with_imports", "suppressed", "publications", "erase", "clean", "settle", "interrupted", "holding"]

FILE_NAME = "warehouse.duckdb"
log = logging.getLogger(__name__)

SCHEMA = {
    "runs": """run_date DATE PRIMARY KEY, model_version VARCHAR, horizon_days INTEGER, campaign VARCHAR,
               data_fingerprint VARCHAR, n_scored BIGINT, orders_window BIGINT, latest_order DATE,
               table_schema VARCHAR, manifest VARCHAR, publication VARCHAR""",
    "scores": """run_date DATE, customer_id VARCHAR, p_churn DOUBLE, risk_band VARCHAR, lifecycle_stage VARCHAR,
                 value DOUBLE, value_tier VARCHAR, reason_code_1 VARCHAR, reason_code_2 VARCHAR,
                 reason_code_3 VARCHAR""",
    "assignments": """run_date DATE, customer_id VARCHAR, action VARCHAR, arm VARCHAR, rank INTEGER,
                      segment VARCHAR, uplift DOUBLE, uplift_source VARCHAR, cost DOUBLE, expected_value DOUBLE,
                      offer_value DOUBLE, p_churn DOUBLE, risk_band VARCHAR, value DOUBLE, value_tier VARCHAR,
                      lifecycle_stage VARCHAR, due_date DATE, explored BOOLEAN, selection_probability DOUBLE""",
    "contacts": """customer_id VARCHAR, list_date DATE, action VARCHAR, arm VARCHAR, contacted_ts TIMESTAMP,
                   outcome VARCHAR, reached BOOLEAN, offer_accepted BOOLEAN, source VARCHAR""",
    "suppressions": """customer_id VARCHAR, reason VARCHAR, since DATE, source VARCHAR""",
    "outcomes": """list_date DATE, customer_id VARCHAR, action VARCHAR, arm VARCHAR, segment VARCHAR,
                   risk_band VARCHAR, window_end DATE, came_back BOOLEAN, revenue DOUBLE,
                   coupon_redeemed BOOLEAN, contacted BOOLEAN, explored BOOLEAN, selection_probability DOUBLE""",
    "uplift": """measured_through DATE, action VARCHAR, segment VARCHAR, n_treated BIGINT, n_holdout BIGINT,
                 rate_treated DOUBLE, rate_holdout DOUBLE, measured DOUBLE, prior DOUBLE, shrunk DOUBLE,
                 source VARCHAR""",
    "uplift_models": """measured_through DATE PRIMARY KEY, model VARCHAR""",
}


# Columns added after the first release: older warehouses gain them (NULL) when opened for writing.
ADDED_COLUMNS = (("contacts", "reached", "BOOLEAN"), ("contacts", "offer_accepted", "BOOLEAN"),
                 ("contacts", "source", "VARCHAR"), ("runs", "publication", "VARCHAR"),
                 ("assignments", "explored", "BOOLEAN"), ("assignments", "selection_probability", "DOUBLE"),
                 ("outcomes", "explored", "BOOLEAN"), ("outcomes", "selection_probability", "DOUBLE"))
# Where a contacts row came from: the data directory's contacts table, or the team's filled-in list.
FROM_DATA, FROM_IMPORT = "data", "import"


def path_in(out_dir: str | Path) -> Path:
    """Where the warehouse of an output root lives."""
    return Path(out_dir) / FILE_NAME


@contextmanager
def connect(path: str | Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """An open connection with every table created (nothing is fetched from the network)."""
    path = Path(path)
    if read_only and not path.exists():
        read_only = False  # nothing to protect yet; create an empty warehouse
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = database.connect(path, read_only=read_only)
    except duckdb.IOException as err:
        holder = _lock_holder(err)
        if holder is not None and read_only:
            raise OutputError(f"{path} is open for writing in {holder} (DuckDB allows many readers or one writer): "
                              f"open it read-only there (read_only=True, or duckdb -readonly), then rerun") from None
        raise
    try:
        if not read_only:
            for name, columns in SCHEMA.items():
                con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
            for name, column, kind in ADDED_COLUMNS:  # warehouses written before these columns existed
                con.execute(f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {column} {kind}")
        yield con
    finally:
        con.close()


def _columns(table: str) -> list[str]:
    return [part.strip().split()[0] for part in SCHEMA[table].split(",") if part.strip()]


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Append a frame's schema columns (missing ones as NULL) to a table."""
    columns = _columns(table)
    staged = pd.DataFrame({c: frame[c] if c in frame else None for c in columns}, index=frame.index)
    con.register("_staged", staged)
    try:
        con.execute(f"INSERT INTO {table} SELECT {', '.join(columns)} FROM _staged")
    finally:
        con.unregister("_staged")


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a failed commit (a full disk) may have ended the transaction already: keep the first error
        raise
    con.execute("COMMIT")


def interrupted(err: BaseException) -> bool:
    """True for DuckDB's answer to Ctrl-C during a statement ("Query interrupted", a RuntimeError or
    InterruptException): the statement may still have taken effect (a COMMIT does)."""
    return isinstance(err, duckdb.InterruptException) or (isinstance(err, RuntimeError)
                                                          and "Query interrupted" in str(err))


def _lock_holder(err: duckdb.Error) -> str | None:
    """Which process holds a DuckDB file that we could not lock ("process 1234"), or None for other errors."""
    text = str(err)
    if "Could not set lock" not in text:
        return None
    pid = re.search(r"\(PID (\d+)\)", text)
    return f"process {pid.group(1)}" if pid else "another process"


# DuckDB's own words for the environment's refusals (it raises them as duckdb errors, not OSError).
_DUCKDB_WRITE_PROBLEMS = ("No space left on device", "Disk quota exceeded", "Read-only file system",
                          "Permission denied")


def _output_error(err: BaseException, path: Path) -> OutputError | None:
    """The OutputError for a DuckDB error caused by a full disk or a read-only place (or None).

    The first failure aborts the transaction, and the next statement's "transaction is aborted"
    may be what is raised: the cause is looked for along the chain of exceptions.
    """
    seen: BaseException | None = err
    problem = None
    while seen is not None and problem is None:
        problem = next((p for p in _DUCKDB_WRITE_PROBLEMS if p in str(seen)), None)
        seen = seen.__cause__ or seen.__context__
    if problem is None:
        return None
    return OutputError(f"cannot write {path}: {problem.lower()}. Free space or fix the permissions, then rerun; "
                       f"the history and the outputs published before are unchanged")


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _replace_file(new: Path, path: Path) -> None:
    """Put file `new` in place of `path` in one rename, flushed to disk first."""
    fd = os.open(new, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(new, path)
    fsync_dir(path.parent)


@contextmanager
def _private_copy(path: Path, reader: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a copy of the warehouse that replaces it by rename when the block succeeds.

    A write-ahead log beside the file (a write that was committed but not yet checkpointed, or
    one cut off) is copied with it, so the copy replays what the file holds; once the copy is in
    place that log belongs to no file and is removed (a log left beside a file it does not belong
    to stops every later open: see `settle`).
    """
    log.info("%s is open in %s: writing a copy and swapping it in (that session keeps its snapshot)", path.name,
             reader)
    copy = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with writing_to(path.parent):
            shutil.copyfile(path, copy)
            if _wal(path).exists():
                shutil.copyfile(_wal(path), _wal(copy))
        with connect(copy) as con:
            _checkpoint(con)  # the copied log is applied to the copy now, not left for later
            yield con
            con.execute("CHECKPOINT")
        with writing_to(path.parent):
            _replace_file(copy, path)
            _drop_superseded_wal(path)
    finally:
        copy.unlink(missing_ok=True)
        _wal(copy).unlink(missing_ok=True)


def _checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """Write everything the database's log holds into its file and empty the log.

    DuckDB skips a CHECKPOINT when nothing changed since it opened the file, and then keeps a log
    that a cut-off write left (replayed in memory, never discarded); a small write first makes
    the checkpoint happen.
    """
    con.execute("CREATE OR REPLACE TABLE _churn_checkpoint (written BOOLEAN)")
    con.execute("DROP TABLE _churn_checkpoint")
    con.execute("CHECKPOINT")


def _drop_superseded_wal(path: Path) -> None:
    """Remove the log of the file that `path` held before a copy replaced it (flushed)."""
    if _wal(path).exists():
        _wal(path).unlink()
        fsync_dir(path.parent)


def _unmatched_wal(err: BaseException, path: Path) -> OutputError | None:
    """The OutputError for a write-ahead log that belongs to another file than `path` (or None)."""
    if "WAL does not match" not in str(err) and "replaying WAL" not in str(err):
        return None
    return OutputError(f"{_wal(path)} does not belong to {path.name} (DuckDB: {str(err).splitlines()[0][:160]}): "
                       f"DuckDB cannot apply it to this file, and opens nothing while it is there. Move it aside "
                       f"(mv {_wal(path)} {_wal(path)}.unmatched), then rerun")


def settle(path: str | Path) -> bool:
    """Bring the warehouse to a clean state: its write-ahead log applied or discarded, and removed.

    A process killed while writing (or a checkpoint that failed on a full disk) leaves
    `warehouse.duckdb.wal`: DuckDB replays its committed part and ignores the rest when the file
    is next opened read-write, and the checkpoint here writes the result into the file and
    removes the log. Run first by every job that writes OUT (under the output lock), and before
    anything copies or rewrites the file. Returns True when there was a log to settle.

    When another process has the file open (an analyst's session), nothing is done here: the
    write then goes to a copy that takes the log with it (`_private_copy`). A log that belongs to
    another file is an OutputError saying what to do.
    """
    path = Path(path)
    if not _wal(path).exists() or not path.exists():
        return False
    try:
        with connect(path) as con:
            _checkpoint(con)
    except duckdb.Error as err:
        if _lock_holder(err) is not None:
            return False
        mapped = _unmatched_wal(err, path) or _output_error(err, path)
        if mapped is None:
            raise
        raise mapped from err
    if _wal(path).exists() and _wal(path).stat().st_size:
        raise OutputError(f"{_wal(path)} could not be written into {path.name} (a checkpoint left it): "
                          f"free space on the device, then rerun")
    _wal(path).unlink(missing_ok=True)
    log.warning("%s: applied the write-ahead log a stopped run left (%s)", path.parent, _wal(path).name)
    return True


@contextmanager
def _writing(path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection inside one transaction that commits when the block succeeds; no reader can block it.

    In place when no other process has the file open; otherwise on a copy swapped in by rename
    (see the module's docstring). A full disk or a read-only place raises OutputError, and the
    warehouse keeps its previous rows. Fault point: "history written" (before the commit).
    """
    path = Path(path)
    try:
        with ExitStack() as stack:
            try:
                con = stack.enter_context(connect(path))
            except duckdb.IOException as err:
                reader = _lock_holder(err)
                if reader is None:
                    raise
                con = stack.enter_context(_private_copy(path, reader))
            with _transaction(con):
                yield con
                faults.point("history written")
    except (duckdb.InterruptException, RuntimeError) as err:
        if not interrupted(err):
            raise
        raise KeyboardInterrupt(str(err)) from err
    except duckdb.Error as err:
        mapped = _unmatched_wal(err, path) or _output_error(err, path)
        if mapped is None:
            raise
        raise mapped from err


def write_run(path: str | Path, run: dict[str, Any], scores: pd.DataFrame, assignments: pd.DataFrame,
              contacts: pd.DataFrame | None = None) -> None:
    """Replace run date D's rows (runs, scores, assignments) and refresh contacts, in one transaction.

    `run["publication"]` is the token of the files published with these rows (None for a
    history-only write). A failure leaves the previous rows in place.
    """
    run_date = run["run_date"]
    with _writing(path) as con:
        for table in ("runs", "scores", "assignments"):
            con.execute(f"DELETE FROM {table} WHERE run_date = ?", [run_date])
        _insert(con, "runs", pd.DataFrame([{**run, "table_schema": json.dumps(run.get("table_schema"), sort_keys=True),
                                            "manifest": json.dumps(run.get("manifest"), sort_keys=True, default=str)}]))
        _insert(con, "scores", scores.assign(run_date=pd.Timestamp(run_date)))
        _insert(con, "assignments", assignments.assign(run_date=pd.Timestamp(run_date)))
        if contacts is not None and len(contacts):
            # The contacts table is cumulative: its list dates replace the same list dates here
            # (the rows it gave before; rows imported from the team's lists stay).
            con.register("_dates", pd.DataFrame({"d": pd.to_datetime(contacts["list_date"]).unique()}))
            con.execute("DELETE FROM contacts WHERE list_date IN (SELECT CAST(d AS DATE) FROM _dates) "
                        f"AND coalesce(source, '{FROM_DATA}') = '{FROM_DATA}'")
            con.unregister("_dates")
            _insert(con, "contacts", contacts.assign(source=FROM_DATA))


def publications(path: str | Path) -> dict[str, str | None]:
    """Each run date in the history and the publication token of its files (None: written before tokens)."""
    if not Path(path).exists():
        return {}
    with connect(path, read_only=True) as con:
        columns = {row[0] for row in con.execute("DESCRIBE runs").fetchall()}
        token = "publication" if "publication" in columns else "NULL"
        return {day.isoformat(): value for day, value in con.execute(f"SELECT run_date, {token} FROM runs").fetchall()}


def clean(path: str | Path) -> list[str]:
    """Delete the copies that dead writers left beside the warehouse (`.warehouse.duckdb.*.tmp`); return their names."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    leftovers = sorted(path.parent.glob(f".{path.name}.*.tmp")) + sorted(path.parent.glob(f".{path.name}.*.tmp.wal"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return [p.name for p in leftovers]


def holding(path: str | Path, customer_ids: set[str]) -> set[str]:
    """Which of the customers any warehouse table holds a row of."""
    if not Path(path).exists() or not customer_ids:
        return set()
    found: set[str] = set()
    with connect(path, read_only=True) as con:
        con.register("_asked", pd.DataFrame({"customer_id": sorted(customer_ids)}, dtype=object))
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        for table in SCHEMA:
            if "customer_id" in _columns(table) and table in tables:
                found |= {row[0] for row in con.execute(
                    f"SELECT DISTINCT customer_id FROM {table} WHERE customer_id IN (SELECT customer_id FROM _asked)"
                ).fetchall()}
    return found


def erase(path: str | Path, customer_ids: set[str], publications: dict[str, str]) -> dict[str, int]:
    """Remove customers from every table, set the given runs' publication tokens; return rows removed per table.

    The warehouse is rewritten into a new file (only the rows kept are copied) that replaces the
    old one by rename: a DELETE alone would leave the erased rows' bytes in the file's free
    blocks. A write cut off before its checkpoint is first finished in place.
    """
    path = Path(path)
    if not path.exists():
        return {}
    settle(path)  # the file must hold everything before it is copied (a reader meanwhile: OutputError below)
    if _wal(path).exists():
        raise OutputError(f"{path} holds an unfinished write ({_wal(path).name}) and another process has it open: "
                          f"close that session, then rerun `churn forget` (the ids are already suppressed)")
    fresh = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    removed: dict[str, int] = {}
    try:
        with connect(fresh) as con:
            quoted = str(path).replace("'", "''")
            con.execute(f"ATTACH '{quoted}' AS old (READ_ONLY)")
            con.register("_erased", pd.DataFrame({"customer_id": sorted(customer_ids)}, dtype=object))
            for table in SCHEMA:  # every table with a customer id column loses the customers' rows
                kept = [c for c in _columns(table) if c in {row[0] for row in con.execute(
                    f"DESCRIBE old.{table}").fetchall()}]
                where = ""
                if "customer_id" in _columns(table):
                    where = " WHERE customer_id NOT IN (SELECT customer_id FROM _erased)"
                    removed[table] = con.execute(f"SELECT count(*) FROM old.{table} WHERE customer_id IN "
                                                 f"(SELECT customer_id FROM _erased)").fetchone()[0]
                con.execute(f"INSERT INTO {table} ({', '.join(kept)}) SELECT {', '.join(kept)} FROM old.{table}{where}")
            for day, token in publications.items():
                con.execute("UPDATE runs SET publication = ? WHERE run_date = CAST(? AS DATE)", [token, day])
            con.unregister("_erased")
            con.execute("DETACH old")
        faults.point("history written")
        with writing_to(path.parent):
            _replace_file(fresh, path)
            _drop_superseded_wal(path)
    except duckdb.Error as err:
        mapped = _unmatched_wal(err, path) or _output_error(err, path)
        if mapped is None:
            raise
        raise mapped from err
    finally:
        fresh.unlink(missing_ok=True)
        _wal(fresh).unlink(missing_ok=True)
    return removed


def previous_run(path: str | Path, before: str) -> dict[str, Any] | None:
    """The latest run strictly before `before` (its counts and schema), or None."""
    if not Path(path).exists():
        return None
    with connect(path, read_only=True) as con:
        row = con.execute("SELECT run_date, n_scored, orders_window, table_schema FROM runs "
                          "WHERE run_date < CAST(? AS DATE) ORDER BY run_date DESC LIMIT 1", [before]).fetchone()
    if row is None:
        return None
    return {"run_date": row[0].isoformat(), "n_scored": row[1], "orders_window": row[2],
            "table_schema": json.loads(row[3]) if row[3] else None}


def last_listed(path: str | Path, before: str, contacts: pd.DataFrame | None = None) -> pd.Series:
    """The date each customer was last listed (either arm) or contacted, as seen from run date D (`before`).

    A listing k days after D counts as one k days before it (D - k): a cooldown keeps a
    customer's listings apart in both directions, so that dates scored out of order (two runs at
    once, a backfill after later days) never list a customer twice within a cooldown. D's own
    rows never count, and a later date listed none of D's customers when D was scored first, so
    a rerun of D lists the same customers.
    """
    day = pd.Timestamp(before)
    dates = []
    if Path(path).exists():
        with connect(path, read_only=True) as con:
            dates.append(con.execute("SELECT customer_id, max(run_date) AS last FROM assignments "
                                     "WHERE run_date < CAST(? AS DATE) GROUP BY customer_id", [before]).df())
            later = con.execute("SELECT customer_id, min(run_date) AS next FROM assignments "
                                "WHERE run_date > CAST(? AS DATE) GROUP BY customer_id", [before]).df()
            dates.append(pd.DataFrame({"customer_id": later["customer_id"],
                                       "last": day - (pd.to_datetime(later["next"]) - day)}))
    if contacts is not None and len(contacts):
        when = pd.to_datetime(contacts["list_date"])
        if "contacted_ts" in contacts:
            when = pd.to_datetime(contacts["contacted_ts"]).dt.normalize().fillna(when)
        when = when.where(when < day, day - (when - day))  # a contact on D itself or later: mirrored
        frame = pd.DataFrame({"customer_id": contacts["customer_id"].astype(str), "last": when})
        dates.append(frame[frame["last"] < day])
    if not dates:
        return pd.Series(dtype="datetime64[us]")
    both = pd.concat(dates, ignore_index=True)
    both["last"] = pd.to_datetime(both["last"])
    return both.groupby("customer_id")["last"].max()


def uplift_estimates(path: str | Path, through: str) -> pd.DataFrame | None:
    """The latest uplift estimates measured through `through` at the latest, or None."""
    if not Path(path).exists():
        return None
    with connect(path, read_only=True) as con:
        frame = con.execute("""
            SELECT * FROM uplift WHERE measured_through = (
                SELECT max(measured_through) FROM uplift WHERE measured_through <= CAST(? AS DATE))
            ORDER BY action, segment""", [through]).df()
    return frame if len(frame) else None


def read_table(path: str | Path, table: str) -> pd.DataFrame:
    """A whole warehouse table as a frame (empty when the warehouse does not exist)."""
    if table not in SCHEMA:
        raise ValueError(f"unknown warehouse table {table!r}")
    if not Path(path).exists():
        return pd.DataFrame(columns=_columns(table))
    with connect(path, read_only=True) as con:
        found = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()
        if not found[0]:  # a warehouse written before the table existed
            return pd.DataFrame(columns=_columns(table))
        return con.execute(f"SELECT * FROM {table}").df()


def write_outcomes(path: str | Path, outcomes: pd.DataFrame, uplift: pd.DataFrame,
                   model: UpliftModel | None = None) -> None:
    """Replace the outcomes of the list dates given, and the uplift rows and per-customer uplift model of
    their measurement date (a measurement that learnt no model removes an earlier one of that date)."""
    with _writing(path) as con:
        if len(uplift):
            through = str(pd.Timestamp(uplift["measured_through"].iloc[0]).date())
            con.execute("DELETE FROM uplift_models WHERE measured_through = CAST(? AS DATE)", [through])
            if model is not None:
                con.execute("INSERT INTO uplift_models VALUES (CAST(? AS DATE), ?)",
                            [through, json.dumps(model.to_dict(), sort_keys=True)])
        if len(outcomes):
            con.register("_dates", pd.DataFrame({"d": pd.to_datetime(outcomes["list_date"]).unique()}))
            con.execute("DELETE FROM outcomes WHERE list_date IN (SELECT CAST(d AS DATE) FROM _dates)")
            con.unregister("_dates")
            _insert(con, "outcomes", outcomes)
        if len(uplift):
            con.execute("DELETE FROM uplift WHERE measured_through = CAST(? AS DATE)",
                        [str(pd.Timestamp(uplift["measured_through"].iloc[0]).date())])
            _insert(con, "uplift", uplift)


def write_contacts(path: str | Path, contacts: pd.DataFrame, suppressions: pd.DataFrame) -> None:
    """Record what the team reported (one transaction): each (list date, customer, action) replaces
    its earlier imported row, so importing a list again after more calls changes nothing twice;
    the suppressions are added once per customer and reason."""
    with _writing(path) as con:
        if len(contacts):
            con.register("_keys", contacts[["list_date", "customer_id", "action"]].assign(
                list_date=pd.to_datetime(contacts["list_date"])))
            con.execute(f"""DELETE FROM contacts c WHERE coalesce(c.source, '') = '{FROM_IMPORT}' AND EXISTS (
                SELECT 1 FROM _keys k WHERE CAST(k.list_date AS DATE) = c.list_date
                AND k.customer_id = c.customer_id AND k.action = c.action)""")
            con.unregister("_keys")
            _insert(con, "contacts", contacts.assign(source=FROM_IMPORT))
        if len(suppressions):
            con.register("_new", suppressions)
            con.execute("DELETE FROM suppressions s WHERE EXISTS (SELECT 1 FROM _new n WHERE "
                        "n.customer_id = s.customer_id AND n.reason = s.reason)")
            con.unregister("_new")
            _insert(con, "suppressions", suppressions)


def imported_contacts(path: str | Path) -> pd.DataFrame:
    """The contacts the team reported through `churn contacts import` (empty when there are none)."""
    frame = read_table(path, "contacts")
    if "source" not in frame:  # written before imports existed
        return frame.iloc[:0]
    return frame[frame["source"].fillna("") == FROM_IMPORT].drop(columns="source").reset_index(drop=True)


def contacts_with_imports(path: str | Path, data_contacts: pd.DataFrame | None) -> pd.DataFrame | None:
    """What the team did: the data directory's contacts table and the lists imported into the
    warehouse; for the same list date, customer and action the import wins."""
    frames = [f for f in (imported_contacts(path), data_contacts) if f is not None and len(f)]
    if not frames:
        return data_contacts
    both = pd.concat([f.assign(list_date=pd.to_datetime(f["list_date"]), customer_id=f["customer_id"].astype(str))
                      for f in frames], ignore_index=True)
    return both.drop_duplicates(["list_date", "customer_id", "action"], keep="first").reset_index(drop=True)


def suppressed(path: str | Path) -> set[str]:
    """Customers the warehouse's suppressions table says never to list."""
    return set(read_table(path, "suppressions")["customer_id"].astype(str))


@dataclass(frozen=True)
class History:
    """What earlier runs tell run date D: the last listing per customer, the uplift to use, the previous
    run, and the customers suppressed through the warehouse (the team's "do not contact again")."""

    last_listed: pd.Series
    uplift: dict[str, dict[str, float]]
    uplift_report: dict[str, Any]
    previous_run: dict[str, Any] | None
    suppressed: set[str] = field(default_factory=set)
    uplift_model: UpliftModel | None = None  # learned per customer (churn outcomes), None until enough outcomes
    uplift_model_through: str | None = None  # the measurement it comes from


def history(path: str | Path, run_date: object, contacts: pd.DataFrame | None, winback: WinbackConfig) -> History:
    """Past listings (warehouse and contacts table), measured uplift and the previous run, all before D;
    the warehouse's suppressions, whenever they were added (a suppression always wins)."""
    run_date = str(run_date)
    uplift, report = uplift_for_run(uplift_estimates(path, run_date), winback)
    model, through = uplift_model(path, run_date)
    return History(last_listed(path, run_date, contacts), uplift, report, previous_run(path, run_date),
                   suppressed(path), model, through)


def uplift_model(path: str | Path, through: str) -> tuple[UpliftModel | None, str | None]:
    """The latest per-customer uplift model measured through `through` at the latest, and its date."""
    models = read_table(path, "uplift_models")
    models = models[pd.to_datetime(models["measured_through"]) <= pd.Timestamp(through)]
    if models.empty:
        return None, None
    latest = models.loc[pd.to_datetime(models["measured_through"]).idxmax()]
    return UpliftModel.from_dict(json.loads(latest["model"])), str(pd.Timestamp(latest["measured_through"]).date())
