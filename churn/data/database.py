"""DuckDB connections, configured one way: offline, quiet, and spilling outside the working directory.

Every DuckDB connection of the library comes from `connect`: extensions are never installed or
loaded on demand (DuckDB would try to download them), no progress bar is drawn on the terminal,
and an in-memory database spills to its own folder under the system's temp directory (DuckDB's
default is `.tmp/` in whatever directory the process runs in; 537 MB appeared in a checkout). DuckDB
creates that folder on the first spill and removes it when the connection closes. A database file
spills beside itself (`<file>.tmp`), inside the output root.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

import duckdb

__all__ = ["connect", "spill_directory"]

_connections = itertools.count()


def spill_directory() -> Path:
    """A fresh folder name under the system temp directory for one connection's spill files."""
    return Path(tempfile.gettempdir()) / f"churn-duckdb-{os.getpid()}-{next(_connections)}"


def connect(path: str | Path | None = None, read_only: bool = False, memory_limit: str | None = None,
            preserve_insertion_order: bool = True) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection: in memory, or to the database file `path`.

    `memory_limit` (e.g. "512MB") bounds DuckDB's own memory; past it, sorts and aggregates spill
    to disk. `preserve_insertion_order=False` lets DuckDB return unordered results where the query
    has no ORDER BY (less memory for large scans).
    """
    config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                              "preserve_insertion_order": preserve_insertion_order}
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    if path is None:
        config["temp_directory"] = str(spill_directory())
        con = duckdb.connect(config=config)
    else:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    con.execute("SET enable_progress_bar = false")  # a session setting: it cannot go in `config`
    return con
