"""Erasure's parts: the suppression store, the data without the forgotten, a day's files rewritten."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook

from churn.publish import erasure
from tests.conftest import dataset_of, make_orders


def test_the_store_keeps_salted_hashes_never_the_ids(tmp_path):
    store = erasure.Store(tmp_path)
    assert store.version() == "" and store.forgotten_among(["shopper-1"]) == set()
    assert store.add(["shopper-1", "shopper-2"]) == 2 and store.add(["shopper-2"]) == 0
    assert store.forgotten_among(["shopper-1", "shopper-3"]) == {"shopper-1"} and store.version()
    text = (tmp_path / "erasure" / "forgotten.txt").read_text()
    assert "shopper" not in text and len(text.split()) == 2
    other = tmp_path / "elsewhere"  # another installation, another salt: other hashes
    erasure.Store(other).add(["shopper-1"])
    assert (other / "erasure" / "forgotten.txt").read_text().split()[0] not in text.split()
    assert (tmp_path / "erasure" / "salt").stat().st_mode & 0o077 == 0  # the salt is the owner's only


def test_the_data_loses_every_row_of_the_forgotten_order_lines_and_quarantine_included(tmp_path):
    orders = make_orders([("c1", "2024-01-01"), ("c2", "2024-01-02"), ("c1", "2024-01-03")])
    items = pd.DataFrame({"order_id": ["o0", "o1", "o2"], "product_id": ["p", "q", "r"]})
    events = pd.DataFrame({"customer_id": ["c1", "c2"], "event_ts": pd.to_datetime(["2024-01-01"] * 2),
                           "event_type": "visit"})
    dataset = dataset_of(orders, order_items=items, events=events)
    dataset.quarantine["orders"] = orders.iloc[:1].assign(reason="duplicate_row")
    store = erasure.Store(tmp_path)
    assert erasure.without(dataset, store) == (dataset, 0)  # nobody forgotten: the same object
    store.add(["c1"])
    kept, n = erasure.without(dataset, store)
    assert n == 1 and set(kept.orders["customer_id"]) == {"c2"} and set(kept.events["customer_id"]) == {"c2"}
    assert kept.order_items["order_id"].tolist() == ["o1"] and kept.quarantine["orders"].empty


def test_a_day_is_rewritten_without_the_rows_guarded_spellings_included(tmp_path):
    day = tmp_path / "2024-05-01"
    day.mkdir()
    pd.DataFrame({"customer_id": ["-42", "c2"], "p_churn": [0.9, 0.8]}).to_parquet(day / "scores.parquet")
    # Lists guard text a spreadsheet would run as a formula with a leading ': "-42" is written "'-42".
    pd.DataFrame({"rank": [1, 2], "customer_id": ["'-42", "c2"]}).to_csv(day / "winback_trial.csv", index=False)
    book = Workbook()
    book.active.append(["Rank", "Customer"])
    book.active.append([1, "'-42"])
    book.active.append([2, "c2"])
    book.save(day / "winback.xlsx")
    (day / "manifest.json").write_text(json.dumps({"run_date": "2024-05-01", "n_scored": 2}))
    assert erasure.found_in_day(day, {"-42"}) == {"-42"} and erasure.found_in_day(day, {"c9"}) == set()
    target = tmp_path / "new"
    target.mkdir()
    assert erasure.rewrite_day(day, target, {"-42"}, "2024-05-01") == 3
    assert pd.read_parquet(target / "scores.parquet")["customer_id"].tolist() == ["c2"]
    assert pd.read_csv(target / "winback_trial.csv", dtype=str)["customer_id"].tolist() == ["c2"]
    rows = list(load_workbook(target / "winback.xlsx").active.values)
    assert rows == [("Rank", "Customer"), (2, "c2")] and not (target / "manifest.json").exists()


def test_alerts_lose_the_ids_and_a_models_numbers_are_not_mistaken_for_one(tmp_path):
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    (alerts / "a.json").write_text(json.dumps({"message": "2 duplicate ids (rows 3, 4: '1027')", "flow": "x",
                                                "text": "churn: x ended Refused: ... '1027'"}))
    (alerts / "b.json").write_text(json.dumps({"message": "freshness", "flow": "y"}))
    assert erasure.scrub_alerts(alerts, {"1027"}) == 1
    assert "1027" not in (alerts / "a.json").read_text() and "[erased]" in (alerts / "a.json").read_text()
    models = tmp_path / "models"
    models.mkdir()
    (models / "booster.json").write_text('{"split_conditions": [10275.5, 1027.0], "name": "xgboost"}')
    (models / "leaky.json").write_text('{"examples": ["1027"]}')
    assert erasure.quoted_in(models, {"1027"}) == [models / "leaky.json"]


def _real_booster(path: Path, n_features: int = 42) -> None:
    """A real XGBoost model file: 42 features (so "num_feature": "42"), early-stopped (best_iteration)."""
    import numpy as np
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, n_features))
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(int)
    train, valid = xgb.DMatrix(x[:300], y[:300]), xgb.DMatrix(x[300:], y[300:])
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "seed": 42, "nthread": 1}, train, 30,
                        evals=[(valid, "valid")], early_stopping_rounds=5, verbose_eval=False)
    booster.save_model(str(path))


@pytest.mark.parametrize("ids", [{"1"}, {"0"}, {"42"}, {"0", "1", "42"}])
def test_xgboosts_own_parameter_strings_are_not_taken_for_a_customer_id(tmp_path, ids):
    """Before: `churn forget 1` (and 0) warned that booster.json quotes an erased id: XGBoost writes its
    parameters as text ("num_parallel_tree": "1", "num_class": "0", "num_feature": "42")."""
    version = tmp_path / "models" / "20240630-h60-abc"
    version.mkdir(parents=True)
    _real_booster(version / "booster.json")
    (version / "metadata.json").write_text(json.dumps({"version": "20240630-h60-abc", "n_train": 42,
                                                       "features": ["recency_days", "orders_90d"]}))
    raw = (version / "booster.json").read_bytes()
    assert all(json.dumps(i).encode() in raw for i in ids)  # the bytes do hold them, quoted
    assert erasure.quoted_in(tmp_path / "models", ids) == []


def test_a_customer_id_in_a_model_file_is_still_found_wherever_data_can_live(tmp_path):
    models = tmp_path / "models"
    (models / "v").mkdir(parents=True)
    _real_booster(models / "v" / "booster.json")
    import xgboost as xgb

    leaky = xgb.Booster(model_file=str(models / "v" / "booster.json"))
    leaky.set_attr(example_customer="42")  # free text in the booster: searched
    leaky.save_model(str(models / "v" / "leaky_booster.json"))
    (models / "v" / "metadata.json").write_text(json.dumps({"examples": ["1"]}))  # a string value
    (models / "v" / "params.json").write_text(json.dumps({"uplift": {"0": 0.3}}))  # a key
    (models / "v" / "calibrator.json").write_text('{"cut off": ["7')  # not JSON: searched as bytes
    (models / "v" / "cut.json").write_text('{"ids": ["7"], "cut off')
    assert erasure.quoted_in(models, {"42"}) == [models / "v" / "leaky_booster.json"]
    assert erasure.quoted_in(models, {"1"}) == [models / "v" / "metadata.json"]
    assert erasure.quoted_in(models, {"0"}) == [models / "v" / "params.json"]
    assert erasure.quoted_in(models, {"7"}) == [models / "v" / "cut.json"]


def test_only_the_customer_id_cells_are_compared_not_ranks_risks_currencies_or_dates(tmp_path):
    """Trial, stop 21: `forget 1` dropped every list's rank-1 row, `forget 0` the Summary sheet's rows
    (held out = 0), `forget USD` every CRM import row, `forget 2024-05-01` the whole day."""
    day = tmp_path / "2024-05-01"
    day.mkdir()
    pd.DataFrame({"customer_id": ["1", "c2", "c3"], "p_churn": [0.42, 0.8, 0.1]}).to_parquet(day / "scores.parquet")
    pd.DataFrame({"rank": ["1", "2", "42"], "customer_id": ["c2", "1", "c3"], "p_churn_pct": ["42", "0", "25"],
                  "list_date": ["2024-05-01"] * 3}).to_csv(day / "winback_trial.csv", index=False)
    pd.DataFrame({"list_date": ["2024-05-01"] * 2, "rank": ["1", "2"], "customer_id": ["c2", "1"],
                  "currency": ["USD", "USD"]}).to_csv(day / "crm_import.csv", index=False)
    book = Workbook()
    summary = book.active
    summary.title = "Summary"
    summary.append(["Win-back lists for 2024-05-01"])
    summary.append(["List", "Listed", "Capacity", "Held out"])
    summary.append(["Product trial", 2, 25, 0])
    trial = book.create_sheet("Product trial")
    trial.append(["Rank", "Customer", "Churn risk %"])
    trial.append([1, "c2", 42])
    trial.append([2, "1", 0])
    book.save(day / "winback.xlsx")
    (day / "manifest.json").write_text(json.dumps({"run_date": "2024-05-01"}))
    (day / "quarantine").mkdir()  # a quarantined table without a customer id column: nothing to match in it
    pd.DataFrame({"order_id": ["o1"], "quantity": ["1"]}).to_csv(day / "quarantine" / "order_items.csv", index=False)

    for not_a_customer in ("0", "25", "42", "USD", "2024-05-01", "Product trial"):
        assert erasure.found_in_day(day, {not_a_customer}) == set()
    assert erasure.found_in_day(day, {"1"}) == {"1"}
    target = tmp_path / "new"
    target.mkdir()
    assert erasure.rewrite_day(day, target, {"1"}, "2024-05-01") == 4  # scores, list CSV, CRM, sheet: one row each
    assert pd.read_parquet(target / "scores.parquet")["customer_id"].tolist() == ["c2", "c3"]
    assert pd.read_csv(target / "winback_trial.csv", dtype=str)["customer_id"].tolist() == ["c2", "c3"]
    assert pd.read_csv(target / "crm_import.csv", dtype=str)["customer_id"].tolist() == ["c2"]
    kept = load_workbook(target / "winback.xlsx")
    assert list(kept["Summary"].values)[2] == ("Product trial", 2, 25, 0)
    assert list(kept["Product trial"].values) == [("Rank", "Customer", "Churn risk %"), (1, "c2", 42)]
