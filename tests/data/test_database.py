"""DuckDB connections: offline, no progress bar, spills under the system temp directory, never the cwd."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from churn import config
from churn.data import database
from churn.errors import MemoryBudgetError


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


def test_the_budget_is_a_size_a_share_of_the_machines_memory_or_auto(monkeypatch):
    monkeypatch.setattr(config, "machine_memory", lambda: 16 * 10**9)
    assert config.budget_bytes("2GB") == 2 * 10**9 and database.budget_bytes("1.5GiB") == 3 * 2**29
    assert config.budget_bytes("512 mb") == 512 * 10**6
    assert config.budget_bytes("60%") == int(0.6 * 16 * 10**9)
    assert config.budget_bytes("auto") == 4 * 10**9  # a quarter of it
    monkeypatch.setattr(config, "machine_memory", lambda: 2 * 10**9)
    assert config.budget_bytes("auto") == 10**9  # never below 1 GB, what Complete Journey's training needs
    for bad in ("lots", "0GB", "101%", "-5MB", ""):
        with pytest.raises(ValueError, match='a size such as "2GB"'):
            config.budget_bytes(bad)


def test_the_budget_reaches_every_session_opened_within_and_nests(synthetic_dir):
    from churn.features.engine import FeatureBuilder

    default = _setting(database.connect(), "memory_limit")
    with database.budget("300MB"):
        assert _setting(database.connect(), "memory_limit") == "286.1 mib"  # 300e6 bytes
        assert _setting(FeatureBuilder(synthetic_dir).con, "memory_limit") == "286.1 mib"
        with database.budget("2GiB"):
            assert _setting(database.connect(), "memory_limit") == "2.0 gib"
        assert _setting(database.connect(), "memory_limit") == "286.1 mib"
        assert _setting(database.connect(memory_limit="1GiB"), "memory_limit") == "1.0 gib"  # given: that one
    assert _setting(database.connect(), "memory_limit") == default == "953.6 mib"  # the default setting, 1GB


def test_running_out_of_the_budget_is_an_error_naming_the_setting_and_what_to_do():
    with pytest.raises(MemoryBudgetError, match=r'budget of 16MB: raise \[engine\] duckdb_memory_limit in the settings file '
                                                r'\(the one given with --config, else \./churn\.toml; e\.g\. "4GB"'):
        with database.budget("16MB"):
            con = database.connect()
            # A hash join's build side held in memory: DuckDB cannot spill all of it.
            con.execute("SELECT count(*) FROM range(3000000) a JOIN range(3000000) b ON a.range = b.range "
                        "WHERE list_contains([a.range], b.range)").fetchall()
