"""The command line on small synthetic data: messages, exit codes, files written."""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import run


def test_validate_reports_row_counts(monkeypatch, capsys, synthetic_dir):
    code, out, _ = run(monkeypatch, capsys, "validate", "--data", str(synthetic_dir))
    assert code == 0 and "orders:" in out and "rows ok" in out


def test_validate_names_file_column_and_rows_and_exits_1(monkeypatch, capsys, tmp_path):
    pd.DataFrame({"customer_id": ["a", "b"], "order_id": ["1", "2"], "order_ts": ["2024-01-01", "2024-01-02"],
                  "amount": ["5", "-2"]}).to_csv(tmp_path / "orders.csv", index=False)
    code, _, err = run(monkeypatch, capsys, "validate", "--data", str(tmp_path))
    assert code == 1
    assert "orders.csv" in err and "amount" in err and "row 2" in err and "Traceback" not in err


def test_unknown_option_is_a_usage_error(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "validate", "--nope")
    assert code == 2 and "--nope" in err


def test_backtest_writes_the_design_json(monkeypatch, capsys, synthetic_dir, tmp_path):
    config = tmp_path / "churn.toml"
    config.write_text("[model]\nn_estimators = 100\nlearning_rate = 0.1\n[evaluate]\nn_bootstrap = 30\n")
    out = tmp_path / "bt.json"
    code, stdout, err = run(monkeypatch, capsys, "backtest", "--data", str(synthetic_dir), "--horizon", "60",
                            "--test-cutoff", "2024-03-01", "--out", str(out), "--config", str(config))
    assert code == 0, err
    report = json.loads(out.read_text())
    assert {"horizon_days", "test_cutoff", "val_cutoff", "train_cutoffs", "n_test", "base_rate", "models"} <= set(report)
    assert report["horizon_days"] == 60 and report["test_cutoff"] == "2024-03-01"
    assert set(report["models"]["xgboost"]) == {"roc_auc", "roc_auc_ci", "pr_auc", "top_decile_lift", "brier", "ece"}
    assert "xgboost" in stdout and "recency" in stdout


def test_backtest_past_the_data_explains_what_to_do(monkeypatch, capsys, synthetic_dir, tmp_path):
    code, _, err = run(monkeypatch, capsys, "backtest", "--data", str(synthetic_dir), "--horizon", "60",
                       "--test-cutoff", "2024-06-15", "--out", str(tmp_path / "x.json"))
    assert code == 1 and "runs past the data" in err and not (tmp_path / "x.json").exists()


def test_train_then_score_through_the_cli(monkeypatch, capsys, synthetic_dir, tmp_path):
    config = tmp_path / "churn.toml"
    config.write_text("[model]\nn_estimators = 100\nlearning_rate = 0.1\n[evaluate]\nn_bootstrap = 30\n")
    models = tmp_path / "models"
    code, out, err = run(monkeypatch, capsys, "train", "--data", str(synthetic_dir), "--horizon", "60",
                         "--models", str(models), "--config", str(config))
    assert code == 0, err
    assert "registered" in out and "xgboost" in out
    code, out, _ = run(monkeypatch, capsys, "models", "--models", str(models))
    assert code == 0 and out.startswith("* ") and "horizon 60d" in out
    assert any(f"quality {band}" in out for band in ("Excellent", "Good", "Fair", "Poor"))
    code, out, err = run(monkeypatch, capsys, "score", "--data", str(synthetic_dir), "--date", "2024-06-30",
                         "--out", str(tmp_path / "out"), "--models", str(models), "--config", str(config))
    assert code == 0, err
    assert (tmp_path / "out" / "2024-06-30" / "winback.xlsx").exists() and "scored" in out
    assert "what kept a list short" in out and ("of 25" in out or "full:" in out)
    # One customer explained, with shap's waterfall of their contributions as a PNG.
    customer = pd.read_csv(tmp_path / "out" / "2024-06-30" / "crm_import.csv", dtype=str)["customer_id"].iloc[0]
    plot = tmp_path / "why.png"
    code, out, err = run(monkeypatch, capsys, "explain", customer, "--data", str(synthetic_dir), "--date",
                         "2024-06-30", "--models", str(models), "--config", str(config), "--plot", str(plot))
    assert code == 0, err
    assert "reasons raising the risk" in out and plot.read_bytes()[:4] == b"\x89PNG" and plot.stat().st_size > 5000


def test_score_without_a_model_says_to_train_first(monkeypatch, capsys, synthetic_dir, tmp_path):
    code, _, err = run(monkeypatch, capsys, "score", "--data", str(synthetic_dir), "--date", "2024-06-30",
                       "--models", str(tmp_path / "none"))
    assert code == 1 and "churn train" in err


