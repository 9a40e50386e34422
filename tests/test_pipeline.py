"""The pipeline's jobs (train, score a day, measure outcomes) on small synthetic data, in-process."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from churn import cli, faults, pipeline
from churn.config import load_config
from churn.errors import ContractError, OutputError, QualityError
from churn.features.engine import FeatureBuilder
from churn.model import registry
from churn.publish import alerts, warehouse
from churn.types import RunDate
from tests.conftest import FORGOTTEN, run, traces, with_distinctive_id

FAST_CONFIG = """
[data]
horizon_days = 60
[model]
n_train_cutoffs = 4
n_estimators = 150
learning_rate = 0.1
early_stopping_rounds = 20
[evaluate]
n_bootstrap = 50
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "churn.toml"
    path.write_text(FAST_CONFIG)
    return str(path)


class _Lines(logging.Handler):
    """Keeps the messages of the run log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def train_log():
    """The run log's lines while the module's model trains."""
    lines = _Lines()
    run_log, level = logging.getLogger("churn.run"), logging.getLogger("churn.run").level
    run_log.addHandler(lines)
    run_log.setLevel(logging.INFO)  # what [logging] level = "INFO" makes the command line do
    yield lines.lines
    run_log.removeHandler(lines)
    run_log.setLevel(level)


def score_flow(data_dir: str, run_date: str, out_dir: str, models_dir: str, config_path: str,
               progress=None) -> dict:
    """One daily run as `churn score` runs it: the library's pipeline, in-process."""
    return pipeline.score_day(data_dir, RunDate.parse(run_date), out_dir, models_dir, load_config(config_path),
                              progress).to_dict()


