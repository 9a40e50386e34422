"""A local Prefect server never outlives the process that started it (flows/tether.py): kill -9 included."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).parents[1]


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # a zombie has ended
            found[int(entry)] = (int(fields[1]), cmdline)
    return found


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_processes())


def _wait_gone(pids: set[int], seconds: float = 30) -> set[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pids)


def _parent_with_tethered_child(tmp_path: Path) -> tuple[subprocess.Popen, int, set[int]]:
    """A parent process that tethers a child, which starts a grandchild; (parent, watchdog pid, watched pids)."""
    pids = tmp_path / "pids"
    watched = ("import os, subprocess, sys, time; kid = subprocess.Popen([sys.executable, '-c', "
               "'import time; time.sleep(300)']); "
               f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{kid.pid}}'); time.sleep(300)")
    parent_code = (f"import sys, time; sys.path.insert(0, {str(ROOT / 'flows')!r}); import tether; "
                   f"w = tether.spawn([sys.executable, '-c', {watched!r}], {str(tmp_path / 'log')!r}); "
                   "print(w.pid, flush=True); time.sleep(300)")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    watchdog = int(parent.stdout.readline())
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    return parent, watchdog, {int(p) for p in pids.read_text().split()}


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM])
def test_a_tethered_process_and_its_children_stop_when_the_parent_is_killed(tmp_path, stop_signal):
    parent, watchdog, watched = _parent_with_tethered_child(tmp_path)
    assert _alive(watched | {watchdog}) == watched | {watchdog}
    parent.send_signal(stop_signal)
    parent.wait(timeout=30)
    assert _wait_gone(watched | {watchdog}) == set()


def test_a_killed_watchdog_takes_the_tethered_process_down(tmp_path):
    parent, watchdog, watched = _parent_with_tethered_child(tmp_path)
    leader = min(watched)  # the watched process; its own child (started after it) has the higher pid
    try:
        os.kill(watchdog, signal.SIGKILL)
        assert _wait_gone({leader}) == set()  # PR_SET_PDEATHSIG (a Prefect server is a single process)
    finally:
        parent.kill()
        parent.wait(timeout=30)
        for pid in _alive(watched):  # the watched process's own child: no watchdog is left to stop it
            os.kill(pid, signal.SIGKILL)


def test_a_killed_tracked_run_leaves_no_prefect_server(synthetic_dir, tmp_path):
    from churn.publish import lock

    models, out = ROOT / "models", tmp_path / "out"  # the shipped champion: the run is killed before scoring
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / ".prefect"), CHURN_HOME=str(tmp_path))
    # The run waits for OUT's lock (held here) once its server is up and its flow started: a sure moment to kill it.
    log = tmp_path / "run.log"
    with lock.held(out, "a test holding the output root", 0), open(log, "w") as output:
        run = subprocess.Popen([str(Path(sys.executable).parent / "churn"), "score", "--data", str(synthetic_dir),
                                "--date", "2024-06-30", "--out", str(out), "--models", str(models), "--tracked"],
                               cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while "waiting up to" not in log.read_text() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "waiting up to" in log.read_text(), log.read_text()[-2000:]
        servers = {pid: re.search(r"--port (\d+)", cmdline).group(1) for pid, (ppid, cmdline) in _processes().items()
                   if "prefect server start" in cmdline and "tether.py" not in cmdline
                   and str(tmp_path) in _processes().get(ppid, (0, ""))[1]}
        assert len(servers) == 1, servers
        (server, port), = servers.items()
        watchdog = _processes()[server][0]
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    assert _wait_gone({server, watchdog}) == set()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
