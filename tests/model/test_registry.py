"""Registry: versions, the promotion gate, the champion pointer and one-command rollback."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from churn.model import registry
from churn.config import ModelConfig
from churn.errors import ModelNotFoundError
from churn.model.classifier import ChurnModel

GOOD = {"roc_auc": 0.90, "ece": 0.01}


@pytest.mark.parametrize("candidate, champion, promoted, why", [
    (GOOD, None, True, "no comparable champion"),
    (GOOD, {"roc_auc": 0.904, "ece": 0.01}, True, "promoted"),          # 0.004 lower: within tolerance
    (GOOD, {"roc_auc": 0.906, "ece": 0.01}, False, "below the champion"),  # 0.006 lower: kept out
    ({"roc_auc": 0.95, "ece": 0.031}, {"roc_auc": 0.80, "ece": 0.01}, False, "ECE 0.031 above"),
    ({"roc_auc": 0.95, "ece": 0.031}, None, True, "no champion yet: promoted although"),  # nothing else scores
    (None, None, False, "no backtest"),
])
def test_promotion_gate(candidate, champion, promoted, why):
    ok, reason = registry.promotion_decision(candidate, champion, max_auc_drop=0.005, max_ece=0.03)
    assert ok is promoted and why in reason


@pytest.fixture(scope="module")
def tiny_model():
    rng = np.random.default_rng(0)
    def snaps(n):
        recency = rng.integers(0, 100, n).astype(float)
        return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "recency_days": recency,
                             "churned": (rng.random(n) < recency / 100).astype(int)})
    config = ModelConfig(n_estimators=20, learning_rate=0.3, early_stopping_rounds=5, search_budget=1)
    return ChurnModel(30, config).fit(snaps(400), snaps(400))


def _meta(version: str, as_of: str = "2024-01-31") -> dict:
    return {"version": version, "as_of": as_of, "horizon_days": 30, "features": ["recency_days"],
            "best_iteration": 3, "split": {"train_cutoffs": ["2023-11-01"], "val_cutoff": "2023-12-01"},
            "data_fingerprint": "ab" * 32, "n_train": 400, "backtest": None,
            "gate": {"promoted": True, "reason": "test"}}


def test_challenger_is_registered_without_moving_the_champion_and_rollback_is_one_call(tiny_model, tmp_path):
    registry.register(tiny_model, _meta("v1"), tmp_path)
    registry.register(tiny_model, _meta("v2", "2024-02-29"), tmp_path)
    registry.register(tiny_model, _meta("v3", "2024-03-31"), tmp_path, make_champion=False)
    assert registry.champion_version(tmp_path) == "v2"
    assert [m["version"] for m in registry.list_versions(tmp_path)] == ["v1", "v2", "v3"]
    assert registry.rollback(tmp_path) == "v1"  # no version: the champion before the current one
    assert registry.champion_version(tmp_path) == "v1"
    assert registry.rollback(tmp_path, "v3") == "v3"
    pointer = json.loads((tmp_path / registry.CHAMPION_FILE).read_text())
    assert pointer == {"version": "v3", "previous": ["v1", "v2"]}
    with pytest.raises(ModelNotFoundError, match="churn models"):
        registry.rollback(tmp_path, "nope")


def test_rollback_without_history_says_what_to_do(tiny_model, tmp_path):
    registry.register(tiny_model, _meta("v1"), tmp_path)
    with pytest.raises(ModelNotFoundError, match="name a version"):
        registry.rollback(tmp_path)


def test_saved_model_has_calibrator_card_and_no_pickle(tiny_model, tmp_path):
    meta = _meta("v1")
    meta.update(model_kind="xgboost", calibration={"method": tiny_model.calibrator_.method, "briers": {}},
                best_params=tiny_model.best_params_, search_candidates=1)
    path = registry.register(tiny_model, meta, tmp_path)
    names = {p.name for p in path.iterdir()}
    assert {"booster.json", "calibrator.json", "params.json", "metadata.json", "model_card.md"} <= names
    assert not any(n.endswith((".pkl", ".pickle", ".joblib")) for n in names)
    card = (path / "model_card.md").read_text()
    assert "Calibrator" in card and "Known limits" in card and "Promotion gate" in card


def test_version_changes_with_the_recipe_not_with_nothing():
    a = registry.model_version("2024-01-31", 30, "f" * 64, {"config": {"max_depth": 4}})
    assert a == registry.model_version("2024-01-31", 30, "f" * 64, {"config": {"max_depth": 4}})
    assert a != registry.model_version("2024-01-31", 30, "f" * 64, {"config": {"max_depth": 5}})
    assert a.startswith("20240131-h30-ffffffff-")


def test_cli_lists_champion_and_challengers_and_rolls_back(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from churn.cli import app

    registry.register(tiny_model, _meta("v1"), tmp_path)
    challenger = _meta("v2", "2024-02-29")
    challenger["gate"] = {"promoted": False, "reason": "ECE 0.050 above the 0.030 limit: kept as challenger"}
    registry.register(tiny_model, challenger, tmp_path, make_champion=False)
    runner = CliRunner()
    listing = runner.invoke(app, ["models", "--models", str(tmp_path)])
    assert listing.exit_code == 0
    assert "* v1" in listing.output and "challenger: ECE 0.050" in listing.output
    rolled = runner.invoke(app, ["rollback", "v2", "--models", str(tmp_path)])
    assert rolled.exit_code == 0 and registry.champion_version(tmp_path) == "v2"


def test_registering_the_same_version_again_changes_no_file(tiny_model, tmp_path):
    registry.register(tiny_model, _meta("v1"), tmp_path)
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    registry.register(tiny_model, {**_meta("v1"), "gate": {"promoted": True, "reason": "again"}}, tmp_path)
    after = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert after == before


def test_a_model_ranking_at_chance_is_never_champion_even_with_none():
    at_chance = {"roc_auc": 0.500, "roc_auc_ci": [0.500, 0.500], "ece": 0.01}
    ok, reason = registry.promotion_decision(at_chance, None, max_auc_drop=0.005, max_ece=0.03)
    assert not ok and "chance" in reason
    lucky = {"roc_auc": 0.56, "roc_auc_ci": [0.49, 0.63], "ece": 0.01}  # interval reaching 0.5: not told apart
    assert not registry.promotion_decision(lucky, None, 0.005, 0.03)[0]


@pytest.mark.parametrize("name, damage", [("booster.json", "cut"), ("booster.json", "missing"),
                                          ("calibrator.json", "cut"), ("params.json", "cut"),
                                          ("params.json", "missing"), ("metadata.json", "cut")])
def test_a_cut_off_or_missing_model_file_is_named_with_what_to_do(tiny_model, tmp_path, name, damage):
    # Before: exit 70 with an XGBoostError or JSONDecodeError traceback.
    registry.register(tiny_model, _meta("v1"), tmp_path)
    path = tmp_path / "v1" / name
    if damage == "missing":
        path.unlink()
    else:
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelNotFoundError, match=rf"v1/{name} is (unreadable|missing).*churn rollback.*retrain"):
        registry.load(tmp_path)


def test_churn_models_names_a_cut_off_metadata_file_and_a_cut_off_champion_pointer(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from churn.cli import app

    registry.register(tiny_model, _meta("v1"), tmp_path)
    registry.register(tiny_model, _meta("v2", "2024-02-29"), tmp_path)
    meta = tmp_path / "v1" / "metadata.json"
    meta.write_bytes(meta.read_bytes()[:40])
    listing = CliRunner().invoke(app, ["models", "--models", str(tmp_path)])
    assert listing.exit_code == 0 and "* v2" in listing.output  # the readable version is still listed
    assert "v1/metadata.json is unreadable" in listing.output and "Traceback" not in listing.output
    (tmp_path / "champion.json").write_text('{"version": "v')  # before: exit 0, no champion marked, no word
    listing = CliRunner().invoke(app, ["models", "--models", str(tmp_path)])
    assert listing.exit_code == 0 and "* v2" not in listing.output
    assert "champion.json is unreadable" in listing.output and "churn rollback" in listing.output
