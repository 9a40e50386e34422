"""Prefect flows wiring the `churn` library into scheduled, observable runs.

Importing this package sets Prefect up to run offline, with no server and no account: a
project-local Prefect home and analytics off (settings a user has already made win).
"""

import logging
import os
from pathlib import Path


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


run_log = logging.getLogger("churn.run")


def set_log_level(level: str) -> None:
    """Apply `[logging] level` from churn.toml to our run log."""
    logging.getLogger("churn").setLevel(level.upper())


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