@pytest.fixture(scope="module")
def trained(train_log, synthetic_dir, config_path, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    del train_log[:]  # only this training's lines
    meta = pipeline.train_model(synthetic_dir, models, load_config(config_path)).to_dict()
    # The scoring tests need this model as champion, whatever a promotion gate makes of it.
    registry.set_champion(models, meta["version"])
    return models, meta


def test_training_logs_one_line_per_step_with_counts_and_timings_and_no_customer_ids(
        trained, train_log, synthetic_small):
    models, meta = trained
    steps = [line.split(": ")[1] for line in train_log if line.startswith("train h60: ")]
    assert steps == ["validate", "fit", "backtest", "gate", "register"], train_log
    assert all(re.search(r"\(\d+\.\d s\)$", line) for line in train_log)
    text = "\n".join(train_log)
    assert f"{meta['n_train']} training rows" in text and f"test cutoff {meta['backtest']['test_cutoff']}" in text
    assert meta["version"] in text and "orders " in text
    ids = set(synthetic_small.tables["customers"]["customer_id"])
    assert not {word.strip(",;()") for word in text.split()} & ids


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_training_registers_a_champion_that_beats_the_recency_baseline(trained):
    models, meta = trained
    assert registry.champion_version(models) == meta["version"]
    saved = json.loads((models / meta["version"] / "metadata.json").read_text())
    assert saved["features"] == meta["features"] and (models / meta["version"] / "model_card.md").exists()
    bt = saved["backtest"]["models"]
    assert set(bt) == {"xgboost", "recency", "rfm_logistic", "bgnbd"}
    assert bt["xgboost"]["roc_auc"] > bt["recency"]["roc_auc"]
    assert saved["backtest"]["test_cutoff"] <= meta["as_of"]


def test_a_daily_run_publishes_lists_without_suppressed_customers_and_a_rerun_changes_nothing(
        trained, synthetic_dir, synthetic_small, config_path, tmp_path):
    models, meta = trained
    run_date = meta["as_of"]
    first = score_flow(str(synthetic_dir), run_date, str(tmp_path), str(models), config_path)
    out = Path(first["path"])
    before = _digest(out)
    assert {"scores.parquet", "winback.xlsx", "winback_callback.csv", "winback_exclusive_discount.csv",
            "winback_trial.csv"} <= set(before)
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["customer_id"].is_unique and scores["p_churn"].between(0, 1).all()
    suppressed = set(synthetic_small.tables["suppressions"]["customer_id"])
    listed = pd.concat([pd.read_csv(p, dtype={"customer_id": str}) for p in out.glob("winback_*.csv")])
    assert len(listed) > 0 and not set(listed["customer_id"]) & suppressed
    assert first["model_version"] == meta["version"]

    rows = _warehouse_rows(tmp_path)
    taken = rows["assignments"]
    assert len(taken) > 0 and not set(taken["customer_id"]) & suppressed  # neither arm
    assert set(listed["customer_id"]) == set(taken.loc[taken["arm"] == "treated", "customer_id"])
    explained = set(scores.loc[scores["reason_code_1"].notna(), "customer_id"])
    assert explained and explained <= set(taken["customer_id"])  # reasons for the customers taken only

    again = score_flow(str(synthetic_dir), run_date, str(tmp_path), str(models), config_path)
    assert _digest(out) == before
    assert {k: v for k, v in again.items() if k != "timings_seconds"} == \
        {k: v for k, v in first.items() if k != "timings_seconds"}
    for table, frame in _warehouse_rows(tmp_path).items():  # no duplicates, nothing changed
        pd.testing.assert_frame_equal(frame, rows[table], obj=table)


def _warehouse_rows(out: Path) -> dict[str, pd.DataFrame]:
    rows = {}
    for table in ("runs", "scores", "assignments"):
        frame = warehouse.read_table(warehouse.path_in(out), table)
        rows[table] = frame.sort_values(list(frame.columns[:4])).reset_index(drop=True)
    return rows


def test_features_of_a_date_are_computed_once_and_again_when_the_data_or_settings_change(
        trained, synthetic_dir, config_path, tmp_path, monkeypatch, caplog):
    models, meta = trained
    built: list[list[str]] = []
    build = FeatureBuilder.build

    def counted(self, cutoffs):
        built.append([str(c) for c in cutoffs])
        return build(self, cutoffs)

    monkeypatch.setattr(FeatureBuilder, "build", counted)
    caplog.set_level(logging.INFO, logger="churn.run")
    run_date = (pd.Timestamp(meta["as_of"]) - pd.Timedelta(days=2)).date().isoformat()
    told: list[tuple[str, int, int]] = []

    def score(data: Path, out: str, config: str = config_path) -> pd.DataFrame:
        manifest = score_flow(str(data), run_date, str(tmp_path / out), str(models), config,
                              progress=lambda *step: told.append(step))
        return pd.read_parquet(Path(manifest["path"]) / "scores.parquet")

    first = score(synthetic_dir, "first")
    assert len(built) == 1 and "from the cache" not in caplog.text
    again = score(synthetic_dir, "first")  # a rerun of the date on the same files and settings
    assert len(built) == 1 and f"score {run_date}: features: {len(first)} customers in the population, " \
                                "from the cache" in caplog.text
    pd.testing.assert_frame_equal(again, first)
    assert told[:7] == [("validate", 0, 6), ("features", 1, 6), ("quality", 2, 6), ("score", 3, 6),
                        ("lists", 4, 6), ("publish", 5, 6), ("done", 6, 6)]

    changed = tmp_path / "changed"  # one order's amount corrected: another data fingerprint
    shutil.copytree(synthetic_dir, changed)
    orders = pd.read_parquet(changed / "orders.parquet")
    orders.loc[0, "amount"] += 1.0
    orders.to_parquet(changed / "orders.parquet")
    score(changed, "changed")
    assert len(built) == 2
    shorter = tmp_path / "shorter.toml"  # another feature setting
    shorter.write_text(Path(config_path).read_text().replace("[data]\n", "[data]\nlookback_days = 300\n"))
    score(synthetic_dir, "shorter", str(shorter))
    caches = [tmp_path / out / ".cache" / "features" for out in ("first", "again", "changed", "shorter")]
    assert len(built) == 3 and [len(list(c.glob("*.parquet"))) for c in caches] == [1, 0, 1, 1]


def test_the_next_day_respects_cooldown_and_a_stale_feed_is_stopped_by_the_gate(
        trained, synthetic_dir, config_path, tmp_path):
    models, meta = trained
    day = pd.Timestamp(meta["as_of"])
    previous = (day - pd.Timedelta(days=1)).date().isoformat()
    score_flow(str(synthetic_dir), previous, str(tmp_path), str(models), config_path)
    today = score_flow(str(synthetic_dir), meta["as_of"], str(tmp_path), str(models), config_path)
    taken = warehouse.read_table(warehouse.path_in(tmp_path), "assignments")
    first = set(taken.loc[taken["run_date"] == pd.Timestamp(previous), "customer_id"])
    second = set(taken.loc[taken["run_date"] == day, "customer_id"])
    assert first and second and not first & second  # listed yesterday (either arm): not again today
    assert today["previous_run"] == previous and "volume" in today["checks_passed"]

    stale = (day + pd.Timedelta(days=30)).date().isoformat()
    with pytest.raises(QualityError, match="freshness"):
        score_flow(str(synthetic_dir), stale, str(tmp_path), str(models), config_path)
    assert not (tmp_path / stale).exists()
    assert pd.Timestamp(stale) not in set(warehouse.read_table(warehouse.path_in(tmp_path), "runs")["run_date"])


def test_outcomes_measure_a_past_list_and_the_next_run_uses_the_measured_uplift(
        trained, synthetic_dir, config_path, tmp_path, monkeypatch, capsys):
    models, meta = trained
    list_date = (pd.Timestamp(meta["as_of"]) - pd.Timedelta(days=75)).date().isoformat()
    score_flow(str(synthetic_dir), list_date, str(tmp_path), str(models), config_path)
    strict = tmp_path / "churn.toml"  # measure with the smallest holdout so that something is learnt
    strict.write_text(Path(config_path).read_text() + "[outcomes]\nmin_holdout = 1\n")
    monkeypatch.setattr(sys, "argv", ["churn", "outcomes", "--data", str(synthetic_dir), "--out", str(tmp_path),
                                      "--config", str(strict)])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert "treated" in out and (tmp_path / "outcomes.csv").exists()
    assert "uplift@capacity" in out or "too few to tell" in out  # Qini and uplift@capacity, or why not yet
    report = pd.read_csv(tmp_path / "outcomes.csv")
    assert {"rate_treated", "rate_holdout", "ci_low", "ci_high", "incremental_revenue"} <= set(report.columns)
    measured = warehouse.read_table(warehouse.path_in(tmp_path), "outcomes")
    assert set(measured["list_date"]) == {pd.Timestamp(list_date)}
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--json"])  # the same measure, for a script
    with pytest.raises(SystemExit) as done:
        cli.main()
    document = json.loads(capsys.readouterr().out)
    assert done.value.code in (0, None) and document["list_dates"] == [list_date]
    assert document["n_measured"] == len(measured) and document["summary_csv"] == str(tmp_path / "outcomes.csv")
    assert len(document["summary"]) == len(report)
    assert {row["action"] for row in document["summary"]} == set(report["action"])
    assert document["n_uplift_measured"] == sum(row["source"] == "measured" for row in document["uplift"]) > 0
    assert document["ranking"] and {r["action"] for r in document["ranking"]} <= set(report["action"])
    later = score_flow(str(synthetic_dir), meta["as_of"], str(tmp_path), str(models), str(strict))
    sources = {v["source"] for by_segment in later["uplift"].values() for v in by_segment.values()}
    assert "measured (shrunk to prior)" in sources and "prior" in sources
    # The per-customer uplift learnt from the list (the discount list had over 100 treated customers)
    # is stored with the measurement and used by the next run's EV.
    models_kept = warehouse.read_table(warehouse.path_in(tmp_path), "uplift_models")
    treated = (measured["action"] == "exclusive_discount") & (measured["arm"] == "treated")
    assert treated.sum() >= 100 and len(models_kept) == 1
    assert later["uplift_per_customer"]["treated"]["exclusive_discount"] == treated.sum()
    assert later["uplift_per_customer"]["measured_through"] == str(pd.Timestamp(
        models_kept["measured_through"].iloc[0]).date())


def test_broken_data_publishes_nothing_and_keeps_the_previous_run(trained, synthetic_dir, config_path, tmp_path):
    models, meta = trained
    score_flow(str(synthetic_dir), meta["as_of"], str(tmp_path / "out"), str(models), config_path)
    before = _digest(tmp_path / "out" / meta["as_of"])
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_dir, broken)
    orders = pd.read_parquet(broken / "orders.parquet")
    orders.loc[5, "amount"] = -3.0
    orders.to_parquet(broken / "orders.parquet")
    with pytest.raises(ContractError, match="amount"):
        score_flow(str(broken), meta["as_of"], str(tmp_path / "out"), str(models), config_path)
    assert _digest(tmp_path / "out" / meta["as_of"]) == before


