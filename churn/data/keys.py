"""A Parquet key column of text ids read once: would the parsers rewrite any id, and is every id unique by its order?

A table's key (`order_id` in orders, `customer_id` in customers) must hold each value once.
The general check sorts 64-bit hashes of all rows (`churn.data.contract`); on 30M orders that
sort is the largest cost of validation. But shops export their tables in key order more often
than not (order ids grow with time), and a column whose ids strictly increase from one row to
the next holds each id once: that is one sequential comparison per row, and no sort. `scan`
tells whether it is so, in either of two orders: byte by byte (`o0001` < `o0002`, zero-padded
or prefixed ids) or shorter first, then byte by byte (`9` < `10`, numbers written without
padding). Any other column is checked by the sort, as before.

The same pass answers the probe's question about each id's written form (see
`churn.data.contract._probe_parquet`): whether the id parser or the privacy check would act on
some id, i.e. an id that is empty, ends in a space, a control or a non-ASCII character, holds a
decimal point, an e-mail address, or (among numeric ids, `numbers_first`) an exponent. The
tests look at the bytes of each batch (one search of the batch's bytes per character, and the
last byte of each id) and so are at least as strict as the SQL conditions they replace: a
table they flag is parsed in pandas, which is always right, only slower.

Row groups are read in parallel threads (Arrow decodes without the GIL), one batch at a time,
and the pass stops as soon as two ids are found out of order: a shuffled file costs one batch,
and its ids are then checked by SQL as before.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn.data import privacy

__all__ = ["KeyScan", "scan"]

BATCH_ROWS = 1 << 20
_SPACE_OR_CONTROL, _ASCII_END = 0x21, 0x7F  # a last byte below "!" or from DEL up: trimmed, or not ASCII


@dataclass(frozen=True)
class KeyScan:
    """What one pass over a key column found."""

    rewrite: bool  # some id would be rewritten (or refused) by the pandas parsers: parse the table in pandas
    increasing: bool  # every id is greater than the one before (no missing id): each id is unique
    # When not `increasing`, the pass may have stopped early: `rewrite` then says only what it read.


@dataclass
class _Part:
    """One row group: its verdicts, and its first and last ids (for the comparison across groups)."""

    rewrite: bool
    by_bytes: bool  # strictly increasing byte by byte
    by_length: bool  # strictly increasing shorter first, then byte by byte
    first: bytes | None
    last: bytes | None
    nulls: bool


def scan(path: str | Path, column: str, numbers_first: bool = False, threads: int | None = None) -> KeyScan:
    """Read text column `column` of a Parquet file once; see the module's docstring.

    `numbers_first`: the column's first ids are numbers (`churn.data.spelling.numbers_first`),
    so an exponent (`1.3482E+04`) is a number a spreadsheet rounded. A column with a missing id
    is never `increasing` (the general check judges it). Raises OSError or ArrowException when
    the file cannot be read.
    """
    groups = pq.ParquetFile(path).num_row_groups
    workers = max(1, min(threads or os.cpu_count() or 1, groups))
    stop = threading.Event()  # set by the first group with ids out of order or to rewrite: the others stop

    def one(group: int) -> _Part:
        return _scan_group(path, column, group, numbers_first, stop)

    if workers == 1:
        parts = [one(g) for g in range(groups)]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(one, range(groups)))
    # Arrow's allocator keeps the freed batches for reuse; the rest of the run hardly allocates
    # through Arrow, so they would only add to its peak memory (about 100 MB at 30M orders).
    pa.default_memory_pool().release_unused()
    rewrite = any(part.rewrite for part in parts)
    parts = [part for part in parts if part.first is not None]  # empty row groups say nothing
    by_bytes = all(part.by_bytes for part in parts)
    by_length = all(part.by_length for part in parts)
    for before, after in zip(parts, parts[1:]):
        by_bytes = by_bytes and before.last < after.first
        by_length = by_length and (len(before.last), before.last) < (len(after.first), after.first)
    return KeyScan(rewrite=rewrite, increasing=not stop.is_set() and (by_bytes or by_length))


def _scan_group(path: str | Path, column: str, group: int, numbers_first: bool, stop: threading.Event) -> _Part:
    rewrite, by_bytes, by_length, nulls = False, True, True, False
    first = last = None
    if stop.is_set():  # another group found the answer: read nothing
        return _Part(rewrite, False, False, first, last, nulls)
    for batch in pq.ParquetFile(path).iter_batches(BATCH_ROWS, row_groups=[group], columns=[column],
                                                   use_threads=False):
        if stop.is_set():
            return _Part(rewrite, False, False, first, last, nulls)
        ids = batch.column(0)
        if ids.null_count:
            nulls = True
            ids = ids.drop_null()
        if not len(ids):
            continue
        ids = ids.cast(pa.large_binary())  # one layout (64-bit offsets), bytes compared as bytes
        rewrite = rewrite or _to_rewrite(ids, numbers_first)
        if by_bytes or by_length:
            lower = pc.less(ids[:-1], ids[1:]).to_numpy(zero_copy_only=False)
            by_bytes = by_bytes and bool(lower.all()) and (last is None or last < ids[0].as_py())
            lengths = np.diff(_offsets(ids))
            by_length = (by_length and bool(((lengths[1:] > lengths[:-1]) | (lengths[1:] == lengths[:-1]) & lower).all())
                         and (last is None or (len(last), last) < (int(lengths[0]), ids[0].as_py())))
        first = ids[0].as_py() if first is None else first
        last = ids[-1].as_py()
        if rewrite or nulls or not (by_bytes or by_length):
            stop.set()
    return _Part(rewrite, by_bytes, by_length, first, last, nulls)


def _offsets(ids: pa.Array) -> np.ndarray:
    """The n + 1 offsets of a large_binary array into its data buffer."""
    return np.frombuffer(ids.buffers()[1], dtype=np.int64)[ids.offset:ids.offset + len(ids) + 1]


def _to_rewrite(ids: pa.Array, numbers_first: bool) -> bool:
    """True when some id (none missing) is empty, ends in a space, control or non-ASCII byte, or holds
    a ".", an e-mail address, or (`numbers_first`) an "e" or "E"."""
    offsets = _offsets(ids)
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    ends = offsets[1:] - offsets[0]
    if (ends[1:] == ends[:-1]).any() or ends[0] == 0:
        return True  # an empty id
    last = data[ends - 1]
    if ((last < _SPACE_OR_CONTROL) | (last >= _ASCII_END)).any():
        return True
    text = data.tobytes()
    if b"." in text or numbers_first and (b"e" in text or b"E" in text):
        return True
    return b"@" in text and bool(privacy.masks(ids.cast(pa.large_string()), phones=False).any())
