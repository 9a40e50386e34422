"""How fast the command line answers: each command in a fresh process, as a user types it.

Times `churn --help`; `churn score` on Complete Journey for 2017-12-31 with the shipped champion
(in-process, no Prefect); a `churn score` that must fail (a date after the data); `churn validate`
on a missing directory; and the same score as a tracked Prefect flow run against a local Prefect
server started here (its start-up is not timed). Each figure is the median of `--repeat` runs;
the reference, measured in the same run, is a bare `python -c pass`, so that a loaded machine shows
as a larger reference. Targets: help <= 1 s, score <= 12 s, failing commands <= 3 s, tracked
score <= 25 s.

    .venv/bin/python bench/cli.py [--repeat 3] [--json FILE] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHURN = [sys.executable, "-m", "churn.cli"]
TARGETS = {"help": 1.0, "score": 12.0, "score_fails": 3.0, "validate_missing": 3.0, "score_tracked": 25.0}


def timed(command: list[str], env: dict[str, str], cwd: Path, expect: int) -> float:
    """Seconds of wall time for one run of `command`; raises when it exits otherwise than `expect`."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}, expected {expect}:\n{done.stderr[-2000:]}")
    return seconds


def median(command: list[str], env: dict[str, str], cwd: Path, expect: int, repeat: int) -> float:
    return round(statistics.median(timed(command, env, cwd, expect) for _ in range(repeat)), 2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, str]:
    """A local Prefect server (loopback, no UI), and its API URL once it answers."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(port), "--analytics-off", "--no-ui"], env=env, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the Prefect server did not start within 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--work", default=str(ROOT / "bench" / ".cache" / "cli"),
                        help="data and outputs (reused; git-ignored)")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(work / ".prefect"), "MPLCONFIGDIR": str(work / ".mplconfig"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    data = work / "complete_journey"
    if not (data / "orders.parquet").exists():
        subprocess.run([*CHURN, "datasets", "complete-journey", "--out", str(data)], env=env, cwd=work, check=True)
    models = ROOT / "models"  # the shipped champion
    out = work / "out"
    score = [*CHURN, "score", "--data", str(data), "--date", "2017-12-31", "--out", str(out), "--models", str(models)]

    figures = {"reference_python": median([sys.executable, "-c", "pass"], env, work, 0, args.repeat)}
    figures["help"] = median([*CHURN, "--help"], env, work, 0, args.repeat)
    shutil.rmtree(out, ignore_errors=True)
    figures["score_first"] = round(timed(score, env, work, 0), 2)  # features computed, not cached
    figures["score"] = median(score, env, work, 0, args.repeat)  # a rerun: features from the cache
    figures["score_fails"] = median([*score[:-6], "--date", "2018-03-31", *score[-4:]], env, work, 1, args.repeat)
    figures["validate_missing"] = median([*CHURN, "validate", "--data", str(work / "missing")], env, work, 1,
                                         args.repeat)
    server, url = start_server(env, work)
    try:
        tracked = {**env, "PREFECT_API_URL": url}
        figures["score_tracked"] = median(score, tracked, work, 0, args.repeat)
    finally:
        server.terminate()
        server.wait(timeout=30)
    figures["load_average"] = round(os.getloadavg()[0], 2)
    figures["cores"] = os.cpu_count()

    print(f"churn command line, {figures['cores']} cores, load average {figures['load_average']}; "
          f"median of {args.repeat} fresh processes; reference `python -c pass` {figures['reference_python']:.2f} s")
    for name in ("help", "score_first", "score", "score_fails", "validate_missing", "score_tracked"):
        target = TARGETS.get(name)
        verdict = "" if target is None else f"  target {target:.0f} s: {'met' if figures[name] <= target else 'MISSED'}"
        ratio = figures[name] / max(figures["reference_python"], 1e-9)
        print(f"  {name:<18}{figures[name]:>7.2f} s  ({ratio:5.0f}x the reference){verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
