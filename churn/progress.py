"""Progress reports from long steps, for a caller that wants to show them (the command line's bars).

A long step takes an optional `progress` callback and calls it as `progress(label, done, total)`:
what it is doing, how many of its units are done, and how many there are. The library never
draws anything itself; without a callback nothing happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

Progress = Callable[[str, int, int], None]

__all__ = ["Progress", "StepRunner", "Steps", "notify", "prefixed", "run_directly", "run_log"]

# One line per step of a run (the `[logging] level` of churn.toml applies to the "churn" logger).
run_log = logging.getLogger("churn.run")


def notify(progress: Progress | None, label: str, done: int, total: int) -> None:
    """Tell `progress` (if any) that `done` of `total` units of `label` are done."""
    if progress is not None:
        progress(label, done, total)


def prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    """A callback that reports to `progress` with `prefix: ` before each label (None stays None)."""
    if progress is None:
        return None
    return lambda label, done, total: progress(f"{prefix}: {label}", done, total)


# A step runner runs one named step of a pipeline: `runner(name, fn, args, io)` returns `fn(*args)`.
# The plain runner calls it; a Prefect flow passes one that runs it as a task (retried when `io`).
StepRunner = Callable[[str, Callable[..., Any], tuple, bool], Any]


def run_directly(name: str, fn: Callable[..., Any], args: tuple, io: bool) -> Any:
    """The plain step runner: call the step in this process, no retries."""
    return fn(*args)


class Steps:
    """Runs a pipeline's named steps in order: timed, logged one line each, reported to `progress`.

    A step's log line is `<run>: <step>: <counts> (<seconds> s)`; counts are numbers and names of
    steps, tables or models, never customer ids or contact details. `runner` decides how a step
    runs (see `StepRunner`); `timings` holds the seconds per step once it is done.
    """

    def __init__(self, run: str, names: Sequence[str] = (), progress: Progress | None = None,
                 runner: StepRunner | None = None):
        self.run_name, self.names, self.progress = run, list(names), progress
        self.runner = runner or run_directly
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()
        self._tell(0)

    def run(self, name: str, fn: Callable[..., Any], *args: Any, io: bool = False) -> Any:
        """Run step `name` as `fn(*args)` through the runner (`io`: it reads or writes files; may be retried)."""
        return self.runner(name, fn, args, io)

    def done(self, name: str, counts: str) -> None:
        """Log that step `name` is done, with its counts and the seconds since the previous step."""
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 3)
        self._clock = now
        run_log.info("%s: %s: %s (%.1f s)", self.run_name, name, counts, self.timings[name])
        self._tell(len(self.timings))

    def _tell(self, done: int) -> None:
        if self.progress is not None and self.names:
            self.progress(self.names[done] if done < len(self.names) else "done", done, len(self.names))
