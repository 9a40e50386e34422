import pytest

from churn.config import Config, load_config
from churn.errors import ConfigError


def test_missing_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config() == Config()


def test_shipped_churn_toml_equals_the_defaults():
    # The repository's churn.toml documents the defaults: it must not drift from the code.
    from pathlib import Path

    assert load_config(Path(__file__).parents[1] / "churn.toml") == Config()


def test_values_override_and_merge(tmp_path):
    path = tmp_path / "churn.toml"
    path.write_text('[data]\nhorizon_days = 30\n[winback.capacity]\ncallback = 5\n[score]\nrisk_bands = [0.2, 0.7]\n')
    config = load_config(path)
    assert config.data.horizon_days == 30 and config.data.lookback_days == 365
    assert config.winback.capacity == {"callback": 5, "exclusive_discount": 150, "trial": 100}
    assert config.score.risk_bands == (0.2, 0.7)
    assert config.with_horizon(60).data.horizon_days == 60 and config.with_horizon(None) is config


@pytest.mark.parametrize("text, message", [
    ("[data]\nhorizon = 30\n", "unknown key"),
    ("[data]\nhorizon_days = 'thirty'\n", "data.horizon_days: expected a whole number, got 'thirty'"),
    ("[contract]\nduplicate_rows = 'ignore'\n", "'fail' or 'quarantine'"),
    ("[score]\nrisk_bands = [0.7, 0.2]\n", "increasing"),
    ("[winback.capacity]\nemail = 3\n", "unknown action"),
    ("[data\n", "not valid TOML"),
])
def test_bad_settings_are_refused_with_a_message_naming_them(tmp_path, text, message):
    path = tmp_path / "churn.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_time_zones_are_checked_when_the_configuration_loads(tmp_path):
    # Issue 13, case 6: "Europe/Pari" was accepted by every command, then `churn serve` exited 70.
    path = tmp_path / "churn.toml"
    path.write_text('[schedule]\ntimezone = "Europe/Pari"\n')
    with pytest.raises(ConfigError, match=r"schedule.timezone: 'Europe/Pari' is not a time zone"):
        load_config(path)
    path.write_text('[data]\ntimezone = "America/New_York"\n[schedule]\ntimezone = "Europe/Paris"\n')
    assert load_config(path).data.timezone == "America/New_York"


def test_plausible_dates_take_toml_dates_or_text(tmp_path):
    path = tmp_path / "churn.toml"
    path.write_text('[contract]\nmin_date = 1980-01-01\nmax_date = "2060-12-31"\n')
    config = load_config(path)
    assert (config.contract.min_date, config.contract.max_date) == ("1980-01-01", "2060-12-31")
    path.write_text('[contract]\nmin_date = "2070-01-01"\nmax_date = "2060-12-31"\n')
    with pytest.raises(ConfigError, match="contract.min_date .* must be before contract.max_date"):
        load_config(path)


