"""A stable hash of a customer id: the same share in [0, 1) on every machine, run and Python version.

Python's own `hash` is salted per process, so it cannot decide anything that must be the same
tomorrow. `stable_share` takes the first 8 bytes of the SHA-256 of the text as a fraction of 2^64:
deterministic holdouts (`campaign:customer_id`), the calibration half of the validation customers,
and partitions all draw from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

__all__ = ["stable_share", "stable_shares"]


def stable_share(key: str) -> float:
    """A number in [0, 1) determined by `key` alone (uniform over keys)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def stable_shares(keys: Iterable[object]) -> np.ndarray:
    """`stable_share` of each key's text, as a float array."""
    return np.fromiter((stable_share(str(key)) for key in keys), dtype="float64")
