"""Prefect flows wiring the `churn` library into scheduled, observable runs.

Importing this package sets Prefect up to run offline, with no server and no account: a
project-local Prefect home and analytics off (settings a user has already made win).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from churn.progress import Progress


def configure_prefect(home: str | Path | None = None) -> None:
    """Point Prefect at a project-local home and turn off everything that reaches out."""
    home = Path(home or os.environ.get("CHURN_HOME", Path.cwd())).resolve()
    os.environ.setdefault("PREFECT_HOME", str(home / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # A fresh Prefect database takes 13-18 s to start here; the default 20 s timeout is too tight.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MPLCONFIGDIR", str(home / ".mplconfig"))
    # Our step lines also reach the Prefect run's log (UI, API), not only the terminal.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "churn")
    # The library also logs outside flow runs (a plain `churn explain`): no API to send to then.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


run_log = logging.getLogger("churn.run")


def set_log_level(level: str) -> None:
    """Apply `[logging] level` from churn.toml to our run log."""
    logging.getLogger("churn").setLevel(level.upper())


class StepLog:
    """Times a run's steps and logs one line per step, `<run>: <step>: <counts> (<seconds> s)`.

    The counts are numbers and names of steps, tables or models: never customer ids or contact
    details. With `progress` (the command line's bar), it also says which of `steps` runs now.
    """

    def __init__(self, run: str, steps: Sequence[str] = (), progress: Progress | None = None):
        self.run, self.steps, self.progress = run, list(steps), progress
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()
        self._tell(0)

    def lap(self, step: str, counts: str) -> None:
        """Log that `step` is done, with its counts and the seconds since the previous step."""
        now = time.perf_counter()
        self.timings[step] = round(now - self._clock, 3)
        self._clock = now
        run_log.info("%s: %s: %s (%.1f s)", self.run, step, counts, self.timings[step])
        self._tell(len(self.timings))

    def _tell(self, done: int) -> None:
        if self.progress is not None and self.steps:
            self.progress(self.steps[done] if done < len(self.steps) else "done", done, len(self.steps))


configure_prefect()


def transient(task: object, task_run: object, state: object) -> bool:
    """Retry condition: retry failures of the outside world, never a problem the user must fix.

    A contract, quality or configuration error gives the same answer on every try: retrying it
    only delays the message.
    """
    from churn.errors import ChurnError

    try:
        state.result()  # type: ignore[attr-defined]
    except ChurnError:
        return False
    except Exception:  # noqa: BLE001 - anything else (a flaky share, a full disk) may pass next time
        return True
    return True
