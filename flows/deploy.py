"""Deployments on a schedule: daily scoring, monthly retraining, weekly outcomes, backfills; served by `churn serve`.

Prefect's temporary in-process server does not fire schedules, so unless `PREFECT_API_URL`
names a server, `serve` starts a local Prefect server itself (SQLite under the project's
Prefect home, loopback only, with its UI), waits until it is healthy, serves the deployments
against it, and stops it on exit (SIGTERM or Ctrl-C). The server is tethered to the process that
started it (`flows.tether`): a SIGKILL of `churn serve` or of a tracked run stops it too. A
failed or crashed scheduled run leaves an alert (`flows.alert_on_failure`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from prefect import flow, get_run_logger
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from churn import pipeline
from churn.config import Config, load_config
from churn.errors import ChurnError
from churn.progress import Progress
from churn.types import RunDate
from flows import ALERT_HOOKS, refusals_fail_quietly, result_or_raise, set_log_level, tether
from flows.outcomes import outcomes_flow
from flows.score import score_flow
from flows.train import train_flow

SERVER_START_TIMEOUT_S = 120  # a fresh Prefect database takes 13-18 s to start here
SERVER_LOG = "server.log"  # the local server's output, under PREFECT_HOME


def previous_day(scheduled: Any, timezone: str) -> RunDate:
    """The run date of a scheduled run: the day before its scheduled time, in the schedule's zone.

    A 06:00 run scores the day that just ended, whose orders are complete.
    """
    local = pd.Timestamp(scheduled).tz_convert(timezone) if pd.Timestamp(scheduled).tzinfo else pd.Timestamp(scheduled)
    return RunDate.parse(local).days(-1)


@flow(name="churn-daily", **ALERT_HOOKS)
@refusals_fail_quietly
def daily_flow(data_dir: str, out_dir: str = "out", models_dir: str = "models", config_path: str | None = None,
               run_date: str | None = None) -> dict[str, Any]:
    """Score the day before the scheduled time (or `run_date`) and publish its win-back lists."""
    if run_date is None:
        from prefect.runtime import flow_run

        run_date = str(previous_day(flow_run.scheduled_start_time, load_config(config_path).schedule.timezone))
    return result_or_raise(score_flow(data_dir, run_date, out_dir, models_dir, config_path, return_state=True))


@flow(name="churn-backfill", **ALERT_HOOKS)
@refusals_fail_quietly
def backfill_flow(data_dir: str, start: str, end: str, out_dir: str = "out", models_dir: str = "models",
                  config_path: str | None = None, force: bool = False,
                  progress: Progress | None = None, engine: str | None = None,
                  scheduler: str | None = None) -> dict[str, list[str]]:
    """Score every date from `start` to `end`, one tracked daily-score run per date (`churn.pipeline.backfill`)."""
    config = load_config(config_path).with_engine(engine, scheduler)
    set_log_level(config.logging.level)

    def score(day: RunDate) -> dict[str, Any]:
        state = score_flow(data_dir, str(day), out_dir, models_dir, config_path, engine=engine, scheduler=scheduler,
                           return_state=True)
        try:
            return result_or_raise(state)
        except ChurnError as err:
            raise ChurnError(f"{day}: {err}") from None

    result = pipeline.backfill(data_dir, RunDate.parse(start), RunDate.parse(end), out_dir, models_dir, config,
                               force, progress, score=score)
    get_run_logger().info("backfill: scored %d dates, skipped %d already published",
                          len(result.scored), len(result.skipped))
    return {"scored": result.scored, "skipped": result.skipped, "recovered": result.recovered}


def deployments(data_dir: str, out_dir: str, models_dir: str, config_path: str | None,
                config: Config) -> list[RunnerDeployment]:
    """The deployments: daily scoring, monthly retraining (with the promotion gate), weekly outcomes, backfill."""
    common = {"data_dir": data_dir, "models_dir": models_dir, "config_path": config_path}
    tz = config.schedule.timezone
    return [
        daily_flow.to_deployment(
            "daily-score", schedule=Cron(config.schedule.daily_cron, timezone=tz),
            parameters={**common, "out_dir": out_dir}, entrypoint_type=EntrypointType.MODULE_PATH,
            description="Score every customer as of the previous day and publish the win-back lists."),
        train_flow.to_deployment(
            "monthly-retrain", schedule=Cron(config.schedule.retrain_cron, timezone=tz),
            parameters={**common, "out_dir": out_dir}, entrypoint_type=EntrypointType.MODULE_PATH,
            description="Retrain and backtest the churn model; the promotion gate decides the champion."),
        outcomes_flow.to_deployment(
            "weekly-outcomes", schedule=Cron(config.schedule.outcomes_cron, timezone=tz),
            parameters={"data_dir": data_dir, "out_dir": out_dir, "config_path": config_path},
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="Measure the lists whose horizon has passed; later daily runs use the uplift learned."),
        backfill_flow.to_deployment(
            "backfill", parameters={**common, "out_dir": out_dir}, entrypoint_type=EntrypointType.MODULE_PATH,
            description="Score a range of past dates (run on demand with start and end)."),
    ]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def local_server(port: int, ui: bool = True) -> Iterator[str]:
    """Start `prefect server start` on 127.0.0.1:port; yield its API URL; stop it on exit.

    The server is tethered to this process (`flows.tether`): it stops when this process ends,
    however it ends (SIGKILL included), and its output goes to PREFECT_HOME/server.log. `ui`:
    serve the Prefect UI too (`churn serve`; a tracked command-line run has no use for it).
    """
    url = f"http://127.0.0.1:{port}/api"
    if _healthy(url):
        raise RuntimeError(f"something already answers on port {port}: set schedule.server_port in "
                           f"churn.toml or PREFECT_API_URL to use that server")
    # The UI is on: the operator watches runs there (it is served from the installed package, offline).
    # It must call this server's API, not the default port's (what it does unless told).
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": str(ui).lower(),
           "PREFECT_UI_API_URL": url}
    log_path = Path(PREFECT_HOME.value()) / SERVER_LOG
    server = tether.spawn(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--analytics-off", "--ui" if ui else "--no-ui"], log_path, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(url):
            if server.poll() is not None:
                raise ServerError(f"the Prefect server exited at start ({_last_line(log_path)}); see {log_path}: "
                                  f"fix what it says and rerun (or set PREFECT_API_URL to a server you run)")
            if time.monotonic() > deadline:
                raise ServerError(f"the Prefect server did not answer within {SERVER_START_TIMEOUT_S} s; see "
                                  f"{log_path}")
            time.sleep(0.5)
        done = threading.Event()
        threading.Thread(target=_watch_server, args=(server, log_path, done), daemon=True,
                         name="churn-prefect-server-watch").start()
        try:
            yield url
        except ChurnError:
            raise
        except Exception as err:  # noqa: BLE001 - whatever Prefect's client raised once its server was gone
            if server.poll() is None and _healthy(url):
                raise  # the server is fine: not its failure
            raise ServerError(_stopped(log_path, err)) from err
        finally:
            done.set()
    finally:
        tether.stop(server)


class ServerError(ChurnError):
    """The local Prefect server a tracked run or `churn serve` started could not start, or stopped."""


def _silence_prefect() -> None:
    """Turn off Prefect's loggers (each one: a disabled parent does not silence its children)."""
    names = [name for name in logging.root.manager.loggerDict if name == "prefect" or name.startswith("prefect.")]
    for name in names:
        logging.getLogger(name).disabled = True


