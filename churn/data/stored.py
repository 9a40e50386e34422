"""Tables left in their Parquet files: read in place by SQL, or as a pandas frame on first use.

A Parquet file whose columns already have the contract's types (text ids with nothing to
normalise, naive timestamps, numbers, flags; labels are mapped through their few distinct
values) needs no rewriting: its canonical form is a SQL expression per column over the file.
The contract then checks it where it lies (DuckDB reads Parquet in parallel, column by column)
and the run keeps it there as a `StoredTable`: the feature engine scans it through `register`,
the quality gate reads one column with `column`, and code that wants a pandas frame gets one
from `frame`, parsed by the same parsers as a CSV file (`churn.data.parsing`), so both ways
give the same values. A table with anything to rewrite (ids written `13482.0`, time zones,
text numbers) is parsed in pandas instead and never becomes a StoredTable.

`kinds` names each contract column's kind (the other columns travel as they are); `gone` holds
the file rows the contract set aside; `cleared` the optional timestamp columns whose
implausible values read as missing; `statuses` the shop's own status spellings.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.data import database, parsing, statuses
from churn.data.io import read_raw

__all__ = ["StoredTable", "ident", "literal", "timestamp_literal", "clear_sql", "read_rows", "parquet_source"]

ROW = "__row"  # the 0-based file row, as checks and views number rows


def ident(name: str) -> str:
    """A SQL identifier for a column name, quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def timestamp_literal(ts: pd.Timestamp) -> str:
    return f"TIMESTAMP '{pd.Timestamp(ts).isoformat(sep=' ')}'"


def clear_sql(expr: str, low: pd.Timestamp, high: pd.Timestamp) -> str:
    """`expr`, missing where it lies outside [low, high): an implausible optional timestamp cleared."""
    return f"CASE WHEN {expr} < {timestamp_literal(low)} OR {expr} >= {timestamp_literal(high)} THEN NULL ELSE {expr} END"


def parquet_source(path: Path) -> str:
    """The table function reading a Parquet file with each row's 0-based position."""
    return f"read_parquet({literal(str(path))}, file_row_number=true)"


