"""The feature cache: a run date's features, reused while the data files, settings and code stay the same.

The features of every customer as of a date are the longest step of a daily run on a large
store, and a rerun of the same date on the same files (a retried run, `churn backfill --force`,
a rerun after a failed publish) needs exactly the same frame. The key hashes the data
fingerprint (SHA-256 of every input file, from the contract), the run date, the `[data]` and
`[contract]` settings and the library's code. An entry is one Parquet file, written atomically
(a reader sees a whole file or none). Only Parquet is ever read back: a file that does not read
as Parquet (truncated, planted, from another tool), or reads as Parquet that the cache did not
write for that key (another file copied in its place, a directory), is a miss, deleted and
recomputed: each entry records its key and a hash of its columns and types in the Parquet
metadata, checked on every read. Nothing is unpickled. Entries older than `[cache] feature_days` are deleted, then the oldest until the
cache fits in `feature_max_gb`. Deleting the directory clears the cache.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import churn
from churn.config import Config

__all__ = ["FeatureCache", "code_version", "features_key"]

log = logging.getLogger(__name__)
SUFFIX = ".parquet"
_STAMP = b"churn.feature_cache"  # Parquet metadata: {"key": ..., "schema": hash of column names and types}


def _schema_hash(schema: pa.Schema) -> str:
    """A hash of a table's column names and types (not its metadata)."""
    text = "\n".join(f"{field.name}\t{field.type}" for field in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@functools.cache
def code_version() -> str:
    """A hash of churn's version and library code: new code, new cache entries.

    All of the library's modules, not only the feature engine: the features draw on helpers in
    other modules, and a missed helper would serve stale features. A code change is rare in
    production, so the cost is one recomputation per date after an upgrade.
    """
    package = Path(churn.__file__).parent
    digest = hashlib.sha256(churn.__version__.encode())
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def features_key(fingerprints: dict[str, str], run_date: object, config: Config) -> str | None:
    """The cache key of a run date's features; None (no caching) for data not read from files."""
    if not fingerprints:
        return None
    recipe = {"data": fingerprints, "run_date": str(run_date),
              "settings": {"data": dataclasses.asdict(config.data), "contract": dataclasses.asdict(config.contract)},
              "code": code_version()}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()
    return f"features-{run_date}-{digest[:32]}"


class FeatureCache:
    """Parquet files of features under `directory`, one per key; `max_age_days` 0 turns the cache off."""

    def __init__(self, directory: str | Path, max_age_days: float = 7, max_bytes: float = 20e9):
        self.directory = Path(directory)
        self.max_age_days = max_age_days
        self.max_bytes = max_bytes

    @property
    def enabled(self) -> bool:
        return self.max_age_days > 0

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def get(self, key: str | None) -> pd.DataFrame | None:
        """The frame stored under `key`, or None: never stored, expired, or unreadable (then deleted)."""
        if key is None or not self.enabled:
            return None
        path = self._path(key)
        try:
            if not os.path.lexists(path):
                return None
            if not path.is_file() or path.is_symlink():
                raise ValueError("not a file")
            if time.time() - path.stat().st_mtime > self.max_age_days * 86400:
                path.unlink(missing_ok=True)
                return None
            table = pq.read_table(path)
            stamp = json.loads((table.schema.metadata or {}).get(_STAMP, b"null"))
            if not isinstance(stamp, dict) or stamp.get("key") != key or \
                    stamp.get("schema") != _schema_hash(table.schema):
                raise ValueError("not an entry the cache wrote for this key")
            return table.to_pandas()
        except FileNotFoundError:
            return None
        except (OSError, ValueError, pa.ArrowException) as err:
            log.warning("feature cache: entry %s is unreadable or not the cache's (%s): recomputing", path.name,
                        str(err)[:80] or type(err).__name__)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            return None

    def put(self, key: str | None, frame: pd.DataFrame) -> None:
        """Store `frame` under `key` (atomically), then prune the cache to its age and size limits."""
        if key is None or not self.enabled:
            return
        tmp = self.directory / f".{key}.{os.getpid()}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pandas(frame)
            stamp = json.dumps({"key": key, "schema": _schema_hash(table.schema)}).encode()
            pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), _STAMP: stamp}), tmp,
                           compression="zstd")
            os.replace(tmp, self._path(key))
        except OSError as err:  # a full disk: the run goes on without caching (the cache only saves time)
            log.warning("feature cache: cannot store %s (%s): not cached", key, err.strerror or err)
            return
        finally:
            tmp.unlink(missing_ok=True)
        self.prune()

    def prune(self, now: float | None = None) -> list[str]:
        """Delete entries older than the age limit, then the oldest until the rest fit; return their keys.

        Leftover temporary files of a writer that died are deleted as well.
        """
        if not self.directory.is_dir():
            return []
        now = time.time() if now is None else now
        for leftover in self.directory.glob(".*.tmp"):
            if now - leftover.stat().st_mtime > 3600:
                leftover.unlink(missing_ok=True)
        entries = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in self.directory.glob(f"*{SUFFIX}"))
        total = sum(size for _, size, _ in entries)
        deleted = []
        for mtime, size, path in entries:  # oldest first
            if now - mtime <= self.max_age_days * 86400 and total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            deleted.append(path.name.removesuffix(SUFFIX))
        return deleted
