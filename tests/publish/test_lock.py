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
