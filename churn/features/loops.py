"""The compiled loops of the fast feature engine (numba; see `churn.features.kernels`).

Imported on first use, so that importing the features does not load numba (about 0.7 s) and
its first call (about 0.7 s more) overlaps DuckDB's scan (`kernels.totals`). The loops hold no
Python objects and release the GIL. Slots, flags and bands: `churn.features.kernels`.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from churn.features.kernels import (
    COUPON_KNOWN, COUPON_USED, DAY_OFFSET, DISCOUNT_365, FIRST_OCC, GAP2, ITEMS_365, KNOWN_365, LAST_GAP, LAST_OCC,
    ITEMS_LIMIT, MAX_ITEMS, MAX_MONEY, MONEY_SCALE, N_BANDS, NUMBER, OCC, OUT_OF_RANGE, ROWS_365, SECOND, SPEND, SUM_LIMIT, TOP_365, USED_365, VALID,
    VALID_365, empty_table,
)

# Rows ahead whose memory is asked for early (see `_prefetch`).
PREFETCH_DISTANCE = 16
# Below this, k * (sum of squared gaps) fits in int64 (see `features`).
EXACT_PRODUCT = 1 << 62


@intrinsic
def _prefetch(typingctx, array, row, column):  # noqa: ARG001 (numba's signature)
    """Ask the processor to bring array[row, column] of a 2-D array into the cache (LLVM's `llvm.prefetch`).

    The loops below read random customers' rows; the branches that depend on what they read stop
    the processor from reading ahead by itself, so each loop asks for the row of the order
    PREFETCH_DISTANCE ahead (measured: `bench/features.py`).
    """
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        ary = context.make_array(array_type)(context, builder, args[0])
        index = [context.cast(builder, value, kind, types.intp) for value, kind in zip(args[1:], signature.args[1:])]
        pointer = cgutils.get_item_pointer(context, builder, array_type, ary, index, wraparound=False,
                                           boundscheck=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8")
        builder.call(function, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0), ir.Constant(i32, 3),
                                ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, row, column), codegen


@numba.njit(nogil=True, cache=True)
def _mix(h: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finaliser: every input bit reaches the low bits the table uses."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@numba.njit(nogil=True, cache=True)
def hashes(offsets: np.ndarray, data: np.ndarray, first: np.ndarray, second: np.ndarray) -> None:
    """Two independent 64-bit hashes of every id of a string array (its offsets and bytes).

    `first`: FNV-1a; `second`: a polynomial hash (multiplier 2^64 / golden ratio); both mixed by
    `_mix`. Two ids are taken for one customer only if both hashes agree (about 1 in 10^26 for
    two million different ids). A loop of its own: inside the table's loop, its chains of
    multiplications would leave the processor no room to overlap the table's memory reads.
    """
    for i in range(len(first)):
        a = np.uint64(14695981039346656037)
        b = np.uint64(offsets[i + 1] - offsets[i])
        for j in range(offsets[i], offsets[i + 1]):
            a = (a ^ np.uint64(data[j])) * np.uint64(1099511628211)
            b = b * np.uint64(0x9E3779B97F4A7C15) + np.uint64(data[j])
        first[i] = np.int64(_mix(a))
        second[i] = np.int64(_mix(b))


def rehash(table: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The customer table moved into `size` rows (a power of two)."""
    bigger, bigger32 = empty_table(size)
    _move(table, table.view(np.int32), bigger, bigger32)
    return bigger, bigger32


@numba.njit(nogil=True, cache=True)
def _move(table: np.ndarray, table32: np.ndarray, bigger: np.ndarray, bigger32: np.ndarray) -> None:
    mask = len(bigger) - 1
    for row in range(len(table)):
        if row + PREFETCH_DISTANCE < len(table):
            _prefetch(bigger, table[row + PREFETCH_DISTANCE, 0] & mask, 0)
        if table32[row, NUMBER] != 0:
            slot = table[row, 0] & mask
            while bigger32[slot, NUMBER] != 0:
                slot = (slot + 1) & mask
            for j in range(table.shape[1]):
                bigger[slot, j] = table[row, j]


@numba.njit(nogil=True, cache=True)
def number(start: int, h: np.ndarray, second: np.ndarray, day: np.ndarray, table: np.ndarray,
           table32: np.ndarray, count: int, capacity: int, out: np.ndarray, new_rows: np.ndarray, n_new: int,
           last_day: int) -> tuple[int, int, int, int, int]:
    """Number the customers of orders start.. in order of first appearance: each order's number into `out`.

    `h` and `second`: two independent 64-bit hashes of each order's id (see the customer table);
    a new customer's order index goes to `new_rows`. `last_day`: the latest day streamed so far.
    Returns (status, count, n_new, next order, latest day): status 0 when done; 1 when the days
    go down (the orders are not in date order); 2 when the table is half full or `capacity`
    customers (the totals' rows ready) are numbered (make room, then call again from the next
    order); 3 when two ids share the first hash but not the second.
    """
    mask = len(table) - 1
    for i in range(start, len(h)):
        if i + PREFETCH_DISTANCE < len(h):
            _prefetch(table, h[i + PREFETCH_DISTANCE] & mask, 0)
        if day[i] < last_day:
            return 1, count, n_new, i, last_day
        last_day = day[i]
        slot = h[i] & mask
        check = np.int32(second[i])  # its low 32 bits
        while True:
            if table32[slot, NUMBER] == 0:
                if 2 * (count + 1) > len(table) or count >= capacity:
                    return 2, count, n_new, i, last_day
                table[slot, 0] = h[i]
                table32[slot, SECOND] = check
                table32[slot, NUMBER] = count + 1
                count += 1
                new_rows[n_new] = i
                n_new += 1
                break
            if table[slot, 0] == h[i]:
                if table32[slot, SECOND] != check:
                    return 3, count, n_new, i, last_day
                break
            slot = (slot + 1) & mask
        out[i] = table32[slot, NUMBER] - 1
    return 0, count, n_new, len(h), last_day


@numba.njit(nogil=True, cache=True)
def _band(age: int) -> int:
    """The band of an age in days (see EDGES): 0 for 0-29 days, ..., 5 for 365 days and older."""
    if age < 90:
        return 0 if age < 30 else 1
    if age < 360:
        return 2 if age < 180 else 3
    return 4 if age < 365 else 5


@numba.njit(nogil=True, cache=True)
def _prefetch_ahead(rows: np.ndarray, customers: np.ndarray, i: int) -> None:
    """Prefetch both cache lines of the totals row of customers[i + PREFETCH_DISTANCE], if any."""
    if i + PREFETCH_DISTANCE < len(customers):
        ahead = customers[i + PREFETCH_DISTANCE]
        _prefetch(rows, ahead, 0)
        _prefetch(rows, ahead, 8)


@numba.njit(nogil=True, cache=True)
def accumulate(t: int, customer: np.ndarray, day: np.ndarray, flags: np.ndarray, amount: np.ndarray,
               discount: np.ndarray, n_items: np.ndarray, rows: np.ndarray, rows32: np.ndarray) -> int:
    """Add a batch of orders (in date order per customer) to the totals at cutoff day t (see Totals).

    `discount` and `n_items` are empty when the data lacks them. Returns 0; 1 when a valid order
    up to t is out of range (OUT_OF_RANGE, or numbers beyond MAX_MONEY or MAX_ITEMS, or negative);
    2 when a total passes SUM_LIMIT or ITEMS_LIMIT. The totals are then unusable.
    """
    has_discount, has_items = len(discount) > 0, len(n_items) > 0
    for i in range(len(customer)):
        _prefetch_ahead(rows, customer, i)
        d = day[i]
        if d > t:
            continue
        c = customer[i]
        band = _band(t - d)
        if band < 5:
            rows32[c, ROWS_365] += 1
        if flags[i] & VALID:
            if flags[i] & OUT_OF_RANGE or not 0 <= amount[i] <= MAX_MONEY:
                return 1
            if (has_discount and not 0 <= discount[i] <= MAX_MONEY) or (has_items and not 0 <= n_items[i] <= MAX_ITEMS):
                return 1
            rows[c, SPEND + band] += amount[i]
            if rows[c, SPEND + band] > SUM_LIMIT:
                return 2
            if band < 5:
                if rows32[c, VALID_365] == 0 or amount[i] > rows[c, TOP_365]:
                    rows[c, TOP_365] = amount[i]  # max(amount) of the year's valid orders
                rows32[c, VALID_365] += 1
                if flags[i] & COUPON_KNOWN:
                    rows32[c, KNOWN_365] += 1
                if flags[i] & COUPON_USED:
                    rows32[c, USED_365] += 1
                if has_discount:
                    rows[c, DISCOUNT_365] += discount[i]
                    if rows[c, DISCOUNT_365] > SUM_LIMIT:
                        return 2
                if has_items:
                    rows32[c, ITEMS_365] += n_items[i]
                    if rows32[c, ITEMS_365] > ITEMS_LIMIT:
                        return 2
            last = rows32[c, LAST_OCC]
            if d + DAY_OFFSET > last:  # the first valid order of a later day: a purchase occasion
                if last != 0:
                    gap = d + DAY_OFFSET - last
                    rows32[c, LAST_GAP] = gap
                    rows[c, GAP2] += gap * gap
                else:
                    rows32[c, FIRST_OCC] = d
                rows32[c, LAST_OCC] = d + DAY_OFFSET
                rows32[c, OCC + band] += 1
    return 0


@numba.njit(nogil=True, cache=True)
def features(t: int, lookback_days: int, order: np.ndarray, rows: np.ndarray, rows32: np.ndarray,
             keep: np.ndarray, out: np.ndarray) -> int:
    """The order aggregates of the customers of `order` in the population at t, in that order.

    The population: customers with an occasion in the lookback. Writes their numbers to `keep`
    and their aggregates to `out` (one row per name of `kernels.KERNELS`, one column per
    customer); returns how many. Every value is the catalogue's definition in the same float64
    steps as numpy would take on the same integers (no fused or reordered operations): money
    sums are exact integers divided once by MONEY_SCALE; the gaps telescope to last - first, and
    k * (sum of squared gaps) - (last - first)^2 is an exact integer before the division.
    """
    m = 0
    for i in range(len(order)):
        _prefetch_ahead(rows, order, i)
        c = order[i]
        o0, o1, o2 = np.int64(rows32[c, OCC]), np.int64(rows32[c, OCC + 1]), np.int64(rows32[c, OCC + 2])
        o3, o4, o5 = np.int64(rows32[c, OCC + 3]), np.int64(rows32[c, OCC + 4]), np.int64(rows32[c, OCC + 5])
        n_occ = o0 + o1 + o2 + o3 + o4 + o5
        last = np.int64(rows32[c, LAST_OCC]) - DAY_OFFSET
        if n_occ == 0 or last <= t - lookback_days:
            continue
        keep[m] = c
        s0, s1, s2, s3, s4, s5 = rows[c, SPEND], rows[c, SPEND + 1], rows[c, SPEND + 2], rows[c, SPEND + 3], \
            rows[c, SPEND + 4], rows[c, SPEND + 5]
        spend_365 = s0 + s1 + s2 + s3 + s4
        first = np.int64(rows32[c, FIRST_OCC])  # the first valid day: orders come in date order
        k = n_occ - 1  # gaps: one fewer than occasions
        total = np.float64(last - first)  # the gaps telescope to last - first
        valid_year = np.int64(rows32[c, VALID_365])
        all_rows = np.int64(rows32[c, ROWS_365])
        discount = rows[c, DISCOUNT_365]
        known, used = np.int64(rows32[c, KNOWN_365]), np.int64(rows32[c, USED_365])
        out[0, m] = np.float64(t - last)  # recency_days
        out[1, m] = np.float64(t - first)  # tenure_days
        out[2, m] = np.float64(n_occ)  # orders_all
        out[3, m] = np.float64(spend_365 + s5) / MONEY_SCALE  # spend_all
        out[4, m] = np.float64(o0)  # orders_30d
        out[5, m] = np.float64(s0) / MONEY_SCALE
        out[6, m] = np.float64(o0 + o1)  # orders_90d
        out[7, m] = np.float64(s0 + s1) / MONEY_SCALE
        out[8, m] = np.float64(o0 + o1 + o2)  # orders_180d
        out[9, m] = np.float64(s0 + s1 + s2) / MONEY_SCALE
        out[10, m] = np.float64(o0 + o1 + o2 + o3 + o4)  # orders_365d
        out[11, m] = np.float64(spend_365) / MONEY_SCALE
        out[12, m] = np.float64(o2)  # orders_prev_90d
        out[13, m] = np.float64(s2) / MONEY_SCALE
        out[14, m] = np.float64(o3)  # orders_prev_180d
        out[15, m] = total / np.float64(max(k, 1)) if k >= 1 else np.nan  # gap_mean_days
        if k >= 2:  # gap_std_days
            span = last - first
            if rows[c, GAP2] <= EXACT_PRODUCT // k:  # k * (sum of squares) - span^2 as an exact integer
                var = np.float64(k * rows[c, GAP2] - span * span) / np.float64(k * (k - 1))
            else:  # spans of tens of thousands of years only: float64 steps
                var = (np.float64(k) * np.float64(rows[c, GAP2]) - total * total) / np.float64(k * (k - 1))
            out[16, m] = np.sqrt(var if var > 0.0 else 0.0)
        else:
            out[16, m] = np.nan
        out[17, m] = np.float64(rows32[c, LAST_GAP]) if k >= 1 else np.nan  # gap_last_days
        out[18, m] = np.float64(rows[c, TOP_365]) / MONEY_SCALE if valid_year > 0 else np.nan
        den = spend_365 + discount  # discount_share_365d
        out[19, m] = np.float64(discount) / np.float64(den) if den != 0 else np.nan
        out[20, m] = np.float64(used) / np.float64(known) if known != 0 else np.nan  # coupon_share_365d
        items = np.int64(rows32[c, ITEMS_365])  # items_per_order_365d
        out[21, m] = np.float64(items) / np.float64(valid_year) if valid_year != 0 else np.nan
        out[22, m] = np.float64(all_rows - valid_year) / np.float64(all_rows) if all_rows != 0 else np.nan
        m += 1
    return m
