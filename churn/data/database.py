"""DuckDB connections, configured one way: offline, quiet, and spilling outside the working directory.

Every DuckDB connection of the library comes from `connect`: extensions are never installed or
loaded on demand (DuckDB would try to download them), no progress bar is drawn on the terminal,
and an in-memory database spills to its own folder under the system's temp directory (DuckDB's
default is `.tmp/` in whatever directory the process runs in; 537 MB appeared in a checkout). DuckDB
creates that folder on the first spill and removes it when the connection closes. A database file
spills beside itself (`<file>.tmp`), inside the output root.

**The memory budget.** Each connection's DuckDB memory limit is the job's budget,
`[engine] duckdb_memory_limit` in churn.toml: the pipeline's jobs (and the command line's other
commands) run inside `budget(setting)`, which sets it for every connection opened within and
turns DuckDB's out-of-memory error into a `MemoryBudgetError` naming the setting, in the manner
of scikit-learn's `config_context(working_memory=...)`. Past the budget, sorts, aggregates and
most joins spill to disk; what cannot spill (a join's result built in memory) fails instead.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from churn.config import EngineConfig, budget_bytes
from churn.errors import MemoryBudgetError

__all__ = ["connect", "spill_directory", "budget", "set_budget", "out_of_memory", "SETTING"]

_connections = itertools.count()
SETTING = "[engine] duckdb_memory_limit"  # where the budget is set, as messages name it
# The budget of connections opened outside any `budget` block (tests, library use): the default setting.
_current = EngineConfig().duckdb_memory_limit


def _words(setting: str) -> str:
    """The budget in words for messages: the setting, and what it came to on this machine when not a size."""
    relative = str(setting).strip().lower() == "auto" or str(setting).strip().endswith("%")
    return f"{setting} ({budget_bytes(setting) / 1e6:,.0f} MB here)" if relative else setting


def set_budget(setting: str) -> None:
    """Make `setting` the budget of every DuckDB connection this process opens from now on (a command
    line process, a Dask worker); raises ValueError for a bad setting. Prefer `budget` in a library."""
    global _current
    budget_bytes(setting)
    _current = setting


@contextmanager
def budget(setting: str) -> Iterator[None]:
    """Within this block, DuckDB connections get `setting` as their memory limit (see `churn.config.budget_bytes`),
    and DuckDB's out-of-memory error is a MemoryBudgetError naming the setting and what to do.

    Blocks nest (the inner setting holds inside it). Raises ValueError for a bad setting.
    """
    global _current
    budget_bytes(setting)
    previous, _current = _current, setting
    try:
        yield
    except duckdb.OutOfMemoryException as err:
        raise out_of_memory(setting) from err
    finally:
        _current = previous


def out_of_memory(setting: str | None = None) -> MemoryBudgetError:
    """The error for DuckDB running out of its memory budget (`setting`, default the current one)."""
    return MemoryBudgetError(
        f"DuckDB ran out of memory within its budget of {_words(setting or _current)}: raise {SETTING} in "
        f'the settings file (the one given with --config, else ./churn.toml; e.g. "4GB", or "50%" of this '
        f"machine's memory), then rerun; outputs written before are unchanged")


def spill_directory() -> Path:
    """A fresh folder name under the system temp directory for one connection's spill files."""
    return Path(tempfile.gettempdir()) / f"churn-duckdb-{os.getpid()}-{next(_connections)}"


def connect(path: str | Path | None = None, read_only: bool = False, memory_limit: str | None = None,
            preserve_insertion_order: bool = True) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection: in memory, or to the database file `path`.

    `memory_limit` (e.g. "512MB", "50%", "auto"; default: the job's budget, see `budget`) bounds
    DuckDB's own memory; past it, sorts and aggregates spill to disk. `preserve_insertion_order=False`
    lets DuckDB return unordered results where the query has no ORDER BY (less memory for large scans).
    """
    config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                              "preserve_insertion_order": preserve_insertion_order,
                              "memory_limit": f"{budget_bytes(memory_limit or _current) // 2**10}KiB"}
    if path is None:
        config["temp_directory"] = str(spill_directory())
        con = duckdb.connect(config=config)
    else:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    con.execute("SET enable_progress_bar = false")  # a session setting: it cannot go in `config`
    # Parquet writers leave NaN out of a column's min/max, and DuckDB 2.0 then folds isnan(x) and
    # comparisons on x as if no NaN were there (duckdb/duckdb#25521): a NaN amount passed the
    # contract's checks unseen. The parquet extension is built in; loading it is needed to set this.
    con.execute("LOAD parquet")
    if con.execute("SELECT count(*) FROM duckdb_settings() WHERE name = 'parquet_can_have_nan'").fetchone()[0]:
        con.execute("SET GLOBAL parquet_can_have_nan = true")
    return con
