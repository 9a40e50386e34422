"""The history warehouse: a rerun replaces its date's rows in one transaction, history reads stay point-in-time."""

import errno
import subprocess
import sys
import time
from contextlib import contextmanager

import duckdb
import pandas as pd
import pytest

from churn import faults
from churn.errors import OutputError
from churn.publish import warehouse


def _run(date: str, n: int = 3) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    run = {"run_date": date, "model_version": "m1", "horizon_days": 30, "campaign": "winback",
           "data_fingerprint": "abc", "n_scored": n, "orders_window": 10 * n, "latest_order": date,
           "table_schema": {"orders": ["amount", "customer_id"]}, "manifest": {"run_date": date}}
    scores = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "p_churn": [0.1 * (i + 1) for i in range(n)],
                           "risk_band": pd.Categorical(["low"] * n), "lifecycle_stage": "active", "value": 1.0,
                           "value_tier": "mid", "reason_code_1": None})
    taken = pd.DataFrame({"customer_id": ["c0", "c1"], "action": ["callback", "trial"], "arm": ["treated", "holdout"],
                          "rank": [1, 1], "segment": "none", "uplift": 0.1, "uplift_source": "prior", "cost": 1.0,
                          "expected_value": 2.0, "offer_value": 0.0, "p_churn": 0.5, "risk_band": "high",
                          "value": 10.0, "due_date": pd.Timestamp(date) + pd.Timedelta(days=7)})
    return run, scores, taken


def _rows(path, table: str) -> pd.DataFrame:
    frame = warehouse.read_table(path, table)
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def test_a_rerun_replaces_its_date_and_keeps_the_others(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    warehouse.write_run(path, *_run("2024-05-02", n=4))
    before = {t: _rows(path, t) for t in ("runs", "scores", "assignments")}
    warehouse.write_run(path, *_run("2024-05-02", n=4))
    for table, rows in before.items():
        pd.testing.assert_frame_equal(_rows(path, table), rows)
    assert len(before["scores"]) == 3 + 4 and len(before["runs"]) == 2
    warehouse.write_run(path, *_run("2024-05-02", n=2))  # a different rerun replaces the date whole
    assert len(warehouse.read_table(path, "scores")) == 3 + 2


def test_a_failure_before_the_commit_keeps_the_previous_rows(tmp_path, monkeypatch):
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    before = _rows(path, "scores")

    def disk_full(point: str) -> None:
        if point == "history written":
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faults, "hook", disk_full)
    with pytest.raises(OSError):
        warehouse.write_run(path, *_run("2024-05-01", n=5))
    pd.testing.assert_frame_equal(_rows(path, "scores"), before)


