"""A day's outputs published with its history: staged, committed, swapped in; finished after a crash.

The promise of a daily run: `OUT/D/` and D's warehouse rows come from the same run (or both
from the previous one), whatever happens (a kill, a full disk, a power cut). The sequence
(`churn.pipeline._publish`; fault points in quotes, see `churn.faults`):

1. **stage**: every file is written to `OUT/.D.staging-<random>/` and flushed to disk; the
   manifest records the publication's token, a hash of the files' contents ("files staged").
2. **commit**: D's warehouse rows are replaced in one transaction that records the same token
   in `runs.publication` ("history written", then "history committed"). This is the commit point.
3. **swap**: the staged directory takes the place of OUT/D (`churn.data.io.replace_dir`:
   "old set aside", "files swapped", "old removed").

A crash before the commit leaves only a staging directory, which the next job deletes. A crash
after it leaves the history ahead of the files: `recover`, which every job that writes OUT runs
first (under the output lock), finds the staging directory whose token the warehouse committed
and swaps it in. So D is *published* when the warehouse's token for D is the one in
OUT/D/manifest.json; the same files give the same token, so a rerun changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churn import faults
from churn.data.io import fsync_tree, new_staging_dir, remove_path, replace_dir, write_json
from churn.errors import writing_to
from churn.publish import lock, warehouse

__all__ = ["MANIFEST", "Staged", "publish", "stage", "discard", "swap_in", "token_of", "is_published", "recover",
           "held_root"]

MANIFEST = "manifest.json"
# What a writer leaves beside OUT/D while it works: .D.staging-<random> and .D.old-<random>
# (".D.old" from versions before these names).
_LEFTOVER = re.compile(r"^\.(\d{4}-\d{2}-\d{2})\.(staging|old)(-[A-Za-z0-9_]+)?$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staged:
    """A day's outputs written and flushed beside their place, with their token and final manifest."""

    target: Path
    staging: Path
    token: str
    manifest: dict[str, Any]


def content_token(directory: Path, manifest: dict[str, Any]) -> str:
    """A hash of a publication: every file but the manifest, and the manifest without its timings.

    The same run on the same data writes the same bytes (tested), so a rerun gets the same token.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name == MANIFEST:
            continue
        with open(path, "rb") as f:
            digest.update(name.encode() + b"\0" + hashlib.file_digest(f, "sha256").digest())
    stable = {k: v for k, v in manifest.items() if k not in ("timings_seconds", "publication")}
    digest.update(json.dumps(stable, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def stage(out_dir: str | Path, run_date: object, write: Callable[[Path], None], manifest: dict[str, Any]) -> Staged:
    """Write a day's outputs into a staging directory beside OUT/D: `write(staging)`, then the manifest with the token.

    Everything is flushed to disk before this returns. On any error the staging directory is
    deleted and nothing else has changed.
    """
    target = Path(out_dir) / str(run_date)
    staging = new_staging_dir(target)
    try:
        write(staging)
        token = content_token(staging, manifest)
        final = {**manifest, "publication": token}
        write_json(final, staging / MANIFEST)
        fsync_tree(staging)
        faults.point("files staged")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Staged(target, staging, token, final)


def publish(out_dir: str | Path, run_date: object, write: Callable[[Path], None], manifest: dict[str, Any],
            commit: Callable[[str], None]) -> Staged:
    """Publish a day: stage its files (`write`), `commit(token)` its history (the commit point), swap the files in.

    A failure before the commit leaves the previous files and history; after it, the files
    follow at the next job's recovery if this one cannot finish. Environment errors (a full
    disk, a read-only place) are OutputErrors.
    """
    with writing_to(out_dir):
        staged = stage(out_dir, run_date, write, manifest)
        try:
            commit(staged.token)
        except BaseException:
            _settle_after_failed_commit(out_dir, staged)
            raise
        faults.point("history committed")
        swap_in(staged)
    return staged


def _settle_after_failed_commit(out_dir: str | Path, staged: Staged) -> None:
    """After `commit` raised: swap the files in if the history did commit, delete them if it did not.

    The commit may have happened before the failure surfaced (Ctrl-C during DuckDB's COMMIT comes
    back as "Query interrupted" after the transaction is durable), so the staged files are deleted
    only when the warehouse is read and does not hold their token. When it cannot be read (a second
    interrupt, a locked or unreadable file), the staged directory stays for the next job's `recover`.
    """
    try:
        committed = warehouse.publications(warehouse.path_in(out_dir)).get(str(staged.target.name))
    except BaseException:  # noqa: BLE001 - whatever stops the check, the files must stay for recovery
        log.warning("%s: left %s for the next job to finish or remove", out_dir, staged.staging.name)
        return
    if committed == staged.token:
        swap_in(staged)
        log.warning("%s: the history of %s was committed before the failure: its files are in place",
                    out_dir, staged.target.name)
    else:
        discard(staged)


def discard(staged: Staged) -> None:
    """Delete a staged publication that will not be committed."""
    shutil.rmtree(staged.staging, ignore_errors=True)


def swap_in(staged: Staged) -> Path:
    """Put a staged publication in place of OUT/D (after its history is committed); return OUT/D."""
    replace_dir(staged.staging, staged.target)
    return staged.target


def token_of(directory: Path) -> str | None:
    """The publication token in a directory's manifest (None: no manifest, unreadable, or written before tokens)."""
    try:
        token = json.loads((directory / MANIFEST).read_text(encoding="utf-8")).get("publication")
    except (OSError, ValueError, AttributeError):
        return None
    return token if isinstance(token, str) else None


