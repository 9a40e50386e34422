"""Ranks among all customers when the customers are split into partitions: exact, as on one machine.

A few columns are defined relative to the whole population, not to one customer: the RFM
quintile scores (a percent rank within the population at a cutoff, `churn.features.catalogue`),
the value tier (a rank among the scored customers, `churn.features.segments.value_tier`) and
the price and variety drivers (a quantile of the scored customers, `churn.decide.winback`).
Each is a function of a few *order statistics* (the m-th smallest value) of all customers, so
the partitions find those exactly, in three rounds that send little data (`order_statistics`):

1. each partition sorts its values and sends `samples` evenly spaced ones (first and last
   included) and its count;
2. every sample is a pivot: each partition counts its values <= each pivot, and the sums bracket
   the m-th smallest value between two neighbouring pivots;
3. each partition sends its values inside the bracket: at most about n / samples of them in all,
   since every partition's own samples are pivots. The m-th smallest is read off them.

Then the thresholds are applied per partition (`apply_rfm_scores`, `apply_value_tier`,
`driver_cuts`), replaying the local formulas' floating-point operations, so the results are the
same bits as the local engine's (the tests hold them to it).

A `Mapper` runs a function on every partition: `mapper(fn, **kwargs)` returns
`[fn(partition, **kwargs) for partition in partitions]` (on a cluster, in parallel).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn.data import database
from churn.features.catalogue import RFM_BINS, SCORE_FEATURES

__all__ = ["Spec", "Mapper", "order_statistics", "quintile_ranks", "rfm_specs", "rfm_thresholds",
           "apply_rfm_scores", "value_tier_threshold", "apply_value_tier", "numpy_quantile", "quantile_specs"]

Mapper = Callable[..., list]
SAMPLES = 1024


@dataclass(frozen=True)
class Spec:
    """Which values of a partition's frame to rank: a column (or the larger of two), at one cutoff.

    `negate` ranks in descending order; missing values (NaN) are left out.
    """

    columns: tuple[str, ...]
    negate: bool = False
    cutoff: pd.Timestamp | None = None

    def values(self, frame: pd.DataFrame) -> np.ndarray:
        """The partition's values, sorted ascending (NaN left out)."""
        if self.cutoff is not None:
            frame = frame[frame["cutoff"] == self.cutoff]
        cols = [frame[c].to_numpy(dtype="float64", na_value=np.nan) if c in frame else np.full(len(frame), np.nan)
                for c in self.columns]
        v = cols[0] if len(cols) == 1 else np.fmax(*cols)
        v = v[~np.isnan(v)]
        return np.sort(-v if self.negate else v)


def _sample(frame: pd.DataFrame, specs: Sequence[Spec], samples: int) -> list[tuple[int, np.ndarray]]:
    out = []
    for spec in specs:
        v = spec.values(frame)
        idx = np.unique(np.linspace(0, len(v) - 1, min(samples, len(v))).round().astype(np.int64)) if len(v) else []
        out.append((len(v), v[idx] if len(v) else np.empty(0)))
    return out


def _count_le(frame: pd.DataFrame, specs: Sequence[Spec], pivots: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.searchsorted(spec.values(frame), p, side="right") for spec, p in zip(specs, pivots)]


def _between(frame: pd.DataFrame, specs: Sequence[Spec], brackets: Sequence[Sequence[tuple[float, float]]]
             ) -> list[list[np.ndarray]]:
    out = []
    for spec, pairs in zip(specs, brackets):
        v = spec.values(frame)
        out.append([v[np.searchsorted(v, lo, side="right"):np.searchsorted(v, hi, side="right")] for lo, hi in pairs])
    return out


def order_statistics(mapper: Mapper, specs: Sequence[Spec], ranks: Sequence[Sequence[int]],
                     samples: int = SAMPLES) -> tuple[list[int], list[np.ndarray]]:
    """Per spec: the number of values n, and the m-th smallest value (1-based) for each m in its `ranks`.

    Every m must be in 1..n. Three rounds of `mapper` (see the module's docstring).
    """
    sampled = mapper(_sample, specs=list(specs), samples=samples)
    counts = [sum(part[i][0] for part in sampled) for i in range(len(specs))]
    pivots = [np.unique(np.concatenate([part[i][1] for part in sampled] or [np.empty(0)]))
              for i in range(len(specs))]
    le = mapper(_count_le, specs=list(specs), pivots=pivots)
    brackets, below = [], []
    for i, spec_ranks in enumerate(ranks):
        total_le = np.sum([part[i] for part in le], axis=0) if le else np.zeros(len(pivots[i]), dtype=np.int64)
        pairs, under = [], []
        for m in spec_ranks:
            if not 1 <= m <= counts[i]:
                raise ValueError(f"rank {m} outside 1..{counts[i]}")
            j = int(np.searchsorted(total_le, m, side="left"))  # the first pivot with at least m values <= it
            pairs.append((pivots[i][j - 1] if j > 0 else -np.inf, pivots[i][j]))
            under.append(int(total_le[j - 1]) if j > 0 else 0)
        brackets.append(pairs)
        below.append(under)
    inside = mapper(_between, specs=list(specs), brackets=brackets)
    found = []
    for i, spec_ranks in enumerate(ranks):
        values = []
        for k, m in enumerate(spec_ranks):
            v = np.sort(np.concatenate([part[i][k] for part in inside]))
            values.append(v[m - below[i][k] - 1])
        found.append(np.asarray(values, dtype="float64"))
    return counts, found


