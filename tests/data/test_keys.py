"""One pass over a Parquet key column: ids to rewrite, and ids proven unique by their order."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn.data import keys


def _file(tmp_path, ids, row_group_size=None):
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("ids", [
    ["o0001", "o0002", "o0010", "o0011"],  # zero-padded: byte order
    ["9", "10", "11", "100"],  # numbers without padding: shorter first
    ["a", "ab", "b", "ba"],  # byte order, lengths mixed
    ["x7"],
    [],
])
def test_ids_in_increasing_order_are_unique(tmp_path, ids):
    for size in (None, 1, 2):  # one row group, or several: the order holds across their edges
        found = keys.scan(_file(tmp_path, ids, size), "id")
        assert found == keys.KeyScan(rewrite=False, increasing=True)


@pytest.mark.parametrize("ids", [
    ["o1", "o2", "o2", "o3"],  # a repeated id next to itself
    ["o2", "o1", "o3", "o4"],
    ["o1", "o3", "o2", "o4"],
    ["o1", "o2", "o3", "o1"],  # a repeated id far from itself
    ["10", "9", "11", "12"],  # neither order
    ["o3", "o2", "o1", "o0"],  # decreasing: not taken (the sort judges it)
])
def test_ids_out_of_order_are_left_to_the_sort(tmp_path, ids):
    for size in (None, 1, 2):
        assert not keys.scan(_file(tmp_path, ids, size), "id").increasing


def test_increasing_within_row_groups_but_not_across_them_is_out_of_order(tmp_path):
    path = _file(tmp_path, ["o1", "o2", "o3", "o1", "o2", "o4"], row_group_size=3)
    assert not keys.scan(path, "id").increasing
    assert not keys.scan(path, "id", threads=1).increasing


def test_a_missing_id_is_left_to_the_other_checks(tmp_path):
    assert not keys.scan(_file(tmp_path, ["o1", None, "o3"]), "id").increasing


@pytest.mark.parametrize("bad", ["o2 ", "o2\t", "o2.0", "o2\u00a0", "o2é", "", "a.b@shop.example"])
def test_ids_the_parser_would_rewrite_or_refuse(tmp_path, bad):
    found = keys.scan(_file(tmp_path, ["o1", bad, "o3"] if bad else ["o1", "", "o3"]), "id", threads=1)
    assert found.rewrite


def test_an_at_sign_alone_is_no_e_mail(tmp_path):
    assert keys.scan(_file(tmp_path, ["a@1", "a@2"]), "id") == keys.KeyScan(rewrite=False, increasing=True)


def test_an_exponent_counts_only_among_numeric_ids(tmp_path):
    path = _file(tmp_path, ["1", "2", "3E+04"])
    assert keys.scan(path, "id", numbers_first=True).rewrite
    assert not keys.scan(path, "id", numbers_first=False).rewrite


def test_the_pass_stops_at_the_first_row_group_out_of_order(tmp_path, monkeypatch):
    path = _file(tmp_path, ["o2", "o1", "o3", "o4", "o5", "o6"], row_group_size=2)
    read = []
    real = keys._scan_group

    def counted(path, column, group, numbers_first, stop):
        part = real(path, column, group, numbers_first, stop)
        read.append(part.first is not None)
        return part

    monkeypatch.setattr(keys, "_scan_group", counted)
    assert not keys.scan(path, "id", threads=1).increasing
    assert read == [True, False, False]  # the first group is out of order: the others are not read
