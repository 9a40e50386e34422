"""The fast engine (`churn.features.kernels`, `churn.features.loops`) gives what the catalogue's SQL defines, bit-stable across reruns."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from churn.features import kernels
from churn.features.catalogue import catalogue
from churn.features.engine import FeatureBuilder
from tests.conftest import dataset_of, make_orders

CUTOFFS = ["2023-09-30", "2024-01-31", "2024-06-30"]


def _both(dataset, cutoffs, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (FeatureBuilder(dataset, engine="fast", **kwargs).build(cutoffs),
            FeatureBuilder(dataset, engine="sql", **kwargs).build(cutoffs))


def _unvalidated(orders: pd.DataFrame) -> SimpleNamespace:
    """Frames as they are, not through the contract (as a data directory of Parquet files can hold them)."""
    return SimpleNamespace(orders=orders, order_items=None, events=None)


def test_kernels_cover_every_order_aggregate_of_the_catalogue():
    in_catalogue = {f.name for f in catalogue() if f.table.split(".")[0] == "orders" and f.kind == "aggregate"}
    assert set(kernels.KERNELS) == in_catalogue


def test_fast_engine_equals_the_sql_definition_on_synthetic_data(synthetic_small):
    tables = synthetic_small.tables
    dataset = dataset_of(tables["orders"], order_items=tables["order_items"], events=tables["events"])
    fast, sql = _both(dataset, CUTOFFS)
    assert len(fast) > 3000 and fast["cutoff"].nunique() == 3
    assert_frame_equal(fast, sql, check_exact=False, rtol=1e-9, atol=1e-9)


def test_fast_engine_without_optional_columns():
    orders = make_orders([("a", "2024-01-01", 5), ("a", "2024-01-03", 7), ("b", "2024-01-02", 1)])
    dataset = dataset_of(orders.drop(columns=["discount", "status"]))
    fast, sql = _both(dataset, ["2024-01-31"])
    assert "returns_share_365d" not in fast and "discount_share_365d" not in fast
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


order_rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 500),
                                st.sampled_from([0.0, 0.01, 9.99, 10.0, 123.45, 500.0]),
                                st.sampled_from(["completed", "completed", "returned", "cancelled"]),
                                st.sampled_from([True, False, None]), st.integers(0, 3)),
                      min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=order_rows, cutoff_days=st.lists(st.integers(0, 520), min_size=1, max_size=3, unique=True))
def test_fast_engine_equals_the_sql_definition_on_random_orders(rows, cutoff_days):
    """Same-day orders, returns, unknown coupons, customers gone quiet: both engines agree."""
    start = pd.Timestamp("2023-01-01")
    orders = make_orders([(c, start + pd.Timedelta(days=d, hours=h), amount, status)
                          for c, d, amount, status, _, h in rows])
    orders["coupon_used"] = pd.array([r[4] for r in rows], dtype="boolean")
    orders["n_items"] = [r[5] for r in rows]
    orders["discount"] = (orders["amount"] * 0.25).round(2)
    cutoffs = [start + pd.Timedelta(days=d) for d in cutoff_days]
    # Unvalidated frames, as a data directory of Parquet files can hold them: coupons may be unknown.
    fast, sql = _both(_unvalidated(orders), cutoffs, lookback_days=200)
    assert_frame_equal(fast, sql, check_exact=False, rtol=1e-9, atol=1e-9)


def test_a_rerun_and_any_input_order_give_the_same_bits(synthetic_small):
    """Money is summed exactly, so neither the sort's threads nor the input order change a bit."""
    orders = synthetic_small.tables["orders"]
    first = FeatureBuilder(dataset_of(orders)).build(CUTOFFS)
    shuffled = orders.sample(frac=1.0, random_state=1).reset_index(drop=True)
    builder = FeatureBuilder(dataset_of(shuffled))
    builder.con.execute("SET threads = 2")
    assert_frame_equal(builder.build(CUTOFFS), first, check_exact=True)