# --- the publish guarantees, end to end (see tests/publish for each part) -----------------------

ROOT = Path(__file__).parents[1]


def _score_child(synthetic_dir, day: str, out: Path, models: Path, config_path: str, hook: str) -> subprocess.Popen:
    """`churn score` for `day` in another process, with `hook` (Python, a function of the point's name) set."""
    code = f"""
import os, signal, sys, time
from pathlib import Path
from churn import faults, pipeline
from churn.config import load_config
from churn.types import RunDate
{hook}
faults.hook = hook
pipeline.score_day({str(synthetic_dir)!r}, RunDate.parse({day!r}), {str(out)!r}, {str(models)!r},
                   load_config({config_path!r}))
"""
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _listed(out: Path, day: str) -> set[str]:
    taken = warehouse.read_table(warehouse.path_in(out), "assignments")
    return set(taken.loc[taken["run_date"] == pd.Timestamp(day), "customer_id"])


def test_a_run_killed_after_its_history_committed_is_finished_by_the_next_and_nothing_is_listed_twice(
        trained, synthetic_dir, config_path, tmp_path):
    models, meta = trained
    day = RunDate.parse(meta["as_of"])
    child = _score_child(synthetic_dir, str(day.days(-1)), tmp_path, models, config_path, """
def hook(name):
    if name == "history committed":
        os.kill(os.getpid(), signal.SIGKILL)
""")
    assert child.wait(timeout=300) == -signal.SIGKILL
    assert not (tmp_path / str(day.days(-1))).exists()  # history committed, files not yet in place
    today = score_flow(str(synthetic_dir), str(day), str(tmp_path), str(models), config_path)
    assert pipeline.published(tmp_path, day.days(-1)) and pipeline.published(tmp_path, day)  # finished first
    yesterday = _listed(tmp_path, str(day.days(-1)))
    assert yesterday and _listed(tmp_path, str(day)) and not yesterday & _listed(tmp_path, str(day))
    assert today["previous_run"] == str(day.days(-1))
    listed = pd.read_csv(tmp_path / str(day.days(-1)) / "winback_exclusive_discount.csv", dtype=str)
    assert set(listed["customer_id"]) <= yesterday
    hidden = {p.name for p in tmp_path.iterdir() if p.name.startswith(".")}
    assert hidden == {".cache", ".churn.lock"}  # no staging or set-aside directory left


def test_two_runs_at_once_take_turns_and_the_later_sees_the_earlier_listings(
        trained, synthetic_dir, config_path, tmp_path):
    models, meta = trained
    day = RunDate.parse(meta["as_of"])
    go = tmp_path / "go"
    first = _score_child(synthetic_dir, str(day.days(-1)), tmp_path / "out", models, config_path, f"""
def hook(name):
    if name == "files staged":  # holding the lock, mid-publication: wait for the other run to queue
        print("locked", flush=True)
        while not Path({str(go)!r}).exists():
            time.sleep(0.05)
""")
    assert first.stdout.readline().strip() == "locked"
    queued = threading.Event()

    class Waiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting up to" in record.getMessage():
                self.message = record.getMessage()
                queued.set()

    waiting = Waiting()
    logging.getLogger("churn.publish.lock").addHandler(waiting)
    try:
        later = concurrent.futures.ThreadPoolExecutor(1).submit(
            score_flow, str(synthetic_dir), str(day), str(tmp_path / "out"), str(models), config_path)
        assert queued.wait(timeout=300)
        go.touch()
        assert first.wait(timeout=300) == 0
        later.result(timeout=300)
    finally:
        logging.getLogger("churn.publish.lock").removeHandler(waiting)
    assert f"score {day.days(-1)} (process {first.pid}" in waiting.message
    earlier, today = _listed(tmp_path / "out", str(day.days(-1))), _listed(tmp_path / "out", str(day))
    assert earlier and today and not earlier & today