# --- RFM quintile scores ---------------------------------------------------------------------------

# The score features ranked among the population (catalogue `_quintile`): column, descending.
RFM_COLUMNS = {"r_score": ("recency_days", True), "f_score": ("orders_365d", False), "m_score": ("spend_365d", False)}


def quintile_ranks(n: int) -> list[int]:
    """The smallest number of lower-ranked customers c that lifts the score above 1, 2, 3, 4, in a population of n.

    The catalogue's SQL gives `least(5, 1 + floor(5 * percent_rank))` with DuckDB's
    `percent_rank = (rank - 1) / (n - 1)` in doubles, and rank - 1 = c, the customers ranked
    strictly lower. The score is monotone in c, so four counts define it.
    """
    if n <= 1:
        return [n, n, n, n]  # percent_rank is 0: everyone scores 1 (c never reaches n)
    denom = float(n - 1)

    def score(c: int) -> float:
        return min(float(RFM_BINS), 1.0 + math.floor(RFM_BINS * (float(c) / denom)))

    out = []
    for k in range(2, RFM_BINS + 1):
        c = max(0, math.floor((k - 1) * denom / RFM_BINS) - 2)
        while c <= n - 1 and score(c) < k:
            c += 1
        out.append(c)
    return out


def rfm_specs(cutoffs: Sequence[pd.Timestamp]) -> list[Spec]:
    """One spec per RFM score column and cutoff, in (cutoff, column) order."""
    return [Spec((col,), desc, pd.Timestamp(t)) for t in cutoffs for col, desc in RFM_COLUMNS.values()]


def rfm_thresholds(mapper: Mapper, cutoffs: Sequence[pd.Timestamp]) -> dict:
    """Per (cutoff, score): the values above which a customer's score passes 2, 3, 4, 5.

    A customer with value v (negated for recency) scores 1 + the number of thresholds below v;
    a threshold of +inf is never passed, -inf always.
    """
    specs = rfm_specs(cutoffs)
    sampled = mapper(_sample, specs=specs, samples=1)
    n = [sum(part[i][0] for part in sampled) for i in range(len(specs))]
    needed = [[c for c in quintile_ranks(k) if 1 <= c <= k - 1] for k in n]
    _, found = order_statistics(mapper, specs, needed)
    out = {}
    for spec, k, values in zip(specs, n, found):
        lookup = dict(zip([c for c in quintile_ranks(k) if 1 <= c <= k - 1], values))
        # c = 0 is passed by everyone; c beyond n - 1 by nobody; else by values above the c-th smallest.
        thresholds = [-np.inf if c == 0 else np.inf if c > k - 1 else lookup[c] for c in quintile_ranks(k)]
        name = next(s for s, (col, _) in RFM_COLUMNS.items() if col == spec.columns[0])
        out[(spec.cutoff, name)] = np.asarray(thresholds)
    return out


