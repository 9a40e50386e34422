"""A child process that never outlives the process that started it (a local Prefect server).

`spawn(args)` starts this file as a small watchdog, which starts `args` in a process group of
its own and waits. The watchdog's stdin is a pipe whose only write end stays in the parent: when
the parent ends, however it ends (SIGKILL included), the kernel closes that end, the watchdog
reads end-of-file and stops the whole group (SIGTERM, then SIGKILL after a grace period). On
Linux the watched process also gets PR_SET_PDEATHSIG from the watchdog, so that a killed watchdog
takes it down too. The watched process's output goes to a log file, never to the parent's
stdout: a wrapper reading `churn ... | tee` is not kept waiting by a server it never asked for.

The watchdog is run as a script (`python .../flows/tether.py`), not as `-m flows.tether`, so that
it imports nothing but the standard library (the `flows` package imports Prefect).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["spawn", "stop"]

GRACE_SECONDS = 10  # between SIGTERM and SIGKILL when the group is stopped
_PR_SET_PDEATHSIG = 1


def spawn(args: list[str], log_path: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `args` tied to this process's life; its stdout and stderr go to `log_path`.

    Returns the watchdog's Popen: `poll()` is the watched process's exit code once it has ended
    (the watchdog exits with it), `stop(process)` ends both.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-I", str(Path(__file__).resolve()), str(log_path), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a spawned process and its watchdog (SIGTERM to the watchdog, which stops the group)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdin is not None:
        process.stdin.close()


def _die_with_parent() -> None:
    """In the watched process before exec (Linux): be sent SIGTERM when the watchdog dies."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_group(child: subprocess.Popen) -> None:
    """SIGTERM to the watched process's group, SIGKILL to whatever is left after the grace period."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 5)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if child.poll() is not None:
                try:
                    os.killpg(child.pid, 0)
                except ProcessLookupError:
                    return  # the leader and every member of its group are gone
            time.sleep(0.1)


def _watch(log_path: str, args: list[str]) -> int:
    """The watchdog: run `args` in a group of its own until it exits, our parent goes, or we are told to stop."""
    linux = sys.platform.startswith("linux")
    with open(log_path, "ab") as log:
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                 preexec_fn=_die_with_parent if linux else None)

    def stop_and_exit(signum: int, frame: object) -> None:
        _stop_group(child)
        os._exit(0)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop_and_exit)
    # Ctrl-C at a terminal reaches the whole foreground group, this watchdog too: the parent decides
    # (it ends, which closes the pipe, or stops us); a server gone first would look, to the parent,
    # like a server that died under its run.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        code = child.poll()
        if code is not None:
            _stop_group(child)  # anything it left in its group
            return code
        readable, _, _ = select.select([sys.stdin], [], [], 0.5)
        if readable and not os.read(sys.stdin.fileno(), 4096):  # end of file: the parent is gone
            _stop_group(child)
            return 0


if __name__ == "__main__":
    sys.exit(_watch(sys.argv[1], sys.argv[2:]))