def test_money_is_summed_exactly_in_millionths():
    orders = make_orders([("a", "2024-01-01", 0.1), ("a", "2024-01-02", 0.2), ("a", "2024-01-03", 0.3)])
    got = FeatureBuilder(dataset_of(orders)).build(["2024-01-31"]).iloc[0]
    assert got["spend_all"] == 0.6  # float addition in this order gives 0.6000000000000001
    assert got["max_order_value_365d"] == 0.3


def test_an_amount_is_rounded_to_a_millionth():
    orders = make_orders([("a", "2024-01-01", 0.2469134)])
    got = FeatureBuilder(dataset_of(orders)).build(["2024-01-31"]).iloc[0]
    assert got["spend_all"] == 0.246913 and got["max_order_value_365d"] == 0.246913


def test_the_largest_order_is_of_valid_orders_only():
    """A returned order larger than every purchase, first in the year: not the largest purchase."""
    orders = make_orders([("a", "2024-01-01", 40.0, "returned"), ("a", "2024-01-02", 3.0), ("a", "2024-01-05", 2.0),
                          ("b", "2024-01-03", 0.0, "cancelled"), ("b", "2024-01-04", 0.0)])
    fast, sql = _both(dataset_of(orders), ["2024-01-31"])
    assert fast["max_order_value_365d"].tolist() == [3.0, 0.0]
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


# Unvalidated frames (as a data directory of Parquet files can hold them) off the contract: the
# fast engine hands them to the SQL engine, whose answer is the definition (trial of stop 22).
OFF_CONTRACT = {
    "negative amounts": ([-10.0, -3.0, 4.0], ["completed", "completed", "returned"], {}),
    "a missing amount": ([None, -2.0, 5.0], ["completed", "completed", "completed"], {}),
    "a missing amount beside a discount": ([None, 8.0, 5.0], ["completed"] * 3, {"discount": [2.0, 1.0, 0.5]}),
    "an amount beyond 10^9": ([1e13, 2.0, 5.0], ["completed"] * 3, {}),
    "a NaN amount": ([float("nan"), 2.0, 5.0], ["completed"] * 3, {}),
    "a negative discount": ([3.0, 2.0, 5.0], ["completed"] * 3, {"discount": [-1.0, 0.5, 0.0]}),
    "fractional items": ([3.0, 2.0, 5.0], ["completed"] * 3, {"n_items": [1.5, 2.0, 2.0]}),
    "items beyond 10^6": ([3.0, 2.0, 5.0], ["completed"] * 3, {"n_items": [3e9, 2.0, 1.0]}),
}


@pytest.mark.parametrize("case", list(OFF_CONTRACT))
def test_orders_off_the_contract_are_answered_by_the_sql_definition(case, caplog):
    amounts, statuses, extra = OFF_CONTRACT[case]
    orders = make_orders([("a", f"2024-01-0{i + 1}", 0.0, status) for i, status in enumerate(statuses)])
    orders["amount"] = amounts
    orders = pd.concat([orders, make_orders([("b", "2024-01-02", 7.0)]).assign(order_id="ob")], ignore_index=True)
    for column, values in extra.items():
        orders[column] = values + [1.0]
    with caplog.at_level(logging.WARNING, logger="churn.features"):
        fast, sql = _both(_unvalidated(orders), ["2024-01-31"])
    assert "computing the order features in SQL" in caplog.text
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)
    assert fast.set_index("customer_id").loc["b", "spend_all"] == 7.0


