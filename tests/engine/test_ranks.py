"""Global ranks from partitions equal the ranks on the whole data (RFM quintiles, value tier, quantiles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.data import database
from churn.engine import ranks
from churn.features.catalogue import SCORE_FEATURES
from churn.features.segments import value_tier


def _mapper(parts):
    return lambda fn, **kwargs: [fn(part, **kwargs) for part in parts]


def _split(frame: pd.DataFrame, k: int, seed: int) -> list[pd.DataFrame]:
    part = np.random.default_rng(seed).integers(0, k, len(frame))
    return [frame[part == p] for p in range(k)]


@pytest.mark.parametrize("seed", range(6))
def test_order_statistics_are_the_sorted_values(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    values = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # many ties at low precision
    values[rng.random(n) < 0.1] = np.nan  # left out, as missing values are
    frame = pd.DataFrame({"x": values})
    wanted = np.sort(values[~np.isnan(values)])
    ranks_ = sorted({1, len(wanted), *rng.integers(1, len(wanted) + 1, 5).tolist()}) if len(wanted) else []
    counts, (found,) = ranks.order_statistics(_mapper(_split(frame, 5, seed)), [ranks.Spec(("x",))], [ranks_],
                                              samples=16)
    assert counts == [len(wanted)]
    assert found.tolist() == [wanted[m - 1] for m in ranks_]


def _catalogue_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """The score features as the local engine computes them: the catalogue's SQL over the whole population."""
    con = database.connect()
    con.register("narrow_t", frame)
    ranked = [f for f in SCORE_FEATURES if f.name in ranks.RFM_COLUMNS]
    got = con.execute(f"SELECT i, {', '.join(f'{f.sql} AS {f.name}' for f in ranked)} FROM narrow_t").df()
    got = got.sort_values("i")
    out = frame.assign(**{f.name: got[f.name].to_numpy() for f in ranked})
    con.register("scored_t", out)
    drop = next(f for f in SCORE_FEATURES if f.name not in ranks.RFM_COLUMNS)
    out[drop.name] = con.execute(f"SELECT {drop.sql} AS v FROM scored_t ORDER BY i").fetchnumpy()["v"]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_rfm_scores_ranked_across_partitions_equal_the_catalogue_sql(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 2500))
    cutoffs = pd.to_datetime(["2024-03-31", "2024-06-30"])
    frame = pd.DataFrame({
        "i": np.arange(n), "cutoff": cutoffs[rng.integers(0, 2, n)],
        "recency_days": rng.integers(0, 365, n).astype("float64"),
        "orders_365d": rng.integers(1, 12, n).astype("float64"),  # heavy ties
        "spend_365d": np.round(rng.gamma(2, 50, n), 1),
        "frequency_trend_90d": rng.choice([0.25, 0.5, 1.0, 2.0], n),
        "r_score": np.nan, "f_score": np.nan, "m_score": np.nan, "valuable_frequency_drop": np.nan,
    })
    frame["t"] = (frame["cutoff"] - pd.Timestamp("1970-01-01")).dt.days
    expected = _catalogue_scores(frame)
    parts = _split(frame, 4, seed)
    thresholds = ranks.rfm_thresholds(_mapper(parts), list(cutoffs))
    got = pd.concat([ranks.apply_rfm_scores(p, thresholds) for p in parts]).sort_values("i")
    for name in ("r_score", "f_score", "m_score", "valuable_frequency_drop"):
        np.testing.assert_array_equal(got[name].to_numpy(), expected[name].to_numpy(), err_msg=name)


def test_quintile_counts_follow_duckdb_percent_rank_for_every_population_size():
    for n in [*range(1, 120), 997, 1000, 1001, 123457]:
        c = ranks.quintile_ranks(n)
        x = np.arange(n, dtype="float64")
        score = np.minimum(5.0, 1 + np.floor(5 * (x / (n - 1)))) if n > 1 else np.ones(n)  # DuckDB's doubles
        for k, ck in enumerate(c, start=2):
            passing = np.flatnonzero(score >= k)
            assert ck == (passing[0] if len(passing) else n), (n, k)


@pytest.mark.parametrize("seed", range(5))
def test_value_tier_across_partitions_equals_the_local_ranking(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 1500))
    scores = pd.DataFrame({"customer_id": [f"c{i:05d}" for i in range(n)],
                           "value": np.round(rng.gamma(1.5, 20, n), int(rng.integers(0, 2)))})  # ties
    cuts = (0.4, 0.8)
    expected = value_tier(scores["value"], cuts)
    parts = _split(scores, 3, seed)
    _, starts = ranks.value_tier_threshold(_mapper(parts), cuts)
    got = pd.concat([ranks.apply_value_tier(p, starts) for p in parts]).sort_values("customer_id")
    assert got["value_tier"].astype(str).tolist() == expected.astype(str).tolist()


def test_quantiles_from_order_statistics_are_numpys_bits():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(1, 60))
        values = np.sort(np.round(rng.normal(size=n) * 10, int(rng.integers(0, 4))))
        q = float(rng.choice([0.7, 0.3, 0.5, 0.9, rng.random()]))
        lo, hi = ranks.quantile_positions(n, q)
        assert ranks.numpy_quantile(values[lo - 1], values[hi - 1], n, q) == np.quantile(values, q)


def test_driver_cuts_across_partitions_equal_the_local_quantiles():
    from churn.config import WinbackConfig
    from churn.decide.winback import driver_cuts

    rng = np.random.default_rng(3)
    n = 900
    scores = pd.DataFrame({"discount_share_365d": np.where(rng.random(n) < 0.2, np.nan, rng.random(n).round(2)),
                           "categories_90d": rng.integers(0, 6, n).astype(float),
                           "categories_prev_90d": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 6, n))})
    config = WinbackConfig()
    got = ranks.global_quantiles(_mapper(_split(scores, 4, 0)), ranks.quantile_specs(),
                                 {"price": config.price_quantile, "variety": config.variety_quantile})
    assert got == driver_cuts(scores, config)
