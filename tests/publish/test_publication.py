"""Publishing a day with its history: one commit point, and a kill at any point ends in both or neither."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from churn import faults
from churn.data import io
from churn.publish import publication, warehouse

DAY = "2024-05-01"
ROOT = Path(__file__).parents[2]
# The publish sequence's points in order, with the version a kill there must end in (after recovery).
POINTS = {"files staged": "v1", "history written": "v1", "history committed": "v2", "files swapped": "v2",
          "old removed": "v2"}
FALLBACK_POINTS = {"old set aside": "v2", "files swapped": "v2", "old removed": "v2"}


def publish_day(out_dir: str | Path, version: str) -> None:
    """Publish DAY as a daily run does (files staged, history committed, files swapped), tagged `version`.

    The files are a small stand-in for the lists; the sequence and the history are the real ones.
    """
    n = 3 if version == "v1" else 4  # the two versions differ in files and rows
    scores = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "p_churn": [0.5] * n})
    taken = pd.DataFrame({"customer_id": ["c0"], "action": ["callback"], "arm": ["treated"], "rank": [1]})
    manifest = {"run_date": DAY, "version": version, "n_scored": n, "timings_seconds": {"publish": 0.1}}
    run = {"run_date": DAY, "model_version": version, "n_scored": n, "manifest": manifest}
    publication.publish(
        out_dir, DAY, lambda directory: scores.to_csv(directory / "scores.csv", index=False), manifest,
        lambda token: warehouse.write_run(warehouse.path_in(out_dir), {**run, "publication": token}, scores, taken))


def recover(out_dir: Path) -> None:
    """What every job that writes OUT does first (under the lock)."""
    with publication.held_root(out_dir, "test", wait_seconds=0):
        pass


def state(out_dir: Path) -> tuple[str, str, bool]:
    """(version in OUT/D's files, version in D's history, do they form one publication)."""
    path = warehouse.path_in(out_dir)
    files = json.loads((out_dir / DAY / "manifest.json").read_text())["version"]
    history = json.loads(warehouse.read_table(path, "runs").set_index(
        warehouse.read_table(path, "runs")["run_date"].astype(str))["manifest"][DAY])["version"]
    return files, history, publication.is_published(out_dir, DAY, warehouse.publications(path))


def leftovers(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir() if p.name.startswith(f".{DAY}") or p.name.endswith(".tmp"))


def _killed_at(point: str, out_dir: Path, exchange: bool = True) -> subprocess.Popen:
    """A child process publishing v2 into `out_dir` that kills itself (SIGKILL) when it reaches `point`."""
    code = f"""
import os, signal
from churn import faults
from churn.data import io
from tests.publish.test_publication import publish_day
if not {exchange}:
    io._exchange = lambda a, b: False  # a system without renameat2: two renames
def hook(name):
    if name == {point!r}:
        os.kill(os.getpid(), signal.SIGKILL)
faults.hook = hook
publish_day({str(out_dir)!r}, "v2")
"""
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two renames"])
def test_a_kill_at_any_point_of_the_publish_sequence_ends_in_both_or_neither(tmp_path, exchange):
    points = POINTS if exchange else FALLBACK_POINTS
    children = {}
    for i, point in enumerate(points):  # every point at once, one output root each
        out = tmp_path / f"out{i}"
        publish_day(out, "v1")
        children[point] = (out, _killed_at(point, out, exchange))
    for point, (out, child) in children.items():
        assert child.wait(timeout=120) == -signal.SIGKILL, f"the child did not reach {point!r}"
        if exchange:  # the exchange leaves no instant without OUT/D
            assert (out / DAY / "manifest.json").is_file(), point
        expected = points[point]
        recover(out)
        assert state(out) == (expected, expected, True), point
        assert leftovers(out) == [], point
        publish_day(out, "v2")  # and a rerun publishes normally
        assert state(out) == ("v2", "v2", True) and leftovers(out) == [], point


def test_an_error_before_the_commit_leaves_the_previous_day_whole(tmp_path, monkeypatch):
    publish_day(tmp_path, "v1")

    def fail(name: str) -> None:
        if name == "history written":
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(faults, "hook", fail)
    with pytest.raises(Exception, match="no space left"):
        publish_day(tmp_path, "v2")
    assert state(tmp_path) == ("v1", "v1", True) and leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), RuntimeError("Query interrupted")],
                         ids=["KeyboardInterrupt", "DuckDB interrupt"])
def test_an_interrupt_after_the_commit_took_effect_publishes_the_files_at_once(tmp_path, monkeypatch, failure):
    # Ctrl-C during DuckDB's COMMIT comes back as "Query interrupted" after the transaction is
    # durable: the staged files must not be deleted (before: no OUT/D with 121 rows in history;
    # on a rerun, the new token in history and the old files in OUT/D).
    publish_day(tmp_path, "v1")
    real = warehouse.write_run

    def commit_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        raise failure

    monkeypatch.setattr(warehouse, "write_run", commit_then_interrupt)
    with pytest.raises(KeyboardInterrupt if isinstance(failure, KeyboardInterrupt) else RuntimeError):
        publish_day(tmp_path, "v2")
    assert state(tmp_path) == ("v2", "v2", True) and leftovers(tmp_path) == []
    fresh = tmp_path / "fresh"  # a date never published before: OUT/D appears
    with pytest.raises((KeyboardInterrupt, RuntimeError)):
        publish_day(fresh, "v2")
    assert state(fresh) == ("v2", "v2", True) and leftovers(fresh) == []


def test_a_commit_whose_outcome_cannot_be_read_leaves_the_files_for_recovery(tmp_path, monkeypatch):
    publish_day(tmp_path, "v1")
    real = warehouse.write_run

    def commit_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    def unreadable(path):
        raise KeyboardInterrupt  # a second Ctrl-C while the failure path reads the history

    monkeypatch.setattr(warehouse, "write_run", commit_then_interrupt)
    monkeypatch.setattr(warehouse, "publications", unreadable)
    with pytest.raises(KeyboardInterrupt):
        publish_day(tmp_path, "v2")
    assert len(leftovers(tmp_path)) == 1  # the staged files stay ...
    monkeypatch.undo()
    recover(tmp_path)  # ... and the next job puts them in place
    assert state(tmp_path) == ("v2", "v2", True) and leftovers(tmp_path) == []


def test_sigint_in_a_child_right_after_the_commit_ends_with_files_and_history_agreeing(tmp_path):
    publish_day(tmp_path, "v1")
    # The child restores Python's Ctrl-C handler: a shell starts background jobs with SIGINT
    # ignored, and a Python started with it ignored keeps it so (this test then saw exit 0).
    code = f"""
