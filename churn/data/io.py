"""Reading data directories and writing outputs atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

SUFFIXES = (".parquet", ".csv")


def table_path(data_dir: str | Path, name: str) -> Path | None:
    """Return the file holding table `name` in `data_dir` (Parquet preferred), or None."""
    for suffix in SUFFIXES:
        path = Path(data_dir) / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def read_raw(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file as it is; CSV columns all come in as text for validation.

    Raises ValueError naming the first line that is not UTF-8 (e.g. a file Excel saved as
    Windows-1252).
    """
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None


def _not_utf8(path: Path) -> str:
    """Where a CSV stops being UTF-8: the first bad line, character and byte (the decoder only knows a chunk offset)."""
    with open(path, "rb") as f:
        if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            return "the file is UTF-16, not UTF-8; save it as UTF-8 (in Excel: \"CSV UTF-8\")"
        f.seek(0)
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                try:
                    line.decode("cp1252")
                    guess = ", probably saved as Windows-1252 (Excel's plain \"CSV\")"
                except UnicodeDecodeError:
                    guess = ""
                where = "line 1, the header," if number == 1 else f"line {number}, data row {number - 1},"
                return (f"{where} is not UTF-8: byte 0x{line[err.start]:02x} at character "
                        f"{len(line[:err.start].decode('utf-8')) + 1}{guess}; save the file as UTF-8 "
                        f"(in Excel: \"CSV UTF-8\")")
    return "not UTF-8; save the file as UTF-8"


def write_tables(tables: Mapping[str, pd.DataFrame], out_dir: str | Path, fmt: str = "parquet") -> dict[str, Path]:
    """Write each frame as `<out_dir>/<name>.<fmt>` (fmt: parquet or csv); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in tables.items():
        path = out / f"{name}.{fmt}"
        for other in SUFFIXES:  # a stale twin in the other format would shadow or confuse
            (out / f"{name}{other}").unlink(missing_ok=True)
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        elif fmt == "csv":
            frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        else:
            raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
        paths[name] = path
    return paths


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through a temporary file beside it, renamed over it: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a small table as CSV (4 decimals), atomically."""
    _replace_atomically(Path(path), lambda tmp: frame.to_csv(tmp, index=False, float_format="%.4f"))


def write_json(obj: Any, path: str | Path) -> None:
    """Write JSON with sorted keys and a trailing newline (stable across reruns), atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    _replace_atomically(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a staging directory that replaces `target` whole on success, and vanishes on error.

    Readers see either the old directory or the new one, never a half-written mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    # mkdtemp makes the directory owner-only (0700); the published one must be readable as the
    # umask allows (a team share), like any directory mkdir would make.
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