def test_validate_and_models_speak_json_for_scripts(monkeypatch, capsys, synthetic_dir, tmp_path):
    code, out, _ = run(monkeypatch, capsys, "validate", "--data", str(synthetic_dir), "--json")
    report = json.loads(out)
    assert code == 0 and report["row_counts"]["orders"] > 0 and set(report["fingerprints"]) >= {"orders"}
    code, out, _ = run(monkeypatch, capsys, "models", "--models", str(tmp_path), "--json")
    assert code == 0 and json.loads(out) == []


def test_validate_float_ids_against_integer_customers_keeps_every_order(monkeypatch, capsys, tmp_path):
    # Issue 13, case 1: before, "orders: 0 rows ok, 3 quarantined" and exit 0.
    pd.DataFrame({"customer_id": ["12346.0", "12347.0", "12347.0"], "order_id": ["1", "2", "3"],
                  "order_ts": ["2024-01-01", "2024-01-02", "2024-01-03"], "amount": ["5", "6", "7"]}
                 ).to_csv(tmp_path / "orders.csv", index=False)
    pd.DataFrame({"customer_id": [12346, 12347]}).to_parquet(tmp_path / "customers.parquet")
    pd.DataFrame({"customer_id": ["12346.0", "99999.0"], "reason": ["opt_out", "opt_out"]}
                 ).to_csv(tmp_path / "suppressions.csv", index=False)
    code, out, _ = run(monkeypatch, capsys, "validate", "--data", str(tmp_path), "--json")
    report = json.loads(out)

    assert code == 0 and report["row_counts"]["orders"] == 3 and report["quarantined"] == {}
    assert report["unmatched"] == {"suppressions": {"rows": 1, "customers": 1, "first_ids": ["99999"],
                                                    "against": "customers.parquet", "handling": "kept"}}
    code, out, _ = run(monkeypatch, capsys, "validate", "--data", str(tmp_path))
    assert code == 0 and "suppressions: 2 rows ok\n  customer_id: 1 row (1 customer id) matches no customer in " \
                         "customers.parquet, kept; first ids: '99999'" in out


def test_validate_ids_that_match_nothing_exits_1_in_one_line(monkeypatch, capsys, tmp_path):
    pd.DataFrame({"customer_id": ["x1", "x2"], "order_id": ["1", "2"], "order_ts": ["2024-01-01", "2024-01-02"],
                  "amount": ["5", "6"]}).to_csv(tmp_path / "orders.csv", index=False)
    pd.DataFrame({"customer_id": ["a1", "a2"]}).to_csv(tmp_path / "customers.csv", index=False)
    code, out, err = run(monkeypatch, capsys, "validate", "--data", str(tmp_path), "--json")

    assert code == 1 and out == "" and "Traceback" not in err
    assert err.startswith("error: orders.csv: column customer_id: 2 rows not in customers.csv")


def test_a_bad_setting_stops_any_command_in_one_line(monkeypatch, capsys, synthetic_dir, tmp_path):
    # Issue 13, case 6: "Europe/Pari" was accepted by every command, then `churn serve` exited 70.
    config = tmp_path / "churn.toml"
    config.write_text('[schedule]\ntimezone = "Europe/Pari"\n')
    code, out, err = run(monkeypatch, capsys, "validate", "--data", str(synthetic_dir), "--config", str(config))

    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {config}: schedule.timezone: 'Europe/Pari' is not a time zone")


def test_validate_a_csv_cut_short_exits_1_naming_the_file(monkeypatch, capsys, tmp_path):
    # Issue 14, item 9: a CSV cut inside its last row's number (no final newline) was accepted.
    (tmp_path / "orders.csv").write_text("customer_id,order_id,order_ts,amount\na,1,2024-01-01,5.25\nb,2,2024-01-02,7.2")
    code, _, err = run(monkeypatch, capsys, "validate", "--data", str(tmp_path))
    assert code == 1 and err.startswith("error: orders.csv: the file does not end with a newline, so it is "
                                        "probably truncated: its last line (data row 2) may be cut short")
    assert "Traceback" not in err


def test_validate_under_drop_reports_the_contact_details_removed(monkeypatch, capsys, tmp_path):
    # Issue 14, item 12: e-mail and phone columns in orders were accepted.
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"customer_id": ["a", "b"], "order_id": ["1", "2"], "order_ts": ["2024-01-01", "2024-01-02"],
                  "amount": ["5", "2"], "email": ["a@mail.example", ""], "phone": ["+44 20 7946 0958", "n/a"]}
                 ).to_csv(data / "orders.csv", index=False)
    code, _, err = run(monkeypatch, capsys, "validate", "--data", str(data))
    assert code == 1 and "orders.csv: column email: looks like a contact detail" in err
    (tmp_path / "churn.toml").write_text('[contract]\ncontact_details = "drop"\n')
    code, out, _ = run(monkeypatch, capsys, "validate", "--data", str(data), "--config", str(tmp_path / "churn.toml"))
    assert code == 0 and "email: 1 cell with contact details removed" in out and "phone: 2 cells" in out
