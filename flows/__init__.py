"""Prefect flows: thin wrappers that run `churn.pipeline` as scheduled, observable, retried flow runs.

A flow calls one pipeline function and passes it `task_runner`, so that each named step of the
pipeline becomes a Prefect task (retried when it reads or writes files). The pipeline's code is
the same in a flow run and in a plain `churn` command: the outputs are the same bytes.

Importing this package sets Prefect up to run offline, with no account: a project-local Prefect
home and analytics off (settings a user has already made win).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar


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
    # The library also logs outside flow runs: no API to send those to.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


configure_prefect()

from prefect import get_run_logger, task  # noqa: E402 - after the settings above
from prefect.cache_policies import NONE  # noqa: E402
from prefect.states import Failed, State  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from churn.errors import ChurnError  # noqa: E402
# Prefect validates a flow's parameters against its annotations, resolved in the namespace of the
# function it calls (`refusals_fail_quietly`'s wrapper, here): the flows' parameter types must be too.
from churn.progress import Progress  # noqa: E402,F401
from churn.types import RunDate  # noqa: E402

REFUSED = "Refused"  # the name of a flow run's Failed state when the input, not the code, was at fault
RETRIES = 3  # tries after the first for a step that reads or writes files
RETRY_BACKOFF_SECONDS = 2  # waits of 2, 4, 8 s between them
T = TypeVar("T")


def today_in(timezone: str) -> RunDate:
    """The day it is now in the shop's time zone (a flow is an edge: it may read the clock)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    return RunDate.parse(dt.datetime.now(ZoneInfo(timezone)))


def set_log_level(level: str) -> None:
    """Apply `[logging] level` from churn.toml to the library's loggers."""
    logging.getLogger("churn").setLevel(level.upper())


class _Refusal:
    """What a task returns instead of raising a ChurnError (so Prefect logs no traceback for it)."""

    def __init__(self, error: ChurnError):
        self.error = error


def _refusing(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def body(*args: Any) -> Any:
        try:
            return fn(*args)
        except ChurnError as err:
            return _Refusal(err)
    return body


def task_runner(name: str, fn: Callable[..., Any], args: tuple, io: bool) -> Any:
    """The pipeline's step runner in a flow: each step is a task; steps that touch files are retried.

    Retries (3, exponential back-off) are for the outside world (a flaky share, a full disk that
    frees up); a problem with the input (a ChurnError) gives the same answer on every try, so the
    task returns it instead, and it is raised again here, in the flow, to stop the run.
    """
    options: dict[str, Any] = {"name": name, "cache_policy": NONE}
    if io:
        options.update(retries=RETRIES, retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_BACKOFF_SECONDS))
    result = task(_refusing(fn), **options)(*args)
    if isinstance(result, _Refusal):
        raise result.error
    return result


def refusals_fail_quietly(flow_body: Callable[..., T]) -> Callable[..., T | State]:
    """Decorate a flow function: a ChurnError ends the run as one ERROR line and a Failed state named
    "Refused" (no traceback); anything else is a bug and fails with its traceback as usual."""
    @functools.wraps(flow_body)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return flow_body(*args, **kwargs)
        except ChurnError as err:
            get_run_logger().error("%s", err)
            return Failed(name=REFUSED, message=str(err))
    return run


def alert_on_failure(flow: Any, flow_run: Any, state: State) -> None:
    """Prefect hook for the scheduled flows: a failed (or crashed) deployment run writes an alert file
    in its output root and, when `[alerts] webhook_url` is set, posts it (`churn.publish.alerts`).

    Runs started by hand from the command line are not alerted: their user sees the error.
    """
    from churn.config import load_config
    from churn.publish import alerts

    if getattr(flow_run, "deployment_id", None) is None:
        return
    logger = logging.getLogger("churn.alerts")
    params = dict(flow_run.parameters or {})
    try:
        config = load_config(params.get("config_path")).alerts
    except ChurnError as err:  # the settings that broke the run must not silence its alert
        logger.error("alerts: %s; writing the alert file only", err)
        from churn.config import AlertsConfig

        config = AlertsConfig()
    deployment = None
    try:
        from prefect.runtime import deployment as current

        deployment = current.name
    except Exception:  # noqa: BLE001 - the alert matters more than its deployment name
        pass
    ui = os.environ.get("PREFECT_UI_URL") or (os.environ.get("PREFECT_API_URL", "").removesuffix("/api") or None)
    document = alerts.alert(flow.name, flow_run.name, state.name or state.type.value, state.message or "",
                            state.timestamp, params, deployment, str(flow_run.id), ui)
    for line in alerts.record(document, params.get("out_dir"), config):
        logger.warning("%s", line)


ALERT_HOOKS = {"on_failure": [alert_on_failure], "on_crashed": [alert_on_failure]}


def result_or_raise(state: State) -> Any:
    """A flow run's result; a refused run raises its ChurnError again (exit 1 at the command line)."""
    if state.is_failed() and state.name == REFUSED:
        raise ChurnError(state.message)
    return state.result()
