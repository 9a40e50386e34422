"""Scheduling: run dates of scheduled runs, backfills, and `churn serve` against a local server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from churn import pipeline
from churn.config import load_config
from churn.types import RunDate
from flows.deploy import backfill_flow, previous_day
from tests.conftest import pretend_terminal, run

FAST_CONFIG = "[model]\nn_train_cutoffs = 3\nn_estimators = 80\nlearning_rate = 0.1\n[evaluate]\nn_bootstrap = 20\n"


def test_a_scheduled_run_scores_the_day_before_in_the_schedule_timezone():
    assert previous_day("2024-03-10T06:00:00+00:00", "UTC") == RunDate(2024, 3, 9)
    # 02:00 UTC on the 10th is still the 9th in New York: the run scores the 8th.
    assert previous_day("2024-03-10T02:00:00+00:00", "America/New_York") == RunDate(2024, 3, 8)


def test_backfill_scores_each_date_once_and_resumes_after_a_gap(prefect_harness, synthetic_dir, tmp_path,
                                                                 monkeypatch, capsys):
    config = tmp_path / "churn.toml"
    config.write_text(FAST_CONFIG)
    models, out = tmp_path / "models", tmp_path / "out"
    pipeline.train_model(synthetic_dir, models, load_config(config).with_horizon(60), RunDate(2024, 6, 27))
    first = backfill_flow(str(synthetic_dir), "2024-06-28", "2024-06-30", str(out), str(models), str(config))
    assert first == {"scored": ["2024-06-28", "2024-06-29", "2024-06-30"], "skipped": [], "recovered": []}
    (out / "2024-06-29" / "manifest.json").unlink()  # as if that run had failed before publishing
    again = backfill_flow(str(synthetic_dir), "2024-06-28", "2024-06-30", str(out), str(models), str(config))
    assert again == {"scored": ["2024-06-29"], "skipped": ["2024-06-28", "2024-06-30"], "recovered": []}

    # Through the command line, at a terminal: --json gives a script clean JSON (no bar) ...
    pretend_terminal(monkeypatch)
    common = ["--data", str(synthetic_dir), "--out", str(out), "--models", str(models), "--config", str(config)]
    code, stdout, stderr = run(monkeypatch, capsys, "backfill", "--start", "2024-06-28", "--end", "2024-06-30",
                               *common, "--json")
    assert code == 0 and "scoring 2024-06-28" not in stderr
    assert json.loads(stdout) == {"start": "2024-06-28", "end": "2024-06-30", "out": str(out), "scored": [],
                                  "skipped": ["2024-06-28", "2024-06-29", "2024-06-30"], "recovered": []}
    # ... and a person gets a bar, one step per date, on stderr, and the summary on stdout.
    code, stdout, stderr = run(monkeypatch, capsys, "backfill", "--start", "2024-06-29", "--end", "2024-06-30",
                               *common, "--force")
    assert code == 0 and "scored 2 dates, skipped 0" in stderr and "2/2" in stderr
    assert stdout == "scored 2 dates, skipped 0 already published\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _deployments(url: str) -> dict[str, list]:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(url) as client:
        found = {}
        for dep in await client.read_deployments():
            runs = await client.read_flow_runs()
            found[dep.name] = ([(s.schedule.cron, s.schedule.timezone, s.active) for s in dep.schedules],
                               sorted(r.expected_start_time for r in runs if r.deployment_id == dep.id
                                      and r.state_name == "Scheduled"))
        return found


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_books_scheduled_runs_and_stops_cleanly_with_its_server(synthetic_dir, tmp_path, stop_signal):
    port = _free_port()
    (tmp_path / "churn.toml").write_text(f'[schedule]\nserver_port = {port}\ntimezone = "Europe/Paris"\n')
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / ".prefect"), CHURN_HOME=str(tmp_path))
    churn = Path(sys.executable).parent / "churn"
    proc = subprocess.Popen([str(churn), "serve", "--data", str(synthetic_dir)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline, found = time.monotonic() + 150, {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                found = asyncio.run(_deployments(url))
            except (httpx.HTTPError, OSError):
                found = {}
            if found.get("daily-score", ([], []))[1] and found.get("monthly-retrain", ([], []))[1]:
                break
            time.sleep(2)
        assert found["daily-score"][0] == [("0 6 * * *", "Europe/Paris", True)]
        assert found["monthly-retrain"][0] == [("0 3 1 * *", "Europe/Paris", True)]
        assert found["weekly-outcomes"][0] == [("0 7 * * 1", "Europe/Paris", True)]
        assert "backfill" in found
        # The scheduler booked the next daily runs at 06:00 Paris time.
        booked = found["daily-score"][1]
        assert len(booked) >= 2 and all(t.in_timezone("Europe/Paris").hour == 6 for t in booked)
    finally:
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"churn serve did not stop on {stop_signal.name}: {proc.stdout.read().decode()[-2000:]}")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)  # the local server stopped with it


def test_prefect_yaml_declares_the_served_deployments_with_the_default_schedules():
    import importlib
    import inspect

    import yaml

    from churn.config import Config

    spec = yaml.safe_load((Path(__file__).parents[1] / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"daily-score", "monthly-retrain", "weekly-outcomes", "backfill"}
    schedule = Config().schedule
    assert deployments["daily-score"]["schedules"][0]["cron"] == schedule.daily_cron
    assert deployments["monthly-retrain"]["schedules"][0]["cron"] == schedule.retrain_cron
    assert deployments["weekly-outcomes"]["schedules"][0]["cron"] == schedule.outcomes_cron
    for dep in deployments.values():
        path, name = dep["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        accepted = inspect.signature(getattr(module, name).fn).parameters
        assert set(dep["parameters"]) <= set(accepted), dep["name"]


class _Webhook:
    """A webhook on loopback that keeps the JSON documents POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args: str, timeout: int = 120) -> str:
    """Run headless Chromium (Debian's `chromium`) with a throwaway profile; return its stdout."""
    import shutil
    import tempfile

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "headless Chromium is needed: apt-get install -y chromium (.ci/run installs it)"
    with tempfile.TemporaryDirectory() as profile:
        env = {**os.environ, "XDG_CONFIG_HOME": profile, "XDG_CACHE_HOME": profile}
        done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], env=env,
                              capture_output=True, timeout=timeout, text=True)
    return done.stdout