def test_a_run_still_validating_holds_the_output_root(trained, synthetic_dir, config_path, tmp_path, caplog):
    """Before: the lock was taken after validation, so with lock_wait_seconds = 0 a second run that
    started while the first was validating was not refused (it took the lock and published first)."""
    models, meta = trained
    day = RunDate.parse(meta["as_of"])
    go, out = tmp_path / "go", tmp_path / "out"
    first = _score_child(synthetic_dir, str(day.days(-1)), out, models, config_path, f"""
real = pipeline.load_dataset
def validating(*args):
    print("validating", flush=True)
    while not Path({str(go)!r}).exists():
        time.sleep(0.05)
    return real(*args)
pipeline.load_dataset = validating
hook = None
""")
    try:
        assert first.stdout.readline().strip() == "validating"
        config = load_config(config_path)
        refuse = dataclasses.replace(config, output=dataclasses.replace(config.output, lock_wait_seconds=0))
        with pytest.raises(OutputError, match=rf"is being written by score {day.days(-1)} \(process {first.pid} "):
            pipeline.score_day(synthetic_dir, day, out, models, refuse)
        assert not (out / str(day)).exists()
        threading.Timer(1.0, go.touch).start()  # the first run finishes validating a second from now
        with caplog.at_level(logging.WARNING, logger="churn.publish.lock"):
            pipeline.score_day(synthetic_dir, day, out, models, config)  # waits (600 s allowed), then runs
        assert first.wait(timeout=300) == 0
    finally:
        go.touch()
        first.wait(timeout=300)
    assert f"waiting up to 600 s for score {day.days(-1)} (process {first.pid}" in caplog.text
    assert pipeline.published(out, day.days(-1)) and pipeline.published(out, day)


def test_an_analysts_read_only_session_does_not_stop_the_daily_run(trained, synthetic_dir, config_path, tmp_path):
    models, meta = trained
    day = RunDate.parse(meta["as_of"])
    score_flow(str(synthetic_dir), str(day.days(-1)), str(tmp_path), str(models), config_path)
    path = warehouse.path_in(tmp_path)
    code = ("import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=True); "
            "print(con.execute('SELECT count(*) FROM runs').fetchone()[0], flush=True); sys.stdin.read(); "
            "print(con.execute('SELECT count(*) FROM runs').fetchone()[0], flush=True)")
    analyst = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert analyst.stdout.readline().strip() == "1"
    score_flow(str(synthetic_dir), str(day), str(tmp_path), str(models), config_path)
    analyst.stdin.close()
    assert analyst.stdout.readline().strip() == "1"  # the session keeps the snapshot it opened
    assert analyst.wait(timeout=30) == 0
    assert len(warehouse.read_table(path, "runs")) == 2 and pipeline.published(tmp_path, day)


def _failing(monkeypatch, target, name: str, error: BaseException) -> None:
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(target, name, fail)


def test_a_full_disk_or_a_read_only_output_is_exit_1_and_keeps_the_previous_outputs(
        trained, synthetic_dir, config_path, tmp_path, monkeypatch, capsys):
    from churn.publish import files, lock

    models, meta = trained
    day = meta["as_of"]
    out = tmp_path / "out"
    score_flow(str(synthetic_dir), day, str(out), str(models), config_path)
    before, history = _digest(out / day), _warehouse_rows(out)
    common = ("score", "--data", str(synthetic_dir), "--date", day, "--out", str(out), "--models", str(models),
              "--config", config_path)
    full = OSError(errno.ENOSPC, "No space left on device", str(out / "x" / "winback.xlsx"))
    duckdb_full = duckdb.IOException(f'IO Error: Could not write file "{out}/warehouse.duckdb.wal": '
                                     f"No space left on device")
    read_only = OSError(errno.EROFS, "Read-only file system", str(out / lock.LOCK_FILE))
    cases = {"a spreadsheet writer on a full disk": (files, "write_workbook", full),
             "the warehouse's commit on a full disk": (faults, "hook", duckdb_full),
             "a read-only output directory": (lock.os, "open", read_only)}
    for case, (target, name, error) in cases.items():
        with monkeypatch.context() as patch:
            if name == "hook":
                patch.setattr(faults, "hook", lambda point: _raise(error) if point == "history written" else None)
            elif name == "open":
                real_open = os.open
                patch.setattr(lock.os, "open", lambda path, *a, **k: _raise(error) if str(path).endswith(
                    lock.LOCK_FILE) else real_open(path, *a, **k))
            else:
                _failing(patch, target, name, error)
            code, _, err = run(monkeypatch, capsys, *common)
        assert code == 1, (case, err)
        assert "Traceback" not in err and "error: cannot write" in err and "rerun" in err, case
        assert _digest(out / day) == before, case
        for table, frame in _warehouse_rows(out).items():
            pd.testing.assert_frame_equal(frame, history[table], obj=f"{case}: {table}")
        assert not [p.name for p in out.iterdir() if p.name.startswith(f".{day}")], case


def _raise(error: BaseException) -> None:
    raise error


