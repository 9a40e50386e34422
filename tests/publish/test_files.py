import pandas as pd
import pytest
from openpyxl import load_workbook

from churn.data.io import atomic_dir
from churn.publish.files import publish


def _lists():
    row = {"rank": 1, "customer_id": "c1", "lifecycle_stage": "active", "value_tier": "high", "p_churn_pct": 81.5,
           "value": 120.0, "value_at_stake": 97.8, "reason_1": "No order for 40 days", "reason_2": None,
           "reason_3": None, "suggested_offer": "call", "talking_points": "ask", "due_date": "2024-05-08"}
    return {"callback": pd.DataFrame([row]), "trial": pd.DataFrame([row]).iloc[:0]}


def test_publish_writes_every_output_and_a_rerun_replaces_them(tmp_path):
    scores = pd.DataFrame({"customer_id": ["c1"], "p_churn": [0.8]})
    path = publish(tmp_path, "2024-05-01", scores, _lists(), {"run_date": "2024-05-01"})
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json", "scores.parquet", "winback.xlsx", "winback_callback.csv", "winback_trial.csv"]
    sheet = load_workbook(path / "winback.xlsx")["Callback"]
    assert sheet.freeze_panes == "A2" and sheet["A1"].value == "Rank" and sheet["E2"].value == 81.5
    (path / "stray.txt").write_text("from an older run")
    publish(tmp_path, "2024-05-01", scores, _lists(), {"run_date": "2024-05-01"})
    assert not (path / "stray.txt").exists()


def test_a_failed_publish_leaves_the_previous_outputs_untouched(tmp_path):
    target = tmp_path / "2024-05-01"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as staging:
            (staging / "manifest.json").write_text("half new")
            raise RuntimeError("disk full")
    assert (target / "manifest.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["2024-05-01"]  # no staging left behind


def test_published_folders_respect_the_umask_not_owner_only(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "2024-05-01") as staging:
            (staging / "manifest.json").write_text("{}")
        assert (tmp_path / "2024-05-01").stat().st_mode & 0o777 == 0o755  # a team share can read it
        os.umask(0o077)
        with atomic_dir(tmp_path / "2024-05-02") as staging:
            pass
        assert (tmp_path / "2024-05-02").stat().st_mode & 0o777 == 0o700  # a private umask stays private
    finally:
        os.umask(old)