@contextmanager
def _held_open(path, read_only: bool):
    """Another process with the warehouse open (an analyst's DuckDB session) until the block ends."""
    code = ("import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
            "print(con.execute('SELECT count(*) FROM scores').fetchone()[0], flush=True); sys.stdin.read()")
    session = subprocess.Popen([sys.executable, "-c", code, str(path), "ro" if read_only else "rw"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield int(session.stdout.readline())
    finally:
        session.stdin.close()
        session.wait(timeout=30)


def test_a_reader_in_another_process_never_blocks_a_write_and_keeps_its_snapshot(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    with _held_open(path, read_only=True) as seen:
        started = time.monotonic()
        warehouse.write_run(path, *_run("2024-05-02", n=4))
        warehouse.write_outcomes(path, pd.DataFrame(), pd.DataFrame())
        assert time.monotonic() - started < 5  # no waiting on the reader's lock
        assert seen == 3
        assert len(warehouse.read_table(path, "scores")) == 3 + 4  # a new session sees the new day
    assert list(tmp_path.iterdir()) == [path]  # no copy left behind
    with _held_open(path, read_only=True) as seen:
        assert seen == 7


def test_a_writing_session_elsewhere_is_a_clear_error_for_the_history_read(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    with _held_open(path, read_only=False):
        with pytest.raises(OutputError, match="open for writing in process .*read-only"):
            warehouse.previous_run(path, "2024-05-02")
        warehouse.write_run(path, *_run("2024-05-02"))  # the write itself still goes through, on a copy
    assert warehouse.previous_run(path, "2024-05-03")["run_date"] == "2024-05-02"


def test_publications_name_each_run_and_older_warehouses_get_the_column(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    con = duckdb.connect(str(path))  # a warehouse from before publication tokens
    con.execute(f"CREATE TABLE runs ({warehouse.SCHEMA['runs'].replace(', publication VARCHAR', '')})")
    con.execute("INSERT INTO runs (run_date, model_version) VALUES ('2024-04-30', 'm0')")
    con.close()
    assert warehouse.publications(path) == {"2024-04-30": None}
    run, scores, taken = _run("2024-05-01")
    warehouse.write_run(path, {**run, "publication": "abc123"}, scores, taken)
    assert warehouse.publications(path) == {"2024-04-30": None, "2024-05-01": "abc123"}


def test_erase_rewrites_the_file_without_the_customers_rows_or_bytes(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    run, scores, taken = _run("2024-05-01")
    scores.loc[1, "customer_id"] = taken.loc[1, "customer_id"] = "forget-me-7f3a"
    warehouse.write_run(path, run, scores, taken, pd.DataFrame({
        "customer_id": ["forget-me-7f3a", "c0"], "list_date": pd.to_datetime(["2024-05-01"] * 2),
        "action": "trial", "arm": "holdout"}))
    assert b"forget-me-7f3a" in path.read_bytes()  # the search below can see it
    removed = warehouse.erase(path, {"forget-me-7f3a"}, {"2024-05-01": "new-token"})
    assert removed == {"scores": 1, "assignments": 1, "contacts": 1, "suppressions": 0, "outcomes": 0}
    assert b"forget-me-7f3a" not in path.read_bytes()
    assert sorted(warehouse.read_table(path, "scores")["customer_id"]) == ["c0", "c2"]
    assert warehouse.publications(path) == {"2024-05-01": "new-token"}
    assert list(tmp_path.iterdir()) == [path]


def test_history_reads_the_listings_around_the_run_date_and_the_previous_run_before_it(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    warehouse.write_run(path, *_run("2024-05-03"))
    contacts = pd.DataFrame({"customer_id": ["c9", "c0"], "list_date": pd.to_datetime(["2024-04-20", "2024-05-05"]),
                             "action": "callback", "arm": "treated",
                             "contacted_ts": pd.to_datetime(["2024-04-22 10:00", None])})
    last = warehouse.last_listed(path, "2024-05-03", contacts)
    # both arms count; the run of D itself does not; c0's contact 2 days after D counts as 2 days before
    assert last.to_dict() == {"c0": pd.Timestamp("2024-05-01"), "c1": pd.Timestamp("2024-05-01"),
                              "c9": pd.Timestamp("2024-04-22")}
    # Scored out of order (before both runs): a listing k days later keeps the customer k days away.
    assert warehouse.last_listed(path, "2024-04-28", contacts).to_dict() == {
        "c0": pd.Timestamp("2024-04-25"), "c1": pd.Timestamp("2024-04-25"), "c9": pd.Timestamp("2024-04-22")}
    assert warehouse.previous_run(path, "2024-05-03")["run_date"] == "2024-05-01"
    assert warehouse.previous_run(path, "2024-05-01") is None


def test_uplift_estimates_are_the_latest_measured_by_the_run_date(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    for through, value in (("2024-05-01", 0.1), ("2024-06-01", 0.2)):
        warehouse.write_outcomes(path, pd.DataFrame(), pd.DataFrame({
            "measured_through": [pd.Timestamp(through)], "action": ["callback"], "segment": ["none"],
            "n_treated": [100], "n_holdout": [20], "measured": [value], "prior": [0.1], "shrunk": [value],
            "source": ["measured"]}))
    assert warehouse.uplift_estimates(path, "2024-04-30") is None
    assert warehouse.uplift_estimates(path, "2024-05-20")["shrunk"].tolist() == [0.1]
    assert warehouse.uplift_estimates(path, "2024-07-01")["shrunk"].tolist() == [0.2]


def test_a_full_disk_met_by_duckdb_is_an_output_error_even_behind_an_aborted_transaction(tmp_path, monkeypatch):
    # On a real full disk DuckDB's INSERT fails, and the next statement raises "transaction is
    # aborted": the cause is found along the chain.
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))

    def full(point: str) -> None:
        try:
            raise duckdb.IOException(f'IO Error: Could not write file "{path}.wal": No space left on device')
        except duckdb.IOException:
            raise duckdb.TransactionException("TransactionContext Error: Current transaction is aborted")

    monkeypatch.setattr(faults, "hook", full)
    with pytest.raises(OutputError, match="no space left on device.*unchanged"):
        warehouse.write_run(path, *_run("2024-05-02"))
    assert warehouse.publications(path) == {"2024-05-01": None}


def test_a_warehouse_from_before_imports_gains_the_new_columns_and_tables(tmp_path):
    import duckdb

    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE contacts (customer_id VARCHAR, list_date DATE, action VARCHAR, arm VARCHAR, "
                "contacted_ts TIMESTAMP, outcome VARCHAR)")
    con.execute("INSERT INTO contacts VALUES ('c1', DATE '2024-05-01', 'callback', 'treated', NULL, NULL)")
    con.close()
    assert warehouse.read_table(path, "suppressions").empty  # read-only: a missing table reads empty
    assert warehouse.imported_contacts(path).empty and warehouse.suppressed(path) == set()
    warehouse.write_contacts(path, pd.DataFrame({"customer_id": ["c2"], "list_date": [pd.Timestamp("2024-05-01")],
                                                 "action": ["callback"], "arm": ["treated"], "reached": [True]}),
                             pd.DataFrame({"customer_id": ["c2"], "reason": ["do_not_contact"],
                                           "since": [pd.Timestamp("2024-05-01")], "source": ["contacts import"]}))
    contacts = warehouse.read_table(path, "contacts")
    assert contacts["customer_id"].tolist() == ["c1", "c2"] and contacts["source"].tolist()[1] == "import"
    assert warehouse.suppressed(path) == {"c2"}


def _killed_after_a_commit(path, date: str, cut_bytes: int = 0) -> None:
    """A writer in another process that commits D's run row and is killed before its checkpoint.

    It leaves `warehouse.duckdb.wal` holding that commit; `cut_bytes` cut off the log's end, as a
    kill during the COMMIT does (DuckDB then ignores the unfinished transaction, and keeps the log).
    """
    code = ("import os, signal, sys, duckdb; con = duckdb.connect(sys.argv[1]); "
            "con.execute(\"INSERT INTO runs (run_date, model_version) VALUES (CAST(? AS DATE), 'killed')\", "
            "[sys.argv[2]]); os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code, str(path), date], timeout=60)
    wal = path.with_name(path.name + ".wal")
    assert wal.stat().st_size > cut_bytes
    if cut_bytes:
        with open(wal, "r+b") as f:
            f.truncate(wal.stat().st_size - cut_bytes)


@pytest.mark.parametrize("cut", [0, 20], ids=["committed log", "cut-off log"])
def test_erase_after_a_killed_write_leaves_no_log_that_belongs_to_another_file(tmp_path, cut):
    # Before: `churn forget` swapped its new file in beside the killed write's log, and every
    # later job exited 70 "WAL does not match database file".
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    _killed_after_a_commit(path, "2024-05-02", cut)
    warehouse.erase(path, {"c1"}, {})
    assert list(tmp_path.iterdir()) == [path]  # no log left
    expected = {"2024-05-01"} | ({"2024-05-02"} if not cut else set())  # a committed write is kept
    assert set(warehouse.publications(path)) == expected
    warehouse.write_run(path, *_run("2024-05-03"))  # and every later job opens it
    assert sorted(warehouse.read_table(path, "scores")["customer_id"]) == ["c0", "c0", "c1", "c2", "c2"]


@pytest.mark.parametrize("cut", [0, 20], ids=["committed log", "cut-off log"])
def test_every_job_settles_a_killed_writes_log_first(tmp_path, cut):
    from churn.publish import publication

    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    _killed_after_a_commit(path, "2024-05-02", cut)
    with publication.held_root(tmp_path, "test", wait_seconds=0):
        assert not path.with_name(path.name + ".wal").exists()
    assert set(warehouse.publications(path)) == {"2024-05-01"} | ({"2024-05-02"} if not cut else set())


def test_a_write_on_a_copy_takes_the_log_with_it_and_leaves_none_behind(tmp_path):
    # A reader holds the file (so it cannot be settled in place) and a killed write left its log:
    # the copy replays the log, and once the copy is in place no log is left beside it.
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    _killed_after_a_commit(path, "2024-05-02")
    with _held_open(path, read_only=True):
        warehouse.write_run(path, *_run("2024-05-03"))
    assert list(tmp_path.iterdir()) == [path]
    assert set(warehouse.publications(path)) == {"2024-05-01", "2024-05-02", "2024-05-03"}


def test_a_log_that_belongs_to_another_file_is_an_output_error_saying_what_to_do(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    other = tmp_path / "other" / warehouse.FILE_NAME
    other.parent.mkdir()
    warehouse.write_run(path, *_run("2024-05-01"))
    warehouse.write_run(other, *_run("2024-05-01"))
    _killed_after_a_commit(other, "2024-05-02")
    other.with_name(other.name + ".wal").rename(path.with_name(path.name + ".wal"))
    with pytest.raises(OutputError, match=r"warehouse.duckdb.wal does not belong to warehouse.duckdb.*Move it aside"):
        warehouse.settle(path)
