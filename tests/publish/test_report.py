"""The analyst report: KPIs by hand, PSI, curves from a gain table, and the whole report through the CLI."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest

from churn import cli
from churn.model import backtest as evaluate
from churn.model import registry
from churn.publish import report
from churn.decide import scoring
from churn.model import training
from churn.config import Config, LifecycleConfig
from churn.features.snapshots import build_snapshots
from tests.conftest import dataset_of, make_orders


def test_monthly_kpis_by_hand():
    orders = make_orders([("a", "2024-01-01"), ("a", "2024-01-20"), ("a", "2024-02-10"), ("a", "2024-03-15"),
                          ("b", "2024-01-10"), ("b", "2024-03-02"), ("c", "2024-02-25"), ("c", "2024-03-31")])
    orders["coupon_used"] = orders["order_ts"] == pd.Timestamp("2024-02-10")
    kpis = report.monthly_kpis(dataset_of(orders), 30, LifecycleConfig())
    assert [m.strftime("%Y-%m-%d") for m in kpis.index] == ["2024-01-31", "2024-02-29", "2024-03-31"]
    assert kpis["new"].tolist() == [1, 1, 0] and kpis["active"].tolist() == [1, 2, 3]
    # Jan 31: b has no order by Mar 1; Feb 29: c none by Mar 30; Mar 31: the window is not over.
    assert kpis["churn_rate"].iloc[:2].tolist() == [0.5, pytest.approx(1 / 3)] and np.isnan(kpis["churn_rate"].iloc[2])
    assert kpis["buyers"].tolist() == [2, 2, 3]
    assert np.isnan(kpis["retention_rate"].iloc[0]) and kpis["retention_rate"].iloc[1:].tolist() == [0.5, 1.0]
    assert kpis["repurchase_rate"].tolist() == [0.0, 0.5, 1.0]
    assert kpis["arpu"].tolist() == [15.0, 10.0, 10.0]
    assert kpis["coupon_redemption_rate"].tolist() == [0.0, 0.5, 0.0]


def test_psi_is_zero_for_the_same_data_and_flags_a_shift_and_missing_values():
    rng = np.random.default_rng(0)
    base = pd.Series(rng.random(2000))
    assert report.psi(base, base) == pytest.approx(0.0)
    assert report.psi(base, base + 0.5) > 0.2
    assert report.psi(base, pd.Series(rng.random(2000))) < 0.05
    half_missing = base.where(np.arange(2000) % 2 == 0)
    assert report.psi(base, half_missing) > 0.2
    assert report.psi(half_missing, half_missing) == pytest.approx(0.0)


def test_curves_read_off_a_gain_table_match_curves_from_scores():
    y = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0])
    p = np.linspace(0.95, 0.05, 10)
    table = [{"decile": 1, "n": 5, "churners": 4, "lift": 1.6}, {"decile": 2, "n": 5, "churners": 1, "lift": 0.4}]
    got = report.backtest_curves({"gain_table": {"m": table}, "calibration_curve": {"m": [
        {"mean_predicted": 0.3, "observed": 0.25, "n": 4}]}})["m"]
    fpr, tpr = got["roc"]
    assert fpr.tolist() == [0.0, 0.2, 1.0] and tpr.tolist() == [0.0, 0.8, 1.0]
    assert got["lift"] == [1.6, 0.4] and got["calibration"] == [(0.3, 0.25, 4)]
    exact = report.curves(y, p, n_bins=2)
    assert exact["lift"] == pytest.approx([1.6, 0.4])
    roc = set(zip(*exact["roc"]))
    assert (0.2, 0.8) in roc


@pytest.fixture(scope="module")
def registered(synthetic_small, tmp_path_factory):
    """A fast model registered as champion, and a run directory written as `churn score` writes it."""
    dataset = dataset_of(**synthetic_small.tables)
    config = Config().with_horizon(60)
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, n_estimators=120, learning_rate=0.15, early_stopping_rounds=15, n_train_cutoffs=3,
        search_budget=1), evaluate=dataclasses.replace(config.evaluate, n_bootstrap=30))
    result = training.train(dataset, "2024-06-30", config, evaluate=False)
    # A backtest in the registry's layout, from the validation snapshots (the report only reads it).
    test = build_snapshots(dataset, [result.split.val_cutoff], 60)
    y = test["churned"].to_numpy()
    found = {"xgboost": result.model.predict_proba(test)[:, 1], "recency": test["recency_days"].rank(pct=True).to_numpy()}
    cutoff = result.split.val_cutoff.date().isoformat()
    result.metadata["backtest"] = {
        "horizon_days": 60, "test_cutoff": cutoff, "val_cutoff": cutoff, "train_cutoffs": result.metadata["split"][
            "train_cutoffs"], "n_test": len(test), "base_rate": float(y.mean()),
        "models": {name: evaluate.metrics(y, p, 30) for name, p in found.items()},
        "gain_table": {name: evaluate.gain_table(y, p) for name, p in found.items()},
        "calibration_curve": {name: evaluate.calibration_curve(y, p) for name, p in found.items()},
        "segments": evaluate.segment_report(test, found, config)}
    models = tmp_path_factory.mktemp("models")
    registry.register(result.model, result.metadata, models)
    from churn.features.engine import build_features

    feats = build_features(dataset, ["2024-06-30"])
    scores = scoring.score(feats, result.model, config)
    scores["orders_90d"] = 0.0  # a feature that drifted since training
    out = tmp_path_factory.mktemp("out")
    run = out / "2024-06-30"
    run.mkdir()
    scores.to_parquet(run / "scores.parquet", index=False)
    top = scores.sort_values("p_churn", ascending=False).head(30)
    for action, rows in (("callback", top.head(10)), ("trial", top.tail(20))):
        pd.DataFrame({"rank": range(1, len(rows) + 1), "customer_id": rows["customer_id"],
                      "p_churn_pct": 100 * rows["p_churn"], "value": rows["value"],
                      "expected_value": 0.1 * rows["value"], "reason_1": rows["reason_1"]}
                     ).to_csv(run / f"winback_{action}.csv", index=False)
    (run / "manifest.json").write_text(json.dumps({
        "run_date": "2024-06-30", "model_version": result.metadata["version"], "n_scored": len(scores),
        "lists": {"callback": 10, "trial": 20}, "holdout": 3}))
    return models, out, scores


def test_report_command_writes_one_self_contained_file_without_customer_ids(
        registered, synthetic_dir, tmp_path, monkeypatch, capsys):
    models, out, scores = registered
    target = tmp_path / "report.html"
    monkeypatch.setattr(sys, "argv", ["churn", "report", "--models", str(models), "--out", str(out),
                                      "--data", str(synthetic_dir), "--html", str(target)])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code in (0, None)
    assert "report written to" in capsys.readouterr().out
    page = target.read_text(encoding="utf-8")
    for anchor in ("kpis", "quality", "drivers", "stability", "lists"):
        assert f'<section id="{anchor}">' in page
    images = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)
    assert len(images) >= 8 and all(src.startswith("data:image/png;base64,") for src in images)
    assert all(base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG" for src in images)
    assert not re.search(r"https?://|<script|<link", page)
    assert not set(re.findall(r"\bc\d{4,}\b", page)) & set(scores["customer_id"])
    flagged = re.findall(r'<tr class="flag"><td[^>]*>([a-z0-9_]+)</td>', page)
    assert "orders_90d" in flagged
    assert "Buying less often" in page and "3 held out" in page
    assert re.search(r"Quality of the model served \(\w+\): (Excellent|Good|Fair|Poor) \(", page)