import os, signal
signal.signal(signal.SIGINT, signal.default_int_handler)
from churn.publish import warehouse
from tests.publish.test_publication import publish_day
real = warehouse.write_run
def commit_then_sigint(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the COMMIT returns
warehouse.write_run = commit_then_sigint
publish_day({str(tmp_path)!r}, "v2")
"""
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           capture_output=True, text=True, timeout=120)
    assert child.returncode != 0 and "KeyboardInterrupt" in child.stderr
    assert state(tmp_path) == ("v2", "v2", True) and leftovers(tmp_path) == []


def test_a_rerun_of_the_same_day_publishes_the_same_token_and_files(tmp_path):
    publish_day(tmp_path, "v2")
    first = json.loads((tmp_path / DAY / "manifest.json").read_text())
    before = {p.name: p.read_bytes() for p in (tmp_path / DAY).iterdir()}
    publish_day(tmp_path, "v2")
    assert json.loads((tmp_path / DAY / "manifest.json").read_text())["publication"] == first["publication"]
    assert {p.name: p.read_bytes() for p in (tmp_path / DAY).iterdir()} == before
    assert os.stat(tmp_path / DAY).st_mode & 0o077 == 0o077 & ~_umask()  # readable like any new directory


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_recovery_removes_what_dead_runs_of_older_versions_left(tmp_path):
    publish_day(tmp_path, "v1")
    (tmp_path / f".{DAY}.old").write_text("a file where a directory was expected")  # blocked every rerun
    (tmp_path / f".{DAY}.staging-3hjadu2z").mkdir()  # every customer's scores, never removed
    (tmp_path / f".{DAY}.staging-3hjadu2z" / "scores.parquet").write_bytes(b"PAR1")
    (tmp_path / f".{warehouse.FILE_NAME}.0123456789ab.tmp").write_bytes(b"half a copy")
    recover(tmp_path)
    publish_day(tmp_path, "v2")
    assert state(tmp_path) == ("v2", "v2", True)
    assert leftovers(tmp_path) == []


def test_a_day_whose_files_were_set_aside_is_put_back(tmp_path):
    publish_day(tmp_path, "v1")
    os.rename(tmp_path / DAY, tmp_path / f".{DAY}.old-0123456789ab")  # killed between the two renames
    recover(tmp_path)
    assert state(tmp_path) == ("v1", "v1", True) and leftovers(tmp_path) == []


def test_files_without_history_are_not_published(tmp_path):
    # What a kill between the swap and the commit left before this design: backfill must redo the day.
    publish_day(tmp_path, "v1")
    warehouse.path_in(tmp_path).unlink()
    assert not publication.is_published(tmp_path, DAY, warehouse.publications(warehouse.path_in(tmp_path)))


def test_replace_dir_puts_a_directory_over_a_stray_file(tmp_path):
    target, staging = tmp_path / "d", tmp_path / ".d.staging-x"
    target.write_text("not a directory")
    staging.mkdir()
    (staging / "a").write_text("new")
    io.replace_dir(staging, target)
    assert (target / "a").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
