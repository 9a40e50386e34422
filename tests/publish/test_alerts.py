"""Alerts of a failed scheduled run: one file per run in OUT/alerts/, a webhook that may fail without losing it."""

import datetime as dt
import json
import socket

from churn.config import AlertsConfig
from churn.publish import alerts


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_alert_file_per_failed_run_and_an_unreachable_webhook_is_reported_not_raised(tmp_path):
    when = dt.datetime(2024, 5, 2, 6, 0, 41, tzinfo=dt.timezone.utc)
    document = alerts.alert("churn-daily", "brave-otter", "Refused", "data-quality gate failed: freshness", when,
                            {"run_date": "2024-05-01", "out_dir": str(tmp_path), "progress": object()},
                            "daily-score", "1234", "http://127.0.0.1:4200")
    assert document["ui"] == "http://127.0.0.1:4200/runs/flow-run/1234"
    assert set(document["parameters"]) == {"run_date", "out_dir"}  # only plain values
    config = AlertsConfig(webhook_url=f"http://127.0.0.1:{_closed_port()}/hook", webhook_timeout_seconds=2)
    done = alerts.record(document, tmp_path, config)
    path = tmp_path / "alerts" / "20240502T060041-churn-daily-brave-otter.json"
    assert done[0] == f"alert written to {path}" and json.loads(path.read_text()) == document
    assert done[1].startswith("alert NOT posted to the webhook")
    other = alerts.alert("churn-daily", "calm-heron", "Crashed", "killed", when, {}, "daily-score")
    alerts.record(other, tmp_path, AlertsConfig())
    assert len(list((tmp_path / "alerts").glob("*.json"))) == 2  # never overwritten by another run
