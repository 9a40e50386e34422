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