def test_an_output_that_is_a_file_and_a_cut_off_champion_pointer_are_exit_1(
        trained, synthetic_dir, config_path, tmp_path, monkeypatch, capsys):
    models, meta = trained
    (tmp_path / "lists.xlsx").write_text("not a directory")
    code, _, err = run(monkeypatch, capsys, "score", "--data", str(synthetic_dir), "--date", meta["as_of"],
                       "--out", str(tmp_path / "lists.xlsx"), "--models", str(models), "--config", config_path)
    assert code == 1 and "is a file: choose a directory" in err and "Traceback" not in err
    cut = tmp_path / "models"
    shutil.copytree(models, cut)
    (cut / "champion.json").write_text('{"version": "2024')
    code, _, err = run(monkeypatch, capsys, "score", "--data", str(synthetic_dir), "--date", meta["as_of"],
                       "--out", str(tmp_path / "out"), "--models", str(cut), "--config", config_path)
    assert code == 1 and "champion.json is unreadable" in err and "churn rollback" in err
    code, _, err = run(monkeypatch, capsys, "rollback", meta["version"], "--models", str(cut))
    assert code == 0 and registry.champion_version(cut) == meta["version"]  # the fix the message names


# --- erasure ----------------------------------------------------------------------------------

def test_forget_leaves_no_trace_and_the_customer_is_never_scored_again(
        trained, synthetic_dir, config_path, tmp_path, monkeypatch, capsys):
    models, meta = trained
    day = RunDate.parse(meta["as_of"])
    earlier = day.days(-75)
    probe = score_flow(str(synthetic_dir), str(earlier), str(tmp_path / "probe"), str(models), config_path)
    listed = pd.read_csv(Path(probe["path"]) / "winback_exclusive_discount.csv", dtype=str)["customer_id"]
    data = with_distinctive_id(synthetic_dir, listed.iloc[0], tmp_path / "data")
    contacts = pd.DataFrame({"customer_id": [FORGOTTEN, listed.iloc[1]], "list_date": pd.Timestamp(earlier),
                             "action": "exclusive_discount", "arm": "treated"})
    contacts.to_parquet(data / "contacts.parquet", index=False)
    out = tmp_path / "out"
    for run_date in (earlier, day):
        score_flow(str(data), str(run_date), str(out), str(models), config_path)
    strict = tmp_path / "strict.toml"
    strict.write_text(Path(config_path).read_text() + "[outcomes]\nmin_holdout = 1\n")
    pipeline.measure_outcomes(data, out, load_config(strict))
    alerts.write_alert(out, alerts.alert("churn-daily", "brave-fox", "Refused", "customers.csv: column customer_id: "
                                         f"2 duplicate ids (rows 3, 4: {FORGOTTEN!r})", datetime(2024, 7, 1), {}))
    before = traces(out, FORGOTTEN)
    # The search sees every place the id was: lists, spreadsheet, scores, history (4 tables), cache.
    assert {f"{earlier}/scores.parquet", f"{earlier}/winback_exclusive_discount.csv", f"{earlier}/winback.xlsx",
            f"{day}/scores.parquet", "warehouse.duckdb"} <= set(before)
    assert any(p.startswith(".cache/features/") for p in before) and any(p.startswith("alerts/") for p in before)
    for table in ("scores", "assignments", "contacts", "outcomes"):
        assert FORGOTTEN in set(warehouse.read_table(warehouse.path_in(out), table)["customer_id"]), table

    with monkeypatch.context() as patch:  # stopped after its commit, before the days are swapped in ...
        patch.setattr(faults, "hook", lambda point: _raise(RuntimeError("stopped")) if point == "history committed"
                      else None)
        with pytest.raises(RuntimeError):
            pipeline.forget([FORGOTTEN], out, models, load_config(config_path))
    assert any(p.name.startswith(f".{earlier}.staging-") for p in out.iterdir())
    # ... and run again: it finishes the job.
    code, stdout, err = run(monkeypatch, capsys, "forget", FORGOTTEN, "--out", str(out), "--models", str(models),
                            "--config", config_path)
    assert code == 0, err
    # (the stopped run had already erased them: this one finds them nowhere, and says so)
    assert "forgot 1 customer(s): 0 found in the outputs" in stdout and FORGOTTEN not in stdout + err
    assert traces(out, FORGOTTEN) == [] and traces(models, FORGOTTEN) == []
    for run_date in (earlier, day):  # still published: files and history agree
        assert pipeline.published(out, run_date)
        assert json.loads((out / str(run_date) / "manifest.json").read_text())["erased_customers"] == 1
    kept = pd.read_csv(out / str(earlier) / "winback_exclusive_discount.csv", dtype=str)
    assert len(kept) == len(listed) - 1 and listed.iloc[1] in set(kept["customer_id"])

    # The source still holds them: the next runs leave them out, and say so in counts only.
    again = score_flow(str(data), str(day), str(out), str(models), config_path)
    assert again["forgotten_excluded"] == 1 and FORGOTTEN not in json.dumps(again)
    assert traces(out, FORGOTTEN) == []
    code, _, err = run(monkeypatch, capsys, "explain", FORGOTTEN, "--data", str(data), "--date", str(day),
                       "--models", str(models), "--out", str(out))
    assert code == 1 and "erased with `churn forget`" in err
    code, stdout, _ = run(monkeypatch, capsys, "forget", FORGOTTEN, "--out", str(out), "--models", str(models))
    assert code == 0 and "; 0 new to the suppression store" in stdout and "0 rows from 0 published day(s)" in stdout


def _published_day(out: Path, day: str, ids: list[str]) -> None:
    """A day published through the commit point with these customers' scores (a small stand-in for a run)."""
    from churn.publish import publication

    scores = pd.DataFrame({"customer_id": ids, "p_churn": 0.5})
    taken = pd.DataFrame({"customer_id": ids[:1], "action": ["callback"], "arm": ["treated"], "rank": [1]})
    run_row = {"run_date": day, "model_version": "m", "n_scored": len(ids), "manifest": {"run_date": day}}
    publication.publish(out, day, lambda d: scores.to_csv(d / "scores.csv", index=False), {"run_date": day},
                        lambda token: warehouse.write_run(warehouse.path_in(out), {**run_row, "publication": token},
                                                          scores, taken))


