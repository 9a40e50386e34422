"""The history warehouse: a rerun replaces its date's rows in one transaction, history reads stay point-in-time."""

import pandas as pd
import pytest

from churn.publish import warehouse


def _run(date: str, n: int = 3) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    run = {"run_date": date, "model_version": "m1", "horizon_days": 30, "campaign": "winback",
           "data_fingerprint": "abc", "n_scored": n, "orders_window": 10 * n, "latest_order": date,
           "table_schema": {"orders": ["amount", "customer_id"]}, "manifest": {"run_date": date}}
    scores = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "p_churn": [0.1 * (i + 1) for i in range(n)],
                           "risk_band": pd.Categorical(["low"] * n), "lifecycle_stage": "active", "value": 1.0,
                           "value_tier": "mid", "reason_code_1": None})
    taken = pd.DataFrame({"customer_id": ["c0", "c1"], "action": ["callback", "trial"], "arm": ["treated", "holdout"],
                          "rank": [1, 1], "segment": "none", "uplift": 0.1, "uplift_source": "prior", "cost": 1.0,
                          "expected_value": 2.0, "offer_value": 0.0, "p_churn": 0.5, "risk_band": "high",
                          "value": 10.0, "due_date": pd.Timestamp(date) + pd.Timedelta(days=7)})
    return run, scores, taken


def _rows(path, table: str) -> pd.DataFrame:
    frame = warehouse.read_table(path, table)
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def test_a_rerun_replaces_its_date_and_keeps_the_others(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    warehouse.write_run(path, *_run("2024-05-02", n=4))
    before = {t: _rows(path, t) for t in ("runs", "scores", "assignments")}
    warehouse.write_run(path, *_run("2024-05-02", n=4))
    for table, rows in before.items():
        pd.testing.assert_frame_equal(_rows(path, table), rows)
    assert len(before["scores"]) == 3 + 4 and len(before["runs"]) == 2
    warehouse.write_run(path, *_run("2024-05-02", n=2))  # a different rerun replaces the date whole
    assert len(warehouse.read_table(path, "scores")) == 3 + 2


def test_a_failure_while_publishing_rolls_the_date_back(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    before = _rows(path, "scores")

    def disk_full():
        raise OSError("disk full")

    with pytest.raises(OSError):
        warehouse.write_run(path, *_run("2024-05-01", n=5), then=disk_full)
    pd.testing.assert_frame_equal(_rows(path, "scores"), before)


def test_history_reads_only_what_came_before_the_run_date(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    warehouse.write_run(path, *_run("2024-05-01"))
    warehouse.write_run(path, *_run("2024-05-03"))
    contacts = pd.DataFrame({"customer_id": ["c9", "c0"], "list_date": pd.to_datetime(["2024-04-20", "2024-05-05"]),
                             "action": "callback", "arm": "treated",
                             "contacted_ts": pd.to_datetime(["2024-04-22 10:00", None])})
    last = warehouse.last_listed(path, "2024-05-03", contacts)
    # both arms count; the run of D itself and later contacts do not
    assert last.to_dict() == {"c0": pd.Timestamp("2024-05-01"), "c1": pd.Timestamp("2024-05-01"),
                              "c9": pd.Timestamp("2024-04-22")}
    assert warehouse.previous_run(path, "2024-05-03")["run_date"] == "2024-05-01"
    assert warehouse.previous_run(path, "2024-05-01") is None


def test_uplift_estimates_are_the_latest_measured_by_the_run_date(tmp_path):
    path = tmp_path / warehouse.FILE_NAME
    for through, value in (("2024-05-01", 0.1), ("2024-06-01", 0.2)):
        warehouse.write_outcomes(path, pd.DataFrame(), pd.DataFrame({
            "measured_through": [pd.Timestamp(through)], "action": ["callback"], "segment": ["none"],
            "n_treated": [100], "n_holdout": [20], "measured": [value], "prior": [0.1], "shrunk": [value],
            "source": ["measured"]}))
    assert warehouse.uplift_estimates(path, "2024-04-30") is None
    assert warehouse.uplift_estimates(path, "2024-05-20")["shrunk"].tolist() == [0.1]
    assert warehouse.uplift_estimates(path, "2024-07-01")["shrunk"].tolist() == [0.2]


def test_a_warehouse_from_before_imports_gains_the_new_columns_and_tables(tmp_path):
    import duckdb

    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE contacts (customer_id VARCHAR, list_date DATE, action VARCHAR, arm VARCHAR, "
                "contacted_ts TIMESTAMP, outcome VARCHAR)")
    con.execute("INSERT INTO contacts VALUES ('c1', DATE '2024-05-01', 'callback', 'treated', NULL, NULL)")
    con.close()
    assert warehouse.read_table(path, "suppressions").empty  # read-only: a missing table reads empty
    assert warehouse.imported_contacts(path).empty and warehouse.suppressed(path) == set()
    warehouse.write_contacts(path, pd.DataFrame({"customer_id": ["c2"], "list_date": [pd.Timestamp("2024-05-01")],
                                                 "action": ["callback"], "arm": ["treated"], "reached": [True]}),
                             pd.DataFrame({"customer_id": ["c2"], "reason": ["do_not_contact"],
                                           "since": [pd.Timestamp("2024-05-01")], "source": ["contacts import"]}))
    contacts = warehouse.read_table(path, "contacts")
    assert contacts["customer_id"].tolist() == ["c1", "c2"] and contacts["source"].tolist()[1] == "import"
    assert warehouse.suppressed(path) == {"c2"}
