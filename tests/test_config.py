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
    ("[data]\nhorizon_days = 'thirty'\n", "expected int"),
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