@pytest.mark.parametrize("text, message", [
    # Issue 14, case 8: accepted before, then lists silently empty or a crash later.
    ("[winback.capacity]\ncallback = -5\n", "winback.capacity.callback: must be a whole number >= 0, got -5"),
    ("[winback.capacity]\ntrial = 2.5\n", "winback.capacity.trial: expected a whole number, got 2.5"),
    ("[winback.capacity]\ntrial = 'ten'\n", "winback.capacity.trial: expected a whole number, got 'ten'"),
    ("[winback]\nmin_p_churn = 1.5\n", "winback.min_p_churn: must be a number from 0 to 1, got 1.5"),
    ("[winback]\nmin_p_churn = -1\n", "winback.min_p_churn: must be a number from 0 to 1, got -1.0"),
    ("[winback.trial]\nmin_p_churn = 2\n", "winback.trial.min_p_churn: must be a number from 0 to 1, got 2.0"),
    ("[winback.callback.uplift]\nservice = 'high'\n", "winback.callback.uplift.service: expected a number"),
    ("[winback.callback.uplift]\nservice = 1.2\n", "winback.callback.uplift.service: must be a number from 0 to 1"),
    ("[winback.callback]\ncooldown_days = -1\n", "winback.callback.cooldown_days: must be a whole number >= 0"),
    ("[winback.trial]\nstages = ['new', 3]\n", r"winback.trial.stages\[1\]: expected text, got 3"),
    ("[lifecycle]\nactive_days = 200\n", r"lifecycle: new_days \(30\) <= active_days \(200\) < dormant_days \(180\)"),
    ("[lifecycle]\nnew_days = 120\n", r"lifecycle: new_days \(120\) <= active_days \(90\)"),
    ("[evaluate]\nconfidence = 5\n", "evaluate.confidence: must be a number between 0 and 1, both excluded, got 5.0"),
    ("[model]\nn_jobs = -5\n", r"model.n_jobs: must be a whole number >= 0 \(0: all cores\), got -5"),
    ("[model]\nlearning_rate = 0\n", "model.learning_rate: must be a number above 0, at most 1"),
    ("[model]\ncalibration = 'sigmoid'\n", "model.calibration: must be 'auto', 'platt', 'isotonic' or 'none'"),
    ("[model]\nrandom_state = -1\n", "model.random_state: must be a whole number from 0 to 4294967295"),
    ("[score]\nrisk_bands = [0.3, 'x']\n", r"score.risk_bands\[1\]: expected a number, got 'x'"),
    ("[score]\nrisk_bands = [0.3]\n", "score.risk_bands: expected a list of 2 values"),
    ("[data]\nhorizon_days = 0\n", "data.horizon_days: must be a whole number >= 1, got 0"),
    ("[data]\nhorizon_days = true\n", "data.horizon_days: expected a whole number, got True"),
    ("[report]\npsi_bins = 1\n", "report.psi_bins: must be a whole number >= 2"),
    ("[schedule]\nserver_port = 70000\n", "schedule.server_port: must be a port number from 1 to 65535"),
    ("[winback]\ncampaign = ' '\n", "winback.campaign: must not be empty"),
    ("[contract]\nunknown_statuses = 'warn'\n", "contract.unknown_statuses: must be 'fail' or 'quarantine'"),
    ("[contract]\nunmatched_suppressions = 'ignore'\n", "contract.unmatched_suppressions: must be 'fail' or 'warn'"),
    ("[contract.statuses]\npending = 'maybe'\n",
     "contract.statuses.pending: must be 'completed', 'cancelled' or 'returned', got 'maybe'"),
    ("[contract]\nmin_date = 'last year'\n", "contract.min_date: 'last year' is not a date"),
    ("[contract]\ncontact_details = 'quarantine'\n", "contract.contact_details: must be 'fail' or 'drop'"),
    ("[data]\ntimezone = 'CET+1'\n", "data.timezone: 'CET\\+1' is not a time zone"),
    ("[schedule]\ndaily_cron = '0 25 * * *'\n", "schedule.daily_cron: '0 25 \\* \\* \\*' is not a cron string: hour '25'"),
    ("[schedule]\nretrain_cron = '0 3 1 *'\n", "schedule.retrain_cron: '0 3 1 \\*' is not a cron string: expected five"),
    ("[schedule]\noutcomes_cron = '0 7 * * monday'\n", "schedule.outcomes_cron: .* day of week 'monday'"),
    ("[schedule]\ndaily_cron = '*/0 6 * * *'\n", "schedule.daily_cron: .* minute '\\*/0'"),
    ("[schedule]\ndaily_cron = '0 6 * * 5-9'\n", "schedule.daily_cron: .* day of week '5-9'"),
    ("[schedule]\ndaily_cron = '0 6 * * 5L'\n", "schedule.daily_cron: .* day of week '5l'"),
    ("[logging]\nlevel = 'LOUD'\n", "logging.level: must be one of DEBUG, INFO, WARNING, ERROR"),
    ("[cache]\nfeature_max_gb = 0\n", "cache.feature_max_gb: must be a number > 0"),
    ("horizon_days = 30\n", r"top level: unknown key\(s\) \['horizon_days'\]"),
])
def test_every_setting_is_checked_at_load_naming_the_key_and_the_range(tmp_path, text, message):
    path = tmp_path / "churn.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)

    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("cron", ["0 6 * * *", "*/15 * * * *", "0 3 1 * *", "0 7 * * 1", "0 7 * * mon-fri",
                                  "30 5 1,15 jan-jun *", "0 0 L * *", "0 9 * * fri#2", "0 22-2 * * sat-mon", "0 6 * * 7",
                                  "@daily", "@weekly", "0-30/10 8-18/2 * * *"])
def test_cron_strings_prefect_schedules_take_are_accepted(tmp_path, cron):
    path = tmp_path / "churn.toml"
    path.write_text(f'[schedule]\ndaily_cron = "{cron}"\n')
    assert load_config(path).schedule.daily_cron == cron


def test_typed_tables_merge_with_the_defaults(tmp_path):
    path = tmp_path / "churn.toml"
    path.write_text('[contract.statuses]\n"On Hold" = "cancelled"\n[winback.callback.uplift]\nservice = 0.5\n')
    config = load_config(path)
    assert config.contract.statuses == {"On Hold": "cancelled"}
    assert config.winback.callback.uplift == {"service": 0.5, "price": 0.08, "variety": 0.08, "none": 0.10}


@pytest.mark.parametrize("value", ['"lots"', '"0GB"', '"-1GB"', '"150%"', '"0%"', '"1 G"', "2", '""'])
def test_a_bad_duckdb_budget_is_refused_naming_the_key(tmp_path, value):
    path = tmp_path / "churn.toml"
    path.write_text(f"[engine]\nduckdb_memory_limit = {value}\n")
    with pytest.raises(ConfigError, match=r"engine\.duckdb_memory_limit: (must be a size such as \"2GB\"|expected text)"):
        load_config(path)


@pytest.mark.parametrize("value", ["2GB", "512MB", "1.5GiB", "60%", "auto", "AUTO", "4 gb"])
def test_a_duckdb_budget_is_a_size_a_share_of_memory_or_auto(tmp_path, value):
    path = tmp_path / "churn.toml"
    path.write_text(f'[engine]\nduckdb_memory_limit = "{value}"\n')
    assert load_config(path).engine.duckdb_memory_limit == value
