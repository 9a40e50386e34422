"""One writer per output root: another process's lock makes a run wait or refuse, naming the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from churn.errors import OutputError
from churn.publish import lock

ROOT = Path(__file__).parents[2]


def _holder(out_dir: Path) -> subprocess.Popen:
    """Another process holding OUT's lock as "score 2024-06-30" until its stdin closes."""
    code = ("import sys; from churn.publish import lock\n"
            "with lock.held(sys.argv[1], 'score 2024-06-30', 0):\n"
            "    print('locked', flush=True); sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(out_dir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_writer_is_refused_with_the_holders_name(tmp_path):
    child = _holder(tmp_path)
    try:
        with pytest.raises(OutputError, match=rf"score 2024-06-30 \(process {child.pid} on .*wait until it finishes"):
            with lock.held(tmp_path, "score 2024-07-01", wait_seconds=0):
                pass
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    with lock.held(tmp_path, "score 2024-07-01", wait_seconds=0):  # free once the holder is done
        assert "score 2024-07-01" in lock.holder(tmp_path)


def test_a_second_writer_waits_for_the_first_to_finish(tmp_path, caplog):
    child = _holder(tmp_path)
    threading.Timer(1.0, child.stdin.close).start()
    started = time.monotonic()
    with lock.held(tmp_path, "score 2024-07-01", wait_seconds=60):
        waited = time.monotonic() - started
    child.wait(timeout=30)
    assert 0.5 < waited < 30
    assert f"waiting up to 60 s for score 2024-06-30 (process {child.pid}" in caplog.text


def test_a_killed_holder_frees_the_lock_at_once(tmp_path):
    child = _holder(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    with lock.held(tmp_path, "score 2024-07-01", wait_seconds=0):  # no stale lock to clear by hand
        pass


def test_an_output_root_that_is_a_file_or_unwritable_is_an_output_error(tmp_path):
    (tmp_path / "lists.xlsx").write_text("a spreadsheet")
    with pytest.raises(OutputError, match="is a file: choose a directory"):
        with lock.held(tmp_path / "lists.xlsx", "score", 0):
            pass
    with pytest.raises(OutputError, match="not a directory"):
        with lock.held(tmp_path / "lists.xlsx" / "out", "score", 0):
            pass


def test_a_job_inside_a_job_of_the_same_process_holds_the_root_already(tmp_path):
    # A backfill holds OUT for all its dates; each date's daily run takes the lock again in the same
    # process (flock on a second descriptor would wait for itself).
    with lock.held(tmp_path, "backfill 2024-06-01..2024-06-30", wait_seconds=0):
        with lock.held(tmp_path, "score 2024-06-01", wait_seconds=0):
            pass
        with lock.held(tmp_path, "score 2024-06-02", wait_seconds=0):
            assert "backfill" in lock.holder(tmp_path)  # still the outer job's
        code = ("import sys; from churn.publish import lock\n"
                "with lock.held(sys.argv[1], 'score', 0): pass\n")
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
        assert other.returncode == 1 and "is being written by backfill" in other.stderr
    with lock.held(tmp_path, "score 2024-07-01", wait_seconds=0):  # released by the outer job only
        pass


def test_a_job_that_created_the_root_and_failed_before_writing_leaves_nothing(tmp_path):
    fresh = tmp_path / "out"
    with pytest.raises(ValueError):
        with lock.held(fresh, "score 2024-06-30", wait_seconds=0):
            assert (fresh / lock.LOCK_FILE).exists()
            raise ValueError("the data broke the contract")
    assert not fresh.exists()
    with pytest.raises(ValueError):  # something written: the root stays
        with lock.held(fresh, "score 2024-06-30", wait_seconds=0):
            (fresh / "kept").write_text("x")
            raise ValueError
    assert (fresh / "kept").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ValueError):  # a root that was there before is never removed
        with lock.held(existing, "score 2024-06-30", wait_seconds=0):
            raise ValueError
    assert existing.is_dir()


def test_a_waiting_job_locks_the_new_file_when_the_holder_removed_the_root(tmp_path):
    # The holder created OUT and failed: it unlinks the lock file another run has open and waits on.
    fresh = tmp_path / "out"
    code = ("import sys; from churn.publish import lock\n"
            "try:\n"
            "    with lock.held(sys.argv[1], 'score 2024-06-30', 0):\n"
            "        print('locked', flush=True); sys.stdin.read(); raise SystemExit(3)\n"
            "except SystemExit as done:\n"
            "    raise SystemExit(done.code)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(fresh)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)
    assert child.stdout.readline().strip() == "locked"
    threading.Timer(0.5, child.stdin.close).start()
    with lock.held(fresh, "score 2024-07-01", wait_seconds=60):
        assert child.wait(timeout=30) == 3
        path = fresh / lock.LOCK_FILE
        assert path.exists() and "score 2024-07-01" in lock.holder(fresh)  # the file at the path, locked
        code = ("import sys; from churn.publish import lock\n"
                "with lock.held(sys.argv[1], 'score', 0): pass\n")
        other = subprocess.run([sys.executable, "-c", code, str(fresh)], capture_output=True, text=True, cwd=ROOT)
        assert other.returncode == 1 and "is being written by score 2024-07-01" in other.stderr
