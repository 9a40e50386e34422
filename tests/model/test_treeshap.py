"""TreeSHAP once per decision pattern: XGBoost's own pred_contribs values, rows adding up to the margin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from churn.model import treeshap

# Per-tree totals summed in float64 against XGBoost's per-leaf float32 sums: the values agree to
# float32 rounding: below 1e-6 log-odds here, a few 1e-6 over the production recipe's 244 trees.
TOLERANCE = 1e-5
NAMES = [f"f{i}" for i in range(6)]


def _data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Counts (integers: many rows sit exactly on a threshold), amounts, and missing values in both."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({
        "f0": rng.integers(0, 12, n).astype(float),
        "f1": rng.integers(0, 4, n).astype(float),
        "f2": rng.gamma(2.0, 50.0, n),
        "f3": rng.normal(0, 1, n),
        "f4": rng.integers(0, 365, n).astype(float),
        "f5": rng.uniform(0, 1, n),
    })
    x.loc[rng.random(n) < 0.15, "f2"] = np.nan
    x.loc[rng.random(n) < 0.10, "f4"] = np.nan
    logit = 0.4 * x["f0"] - 0.8 * x["f1"] + 0.01 * x["f2"].fillna(300) + x["f3"] - 0.01 * x["f4"].fillna(0)
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit - 1.5)))).astype(int)
    return x, y.to_numpy()


def _booster(max_depth: int = 4, rounds: int = 40) -> xgb.Booster:
    x, y = _data(4000, 0)
    return xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": max_depth,
                      "learning_rate": 0.3, "nthread": 1, "seed": 0},
                     xgb.DMatrix(x, label=y, feature_names=NAMES), num_boost_round=rounds)


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    return _booster()


@pytest.fixture(scope="module")
def rows(booster) -> pd.DataFrame:
    """Fresh rows plus rows placed on every threshold and just beside it, in float64.

    A float64 value a hair below a threshold rounds to it in float32, and XGBoost compares in
    float32: such a row goes right (value < threshold is false), the same as the threshold itself.
    """
    fresh, _ = _data(3000, 1)
    forest = treeshap.plan(booster, booster.num_boosted_rounds())
    splits = [(f, float(t)) for tree in forest.trees for f, t in zip(tree.features, tree.thresholds)]
    placed = fresh.iloc[np.arange(4 * len(splits)) % len(fresh)].to_numpy(copy=True)
    for i, (feature, threshold) in enumerate(splits):
        below = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
        placed[4 * i:4 * i + 4, feature] = (threshold, threshold - 1e-12, threshold + 1e-12, below)
    return pd.concat([fresh, pd.DataFrame(placed, columns=NAMES)], ignore_index=True)


def test_equal_to_pred_contribs_with_missing_values_and_ties(booster, rows):
    forest = treeshap.plan(booster, booster.num_boosted_rounds())
    thresholds = {(f, t) for tree in forest.trees for f, t in zip(tree.features, tree.thresholds)}
    on_threshold = sum(int((rows.iloc[:, f].to_numpy(dtype=np.float32) == t).sum()) for f, t in thresholds)
    assert on_threshold > 1000 and rows.isna().any().sum() == 2  # ties and missing values are exercised
    assert any(tree.default_left.any() for tree in forest.trees)
    assert any((~tree.default_left).any() for tree in forest.trees)

    values, method = treeshap.pattern_contributions(booster, rows, NAMES, booster.num_boosted_rounds())
    native = treeshap.native_contributions(booster, rows, NAMES, booster.num_boosted_rounds())
    assert method == "patterns"
    assert values.shape == native.shape == (len(rows), len(NAMES) + 1)
    assert np.abs(values - native).max() < TOLERANCE
    assert np.abs(native[:, :-1]).max() > 0.5
    margin = booster.predict(xgb.DMatrix(rows, feature_names=NAMES), output_margin=True)
    assert np.abs(values.sum(axis=1) - margin).max() < TOLERANCE


def test_far_fewer_patterns_than_rows(booster):
    rows, _ = _data(5000, 2)
    columns = np.ascontiguousarray(rows.to_numpy(dtype=np.float32).T)
    forest = treeshap.plan(booster, booster.num_boosted_rounds())
    counts = [len(np.unique(treeshap.decision_patterns(tree, columns))) for tree in forest.trees]
    assert max(counts) <= 2 ** max(len(tree.features) for tree in forest.trees)
    assert sum(counts) < 0.1 * len(rows) * len(forest.trees)


def test_the_first_rounds_only(booster, rows):
    values, method = treeshap.pattern_contributions(booster, rows, NAMES, 10)
    assert method == "patterns"
    assert np.abs(values - treeshap.native_contributions(booster, rows, NAMES, 10)).max() < TOLERANCE
    assert np.abs(values - treeshap.native_contributions(booster, rows, NAMES, 40)).max() > 0.01


def test_threads_blocks_and_row_by_row_trees_change_nothing(booster, rows, monkeypatch):
    booster.set_param({"nthread": 1})
    one, _ = treeshap.pattern_contributions(booster, rows, NAMES, 40)
    booster.set_param({"nthread": 2})
    two, _ = treeshap.pattern_contributions(booster, rows, NAMES, 40)
    booster.set_param({"nthread": 1})
    np.testing.assert_array_equal(one, two)
    monkeypatch.setattr(treeshap, "BLOCK_ROWS", 1000)  # each row's sum does not depend on its block
    np.testing.assert_array_equal(treeshap.pattern_contributions(booster, rows, NAMES, 40)[0], one)
    monkeypatch.setattr(treeshap, "MAX_PATTERN_SHARE", 0.0)  # every tree row by row: the same values
    by_row, method = treeshap.pattern_contributions(booster, rows, NAMES, 40)
    assert method == "patterns"
    assert np.abs(by_row - one).max() < TOLERANCE


def test_falls_back_to_pred_contribs_where_patterns_do_not_apply(booster, rows):
    few = rows.head(treeshap.MIN_ROWS - 1)
    values, method = treeshap.pattern_contributions(booster, few, NAMES, 40)
    assert method.startswith("pred_contribs:") and "rows" in method
    np.testing.assert_array_equal(values, treeshap.native_contributions(booster, few, NAMES, 40))

    deep = _booster(max_depth=8, rounds=5)  # trees of more than 63 internal nodes: no 64-bit pattern code
    values, method = treeshap.pattern_contributions(deep, rows, NAMES, 5)
    assert method.startswith("pred_contribs:") and "internal nodes" in method
    np.testing.assert_array_equal(values, treeshap.native_contributions(deep, rows, NAMES, 5))


def test_a_wrong_grouping_is_caught_by_the_margin_check(booster, rows, monkeypatch):
    # Every row in one pattern per tree: contributions of the wrong leaves, which the margin exposes.
    monkeypatch.setattr(treeshap, "decision_patterns", lambda tree, columns: np.zeros(columns.shape[1], np.uint64))
    values, method = treeshap.pattern_contributions(booster, rows, NAMES, 40)
    assert method.startswith("pred_contribs: margin gap")
    np.testing.assert_array_equal(values, treeshap.native_contributions(booster, rows, NAMES, 40))