@pytest.mark.parametrize("typed", [" 682.0 ", "682.00", "682"])
def test_forget_reads_ids_as_the_contract_does(tmp_path, monkeypatch, capsys, typed):
    # Before: `churn forget 682.0` said "erased 1 customer(s)", removed nothing, and the next run
    # scored 682 (the outputs and the erasure store hold the contract's form, `682`).
    from churn.publish import erasure

    day = "2024-05-01"
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{typed}\n")
    for i, args in enumerate(([typed], ["--file", str(ids_file)])):
        out = tmp_path / f"out{i}"
        _published_day(out, day, ["682", "0682", "6820"])
        code, stdout, err = run(monkeypatch, capsys, "forget", *args, "--out", str(out), "--models",
                                str(tmp_path / "models"))
        assert code == 0 and "1 found in the outputs" in stdout, err
        assert sorted(pd.read_csv(out / day / "scores.csv", dtype=str)["customer_id"]) == ["0682", "6820"]
        assert sorted(warehouse.read_table(warehouse.path_in(out), "scores")["customer_id"]) == ["0682", "6820"]
        assert erasure.Store(out).forgotten_among(["682", "0682"]) == {"682"}  # leading zeros: another id
        assert pipeline.published(out, day)


def test_forget_says_how_many_it_found_and_how_many_it_only_suppressed(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _published_day(out, "2024-05-01", ["682", "17"])
    code, stdout, _ = run(monkeypatch, capsys, "forget", "682", "99999", "--out", str(out), "--models",
                          str(tmp_path / "models"))
    assert code == 0
    assert "forgot 2 customer(s): 1 found in the outputs and erased from them, 1 found nowhere" in stdout
    code, stdout, _ = run(monkeypatch, capsys, "forget", "682", "--out", str(out), "--models",
                          str(tmp_path / "models"), "--json")
    assert json.loads(stdout)["n_found"] == 0 and json.loads(stdout)["n_new"] == 0


def test_backfill_finishes_what_a_stopped_run_committed_and_does_not_score_it_again(tmp_path, monkeypatch):
    # Before: with every date skipped no recovery ran (a .D.staging-* with every customer's scores
    # stayed), and a date whose history was committed before a crash was reported "scored" and
    # scored again.
    out = tmp_path / "out"
    first, second = RunDate.parse("2024-05-01"), RunDate.parse("2024-05-02")
    _published_day(out, str(first), ["1", "2"])
    stray = out / f".{first}.staging-deadbeef"  # a run that died before its commit
    stray.mkdir()
    (stray / "scores.csv").write_text("customer_id\n1\n")
    with monkeypatch.context() as patch:
        patch.setattr(faults, "hook", lambda point: _raise(KeyboardInterrupt) if point == "history committed" else None)
        with pytest.raises(KeyboardInterrupt):
            _published_day(out, str(second), ["1", "2", "3"])
    assert not pipeline.published(out, second)
    scored = []
    done = pipeline.backfill(tmp_path / "data", first, second, out, tmp_path / "models", load_config(None),
                             score=scored.append)
    assert scored == [] and done.scored == [] and done.recovered == [str(second)] and done.skipped == [str(first)]
    assert pipeline.published(out, first) and pipeline.published(out, second)
    assert not [p.name for p in out.iterdir() if ".staging" in p.name]
    stray.mkdir()  # every date skipped: the leftover is still removed
    done = pipeline.backfill(tmp_path / "data", first, second, out, tmp_path / "models", load_config(None),
                             score=scored.append)
    assert done.skipped == [str(first), str(second)] and not stray.exists()


class _Planted:
    """A pickle that creates a file when unpickled: proof that nothing the run reads back is unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_cut_off_or_planted_feature_cache_entry_is_recomputed_and_never_executed(
        trained, synthetic_dir, config_path, tmp_path, monkeypatch, capsys, caplog):
    import pickle

    models, meta = trained
    day = meta["as_of"]
    out = tmp_path / "out"
    score_flow(str(synthetic_dir), day, str(out), str(models), config_path)
    before = _digest(out / day)
    entry, = (out / ".cache" / "features").glob(f"features-{day}-*.parquet")
    whole = entry.read_bytes()
    marker = tmp_path / "executed"
    for case, planted in (("cut off", whole[: len(whole) // 2]), ("a pickle", pickle.dumps(_Planted(marker)))):
        entry.write_bytes(planted)
        caplog.clear()
        code, _, err = run(monkeypatch, capsys, "score", "--data", str(synthetic_dir), "--date", day, "--out",
                           str(out), "--models", str(models), "--config", config_path)
        assert code == 0, (case, err)
        assert "is unreadable" in caplog.text and "from the cache" not in caplog.text, case
        assert not marker.exists(), case
        assert _digest(out / day) == before, case  # recomputed: the same outputs
        assert entry.read_bytes()[:4] == b"PAR1", case  # and stored again, as Parquet


def test_dates_scored_out_of_order_never_list_a_customer_twice_and_a_rerun_lists_the_same(
        trained, synthetic_dir, config_path, tmp_path):
    models, meta = trained
    day = RunDate.parse(meta["as_of"])
    score_flow(str(synthetic_dir), str(day), str(tmp_path / "late"), str(models), config_path)
    score_flow(str(synthetic_dir), str(day.days(-1)), str(tmp_path / "late"), str(models), config_path)  # after
    earlier, later = _listed(tmp_path / "late", str(day.days(-1))), _listed(tmp_path / "late", str(day))
    assert earlier and later and not earlier & later

    out = tmp_path / "in-order"
    score_flow(str(synthetic_dir), str(day.days(-1)), str(out), str(models), config_path)
    lists = {p.name: p.read_bytes() for p in (out / str(day.days(-1))).glob("*.csv")}
    score_flow(str(synthetic_dir), str(day), str(out), str(models), config_path)
    score_flow(str(synthetic_dir), str(day.days(-1)), str(out), str(models), config_path)  # a rerun, later day there
    # The same customers, in the same order (only the counts of customers in cooldown grow).
    assert {p.name: p.read_bytes() for p in (out / str(day.days(-1))).glob("*.csv")} == lists


def test_a_backfill_validates_unchanged_files_once_and_again_when_one_changes(trained, synthetic_dir, config_path,
                                                                                tmp_path, monkeypatch):
    from churn.data import contract

    models, meta = trained
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    validations = []
    validate = contract.validate
    monkeypatch.setattr(contract, "validate", lambda *a, **k: validations.append(1) or validate(*a, **k))
    end = RunDate.parse(meta["as_of"])
    config = load_config(config_path)
    done = pipeline.backfill(data, end.days(-2), end, tmp_path / "out", models, config)
    assert done.scored == [str(end.days(-2)), str(end.days(-1)), str(end)] and len(validations) == 1
    validated = pipeline.ValidatedData(data, config)
    first = validated.dataset()
    assert validated.dataset() is first and validated.reused
    orders = pd.read_parquet(data / "orders.parquet")
    orders.loc[0, "amount"] += 1.0
    orders.to_parquet(data / "orders.parquet")  # the feed was corrected: validate the new file
    assert validated.dataset() is not first and not validated.reused and len(validations) == 3


def test_a_file_replaced_with_the_same_size_and_modification_time_is_validated_again(tmp_path):
    """`cp -p` / `touch -r` can copy size and mtime; the status-change time and inode still tell."""
    import os

    from churn.config import Config

    data = tmp_path / "data"
    data.mkdir()
    path = data / "orders.csv"
    path.write_text("customer_id,order_id,order_ts,amount\na,1,2024-01-01,5.25\nb,2,2024-01-02,7.50\n")
    validated = pipeline.ValidatedData(data, Config())
    first = validated.dataset()
    before = path.stat()
    replacement = tmp_path / "orders.csv"
    replacement.write_text(path.read_text().replace("5.25", "5.35"))  # a corrected amount: the same size
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or `touch -r` would
    os.replace(replacement, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    again = validated.dataset()
    assert not validated.reused and again is not first
    assert again.orders["amount"].tolist() == [5.35, 7.5]
    assert again.fingerprints["orders"] != first.fingerprints["orders"]
    assert validated.dataset() is again and validated.reused  # and unchanged since: reused


def _fill(sheet, rows: dict[int, tuple]) -> None:
    """Fill the outcome columns of a list sheet as an agent would: row -> (called, reached, outcome, accepted)."""
    columns = {cell.value: cell.column for cell in sheet[1]}
    for row, answers in rows.items():
        for name, value in zip(("Called?", "Reached?", "Outcome", "Offer accepted?"), answers):
            sheet.cell(row=row, column=columns[name], value=value)
    sheet.cell(row=2, column=columns["Notes"], value="call her on 555-0100 after 6")  # never imported


def test_the_spreadsheet_round_trip_publish_fill_import_measure(trained, synthetic_dir, config_path, tmp_path,
                                                                monkeypatch, capsys):
    from openpyxl import load_workbook

    models, meta = trained
    list_date = (pd.Timestamp(meta["as_of"]) - pd.Timedelta(days=75)).date().isoformat()
    score_flow(str(synthetic_dir), list_date, str(tmp_path), str(models), config_path)
    book_path = tmp_path / list_date / "winback.xlsx"
    book = load_workbook(book_path)
    sheet = book["Comeback discount"]
    n_listed = sheet.max_row - 1
    assert n_listed >= 4
    _fill(sheet, {2: ("yes", "yes", "accepted", "yes"), 3: ("yes", "no", "wrong number", None),
                  4: ("yes", "yes", "do not contact again", "no")})
    stopped = sheet.cell(row=4, column=2).value
    filled = tmp_path / "filled.xlsx"
    book.save(filled)

    code, stdout, stderr = run_cli(monkeypatch, capsys, "contacts", "import", str(filled), "--out", str(tmp_path),
                                   "--json")
    assert code == 0, stderr
    done = json.loads(stdout)
    assert done["n_recorded"] == 3 and done["n_suppressed"] == 1 and done["list_dates"] == [list_date]
    assert done["outcomes"] == {"accepted": 1, "do not contact again": 1, "wrong number": 1}
    contacts = warehouse.read_table(warehouse.path_in(tmp_path), "contacts")
    mine = contacts[contacts["source"] == "import"]
    assert len(mine) == 3 and set(mine["action"]) == {"exclusive_discount"}
    assert not mine.astype(str).apply(lambda c: c.str.contains("555")).any().any()  # notes stay in the file
    assert set(warehouse.read_table(warehouse.path_in(tmp_path), "suppressions")["customer_id"]) == {stopped}
    # Importing the same file again records nothing twice.
    assert run_cli(monkeypatch, capsys, "contacts", "import", str(filled), "--out", str(tmp_path))[0] == 0
    assert len(warehouse.imported_contacts(warehouse.path_in(tmp_path))) == 3

    # churn outcomes measures what the team reported: 3 of the treated discount customers reached by a call.
    code, stdout, _ = run_cli(monkeypatch, capsys, "outcomes", "--data", str(synthetic_dir), "--out", str(tmp_path),
                              "--config", config_path, "--json")
    summary = pd.DataFrame(json.loads(stdout)["summary"])
    row = summary[(summary["action"] == "exclusive_discount") & (summary["risk_band"] == "all")].iloc[0]
    assert code == 0 and row["contacted_share"] == pytest.approx(3 / row["n_treated"])

    # The report's look back reads the same: outcomes per action, and the list date's scores checked
    # against what customers did once the horizon passed (in sample: the model was trained on them).
    from churn.publish import followup

    found = followup.collect(tmp_path, models, meta, load_config(config_path).with_horizon(60),
                             pipeline.load_dataset(synthetic_dir, load_config(config_path)))
    assert set(found.summary["action"]) >= {"exclusive_discount"} and found.list_dates == [list_date]
    realised = found.realised.set_index(found.realised["run_date"].dt.strftime("%Y-%m-%d"))
    assert realised.loc[list_date, "roc_auc"] > 0.7 and bool(realised.loc[list_date, "in_sample"])

    # "do not contact again" is a suppression at once: a rerun of the same day no longer lists them.
    score_flow(str(synthetic_dir), list_date, str(tmp_path), str(models), config_path)
    listed = pd.concat([pd.read_csv(p, dtype=str) for p in (tmp_path / list_date).glob("winback_*.csv")])
    assert stopped not in set(listed["customer_id"])
    manifest = json.loads((tmp_path / list_date / "manifest.json").read_text())
    assert manifest["suppressed_excluded"] >= 1


def test_a_filled_list_with_mistakes_names_every_bad_row_and_records_nothing(trained, synthetic_dir, config_path,
                                                                             tmp_path, monkeypatch, capsys):
    models, meta = trained
    score_flow(str(synthetic_dir), meta["as_of"], str(tmp_path), str(models), config_path)
    csv = tmp_path / meta["as_of"] / "winback_exclusive_discount.csv"
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame.loc[0, ["called", "outcome"]] = ["yes", "maybe"]
    frame.loc[1, ["called", "reached"]] = ["no", "yes"]
    frame.loc[2, ["customer_id", "called"]] = ["not-a-customer", "yes"]
    filled = tmp_path / "winback_exclusive_discount.csv"
    frame.to_csv(filled, index=False)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "contacts", "import", str(filled), "--out", str(tmp_path))
    assert code == 1 and stdout == ""
    assert "row 2: outcome 'maybe' is not one of: accepted, declined" in stderr
    assert "row 3: Called? is no, but Reached? or Outcome is filled in" in stderr
    assert "nothing was recorded" in stderr and len(stderr.strip().splitlines()) == 1
    frame.loc[[0, 1], ["called", "reached", "outcome"]] = ""
    frame.to_csv(filled, index=False)
    code, _, stderr = run_cli(monkeypatch, capsys, "contacts", "import", str(filled), "--out", str(tmp_path))
    assert code == 1 and "row 4: customer 'not-a-customer' was not on the exclusive_discount list" in stderr
    assert warehouse.imported_contacts(warehouse.path_in(tmp_path)).empty


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from tests.conftest import run

    return run(monkeypatch, capsys, *args)


# --- DuckDB's memory budget: [engine] duckdb_memory_limit ------------------------------------------


def test_the_configured_duckdb_budget_reaches_every_session_of_a_daily_run(trained, synthetic_dir, config_path,
                                                                          tmp_path, monkeypatch):
    models, meta = trained
    opened = []
    real = duckdb.connect

    def recording(*args, **kwargs):
        opened.append(kwargs["config"]["memory_limit"])
        return real(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", recording)
    config = load_config(config_path)
    config = type(config)(**{**config.__dict__, "engine": type(config.engine)(duckdb_memory_limit="300MB")})
    pipeline.score_day(synthetic_dir, RunDate.parse(meta["as_of"]), tmp_path, models, config)
    # Validation, the feature engine, the quality gate and the warehouse: every session, 300e6 bytes.
    assert len(opened) >= 3 and set(opened) == {f"{300 * 10**6 // 1024}KiB"}, opened


def test_a_duckdb_budget_too_small_is_exit_1_naming_the_setting_and_writes_nothing(
        trained, synthetic_dir, config_path, tmp_path, monkeypatch, capsys):
    """Before: DuckDB's "Out of Memory" in the feature engine was exit 70 with a traceback (`make demo`, 3 of 4)."""
    models, meta = trained
    tight = tmp_path / "churn.toml"
    tight.write_text(Path(config_path).read_text() + '[engine]\nduckdb_memory_limit = "8MB"\n')
    out, new_models = tmp_path / "out", tmp_path / "models"
    for args in (["score", "--data", str(synthetic_dir), "--date", meta["as_of"], "--out", str(out),
                  "--models", str(models)],
                 ["train", "--data", str(synthetic_dir), "--models", str(new_models)]):
        code, _, err = run(monkeypatch, capsys, *args, "--config", str(tight))
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 1 and "Traceback" not in err, err
        assert errors == [f'error: DuckDB ran out of memory within its budget of 8MB: raise [engine] '
                          f'duckdb_memory_limit in the settings file (the one given with --config, else '
                          f'./churn.toml; e.g. "4GB", or "50%" of this machine\'s memory), '
                          f'then rerun; outputs written before are unchanged'], err
    assert not out.exists() and not new_models.exists()  # not even the lock file: the run created OUT, then failed
