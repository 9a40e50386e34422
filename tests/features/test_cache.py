"""The feature cache: its key, exact Parquet round trips, bounded disk use, and never trusting a file."""

from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.config import Config
from churn.features.cache import FeatureCache, features_key


def test_the_key_changes_with_the_data_the_date_and_the_feature_settings_only():
    files = {"orders": "a" * 64, "events": "b" * 64}
    config = Config()
    key = features_key(files, "2024-06-30", config)
    assert key == features_key(dict(files), "2024-06-30", config) and key.startswith("features-2024-06-30-")
    assert features_key({**files, "orders": "c" * 64}, "2024-06-30", config) != key  # one data file changed
    assert features_key(files, "2024-06-29", config) != key
    shorter = dataclasses.replace(config, data=dataclasses.replace(config.data, lookback_days=180))
    assert features_key(files, "2024-06-30", shorter) != key
    strict = dataclasses.replace(config, contract=dataclasses.replace(config.contract, duplicate_rows="fail"))
    assert features_key(files, "2024-06-30", strict) != key
    # Settings the features do not read (list sizes, schedules) share the entry.
    other_lists = dataclasses.replace(config, winback=dataclasses.replace(config.winback, holdout_share=0.2))
    assert features_key(files, "2024-06-30", other_lists) == key
    assert features_key({}, "2024-06-30", config) is None  # frames built in memory: no cache


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series(["a", "b", "c"], dtype="str"),
                         "cutoff": pd.to_datetime(["2024-06-30"] * 3).astype("datetime64[us]"),
                         "orders_90d": [3.0, np.nan, 0.1 + 0.2], "tenure_days": [10, 20, 30]})


def test_features_round_trip_exactly_and_leave_no_temporary_file(tmp_path):
    cache = FeatureCache(tmp_path, max_age_days=7)
    cache.put("k", _frame())
    pd.testing.assert_frame_equal(cache.get("k"), _frame(), check_exact=True)
    assert [p.name for p in tmp_path.iterdir()] == ["k.parquet"]
    assert cache.get("other") is None and cache.get(None) is None


class _Planted:
    def __reduce__(self):  # what a malicious pickle would run on loading
        return (os.system, ("touch planted-ran",))


def test_a_truncated_or_planted_entry_is_a_miss_deleted_and_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = FeatureCache(tmp_path / "cache", max_age_days=7)
    cache.put("k", _frame())
    whole = (tmp_path / "cache" / "k.parquet").read_bytes()
    (tmp_path / "cache" / "k.parquet").write_bytes(whole[: len(whole) // 2])  # killed mid-write elsewhere
    assert cache.get("k") is None and not (tmp_path / "cache" / "k.parquet").exists()
    (tmp_path / "cache" / "k.parquet").write_bytes(pickle.dumps(_Planted()))
    assert cache.get("k") is None
    assert not (tmp_path / "planted-ran").exists()


def _entry(directory, key: str, size: int, age_days: float, now: float) -> None:
    path = directory / f"{key}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_days * 86400, now - age_days * 86400))


def test_prune_deletes_expired_entries_then_the_oldest_beyond_the_size_cap(tmp_path):
    now = 1_700_000_000.0
    for key, age in (("old", 9), ("week", 6.5), ("yesterday", 1), ("today", 0)):
        _entry(tmp_path, key, 100, age, now)
    assert FeatureCache(tmp_path, 7, 1000).prune(now) == ["old"]
    assert FeatureCache(tmp_path, 7, 150).prune(now) == ["week", "yesterday"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["today.parquet"]
    assert FeatureCache(tmp_path / "missing", 7, 1000).prune(now) == []


def test_a_zero_day_cache_stores_and_serves_nothing(tmp_path):
    cache = FeatureCache(tmp_path, max_age_days=0)
    cache.put("k", _frame())
    assert cache.get("k") is None and not list(tmp_path.iterdir())


def test_valid_parquet_the_cache_did_not_write_for_the_key_is_a_miss_deleted(tmp_path):
    # Before: a copy of scores.parquet in an entry's place was served "from the cache", then
    # KeyError: 'cutoff' (exit 70) on every rerun; a directory in its place the same.
    cache = FeatureCache(tmp_path, max_age_days=7)
    entry = tmp_path / "k.parquet"
    pd.DataFrame({"customer_id": ["a"], "p_churn": [0.5]}).to_parquet(entry)  # another file, copied in
    assert cache.get("k") is None and not entry.exists()
    cache.put("other", _frame())
    os.replace(tmp_path / "other.parquet", entry)  # the cache's own file, of another key
    assert cache.get("k") is None and not entry.exists()
    cache.put("k", _frame())
    renamed = _frame().rename(columns={"cutoff": "as_of"})  # same key in the metadata, other columns
    table = pa.Table.from_pandas(renamed).replace_schema_metadata(pq.read_schema(entry).metadata)
    pq.write_table(table, entry)
    assert cache.get("k") is None and not entry.exists()
    entry.mkdir()
    _frame().to_parquet(entry / "part-0.parquet")  # a directory (pandas would read it as a dataset)
    assert cache.get("k") is None and not entry.exists()
    cache.put("k", _frame())  # recomputed and stored again
    pd.testing.assert_frame_equal(cache.get("k"), _frame(), check_exact=True)
