"""Exact TreeSHAP contributions, computed once per decision pattern instead of once per customer.

A tree's TreeSHAP values (XGBoost's `pred_contribs`, path-dependent TreeSHAP, arXiv:1802.03888)
depend on a row only through the row's decision at each of the tree's internal nodes: go left
(`value < threshold`, float32, as XGBoost compares) or right, a missing value going the node's
default way. A depth-4 tree has at most 15 internal nodes, so its rows fall into at most 2^15
decision patterns, and in real data far fewer (a few hundred per tree for 100k customers).
Rows sharing a tree's pattern share that tree's contributions exactly. So, per tree:

1. each row's pattern: one comparison per internal node (vectorised over rows), bits packed;
2. the distinct patterns and one representative row of each;
3. that tree's contributions for the representatives: XGBoost's own `pred_contribs` on the
   one-tree slice of the booster, so the values are XGBoost's, not a re-implementation;
4. added to every row of the pattern (float64, trees in order, per row).

The bias column (base score plus each tree's expected value) is the same for every row and comes
from one plain `pred_contribs` call on the whole model. The result equals `pred_contribs` on all
rows up to float32 rounding: XGBoost adds the per-leaf terms of all trees in float32, we add
per-tree totals in float64 (max |difference| a few 1e-6 log-odds on the production recipe).

`pattern_contributions` checks its own result (rows add up to the booster's margin) and falls back
to plain `pred_contribs` where the method does not apply (`unsupported` says why): too few rows
to pay for ~250 small calls, categorical splits, more than 63 internal nodes per tree (patterns
no longer fit a 64-bit code), dart or linear boosters, several outputs or parallel trees.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

__all__ = ["MIN_ROWS", "Tree", "ForestPlan", "plan", "pattern_contributions", "native_contributions",
           "decision_patterns"]

log = logging.getLogger(__name__)

# Below this many rows plain pred_contribs wins: each tree costs ~2 ms of fixed work here (slice,
# DMatrix, predict call, patterns), ~0.5 CPU-s for 244 trees, against ~1 us per row per tree for
# plain pred_contribs. Measured on the production recipe (244 trees, 1 thread): 1,000 rows 0.53
# against 0.27 CPU-s, 2,000 rows 0.52 against 0.49, 4,000 rows 0.68 against 0.97.
MIN_ROWS = 2_000
# A tree whose distinct patterns pass this share of the rows is explained row by row (same cost).
MAX_PATTERN_SHARE = 0.5
# Rows per block: bounds the float64 accumulator (rows x features) and the per-tree row indices.
BLOCK_ROWS = 1 << 17
# Rows must add up to the booster's margin within this (log-odds); XGBoost's own float32 sums
# drift by ~1e-5 over a few hundred trees, a mis-grouped row by a leaf value (~1e-2 or more).
MARGIN_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Tree:
    """One tree's internal nodes, in node order: the split feature (column index), threshold, default way."""

    features: np.ndarray  # int, column index of each internal node's split
    thresholds: np.ndarray  # float32: go left when value < threshold
    default_left: np.ndarray  # bool: where a missing value goes


@dataclass(frozen=True)
class ForestPlan:
    """The trees to explain (the first `len(trees)` boosting rounds), or why the method does not apply."""

    trees: tuple[Tree, ...]
    unsupported: str | None = None