def is_published(out_dir: str | Path, run_date: object, committed: dict[str, str | None]) -> bool:
    """True when OUT/D and D's history are the same publication.

    `committed` maps each run date in the warehouse to its token (`warehouse.publications`);
    a row written before tokens existed (None) goes with any complete OUT/D.
    """
    day = str(run_date)
    if day not in committed:
        return False
    directory = Path(out_dir) / day
    if committed[day] is None:
        return (directory / MANIFEST).is_file()
    return token_of(directory) == committed[day]


def recover(out_dir: str | Path, committed: dict[str, str | None]) -> list[str]:
    """Finish or undo what dead writers left under OUT; return one line per thing done (for the log).

    A staging directory whose token the warehouse committed and that OUT/D does not hold yet is
    swapped in (its history is ahead of its files); every other staging directory is deleted. A
    previous OUT/D set aside (`.D.old-*`) is put back if OUT/D is missing, else deleted. Run it
    under the output lock (`churn.publish.lock`): it must not see a live writer's work.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [(m.group(2), m.group(1), out_dir / m.group(0)) for m in map(_LEFTOVER.match, os.listdir(out_dir)) if m]
    done = []
    for kind, day, path in sorted(found, key=lambda f: (f[0] != "staging", f[1], f[2])):  # staging first
        target = out_dir / day
        if not os.path.lexists(path):
            continue
        token = committed.get(day)
        if kind == "staging" and token is not None and path.is_dir() and token_of(path) == token \
                and token_of(target) != token:
            fsync_tree(path)
            replace_dir(path, target)
            done.append(f"finished publishing {day} (its history was committed before a crash)")
        elif kind == "old" and not os.path.lexists(target) and path.is_dir() and (path / MANIFEST).is_file():
            os.rename(path, target)
            done.append(f"put {day} back in place (a crash had left it aside)")
        else:
            remove_path(path)
            done.append(f"removed {path.name}, left by a run that stopped")
    for line in done:
        log.warning("%s: %s", out_dir, line)
    return done


@contextmanager
def held_root(out_dir: str | Path, job: str, wait_seconds: float) -> Iterator[None]:
    """Hold the output root's lock for `job`, after finishing or removing what dead runs left there.

    Every job that writes OUT runs inside this (`churn.pipeline`): score, backfill, outcomes, forget.
    """
    out_dir = Path(out_dir)
    with lock.held(out_dir, job, wait_seconds):
        path = warehouse.path_in(out_dir)
        with writing_to(out_dir):
            warehouse.clean(path)
            warehouse.settle(path)
            recover(out_dir, warehouse.publications(path))
        yield