@pytest.mark.parametrize("column", ["amount", "discount", "n_items"])
def test_nan_in_a_parquet_file_is_answered_by_sql(column, tmp_path, caplog):
    """Parquet statistics leave NaN out, and DuckDB folded the range check away: the cast failed (trial of stop 23)."""
    columns = {"customer_id": ["a", "a", "b"], "order_id": ["1", "2", "3"],
               "order_ts": np.array(["2024-01-01", "2024-02-01", "2024-02-15"], dtype="datetime64[us]"),
               "amount": [1.0, 2.0, 3.0], "discount": [0.5, 0.5, 0.5], "n_items": [1.0, 2.0, 3.0]}
    columns[column][1] = float("nan")  # a NaN, not a null (pandas would write a null)
    pq.write_table(pa.table(columns), tmp_path / "orders.parquet")
    with caplog.at_level(logging.WARNING, logger="churn.features"):
        fast, sql = _both(tmp_path, ["2024-03-01"])
    assert "computing the order features in SQL" in caplog.text
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


def test_equal_spends_tie_in_both_engines():
    """10.10 + 20.20 is 30.299999999999997 in float64: the SQL engine sums DECIMAL(38,6), so the tie and its m_score hold (trial of stop 23)."""
    orders = make_orders([("a", "2024-01-01", 10.10), ("a", "2024-01-02", 20.20), ("b", "2024-01-01", 30.30)])
    fast, sql = _both(dataset_of(orders), ["2024-01-31"])
    assert sql["spend_365d"].tolist() == [30.3, 30.3] and sql["m_score"].tolist() == [1.0, 1.0]
    assert_frame_equal(fast, sql, check_exact=True)


def test_the_sql_engine_gives_the_same_bits_whatever_the_input_order(synthetic_small):
    orders = synthetic_small.tables["orders"]
    first = FeatureBuilder(dataset_of(orders), engine="sql").build(CUTOFFS)
    shuffled = orders.sample(frac=1.0, random_state=2).reset_index(drop=True)
    assert_frame_equal(FeatureBuilder(dataset_of(shuffled), engine="sql").build(CUTOFFS), first, check_exact=True)


@pytest.mark.parametrize("values", [[1.0, np.nan, 0.0, 1.0], [True, None, False, True], [1, 0, 0, 1], [0, 2, 1, 1]])
def test_a_coupon_flag_of_any_type_reads_as_sql_reads_it(values):
    """Floats with NaN (pandas' nullable 0/1), booleans, integers; 2 is off the contract and goes to SQL."""
    orders = make_orders([("a", "2024-01-01"), ("a", "2024-01-02"), ("a", "2024-01-03"), ("b", "2024-01-02")])
    orders["coupon_used"] = values
    fast, sql = _both(_unvalidated(orders), ["2024-01-31"])
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ids", [[b"a", b"b"], [True, False], [10, 9]])
def test_both_engines_write_ids_as_duckdb_writes_them(ids):
    orders = make_orders([("x", "2024-01-01"), ("y", "2024-01-02")])
    orders["customer_id"] = ids
    fast, sql = _both(_unvalidated(orders), ["2024-01-31"])
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


def test_gap_spread_over_a_long_span_is_exact():
    """Days -106000001, -53000001, -2 (about 290,000 years, near the timestamps' limit): gaps 53000000 and
    52999999, standard deviation sqrt(1/2); the span squared passes 2^53, where float steps gave 0 or 1 (trial of stop 23)."""
    orders = make_orders([("a", "2024-01-01"), ("a", "2024-01-02"), ("a", "2024-01-03")])
    orders["order_ts"] = (np.array([-106000001, -53000001, -2]) * 86_400_000_000).astype("datetime64[us]")
    fast, sql = _both(_unvalidated(orders), ["2000-01-01"],
                      lookback_days=10**9)
    assert fast["gap_std_days"].iloc[0] == pytest.approx(np.sqrt(0.5), rel=1e-12)
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


def _three_orders(**columns) -> SimpleNamespace:
    """Unvalidated orders: a buys 10.0 and 20.0, b 30.0; `columns` replace or add columns."""
    return _unvalidated(make_orders([("a", "2020-01-01", 10.0), ("a", "2020-03-01", 20.0), ("b", "2020-02-01", 30.0)])
                        .assign(**columns))


