"""Customer partitions: a stable hash of the id, the same on every machine and for every spelling of an id."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.data.hashing import stable_share
from churn.data.partitions import partition_key, partition_of


def test_a_customer_s_partition_is_the_floor_of_its_stable_share():
    ids = pd.Series([f"c{i}" for i in range(500)])
    got = partition_of(ids, 7)
    assert got.tolist() == [int(stable_share(i) * 7) for i in ids]
    assert set(got) == set(range(7))  # every partition gets customers


def test_the_partition_reads_ids_as_the_contract_does():
    # An id read as an integer from Parquet, as a float from a CSV with gaps, or with spaces is the same customer.
    as_text = partition_of(pd.Series(["17", "42", " 42 "]), 16)
    assert partition_of(pd.Series([17, 42, 42]), 16).tolist() == as_text.tolist()
    assert partition_of(pd.Series([17.0, 42.0, np.nan]), 16)[:2].tolist() == as_text[:2].tolist()


def test_the_storage_key_changes_with_the_data_and_k():
    a = partition_key({"orders": "ab", "customers": "cd"}, 8)
    assert a == partition_key({"customers": "cd", "orders": "ab"}, 8)
    assert a != partition_key({"orders": "ac", "customers": "cd"}, 8)
    assert a != partition_key({"orders": "ab", "customers": "cd"}, 4)