@dataclass(frozen=True, eq=False)
class StoredTable:
    """A validated table read in place from its Parquet file (see the module's docstring)."""

    name: str
    path: Path
    columns: tuple[str, ...]  # canonical column names, in file order
    select: tuple[str, ...]  # per column, the SQL expression over the file giving its canonical values
    kinds: Mapping[str, str]  # contract column -> kind
    n_rows: int  # rows in the file
    timezone: str = "UTC"
    statuses: Mapping[str, str] = field(default_factory=dict)
    gone: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cleared: tuple[tuple[str, pd.Timestamp, pd.Timestamp], ...] = ()

    def kept(self, gone: np.ndarray, cleared: tuple[tuple[str, pd.Timestamp, pd.Timestamp], ...]) -> StoredTable:
        """This table with rows set aside and columns cleared."""
        return replace(self, gone=np.unique(np.asarray(gone, dtype=np.int64)), cleared=tuple(cleared))

    @property
    def n_kept(self) -> int:
        return self.n_rows - len(self.gone)

    def expressions(self, with_row: bool = False) -> list[str]:
        """`expr AS column` for every column (cleared ones read as missing when implausible)."""
        cleared = {column: (low, high) for column, low, high in self.cleared}
        out = [f"file_row_number AS {ROW}"] if with_row else []
        for column, expr in zip(self.columns, self.select):
            if column in cleared:
                expr = clear_sql(expr, *cleared[column])
            out.append(f"{expr} AS {ident(column)}")
        return out

    def register(self, con: duckdb.DuckDBPyConnection, view: str) -> None:
        """Create the view `view`: the kept rows in canonical form."""
        where = ""
        if len(self.gone):
            con.register(f"{view}_gone", pa.table({ROW: self.gone}))
            where = f" WHERE file_row_number NOT IN (SELECT {ROW} FROM {view}_gone)"
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {', '.join(self.expressions())} "
                    f"FROM {parquet_source(self.path)}{where}")

    def distinct(self, column: str) -> pd.Series:
        """The distinct non-missing values of one column among the kept rows (as text), by SQL."""
        con = database.connect()
        try:
            self.register(con, "t")
            values = con.execute(f"SELECT DISTINCT {ident(column)} FROM t WHERE {ident(column)} IS NOT NULL").df()
        finally:
            con.close()
        return values.iloc[:, 0].astype("str")

    def without(self, column: str, values: list[str]) -> StoredTable:
        """This table with the kept rows whose `column` (canonical) is one of `values` set aside too."""
        if not values:
            return self
        con = database.connect()
        try:
            con.register("dropped_values", pa.table({"v": pa.array(values, pa.string())}))
            expr = self.select[self.columns.index(column)]
            rows = con.execute(f"SELECT file_row_number FROM {parquet_source(self.path)} "
                               f"WHERE ({expr}) IN (SELECT v FROM dropped_values)").df().iloc[:, 0].to_numpy()
        finally:
            con.close()
        return replace(self, gone=np.union1d(self.gone, rows.astype(np.int64)))

    def column(self, column: str) -> pd.Series:
        """One column of the kept rows, in file order, as `frame()[column]` would give it."""
        expr = self.expressions()[self.columns.index(column)]
        con = database.connect()
        try:
            values = con.execute(f"SELECT {expr} FROM read_parquet({literal(str(self.path))})").df().iloc[:, 0]
        finally:
            con.close()
        if len(self.gone):
            values = values[np.isin(np.arange(len(values)), self.gone, invert=True)]
        kind = self.kinds.get(column)
        if kind in ("id", "label", "text"):
            values = values.astype("str")
        elif kind == "int":
            values = values.astype("Int64")
        return values.reset_index(drop=True).rename(column)

    def frame(self) -> pd.DataFrame:
        """The kept rows as a pandas frame in canonical form (index 0..n-1)."""
        frame = self.rows(None)
        return frame.reset_index(drop=True)

    def rows(self, positions: np.ndarray | None, cleared: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Rows of the file in canonical form, indexed by file position.

        `positions`: which (None: the kept rows); `cleared`: the columns to clear (None: this
        table's cleared columns).
        """
        if positions is None:
            frame = self._canonical(read_raw(self.path))
            if len(self.gone):
                frame = frame[np.isin(np.arange(len(frame)), self.gone, invert=True)]
        else:
            positions = np.asarray(positions, dtype=np.int64)
            frame = self._canonical(read_rows(self.path, positions))
            frame.index = positions
        ranges = {column: (low, high) for column, low, high in self.cleared}
        for column in (ranges if cleared is None else cleared):
            low, high = ranges[column]
            values = frame[column]
            frame = frame.assign(**{column: values.mask((values < low) | (values >= high))})
        return frame

    def _canonical(self, raw: pd.DataFrame) -> pd.DataFrame:
        frame = parsing.parse_frame(raw, self.kinds, self.timezone)
        if self.name == "orders" and "status" in frame:
            frame = frame.assign(status=statuses.canonical(frame["status"], self.statuses)[0])
        return frame


def read_rows(path: Path, positions: np.ndarray) -> pd.DataFrame:
    """Some rows of a Parquet file (0-based positions, ascending) as `pandas.read_parquet` reads them.

    Only the row groups holding them are read; the rows go through a small in-memory Parquet
    file so that pandas converts them exactly as it converts the whole file.
    """
    parquet = pq.ParquetFile(path)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    group = np.searchsorted(starts, positions, side="right") - 1
    needed = np.unique(group)
    offset = dict(zip(needed.tolist(), np.concatenate([[0], np.cumsum([sizes[g] for g in needed])])[:-1].tolist()))
    local = positions - starts[group] + np.array([offset[g] for g in group.tolist()], dtype=np.int64)
    if len(needed):
        table = parquet.read_row_groups(needed.tolist()).take(pa.array(local))
    else:
        table = parquet.schema_arrow.empty_table()
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    return pd.read_parquet(buffer)
