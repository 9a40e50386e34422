"""Progress reports from long steps, for a caller that wants to show them (the command line's bars).

A long step takes an optional `progress` callback and calls it as `progress(label, done, total)`:
what it is doing, how many of its units are done, and how many there are. The library never
draws anything itself; without a callback nothing happens.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]

__all__ = ["Progress", "notify", "prefixed"]


def notify(progress: Progress | None, label: str, done: int, total: int) -> None:
    """Tell `progress` (if any) that `done` of `total` units of `label` are done."""
    if progress is not None:
        progress(label, done, total)


def prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    """A callback that reports to `progress` with `prefix: ` before each label (None stays None)."""
    if progress is None:
        return None
    return lambda label, done, total: progress(f"{prefix}: {label}", done, total)