def apply_rfm_scores(frame: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """The frame with r_score, f_score, m_score ranked among all partitions, and the scores that use them.

    The scores computed from them (valuable_frequency_drop) are evaluated with the catalogue's own SQL.
    """
    frame = frame.copy()
    for name, (column, desc) in RFM_COLUMNS.items():
        if name not in frame:
            continue
        score = np.ones(len(frame))
        for cutoff in frame["cutoff"].unique():
            rows = (frame["cutoff"] == cutoff).to_numpy()
            v = frame.loc[rows, column].to_numpy(dtype="float64", na_value=np.nan)
            v = -v if desc else v
            score[rows] = 1.0 + (v[:, None] > thresholds[(pd.Timestamp(cutoff), name)][None, :]).sum(axis=1)
        frame[name] = score
    dependent = [f for f in SCORE_FEATURES if f.name not in RFM_COLUMNS and f.name in frame]
    if dependent:
        con = database.connect()
        try:
            narrow = frame[sorted({c for c in frame.columns if any(c in f.sql for f in dependent)})]
            con.register("narrow_t", narrow)
            got = con.execute(f"SELECT {', '.join(f'{f.sql} AS {f.name}' for f in dependent)} FROM narrow_t"
                              ).fetchnumpy()
        finally:
            con.close()
        for f in dependent:
            frame[f.name] = np.asarray(got[f.name], dtype="float64")
    return frame


# --- value tier ----------------------------------------------------------------------------------


def _first_rank_needed(n: int, cut: float) -> int:
    """The smallest rank r (1..n+1) with r / n > cut in doubles, as pandas' `rank(pct=True)` compares."""
    r = max(1, math.floor(cut * n) - 2)
    while r <= n and not (r / n > cut):
        r += 1
    return r


def _ties(frame: pd.DataFrame, value: float) -> tuple[int, np.ndarray]:
    v = frame["value"].to_numpy(dtype="float64")
    return int((v < value).sum()), frame["customer_id"].to_numpy(dtype=object)[v == value]


def value_tier_threshold(mapper: Mapper, cuts: tuple[float, float]) -> tuple[int, list[tuple[float, str] | None]]:
    """The (value, customer_id) each value tier starts at, among all scored customers of the partitions.

    `segments.value_tier` ranks the values with ties in row order (`method="first"`); the scores are
    sorted by customer id, so the rank is the order of (value, customer_id). Returns the number of
    customers and, per cut, the first (value, id) above it (None: nobody is above).
    """
    spec = Spec(("value",))
    sampled = mapper(_sample, specs=[spec], samples=1)
    n = sum(part[0][0] for part in sampled)
    if n == 0:
        return 0, [None for _ in cuts]
    ranks = [_first_rank_needed(n, cut) for cut in cuts]
    _, (values,) = order_statistics(mapper, [spec], [[r for r in ranks if r <= n]])
    starts: list[tuple[float, str] | None] = []
    found = iter(values)
    for r in ranks:
        if r > n:
            starts.append(None)
            continue
        x = float(next(found))
        ties = mapper(_ties, value=x)
        below = sum(t[0] for t in ties)
        ids = np.sort(np.concatenate([t[1] for t in ties]).astype(str))
        starts.append((x, str(ids[r - below - 1])))
    return n, starts


def apply_value_tier(scores: pd.DataFrame, starts: Sequence[tuple[float, str] | None]) -> pd.DataFrame:
    """The scores with `value_tier` from the global starts of `value_tier_threshold` (mid, high)."""
    from churn.features.segments import VALUE_TIERS

    v = scores["value"].to_numpy(dtype="float64")
    ids = scores["customer_id"].astype(str).to_numpy()
    level = np.zeros(len(scores), dtype=np.int8)
    for start in starts:
        if start is None:
            continue
        x, first = start
        level += (v > x) | ((v == x) & (ids >= first))
    out = scores.copy(deep=False)
    out["value_tier"] = pd.Categorical(np.asarray(VALUE_TIERS)[level], categories=VALUE_TIERS)
    return out


# --- quantiles (winback drivers) ------------------------------------------------------------------


def numpy_quantile(lower: float, upper: float, n: int, q: float) -> float:
    """`np.quantile(values, q)` (linear method) from n and the two order statistics around (n - 1) q.

    Replays numpy's own arithmetic (virtual index (n - 1) q, gamma and `_lerp`), so the result is the same bits.
    """
    virtual = np.float64(n - 1) * np.float64(q)
    if virtual >= n - 1:
        return float(upper)
    if virtual < 0:
        return float(lower)
    gamma = virtual - np.floor(virtual)
    a, b = np.float64(lower), np.float64(upper)
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)


def quantile_positions(n: int, q: float) -> tuple[int, int]:
    """The 1-based ranks of the two order statistics `numpy_quantile` needs for n values."""
    below = int(np.clip(np.floor(np.float64(n - 1) * np.float64(q)), 0, n - 1))
    return below + 1, min(below + 2, n)


def quantile_specs() -> dict[str, Spec]:
    """The values whose quantiles make the price and variety drivers (see `winback.drivers`)."""
    return {"price": Spec(("discount_share_365d",)), "variety": Spec(("categories_90d", "categories_prev_90d"))}


def global_quantiles(mapper: Mapper, specs: dict[str, Spec], qs: dict[str, float]) -> dict[str, float]:
    """`np.quantile` of each spec's values over all partitions (NaN when there are none)."""
    names = list(specs)
    sampled = mapper(_sample, specs=[specs[k] for k in names], samples=1)
    n = [sum(part[i][0] for part in sampled) for i in range(len(names))]
    wanted = [list(quantile_positions(k, qs[name])) if k else [] for k, name in zip(n, names)]
    _, found = order_statistics(mapper, [specs[k] for k in names], wanted)
    return {name: (numpy_quantile(v[0], v[1], k, qs[name]) if k else float("nan"))
            for name, k, v in zip(names, n, found)}