@pytest.mark.parametrize("amount", [np.array([3000, 20, 30], np.int32), np.array([3000, 20, 30], np.int16),
                                    np.array([100000, 20, 30], np.uint32), pd.array([3000, 20, None], dtype="Int32"),
                                    np.array([12345.67, 1.0, 3.0], np.float32), ["10.5", "20", "30"]],
                         ids=["int32", "int16", "uint32", "Int32 with NA", "float32", "text"])
def test_money_of_any_type_is_read_as_the_sql_reads_it(amount, caplog):
    """Integers overflowed amount * 10^6 in their own type, float32 was scaled in float32, text did not bind (trial of stop 23)."""
    with caplog.at_level(logging.WARNING, logger="churn.features"):
        fast, sql = _both(_three_orders(amount=amount, discount=amount), ["2020-06-01"])
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)
    if not pd.isna(amount[-1]):  # a missing amount goes to SQL; every other type stays in the fast engine
        assert "computing the order features in SQL" not in caplog.text


def test_a_parquet_decimal_of_large_scale_is_read_as_the_sql_reads_it(tmp_path):
    import decimal

    data = _three_orders().orders
    pq.write_table(pa.table({"customer_id": data["customer_id"], "order_id": data["order_id"], "order_ts": data["order_ts"],
                             "amount": pa.array([decimal.Decimal(v) for v in ("10.5", "20", "30.0000005")],
                                                pa.decimal128(38, 32))}), tmp_path / "orders.parquet")
    fast, sql = _both(tmp_path, ["2020-06-01"])
    assert fast["spend_all"].tolist() == [30.5, 30.000001]
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


def test_float_ids_equal_in_sql_but_not_as_text_are_one_customer(caplog):
    """0.0 and -0.0 are one customer in SQL's GROUP BY; the fast engine numbers ids by their text, so it hands them to SQL."""
    with caplog.at_level(logging.WARNING, logger="churn.features"):
        fast, sql = _both(_three_orders(customer_id=[0.0, -0.0, 1.0]), ["2020-06-01"])
    assert "customer ids of type DOUBLE" in caplog.text
    assert fast["orders_all"].tolist() == [2.0, 1.0]
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


def test_dates_beyond_the_totals_day_range_are_answered_by_sql(tmp_path, caplog):
    """A DATE 2^30 days before 1970: the totals keep day + 2^30 in an int32, where 0 means none yet."""
    pq.write_table(pa.table({"customer_id": ["a", "a", "b"], "order_id": ["1", "2", "3"],
                             "order_ts": pa.array(np.array([-(1 << 30), 18400, 18395], np.int32), pa.date32()),
                             "amount": [1.0, 2.0, 3.0]}), tmp_path / "orders.parquet")
    with caplog.at_level(logging.WARNING, logger="churn.features"):
        fast, sql = _both(tmp_path, ["2020-06-01"], lookback_days=400)
    assert "million years" in caplog.text
    assert fast["orders_all"].tolist() == [2.0, 1.0]
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lookback", [2**63, -(2**63) - 1, 2**40 + 1])
def test_a_lookback_beyond_int64_takes_every_order_or_none(lookback):
    fast, sql = _both(_three_orders(), ["2020-06-01"], lookback_days=lookback)
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


def test_the_helper_s_largest_orders_equal_sql():
    """Quoted by the trial: a (-10, -3 completed, 4 returned) -> -3; b (only a missing amount) -> NaN; c (-2, missing) -> -2."""
    orders = make_orders([("a", "2024-01-01"), ("a", "2024-01-02"), ("a", "2024-01-03", 0.0, "returned"),
                          ("b", "2024-01-01"), ("c", "2024-01-01"), ("c", "2024-01-02")])
    orders["amount"] = [-10.0, -3.0, 4.0, None, -2.0, None]
    fast, _ = _both(_unvalidated(orders), ["2024-01-31"])
    got = fast.set_index("customer_id")["max_order_value_365d"]
    assert got["a"] == -3.0 and np.isnan(got["b"]) and got["c"] == -2.0


