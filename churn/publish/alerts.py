"""Alerts for a failed scheduled run: a JSON file in the output root and, when configured, a webhook.

A run nobody watches must tell someone when it fails. `record` writes the alert to
`OUT/alerts/<time>-<flow>-<run>.json` (atomically, one file per failed run, never overwritten by
another run) and, when `[alerts] webhook_url` is set, POSTs the same JSON with a `text` line
(what chat tools' incoming webhooks show). An alert carries the run's names, state, message and
parameters (paths and dates): no customer ids, no contact details. The time is given by the
caller (the run's own state time): nothing here reads the clock.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from churn.config import AlertsConfig

__all__ = ["ALERTS_DIR", "alert", "write_alert", "post_alert", "record"]

ALERTS_DIR = "alerts"  # under the output root


def alert(flow: str, run: str, state: str, message: str, when: datetime, parameters: dict[str, Any],
          deployment: str | None = None, run_id: str | None = None, ui_url: str | None = None) -> dict[str, Any]:
    """The alert document: what failed, when, why, with which parameters, and where to look."""
    where = f" (deployment {deployment})" if deployment else ""
    return {
        "text": f"churn: {flow} run {run!r}{where} ended {state} at {when.isoformat(timespec='seconds')}: {message}",
        "flow": flow, "deployment": deployment, "flow_run": run, "flow_run_id": run_id, "state": state,
        "message": message, "time": when.isoformat(timespec="seconds"),
        "parameters": {k: v for k, v in parameters.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "ui": f"{ui_url.rstrip('/')}/runs/flow-run/{run_id}" if ui_url and run_id else None,
    }


def write_alert(out_dir: str | Path, document: dict[str, Any]) -> Path:
    """Write the alert as OUT/alerts/<YYYYmmddTHHMMSS>-<flow>-<run>.json (complete or absent)."""
    folder = Path(out_dir) / ALERTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = re.sub(r"[^0-9T]", "", document["time"][:19])
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{stamp}-{document['flow']}-{document['flow_run']}")
    path = folder / f"{name}.json"
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def post_alert(url: str, document: dict[str, Any], timeout_seconds: float) -> int:
    """POST the alert as JSON; returns the HTTP status. Raises OSError when the webhook cannot be reached."""
    request = urllib.request.Request(url, data=json.dumps(document).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:  # noqa: S310 - the user's URL
            return int(response.status)
    except urllib.error.HTTPError as err:
        raise OSError(f"the webhook {url} answered HTTP {err.code}") from None


def record(document: dict[str, Any], out_dir: str | Path | None, config: AlertsConfig) -> list[str]:
    """Write the alert file (when the run has an output root) and post it (when a webhook is set).

    Returns what was done, one line each, for the run's log; a webhook that fails is reported in
    those lines, never raised: the alert file is already there.
    """
    done = []
    if out_dir is not None:
        done.append(f"alert written to {write_alert(out_dir, document)}")
    if config.webhook_url:
        try:
            status = post_alert(config.webhook_url, document, config.webhook_timeout_seconds)
            done.append(f"alert posted to the webhook (HTTP {status})")
        except OSError as err:
            done.append(f"alert NOT posted to the webhook: {err}")
    return done
