"""File fingerprints: the SHA-256 of each data file, read once, in chunks.

A run records the fingerprint of every table file it read (run manifests, model metadata,
the feature cache's key), so the same files always give the same fingerprint and a changed
byte gives another. The hash is streamed in 1 MB chunks (memory stays flat whatever the file
size), and hashlib releases the GIL while it hashes, so the contract computes it in a thread
beside its DuckDB checks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["sha256"]

CHUNK_BYTES = 1 << 20


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes (raises OSError when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