def test_serve_shows_its_deployments_in_the_ui_prints_a_working_run_command_and_a_failed_run_alerts(
        synthetic_dir, tmp_path):
    hook = _Webhook()
    port = _free_port()
    (tmp_path / "churn.toml").write_text(f'[schedule]\nserver_port = {port}\n[alerts]\nwebhook_url = "{hook.url}"\n')
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / ".prefect"), CHURN_HOME=str(tmp_path))
    churn = Path(sys.executable).parent / "churn"
    # No model in ./models: a run of the daily deployment must fail ("no champion model").
    proc = subprocess.Popen([str(churn), "serve", "--data", str(synthetic_dir)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = []
        for line in proc.stdout:
            printed.append(line)
            if "deployment run churn-train/monthly-retrain" in line:
                break
        command = next(line.strip() for line in printed if "deployment run churn-daily/daily-score" in line)
        assert command.startswith(f"PREFECT_API_URL=http://127.0.0.1:{port}/api ")
        assert any(f"Prefect UI:  http://127.0.0.1:{port}" in line for line in printed)
        deadline, found = time.monotonic() + 120, {}
        while time.monotonic() < deadline and len(found) < 4:
            try:
                found = asyncio.run(_deployments(f"http://127.0.0.1:{port}/api"))
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(1)

        # The UI answers, and its deployments page lists the four deployments (rendered by Chromium).
        page = chromium("--virtual-time-budget=20000", "--dump-dom", f"http://127.0.0.1:{port}/deployments")
        for name in ("daily-score", "monthly-retrain", "weekly-outcomes", "backfill"):
            assert name in page, page[-3000:]

        # The printed command works as printed, from a shell without PREFECT_API_URL.
        started = subprocess.run(command.replace("YYYY-MM-DD", "2024-06-30"), shell=True, env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
        assert started.returncode == 0 and "Created flow run" in started.stdout, started.stdout + started.stderr

        # The run fails (no model), and its failure hook writes the alert file and posts to the webhook.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (hook.received and list((tmp_path / "out" / "alerts").glob("*.json"))):
            time.sleep(1)
        alerts = list((tmp_path / "out" / "alerts").glob("*.json"))
        assert len(alerts) == 1, "".join(printed)
        written = json.loads(alerts[0].read_text())
        assert written["flow"] == "churn-daily" and written["deployment"] == "daily-score"
        assert written["state"] == "Refused" and "train" in written["message"]
        assert written["parameters"]["run_date"] == "2024-06-30"
        assert hook.received == [written] and written["text"].startswith("churn: churn-daily run")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        hook.server.shutdown()


_FAKE_SERVER = """
import functools, http.server, os, sys
port, pid_file, root, mode = sys.argv[1:5]
if mode == "refuse":
    print("ERROR: [Errno 98] address already in use", flush=True)
    sys.exit(1)
open(pid_file, "w").write(str(os.getpid()))
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler).serve_forever()
"""


def _fake_prefect_server(monkeypatch, tmp_path, mode: str = "serve") -> Path:
    """Make `local_server` start a small HTTP server (healthy at /api/health) in place of Prefect's; return its pid file."""
    from flows import deploy, tether

    (tmp_path / "root" / "api").mkdir(parents=True)
    (tmp_path / "root" / "api" / "health").write_text("true")
    pid_file = tmp_path / "server.pid"
    real = tether.spawn

    def spawn(args, log_path, env=None):
        port = args[args.index("--port") + 1]
        return real([sys.executable, "-c", _FAKE_SERVER, port, str(pid_file), str(tmp_path / "root"), mode],
                    log_path, env)

    monkeypatch.setattr(deploy.tether, "spawn", spawn)
    return pid_file


def test_a_prefect_server_that_stops_mid_run_is_one_line_saying_so(monkeypatch, tmp_path):
    # Before: exit 70 and a 126-line httpx.ConnectError traceback after minutes of Prefect's
    # client retrying the closed port (server or its watchdog killed).
    import threading

    from prefect.settings import PREFECT_HOME, temporary_settings

    from churn.errors import ChurnError
    from flows import deploy

    pid_file = _fake_prefect_server(monkeypatch, tmp_path)
    abandoned, said = threading.Event(), []
    # (In a real run this prints the line and ends the process at once, exit 1: a kill, which the
    # commit point makes safe; here it only records what it would say.)
    monkeypatch.setattr(deploy, "_abandon_run", lambda message: (said.append(message), abandoned.set()))
    with temporary_settings({PREFECT_HOME: str(tmp_path / ".prefect")}):
        with pytest.raises(ChurnError, match=r"the Prefect server stopped during the run \(ConnectError: "
                                             r"\[Errno 111\] Connection refused\); see .*server.log"):
            with deploy.local_server(deploy._free_port(), ui=False) as url:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                assert abandoned.wait(timeout=30)  # the watch noticed at once
                httpx.get(f"{url}/health", timeout=2)  # what Prefect's client meets next
        assert len(said) == 1 and said[0].startswith("the Prefect server stopped during the run; see ")
        assert len(said[0].splitlines()) == 1
        with pytest.raises(KeyError):  # a failure of the run itself, with the server fine, is left as it is
            with deploy.local_server(deploy._free_port(), ui=False):
                raise KeyError("our own bug")
    assert len(said) == 1  # and a server stopped at the end of a run is no reason to abandon it


def test_a_prefect_server_that_exits_at_start_is_one_line_with_its_last_words(monkeypatch, tmp_path):
    from prefect.settings import PREFECT_HOME, temporary_settings

    from churn.errors import ChurnError
    from flows import deploy

    _fake_prefect_server(monkeypatch, tmp_path, mode="refuse")
    with temporary_settings({PREFECT_HOME: str(tmp_path / ".prefect")}):
        with pytest.raises(ChurnError) as raised:
            with deploy.local_server(deploy._free_port(), ui=False):
                pass
    message = str(raised.value)
    assert "the Prefect server exited at start (ERROR: [Errno 98] address already in use); see" in message
    assert len(message.splitlines()) == 1
