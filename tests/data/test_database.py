"""DuckDB connections: offline, no progress bar, spills under the system temp directory, never the cwd."""

from __future__ import annotations

import tempfile
from pathlib import Path

from churn.data import database


def _setting(con, name: str) -> str:
    return str(con.execute(f"SELECT current_setting('{name}')").fetchone()[0]).lower()


def test_an_in_memory_connection_spills_under_the_system_temp_dir_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    con = database.connect(memory_limit="64MB")
    spill = Path(_setting(con, "temp_directory"))
    assert spill.parent == Path(tempfile.gettempdir()) and spill.name.startswith("churn-duckdb-")
    assert _setting(con, "autoinstall_known_extensions") == "false"
    assert _setting(con, "enable_progress_bar") == "false"
    # A sort larger than the memory limit spills; nothing lands in the working directory.
    con.execute("CREATE TABLE t AS SELECT range AS a, hash(range) AS b FROM range(6000000)")
    assert con.execute("SELECT count(*) FROM (SELECT * FROM t ORDER BY b)").fetchone()[0] == 6_000_000
    con.close()
    assert not list(tmp_path.iterdir()) and not spill.exists()
    assert database.spill_directory() != database.spill_directory()  # one folder per connection


def test_a_database_file_spills_beside_itself(tmp_path):
    con = database.connect(tmp_path / "w.duckdb")
    assert Path(str(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])) == tmp_path / "w.duckdb.tmp"
    con.close()