def test_totals_past_the_integer_range_are_answered_by_sql(caplog):
    """1,200 orders of 10^9 within 30 days pass SUM_LIMIT (and their items ITEMS_LIMIT): the sums do not wrap."""
    start = pd.Timestamp("2024-01-01")
    orders = make_orders([("a", start + pd.Timedelta(minutes=i), 1e9) for i in range(1200)] + [("b", start, 2.0)])
    orders["n_items"] = [1_000_000] * 1200 + [3]
    with caplog.at_level(logging.WARNING, logger="churn.features"):
        fast, sql = _both(dataset_of(orders), ["2024-01-20"])
    assert "computing the order features in SQL" in caplog.text
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)
    assert fast.set_index("customer_id").loc["a", "spend_30d"] == 1.2e12


def test_a_hash_collision_falls_back_to_sql(monkeypatch, caplog):
    """Two ids with the same first hash but different second hashes: the SQL engine answers."""
    from churn.features import loops

    real = loops.hashes

    def colliding(offsets, data, first, second):
        real(offsets, data, first, second)
        first[:] = 42  # every id the same first hash; the second hashes still differ

    monkeypatch.setattr(loops, "hashes", colliding)
    orders = make_orders([("a", "2024-01-01", 5), ("b", "2024-01-02", 1)])
    with caplog.at_level(logging.WARNING, logger="churn.features"):
        got = FeatureBuilder(dataset_of(orders)).build(["2024-01-31"])
    assert got["customer_id"].tolist() == ["a", "b"]
    assert "share a 64-bit hash" in caplog.text and "computing the order features in SQL" in caplog.text


def test_orders_not_in_date_order_are_streamed_again_sorted_by_day(synthetic_small, caplog):
    """One customer's later order stored first: the pass notices and the sorted pass gives the same bits."""
    orders = synthetic_small.tables["orders"]
    in_order = FeatureBuilder(dataset_of(orders)).build(CUTOFFS)
    swapped = orders.copy()
    swapped.iloc[[0, -1]] = swapped.iloc[[-1, 0]].to_numpy()
    with caplog.at_level(logging.INFO, logger="churn.features"):
        got = FeatureBuilder(dataset_of(swapped)).build(CUTOFFS)
    assert "not in date order" in caplog.text and "computing the order features in SQL" not in caplog.text
    assert_frame_equal(got, in_order, check_exact=True)


def test_many_batches_and_a_growing_customer_table_give_the_same_bits(synthetic_small, monkeypatch, caplog):
    """Batches of 257 orders and room for 4 customers at first: numbering and totals survive every move."""
    orders = synthetic_small.tables["orders"]
    whole = FeatureBuilder(dataset_of(orders)).build(CUTOFFS)
    monkeypatch.setattr(kernels, "BATCH_ROWS", 257)
    monkeypatch.setattr(kernels, "READ_AHEAD", 1)
    init = kernels._Numbering.__init__
    monkeypatch.setattr(kernels._Numbering, "__init__", lambda self, days, pool, capacity=4: init(self, days, pool, 4))
    with caplog.at_level(logging.INFO, logger="churn.features"):
        assert_frame_equal(FeatureBuilder(dataset_of(orders)).build(CUTOFFS), whole, check_exact=True)
    assert "computing the order features in SQL" not in caplog.text


def test_integer_customer_ids_come_out_in_numeric_order_as_in_sql(caplog):
    orders = make_orders([(10, "2024-01-01", 5), (9, "2024-01-02", 1), (100, "2024-01-03", 2)])
    orders["customer_id"] = orders["customer_id"].astype("int64")
    with caplog.at_level(logging.INFO, logger="churn.features"):
        fast, sql = _both(_unvalidated(orders), ["2024-01-31"])
    assert "computing the order features in SQL" not in caplog.text
    assert fast["customer_id"].tolist() == ["9", "10", "100"]
    assert_frame_equal(fast, sql, rtol=1e-12, atol=1e-12)