def _stopped(log_path: Path, err: BaseException | None = None) -> str:
    """The one line that says the local Prefect server stopped during a run."""
    cause = f" ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})" if err else ""
    return (f"the Prefect server stopped during the run{cause}; see {log_path}. The run's outputs are published "
            f"whole or not at all (a stopped run is finished or undone by the next job): rerun the command")


def _abandon_run(message: str) -> None:
    """Say why in one line and end this process now, exit 1: its Prefect server is gone.

    Prefect's client would retry every state change, log and event against the closed port with
    back-offs of 2 to 32 s each (minutes), printing pages of tracebacks, and its exit-time drains
    once more. Ending at once is a kill, which the pipeline's commit point makes safe at any
    point: OUT/D and the history stay one publication, and the next job finishes or removes what
    this run left.
    """
    _silence_prefect()
    sys.stdout.flush()
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def _watch_server(server: Any, log_path: Path, done: threading.Event) -> None:
    """End the run as soon as our Prefect server exits under it (killed, crashed): `_abandon_run`."""
    while not done.wait(0.5):
        if server.poll() is not None and not done.is_set():
            _abandon_run(_stopped(log_path))
            return


def _last_line(log_path: Path) -> str:
    """The last non-empty line of the server's log (what it said before it stopped), or a placeholder."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1][:200] if lines else "it wrote nothing"


@contextmanager
def prefect_api(port: int | None = None) -> Iterator[str]:
    """The API to run against: PREFECT_API_URL if set (environment or Prefect profile), else a local server we run.

    `port` None takes a free port: a tracked command-line run (`churn score --tracked`) uses this
    rather than Prefect's own temporary server, which outlived a killed run.
    """
    configured = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()  # the environment, or a profile
    if configured:
        yield configured
        return
    server = local_server(_free_port(), ui=False) if port is None else local_server(port)
    with server as url, temporary_settings({PREFECT_API_URL: url}):
        os.environ["PREFECT_API_URL"] = url  # the runs the runner starts inherit it
        try:
            yield url
        finally:
            if _healthy(url):  # (a server that is gone can receive nothing: waiting for it would take minutes)
                _send_what_is_queued()
            del os.environ["PREFECT_API_URL"]


def _send_what_is_queued(timeout: float = 10) -> None:
    """Send the run logs and events still queued in this process before our server stops.

    Otherwise Prefect's workers keep retrying them against a closed port at exit (minutes).
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout, at_exit=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def operator_help(api_url: str) -> str:
    """What the operator needs while `serve` runs: the UI, and run commands that work as printed.

    Prefect's own banner prints `prefect deployment run ...` without the API address, which
    fails with "Deployment not found" in a shell where PREFECT_API_URL is not exported.
    """
    ui = api_url.removesuffix("/").removesuffix("/api")
    prefect = f"PREFECT_API_URL={api_url} {sys.executable} -m prefect"
    return "\n".join([
        f"Prefect API: {api_url}",
        f"Prefect UI:  {ui} (deployments: {ui}/deployments)",
        "Run a deployment now, from any shell (the commands Prefect prints below need PREFECT_API_URL exported):",
        f"  {prefect} deployment run churn-daily/daily-score -p run_date=YYYY-MM-DD",
        f"  {prefect} deployment run churn-backfill/backfill -p start=YYYY-MM-DD -p end=YYYY-MM-DD",
        f"  {prefect} deployment run churn-outcomes/weekly-outcomes",
        f"  {prefect} deployment run churn-train/monthly-retrain",
    ])


def serve(data_dir: str, out_dir: str, models_dir: str, config_path: str | None) -> None:
    """Serve the deployments until SIGTERM or Ctrl-C; schedules stay active across restarts."""
    from prefect import serve as prefect_serve

    config = load_config(config_path)
    # Ctrl-C must reach us even when a shell started us in the background (it ignores SIGINT there).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with prefect_api(config.schedule.server_port) as url:
        print(operator_help(url), flush=True)
        # pause_on_shutdown=False: a service that restarts must not silently stop scheduling.
        prefect_serve(*deployments(data_dir, out_dir, models_dir, config_path, config), pause_on_shutdown=False)
