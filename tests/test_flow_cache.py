"""The feature cache's parts: its key, its Parquet results, and how it bounds its disk use."""

from __future__ import annotations

import dataclasses
import os
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd

from prefect.cache_policies import NONE

from churn.config import CacheConfig, Config
from churn.errors import DataError
from flows import cache
from flows.cache import FrameSerializer, features_key, prune
from flows.score import build_features


def _key(fingerprints: dict[str, str], run_date: str = "2024-06-30", config: Config = Config()) -> str | None:
    return features_key(None, {"dataset": SimpleNamespace(fingerprints=fingerprints), "run_date": run_date,
                               "config": config})


def test_the_key_changes_with_the_data_the_date_and_the_feature_settings_only():
    files = {"orders": "a" * 64, "events": "b" * 64}
    key = _key(files)
    assert key == _key(dict(files)) and key.startswith("features-2024-06-30-")
    config = Config()
    assert _key({**files, "orders": "c" * 64}) != key  # one data file changed
    assert _key(files, "2024-06-29") != key
    shorter = dataclasses.replace(config, data=dataclasses.replace(config.data, lookback_days=180))
    assert _key(files, config=shorter) != key
    assert _key(files, config=dataclasses.replace(
        config, contract=dataclasses.replace(config.contract, duplicate_rows="fail"))) != key
    # Settings the features do not read (list sizes, schedules) share the entry.
    assert _key(files, config=dataclasses.replace(
        config, winback=dataclasses.replace(config.winback, holdout_share=0.2))) == key
    assert _key({}) is None  # frames built in memory have no file fingerprints: no cache


def test_features_round_trip_through_parquet_exactly_and_errors_through_pickle():
    frame = pd.DataFrame({"customer_id": pd.Series(["a", "b", "c"], dtype="str"),
                          "cutoff": pd.to_datetime(["2024-06-30"] * 3).astype("datetime64[us]"),
                          "orders_90d": [3.0, np.nan, 0.1 + 0.2], "tenure_days": [10, 20, 30]})
    serializer = FrameSerializer()
    blob = serializer.dumps(frame)
    assert blob[:4] == b"PAR1"
    pd.testing.assert_frame_equal(serializer.loads(blob), frame, check_exact=True)
    error = serializer.loads(serializer.dumps(DataError("no customer bought")))
    assert isinstance(error, DataError) and str(error) == "no customer bought"


def _entry(directory, key: str, size: int, age_days: float, now: float) -> None:
    for part, content in (("results", b"x" * size), ("keys", b"{}")):
        path = directory / part / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))


def test_prune_deletes_expired_entries_then_the_oldest_beyond_the_size_cap(tmp_path):
    now = 1_700_000_000.0
    for key, age in (("old", 9), ("week", 6.5), ("yesterday", 1), ("today", 0)):
        _entry(tmp_path, key, 100, age, now)
    (tmp_path / "keys" / "stray").write_bytes(b"{}")  # a record whose result is gone would fail a read
    assert prune(tmp_path, max_age_days=7, max_bytes=1000, now=now) == ["old"]
    assert prune(tmp_path, max_age_days=7, max_bytes=150, now=now) == ["week", "yesterday"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["today"]
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["today"]
    assert prune(tmp_path / "missing", max_age_days=7, max_bytes=1000, now=now) == []


def test_a_zero_day_cache_turns_caching_off_and_empties_the_cache():
    _entry(cache.cache_dir(), "features-2024-06-30-x", 10, 0, time.time())
    off = cache.configured(build_features, CacheConfig(feature_days=0))
    assert off.cache_policy == NONE and off.persist_result is False
    assert not list((cache.cache_dir() / "results").iterdir())
    on = cache.configured(build_features, CacheConfig(feature_days=3))
    assert on.cache_expiration.days == 3 and on.persist_result and on.result_serializer.type == "churn-frame"