def test_a_failing_batch_stops_the_reader_thread(monkeypatch):
    """An error mid-stream (here: the first batch) leaves no reader thread behind and says what failed."""
    import threading

    orders = make_orders([(c, "2024-01-01", 5) for c in "abcdefgh"])
    monkeypatch.setattr(kernels, "BATCH_ROWS", 2)
    monkeypatch.setattr(kernels, "READ_AHEAD", 1)

    def broken(self, batch):
        raise RuntimeError("disk went away")

    builder = FeatureBuilder(dataset_of(orders))
    monkeypatch.setattr(kernels._Numbering, "add", broken)
    with pytest.raises(RuntimeError, match="disk went away"):
        builder.build(["2024-01-31"])
    assert not [t for t in threading.enumerate() if t.name == "churn-orders-stream"]


@pytest.mark.parametrize("source", ["frames", "parquet"])
def test_the_warm_up_loads_every_compiled_loop_the_stream_uses(source, synthetic_small, tmp_path, monkeypatch):
    """Loading numba's loops overlaps DuckDB's first reads only if the stream calls them with the
    warm-up's argument types (numba compiles once per type signature: read-only arrays included)."""
    import numba

    from churn.features import loops

    orders = synthetic_small.tables["orders"]
    if source == "parquet":
        orders.to_parquet(tmp_path / "orders.parquet", index=False)
    dataset = tmp_path if source == "parquet" else dataset_of(orders)
    calls: dict[str, dict[str, set]] = {"warm": {}, "stream": {}}
    phase = ["stream"]
    for name in ("hashes", "number", "accumulate", "features"):
        real = getattr(loops, name)

        def recording(*args, _real=real, _name=name):
            calls[phase[0]].setdefault(_name, set()).add(tuple(numba.typeof(a) for a in args))
            return _real(*args)

        monkeypatch.setattr(loops, name, recording)
    warm_up = kernels._Numbering.warm_up

    def warming(self, columns):
        phase[0] = "warm"
        warm_up(self, columns)
        phase[0] = "stream"

    monkeypatch.setattr(kernels._Numbering, "warm_up", warming)
    FeatureBuilder(dataset).build(CUTOFFS)
    assert set(calls["stream"]) == {"hashes", "number", "accumulate", "features"}
    for name, signatures in calls["stream"].items():
        assert signatures <= calls["warm"][name], name


def test_bands_split_age_at_the_window_edges():
    from churn.features import loops

    ages = [0, 29, 30, 89, 90, 179, 180, 359, 360, 364, 365, 1000]
    assert [loops._band(a) for a in ages] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert kernels.EDGES == (0, 30, 90, 180, 360, 365)


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.sampled_from([0.0, 1.0, 2.5, 2.5, 7.0, 10.0, 123.45, 1e6]), min_size=1, max_size=40),
       n_cutoffs=st.integers(1, 3), descending=st.booleans())
def test_quintile_scores_equal_duckdbs_percent_rank_to_the_bit(values, n_cutoffs, descending):
    """Ties share their lowest rank; a cutoff with one customer scores 1 (percent_rank 0)."""
    import duckdb

    t = np.sort(np.arange(len(values)) % n_cutoffs).astype(np.int32)
    x = np.asarray(values, dtype=np.float64)
    got = kernels.quintile_scores(t, x, descending, 5)
    order = "x DESC" if descending else "x"
    con = duckdb.connect()
    con.register("f", pd.DataFrame({"i": np.arange(len(x)), "t": t, "x": x}))
    want = con.execute(f"SELECT least(5, 1 + floor(5 * percent_rank() OVER (PARTITION BY t ORDER BY {order}))) AS s "
                       "FROM f ORDER BY i").fetchnumpy()["s"]
    np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float64))