def plan(booster: xgb.Booster, n_trees: int) -> ForestPlan:
    """Read the first `n_trees` trees from the booster's JSON model; `unsupported` is set when the method cannot run."""
    model = json.loads(booster.save_raw("json"))
    learner = model["learner"]
    gbm = learner["gradient_booster"]
    if gbm.get("name") != "gbtree":
        return ForestPlan((), f"booster {gbm.get('name')!r} (only gbtree)")
    params = gbm["model"]["gbtree_model_param"]
    if int(params.get("num_parallel_tree", 1)) != 1 or int(learner["learner_model_param"].get("num_class", 0)) > 1 \
            or int(learner["learner_model_param"].get("num_target", 1)) != 1:
        return ForestPlan((), "several outputs or parallel trees per round")
    trees = []
    for raw in gbm["model"]["trees"][:n_trees]:
        left = np.asarray(raw["left_children"])
        internal = np.flatnonzero(left != -1)
        if any(int(t) != 0 for t in raw.get("split_type", [])):
            return ForestPlan((), "categorical splits")
        if len(internal) > 63:
            return ForestPlan((), f"a tree with {len(internal)} internal nodes (at most 63)")
        trees.append(Tree(np.asarray(raw["split_indices"], dtype=np.intp)[internal],
                          np.asarray(raw["split_conditions"], dtype=np.float32)[internal],
                          np.asarray(raw["default_left"], dtype=bool)[internal]))
    return ForestPlan(tuple(trees))


def decision_patterns(tree: Tree, columns: np.ndarray) -> np.ndarray:
    """Each row's decisions at the tree's internal nodes as bits (bit b set: went left at node b).

    `columns`: float32, features x rows (one contiguous row per feature). Shape (rows,), uint64.
    XGBoost goes left when value < threshold; a missing value (NaN) goes the default way, and
    `not (value >= threshold)` is exactly that for a default-left node (NaN >= t is False).
    """
    code = np.zeros(columns.shape[1], dtype=np.uint64)
    left = np.empty(columns.shape[1], dtype=bool)
    for bit, (feature, threshold, default_left) in enumerate(zip(tree.features, tree.thresholds, tree.default_left)):
        if default_left:
            np.greater_equal(columns[feature], threshold, out=left)
            np.logical_not(left, out=left)
        else:
            np.less(columns[feature], threshold, out=left)
        code |= left.astype(np.uint64) << np.uint64(bit)
    return code


