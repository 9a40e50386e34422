"""One writer per output root: an operating-system file lock on `OUT/.churn.lock`.

A daily run reads the history (who was listed, for the cooldowns) and then writes its own day;
a second run writing the same output root meanwhile would not see the first one's listings.
So every job that writes under OUT (score, backfill, outcomes, contacts import, forget) holds
this lock for the whole job, validation included: a second run is refused (or waits) from the
first one's start. It is `flock(2)`: the kernel releases it when its holder exits, however it
exits (a kill -9 included), so a dead run never leaves the root locked. The file names the
holder (process id, host, job, since when) so that a waiting or refused run can say who it is.
Readers (analysts, `churn report`) never take it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from churn.errors import OutputError, writing_to

__all__ = ["LOCK_FILE", "held", "holder"]

LOCK_FILE = ".churn.lock"
POLL_SECONDS = 0.2  # how often a waiting run tries the lock again

log = logging.getLogger(__name__)


def holder(out_dir: str | Path) -> str:
    """Who holds (or last held) the lock of an output root, in words."""
    try:
        info = json.loads((Path(out_dir) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "another churn process"
    return (f"{info.get('job', 'a churn job')} (process {info.get('pid')} on {info.get('host')}, "
            f"since {info.get('since')})")


def check_output_root(out_dir: Path) -> None:
    """Refuse an output root that is a file (e.g. --out pointing at a spreadsheet)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"the output directory {out_dir} is a file: choose a directory (--out)")


# Output roots this process holds, by resolved path: a job inside a job of the same process (each
# daily run of a backfill, a flow's subflow) holds the root already, and flock(2) would make it wait
# for itself (another descriptor of the same file is another lock).
_held: dict[str, int] = {}


@contextmanager
def held(out_dir: str | Path, job: str, wait_seconds: float) -> Iterator[None]:
    """Hold the output root's lock for `job` (e.g. "score 2024-06-30"); wait up to `wait_seconds` for it.

    Re-entrant within a process (an inner job runs under the outer one's lock). A job that
    created OUT and fails before writing anything in it removes it again (with the lock file),
    so a refused first run leaves no trace. Raises OutputError naming the holder when the lock
    stays taken, or when OUT cannot be created or written (read-only, full, a file).
    """
    out_dir = Path(out_dir)
    check_output_root(out_dir)
    key = str(out_dir.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    created = not out_dir.exists()
    fd = _acquire(out_dir, job, wait_seconds)
    _held[key] = 0
    try:
        yield
    except BaseException:
        if created:
            _remove_if_untouched(out_dir)
        raise
    finally:
        del _held[key]
        os.close(fd)  # releases the lock


def _acquire(out_dir: Path, job: str, wait_seconds: float) -> int:
    """Open and lock OUT/.churn.lock (creating OUT), waiting up to `wait_seconds`; the locked descriptor."""
    deadline = time.monotonic() + wait_seconds
    waiting = False
    while True:
        with writing_to(out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise OutputError(
                    f"{out_dir} is being written by {holder(out_dir)}: wait until it finishes and rerun "
                    f"(or raise [output] lock_wait_seconds, {wait_seconds:g} s now)") from None
            if not waiting:
                log.warning("%s: waiting up to %g s for %s to finish", out_dir, wait_seconds, holder(out_dir))
                waiting = True
            time.sleep(POLL_SECONDS)
            continue
        except BaseException:
            os.close(fd)
            raise
        # The file locked must still be the one at the path: a holder that removed the OUT it had
        # created (see `held`) unlinks it while others may have it open. Then lock the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(out_dir / LOCK_FILE).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        info = {"job": job, "pid": os.getpid(), "host": socket.gethostname(),
                "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        try:
            with writing_to(out_dir / LOCK_FILE):
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _remove_if_untouched(out_dir: Path) -> None:
    """Remove an output root this job created, when it holds nothing but the lock file (still locked)."""
    try:
        if {p.name for p in out_dir.iterdir()} == {LOCK_FILE}:
            (out_dir / LOCK_FILE).unlink()
            out_dir.rmdir()
    except OSError:
        pass  # something else appeared, or the place went away: leave it
