"""Shared fixtures: tiny hand-built frames, small synthetic data, one Prefect harness per session."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

# Prefect and matplotlib write their state to a throwaway home, never the checkout or ~. Child
# processes that import this module (the kill tests spawn some) share the session's home.
_OWN_HOME = "CHURN_TESTS_HOME" not in os.environ
_HOME = Path(tempfile.mkdtemp(prefix="churn-tests-")) if _OWN_HOME else Path(os.environ["CHURN_TESTS_HOME"])
os.environ["CHURN_TESTS_HOME"] = str(_HOME)
os.environ["CHURN_HOME"] = str(_HOME)
os.environ["PREFECT_HOME"] = str(_HOME / ".prefect")
os.environ.setdefault("MPLCONFIGDIR", str(_HOME / ".mplconfig"))
# Prefect's offline settings, for the tests that import it (pure-library tests never do).
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.pop("PREFECT_API_URL", None)  # a developer's server must not receive the tests' runs


def make_orders(rows: list[tuple]) -> pd.DataFrame:
    """Orders from (customer_id, date[, amount[, status]]) tuples; ids and amounts filled in."""
    records = []
    for i, row in enumerate(rows):
        customer, ts = row[0], row[1]
        amount = row[2] if len(row) > 2 else 10.0
        status = row[3] if len(row) > 3 else "completed"
        records.append({"customer_id": customer, "order_id": f"o{i}", "order_ts": pd.Timestamp(ts),
                        "amount": float(amount), "discount": 0.0, "status": status})
    frame = pd.DataFrame(records)
    frame["customer_id"] = frame["customer_id"].astype("str")
    frame["order_id"] = frame["order_id"].astype("str")
    frame["status"] = frame["status"].astype("str")
    frame["order_ts"] = frame["order_ts"].astype("datetime64[us]")
    return frame


def dataset_of(orders: pd.DataFrame, **tables: pd.DataFrame):
    """A validated Dataset from in-memory frames."""
    from churn.data.contract import validate_tables

    return validate_tables({"orders": orders, **tables})


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `churn ARGS` in-process through the real entry point; return (exit code, stdout, stderr)."""
    from churn import cli

    monkeypatch.setattr(sys, "argv", ["churn", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def pretend_terminal(monkeypatch) -> None:
    """Make the captured stdout and stderr claim to be a terminal (call it in the test: pytest swaps them)."""
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for stream in (sys.stdout, sys.stderr):
        monkeypatch.setattr(stream, "isatty", lambda: True)


# --- erasure: a distinctive customer id and a search for it in everything written ---------------

FORGOTTEN = "zz-erase-me-4711-q7"  # distinctive: its bytes appear nowhere by chance


def traces(root: Path, needle: str) -> list[str]:
    """Files under `root` holding `needle`: in their bytes, a zip member's (xlsx), a Parquet or DuckDB value."""
    import zipfile

    import pyarrow.parquet as pq

    found = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        data = path.read_bytes()
        hit = needle.encode() in data
        if not hit and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                hit = any(needle.encode() in archive.read(m) for m in archive.namelist())
        if not hit and data[:4] == b"PAR1":
            hit = needle in str(pq.read_table(path).to_pylist())
        if not hit and path.suffix == ".duckdb":
            from churn.publish import warehouse

            with warehouse.connect(path, read_only=True) as con:
                hit = any(needle in str(con.execute(f"SELECT * FROM {t}").fetchall()) for t in warehouse.SCHEMA)
        if hit:
            found.append(str(path.relative_to(root)))
    return found


def with_distinctive_id(synthetic_dir: Path, customer: str, target: Path) -> Path:
    """A copy of the data directory where `customer` is called FORGOTTEN in every table."""
    shutil.copytree(synthetic_dir, target)
    for table in ("orders", "customers", "events", "suppressions"):
        frame = pd.read_parquet(target / f"{table}.parquet")
        frame["customer_id"] = frame["customer_id"].replace(customer, FORGOTTEN)
        frame.to_parquet(target / f"{table}.parquet", index=False)
    return target


@pytest.fixture(scope="session")
def synthetic_small():
    """A small synthetic data set (all tables) shared by the slower tests."""
    from churn.data.datasets.synthetic import generate

    return generate(n_customers=1500, start="2023-01-01", end="2024-06-30", random_state=7)


@pytest.fixture(scope="session")
def synthetic_dir(synthetic_small, tmp_path_factory) -> Path:
    """The small synthetic data set written as a data directory (Parquet)."""
    from churn.data.datasets.synthetic import write

    path = tmp_path_factory.mktemp("synthetic")
    write(synthetic_small, path)
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect database for the whole session (starting one costs ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def dask_client():
    """One small Dask cluster for the session: 2 worker processes, 1 thread each (~10 s to start).

    Worker processes, not threads: the tests then see what a real cluster does (every argument and
    result pickled, each worker importing the library on its own, and never Prefect).
    """
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def engine(dask_client, tmp_path_factory):
    """A Dask engine of 4 partitions on the session's cluster; its partitions are reused across tests."""
    from churn.config import EngineConfig
    from churn.engine.dask import DaskEngine

    storage = str(tmp_path_factory.mktemp("partitions"))
    return DaskEngine(dask_client, EngineConfig(kind="dask", partitions=4), storage).warm()


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's throwaway home (Prefect's database, matplotlib's cache)."""
    if _OWN_HOME:
        shutil.rmtree(_HOME, ignore_errors=True)