def _group(code: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(one representative row per distinct pattern, each row's pattern number): a lookup table for
    short codes (<= 16 bits, O(rows)), a sort beyond."""
    if bits <= 16:
        size = 1 << bits
        present = np.zeros(size, dtype=bool)
        present[code] = True
        patterns = np.flatnonzero(present)
        number = np.empty(size, dtype=np.intp)
        number[patterns] = np.arange(len(patterns))
        where = np.empty(size, dtype=np.intp)
        where[code] = np.arange(len(code))  # any row of the pattern will do: its values depend on the pattern only
        return where[patterns], number[code].astype(np.int32)  # int32: half the memory of 244 trees' numbers
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return first, inverse.astype(np.int32)


def _tree_block(booster: xgb.Booster, index: int, tree: Tree, columns: np.ndarray, rows: np.ndarray,
                names: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One tree on one block: (the tree's features, each row's pattern number or None for row by row,
    contributions per pattern (or per row) for those features)."""
    used = np.unique(tree.features)
    if len(tree.features) == 0:  # a stump: a constant, all in the bias column
        return used, None, np.zeros((0, 0))
    representatives, number = _group(decision_patterns(tree, columns), len(tree.features))
    if len(representatives) > MAX_PATTERN_SHARE * rows.shape[0]:
        representatives, number = np.arange(rows.shape[0]), None
    one = booster[index:index + 1]
    one.set_param({"nthread": 1})
    values = one.predict(xgb.DMatrix(rows[representatives], feature_names=list(names), nthread=1),
                         pred_contribs=True)
    return used, number, np.ascontiguousarray(values[:, used].T, dtype=np.float64)


def _block(booster: xgb.Booster, trees: Sequence[Tree], rows: np.ndarray, names: Sequence[str],
           threads: int) -> np.ndarray:
    """Contributions (features x rows, float64, no bias) of one block of rows."""
    columns = np.ascontiguousarray(rows.T)
    with ThreadPoolExecutor(threads) as pool:  # the trees in parallel; numpy and XGBoost release the GIL
        per_tree = list(pool.map(lambda it: _tree_block(booster, it[0], it[1], columns, rows, names),
                                 enumerate(trees)))
    total = np.zeros((len(names), rows.shape[0]))

    def add(part: slice) -> None:  # each row sums its trees in tree order, whatever the threads
        for used, number, values in per_tree:
            for k, feature in enumerate(used):
                total[feature, part] += values[k][part] if number is None else values[k][number[part]]

    halves = [slice(i * rows.shape[0] // threads, (i + 1) * rows.shape[0] // threads) for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(add, halves))
    return total


def native_contributions(booster: xgb.Booster, features: pd.DataFrame, names: Sequence[str],
                         n_trees: int) -> np.ndarray:
    """XGBoost's `pred_contribs` on every row: (rows, features + 1) float32, the bias last."""
    return booster.predict(xgb.DMatrix(features[list(names)], feature_names=list(names)), pred_contribs=True,
                           iteration_range=(0, n_trees))


def _threads(booster: xgb.Booster) -> int:
    """The booster's own thread setting (`ChurnModel.use_threads`); 0 or unset: all cores."""
    n = int(json.loads(booster.save_config())["learner"]["generic_param"].get("nthread", 0) or 0)
    return n if n > 0 else (os.cpu_count() or 1)


def pattern_contributions(booster: xgb.Booster, features: pd.DataFrame, names: Sequence[str], n_trees: int,
                          forest: ForestPlan | None = None) -> tuple[np.ndarray, str]:
    """Exact TreeSHAP contributions of the first `n_trees` rounds: ((rows, features + 1) float32, method).

    Same layout and values as `booster.predict(..., pred_contribs=True)` (the bias last), within
    float32 rounding. `method` is "patterns", or "pred_contribs: <why>" when it fell back to the
    plain call. `features` holds numeric columns `names` (the booster's, in its order).
    """
    forest = forest or plan(booster, n_trees)
    why = forest.unsupported or (f"{len(features)} rows (patterns pay from {MIN_ROWS:,})"
                                 if len(features) < MIN_ROWS else None)
    if why is None and not all(pd.api.types.is_numeric_dtype(t) and not isinstance(t, pd.CategoricalDtype)
                               for t in features[list(names)].dtypes):
        why = "non-numeric feature columns"
    if why is not None:
        # Few rows is the ordinary case of a one-customer look-up; the others say the model is unusual.
        log.log(logging.DEBUG if len(features) < MIN_ROWS else logging.INFO,
                "TreeSHAP for %d rows: plain pred_contribs (%s)", len(features), why)
        return native_contributions(booster, features, names, n_trees), f"pred_contribs: {why}"
    x = features[list(names)].to_numpy(dtype=np.float32, na_value=np.nan)
    threads = _threads(booster)
    out = np.empty((len(x), len(names) + 1), dtype=np.float32)
    for start in range(0, len(x), BLOCK_ROWS):
        rows = np.ascontiguousarray(x[start:start + BLOCK_ROWS])
        out[start:start + len(rows), :-1] = _block(booster, forest.trees, rows, names, threads).T
    out[:, -1] = native_contributions(booster, features.iloc[:1], names, n_trees)[0, -1]
    # Self-check: each row adds up to its margin; a row grouped with the wrong pattern would not.
    margin = booster.predict(xgb.DMatrix(x, feature_names=list(names)), output_margin=True,
                             iteration_range=(0, n_trees))
    gap = float(np.abs(out.sum(axis=1, dtype=np.float64) - margin).max())
    if not gap <= MARGIN_TOLERANCE:
        log.warning("pattern TreeSHAP missed the margin by %.2g: using plain pred_contribs", gap)
        return native_contributions(booster, features, names, n_trees), f"pred_contribs: margin gap {gap:.2g}"
    log.debug("TreeSHAP for %d rows: once per decision pattern", len(out))
    return out, "patterns"
