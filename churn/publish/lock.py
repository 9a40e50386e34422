"""One writer per output root: an operating-system file lock on `OUT/.churn.lock`.

A daily run reads the history (who was listed, for the cooldowns) and then writes its own day;
a second run writing the same output root meanwhile would not see the first one's listings.
So every job that writes under OUT (score, backfill, outcomes, forget) holds this lock while it
reads and writes. It is `flock(2)`: the kernel releases it when its holder exits, however it
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


@contextmanager
def held(out_dir: str | Path, job: str, wait_seconds: float) -> Iterator[None]:
    """Hold the output root's lock for `job` (e.g. "score 2024-06-30"); wait up to `wait_seconds` for it.

    Raises OutputError naming the holder when the lock stays taken, or when OUT cannot be
    created or written (read-only, full, a file).
    """
    out_dir = Path(out_dir)
    check_output_root(out_dir)
    with writing_to(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OutputError(
                        f"{out_dir} is being written by {holder(out_dir)}: wait until it finishes and rerun "
                        f"(or raise [output] lock_wait_seconds, {wait_seconds:g} s now)") from None
                if not waiting:
                    log.warning("%s: waiting up to %g s for %s to finish", out_dir, wait_seconds, holder(out_dir))
                    waiting = True
                time.sleep(POLL_SECONDS)
        info = {"job": job, "pid": os.getpid(), "host": socket.gethostname(),
                "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        with writing_to(out_dir / LOCK_FILE):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
