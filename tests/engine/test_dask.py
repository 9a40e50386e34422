"""The Dask engine gives the local engine's results: features, validation, lists, and a model as good.

On a 2-worker LocalCluster (tests/engine/conftest.py) with 4 customer partitions.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churn import pipeline
from churn.config import Config, DataConfig, EngineConfig, ModelConfig, WinbackConfig
from churn.data import contract
from churn.engine import training as distributed
from churn.errors import ContractError
from churn.features.engine import FeatureBuilder
from churn.features.snapshots import build_snapshots, data_range
from churn.model import registry, training
from churn.model.classifier import ChurnModel
from churn.model.split import plan_split
from churn.types import RunDate

END = "2024-06-30"
CUTOFFS = [pd.Timestamp("2024-03-31"), pd.Timestamp(END)]
QUICK = ModelConfig(n_train_cutoffs=3, n_estimators=80, learning_rate=0.2, search_budget=2)


def test_features_equal_the_local_engine(engine, synthetic_dir):
    """Every feature of every customer at two cutoffs, bit for bit: RFM quintiles ranked across partitions."""
    data = engine.load(str(synthetic_dir), contract.ContractConfig())
    got = engine.collect(engine.features(data, CUTOFFS, 365), by=["cutoff", "customer_id"])
    expected = FeatureBuilder(contract.validate(synthetic_dir)).build(CUTOFFS)
    pd.testing.assert_frame_equal(got, expected)
    assert data.event_types and len(data.parts) == 4


def test_partitions_are_written_once_per_data_fingerprint(engine, synthetic_dir, tmp_path):
    first = engine.load(str(synthetic_dir), contract.ContractConfig())
    again = engine.load(str(synthetic_dir), contract.ContractConfig())
    assert again.reused and again.files.root == first.files.root
    changed = tmp_path / "changed"
    changed.mkdir()
    for path in synthetic_dir.iterdir():
        (changed / path.name).write_bytes(path.read_bytes())
    orders = pd.read_parquet(changed / "orders.parquet")
    orders.loc[orders.index[-1], "amount"] += 1.0  # one amount corrected: new data
    orders.to_parquet(changed / "orders.parquet", index=False)
    other = engine.load(str(changed), contract.ContractConfig())
    assert not other.reused and other.files.root != first.files.root
    assert other.fingerprints["orders"] != first.fingerprints["orders"]


def _broken_shop(tmp_path):
    """A CSV shop with a negative amount, two exact duplicate rows, and an order id shared by two customers."""
    rows = [(f"c{i % 40}", f"o{i}", f"2024-0{1 + i % 6}-1{i % 9}T10:00:00", f"{10 + i % 7}.5") for i in range(400)]
    rows[17] = (rows[17][0], rows[17][1], rows[17][2], "-5.0")
    rows.append(rows[30])  # exact duplicate: quarantined
    rows.append(rows[31])
    orders = pd.DataFrame(rows, columns=["customer_id", "order_id", "order_ts", "amount"])
    path = tmp_path / "shop"
    path.mkdir()
    orders.to_csv(path / "orders.csv", index=False)
    return path, orders


def test_validation_quotes_the_file_rows_the_local_engine_quotes(engine, tmp_path):
    path, orders = _broken_shop(tmp_path)
    with pytest.raises(ContractError) as local:
        contract.validate(path)
    with pytest.raises(ContractError) as dask:
        engine.load(str(path), contract.ContractConfig())
    assert str(dask.value) == str(local.value)  # 'orders.csv: column amount: 1 row < 0 (row 18: -5.0)'
    assert "row 18" in str(dask.value)

    # Now fixed, but with an order id on two customers (so in two partitions): a global check.
    orders.loc[17, "amount"] = "5.0"
    a, b = next((i, j) for i in range(400) for j in range(i + 1, 400)
                if engine_partition(orders, i, engine) != engine_partition(orders, j, engine))
    orders.loc[b, "order_id"] = orders.loc[a, "order_id"]
    orders.to_csv(path / "orders.csv", index=False)
    with pytest.raises(ContractError) as local:
        contract.validate(path)
    with pytest.raises(ContractError) as dask:
        engine.load(str(path), contract.ContractConfig())
    assert str(dask.value) == str(local.value)
    assert f"rows {a + 1}, {b + 1}" in str(dask.value)


def engine_partition(orders, i, engine):
    from churn.data.partitions import partition_of

    return partition_of(orders["customer_id"].iloc[[i]], engine.k)[0]


def test_quarantine_counts_and_gathered_data_equal_the_local_engine(engine, tmp_path):
    path, orders = _broken_shop(tmp_path)
    orders.loc[17, "amount"] = "5.0"
    orders.to_csv(path / "orders.csv", index=False)
    local = contract.validate(path)
    data = engine.load(str(path), contract.ContractConfig())
    assert data.row_counts == local.row_counts and data.fingerprints == local.fingerprints
    pd.testing.assert_frame_equal(data.summary.quarantine["orders"], local.quarantine["orders"])
    pd.testing.assert_frame_equal(engine.dataset(data).orders, local.orders)


@pytest.fixture(scope="module")
def quick_model(synthetic_dir, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    config = Config(data=DataConfig(horizon_days=90), model=QUICK)
    result = training.train(contract.validate(synthetic_dir), END, config, evaluate=False)
    registry.register(result.model, result.metadata, models)
    return models


def _outputs(out, day):
    folder = out / day
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("timings_seconds")
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".csv", ".xlsx")}
    return pd.read_parquet(folder / "scores.parquet"), manifest, files


def test_daily_runs_publish_the_same_lists_scores_and_history(engine, synthetic_dir, quick_model, tmp_path):
    """Two days in a row (the second in the first's cooldown), small capacities so that partitions cut short."""
    winback = dataclasses.replace(WinbackConfig(), capacity={"callback": 4, "exclusive_discount": 12, "trial": 8})
    config = Config(winback=winback)
    outputs = {}
    for kind in ("local", "dask"):
        out = tmp_path / kind
        for day in ("2024-06-29", END):
            pipeline.score_day(synthetic_dir, RunDate.parse(day), out, quick_model, config,
                               engine=engine if kind == "dask" else None)
        outputs[kind] = [_outputs(out, day) for day in ("2024-06-29", END)]
    for (scores, manifest, files), (d_scores, d_manifest, d_files) in zip(outputs["local"], outputs["dask"]):
        pd.testing.assert_frame_equal(d_scores, scores)
        assert d_manifest == manifest
        assert d_files == files  # the lists (CSV and the workbook), byte for byte
    assert outputs["local"][1][1]["in_cooldown"] > 0 and sum(outputs["local"][1][1]["lists"].values()) > 0


def test_fsspec_urls_for_data_and_partitions(tmp_path):
    """A data directory and partitions in an in-memory filesystem (memory://), and as file:// URLs."""
    import fsspec
    from distributed import Client, LocalCluster

    from churn.data.datasets import synthetic
    from churn.engine.dask import DaskEngine

    shop = tmp_path / "shop"
    synthetic.write(synthetic.generate(300, start="2023-06-01", end=END, random_state=3), shop)
    memory = fsspec.filesystem("memory")
    for path in shop.iterdir():
        memory.pipe(f"/shop/{path.name}", path.read_bytes())
    expected = FeatureBuilder(contract.validate(shop)).build(CUTOFFS)
    # memory:// lives in one process: a cluster of threads shares it.
    with LocalCluster(n_workers=2, processes=False, dashboard_address=":0") as cluster, Client(cluster) as client:
        for data_dir, storage in (("memory://shop", "memory://partitions"), (shop.as_uri(), (tmp_path / "p").as_uri())):
            engine = DaskEngine(client, EngineConfig(kind="dask", partitions=3), storage)
            data = engine.load(data_dir, contract.ContractConfig())
            got = engine.collect(engine.features(data, CUTOFFS, 365), by=["cutoff", "customer_id"])
            pd.testing.assert_frame_equal(got, expected)
    assert memory.exists("/partitions") and (tmp_path / "p").is_dir()


def test_training_on_the_cluster_is_as_good_as_local(engine, synthetic_dir):
    """xgboost.dask: ROC-AUC within 0.005 of the local model on the same out-of-time test; gather: the same model."""
    config = Config(data=DataConfig(horizon_days=90), model=QUICK)
    dataset = contract.validate(synthetic_dir)
    split = plan_split(pd.Timestamp("2024-03-31"), 90, 3, *data_range(dataset), 90, with_test=True)
    snaps = build_snapshots(dataset, split.all_cutoffs(), 90, 365)
    test = snaps[snaps["cutoff"] == split.test_cutoff]
    local = ChurnModel(90, config.model).fit(snaps[snaps["cutoff"].isin(split.train_cutoffs)],
                                             snaps[snaps["cutoff"] == split.val_cutoff])
    data = engine.load(str(synthetic_dir), config.contract)
    parts = distributed.snapshots(engine, data, split.all_cutoffs(), 90, 365)
    pd.testing.assert_frame_equal(engine.collect(parts, by=["cutoff", "customer_id"]), snaps.reset_index(drop=True))
    on_cluster = distributed.fit(engine, parts, split, 90, config)
    auc = {name: roc_auc_score(test["churned"], m.predict_proba(test)[:, 1])
           for name, m in (("local", local), ("dask", on_cluster))}
    assert abs(auc["dask"] - auc["local"]) <= 0.005, auc
    gather = dataclasses.replace(engine.config, training="gather")
    gathered = distributed.fit(type(engine)(engine.client, gather, engine.storage), parts, split, 90, config)
    np.testing.assert_array_equal(gathered.predict_proba(test), local.predict_proba(test))


def test_workers_never_import_prefect(engine, synthetic_dir):
    engine.load(str(synthetic_dir), contract.ContractConfig())
    loaded = engine.client.run(lambda: sorted(m for m in sys.modules if m.split(".")[0] in ("prefect", "churn")))
    for modules in loaded.values():
        assert "churn.engine.dask" in modules and not any(m.startswith("prefect") for m in modules)


def test_the_command_line_switches_engine_with_the_same_outputs(dask_client, synthetic_dir, quick_model, tmp_path,
                                                                monkeypatch, capsys):
    """`churn score --scheduler ADDRESS` (which implies --engine dask) publishes what `churn score` does."""
    from tests.conftest import run

    common = ["score", "--data", str(synthetic_dir), "--date", END, "--models", str(quick_model), "--json"]
    code, out, err = run(monkeypatch, capsys, *common, "--out", str(tmp_path / "local"))
    assert code == 0, err
    code, out_dask, err = run(monkeypatch, capsys, *common, "--out", str(tmp_path / "dask"),
                              "--scheduler", dask_client.scheduler.address)
    assert code == 0, err
    local, dask = json.loads(out), json.loads(out_dask)
    assert {k: v for k, v in dask.items() if k not in ("timings_seconds", "path")} == \
        {k: v for k, v in local.items() if k not in ("timings_seconds", "path")}
    assert (tmp_path / "dask" / ".cache" / "partitions").is_dir()
    assert _outputs(tmp_path / "dask", END)[2] == _outputs(tmp_path / "local", END)[2]


def test_a_missing_data_directory_fails_before_any_cluster_starts(monkeypatch, capsys, tmp_path):
    from tests.conftest import run

    code, out, err = run(monkeypatch, capsys, "score", "--data", str(tmp_path / "missing"), "--date", END,
                         "--out", str(tmp_path / "out"), "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 1 and err.startswith("error: ") and "data directory not found" in err and err.count("\n") == 1


def test_training_job_on_the_cluster_registers_the_local_model(engine, synthetic_dir, tmp_path):
    """`train_model` on the Dask engine (validated per partition, gathered): the local job's version, backtest, gate."""
    from churn.config import EvaluateConfig

    config = Config(data=DataConfig(horizon_days=90), model=dataclasses.replace(QUICK, search_budget=1),
                    evaluate=EvaluateConfig(n_bootstrap=20, n_bootstrap_segments=10))
    local = pipeline.train_model(synthetic_dir, tmp_path / "local", config, RunDate.parse(END))
    dask = pipeline.train_model(synthetic_dir, tmp_path / "dask", config, RunDate.parse(END), engine=engine)
    assert dask.metadata["version"] == local.metadata["version"]
    assert dask.metadata["backtest"] == local.metadata["backtest"]
    assert dask.metadata["gate"] == local.metadata["gate"]
    assert (tmp_path / "dask" / local.metadata["version"] / "booster.json").read_bytes() == \
        (tmp_path / "local" / local.metadata["version"] / "booster.json").read_bytes()


def test_data_dated_after_the_run_day_is_refused_quoting_the_same_file_rows(engine, tmp_path):
    path, orders = _broken_shop(tmp_path)
    orders.loc[17, "amount"] = "5.0"
    orders.loc[[40, 333], "order_ts"] = "2031-01-05T10:00:00"  # two customers, likely two partitions
    orders.to_csv(path / "orders.csv", index=False)
    with pytest.raises(ContractError) as local:
        contract.check_not_after(contract.validate(path), "2024-12-31")
    with pytest.raises(ContractError) as dask:
        engine.check_not_after(engine.load(str(path), contract.ContractConfig()), "2024-12-31")
    quoted = sorted(int(r) for found in re.findall(r"\(rows? ([\d, ]+):", str(dask.value)) for r in found.split(", "))
    assert quoted == [41, 334] and "rows 41, 334" in str(local.value)
    assert str(dask.value).endswith("data cannot come from the future")


def test_with_a_learnt_per_customer_uplift_the_lists_are_the_same(engine, synthetic_dir, quick_model, tmp_path):
    """A list measured by `churn outcomes` teaches a per-customer uplift; the next day's lists use it on both engines."""
    import shutil

    from churn.config import OutcomesConfig

    config = Config(outcomes=dataclasses.replace(OutcomesConfig(), min_holdout=1))
    first = tmp_path / "first"
    pipeline.score_day(synthetic_dir, RunDate.parse("2024-03-27"), first, quick_model, config)
    pipeline.measure_outcomes(synthetic_dir, first, config)
    outputs = {}
    for kind in ("local", "dask"):
        out = tmp_path / kind
        shutil.copytree(first, out)
        result = pipeline.score_day(synthetic_dir, RunDate.parse(END), out, quick_model, config,
                                    engine=engine if kind == "dask" else None)
        outputs[kind] = (result.manifest, _outputs(out, END))
    assert outputs["local"][0].get("uplift_per_customer")  # the learnt model was used
    assert outputs["dask"][1][1] == outputs["local"][1][1] and outputs["dask"][1][2] == outputs["local"][1][2]
    pd.testing.assert_frame_equal(outputs["dask"][1][0], outputs["local"][1][0])


def test_an_erased_customer_is_neither_scored_nor_listed_on_the_dask_engine(engine, synthetic_dir, quick_model,
                                                                           tmp_path):
    from churn.publish import erasure
    from tests.conftest import FORGOTTEN, with_distinctive_id

    probe = pipeline.score_day(synthetic_dir, RunDate.parse(END), tmp_path / "probe", quick_model, Config())
    customer = pd.read_csv(probe.path / "winback_exclusive_discount.csv", dtype=str)["customer_id"].iloc[0]
    data = with_distinctive_id(synthetic_dir, customer, tmp_path / "data")  # the source still holds them
    out = tmp_path / "dask"
    erasure.Store(out).add([FORGOTTEN])
    result = pipeline.score_day(data, RunDate.parse(END), out, quick_model, Config(), engine=engine)
    assert result.manifest["forgotten_excluded"] == 1 and pipeline.published(out, RunDate.parse(END))
    scores, _, files = _outputs(out, END)
    assert FORGOTTEN not in set(scores["customer_id"]) and len(scores) == len(pd.read_parquet(
        probe.path / "scores.parquet")) - 1
    assert not any(FORGOTTEN.encode() in data for name, data in files.items() if name.endswith(".csv"))
    listed = pd.read_csv(out / END / "winback_exclusive_discount.csv", dtype=str)
    assert len(listed) == len(pd.read_csv(probe.path / "winback_exclusive_discount.csv"))  # filled again


def test_a_csv_file_without_a_final_newline_is_refused_as_the_local_engine_refuses_it(engine, tmp_path):
    path, orders = _broken_shop(tmp_path)
    orders.loc[17, "amount"] = "5.0"
    orders.to_csv(path / "orders.csv", index=False)
    (path / "orders.csv").write_bytes((path / "orders.csv").read_bytes()[:-2])  # cut inside the last amount
    with pytest.raises(ContractError) as local:
        contract.validate(path)
    with pytest.raises(ContractError) as dask:
        engine.load(str(path), contract.ContractConfig())
    assert str(dask.value) == str(local.value)
    assert str(local.value).startswith("orders.csv: the file does not end with a newline, so it is probably "
                                       f"truncated: its last line (data row {len(orders)})")
