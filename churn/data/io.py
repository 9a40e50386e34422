"""Reading data directories and writing outputs atomically."""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from churn import faults

SUFFIXES = (".parquet", ".csv")


def table_path(data_dir: str | Path, name: str) -> Path | None:
    """Return the file holding table `name` in `data_dir` (Parquet preferred), or None."""
    for suffix in SUFFIXES:
        path = Path(data_dir) / f"{name}{suffix}"
        if path.exists():
            return path
    return None


class NoFinalNewline(ValueError):
    """A CSV table file whose last byte is not a line end: probably cut short (see `read_raw`)."""

    def __init__(self, name: str, rows: int):
        where = f"data row {rows}" if rows else "the header"
        super().__init__(
            f"{name}: the file does not end with a newline, so it is probably truncated: its last line "
            f"({where}) may be cut short (a copy, download or export that stopped early), and a number cut "
            f"short still reads as a number. Copy or export the file again; if it is complete and only lacks "
            f"the final line break, add one (e.g. `echo >> {name}`, or open and save it in a text editor) "
            f"and run again")
        self.rows = rows


def ends_with_newline(f: BinaryIO) -> bool:
    """True when a binary file's last byte ends a line (\\n, or \\r alone), or the file is empty."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return True
    f.seek(size - 1)
    return f.read(1) in (b"\n", b"\r")


def read_raw(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file as it is; CSV columns all come in as text for validation.

    Raises ValueError naming the first line that is not UTF-8 (e.g. a file Excel saved as
    Windows-1252), and `NoFinalNewline` for a CSV file whose last line has no line break: every
    writer ends a CSV file with one, so a file without it was most likely cut short while copied.
    """
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None
    with open(path, "rb") as f:
        if not ends_with_newline(f):
            raise NoFinalNewline(path.name, len(frame))
    return frame


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


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a staging directory that replaces `target` whole on success, and vanishes on error.

    Readers see either the old directory or the new one, never a half-written mix (see
    `replace_dir`). The staging directory is `.<name>.staging-<random>` beside the target.
    """
    target = Path(target)
    staging = new_staging_dir(target)
    try:
        yield staging
        fsync_tree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, target)


def new_staging_dir(target: Path) -> Path:
    """A new, empty, uniquely named directory `.<name>.staging-<random>` beside `target`.

    Created with the process's umask (readable like any output directory; `mkdtemp` would make it private).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    return staging


def replace_dir(staging: Path, target: Path) -> None:
    """Put directory `staging` where `target` is (a directory, a stray file, or nothing), then delete the old one.

    On Linux the two are exchanged in one step (renameat2 with RENAME_EXCHANGE), so that `target`
    always exists for a reader: the old contents end up under the staging name and are deleted.
    Elsewhere (or on a file system without it) the old `target` is first renamed to
    `.<name>.old-<random>`, leaving an instant without `target`; after a crash there, the
    caller's recovery step finishes the swap (`churn.publish.publication.recover`).
    Fault points: "old set aside" (second way only), "files swapped", "old removed".
    """
    if target.is_dir() and not target.is_symlink() and _exchange(staging, target):
        faults.point("files swapped")
        shutil.rmtree(staging)  # the old contents, now under the staging name
    else:
        old = None
        if os.path.lexists(target):
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
            os.rename(target, old)
            faults.point("old set aside")
        os.rename(staging, target)
        faults.point("files swapped")
        if old is not None:
            remove_path(old)
    fsync_dir(target.parent)
    faults.point("old removed")


def remove_path(path: Path) -> None:
    """Delete a directory tree, a file or a symlink (nothing if absent)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def fsync_tree(directory: Path) -> None:
    """Flush every file under `directory`, and the directories, to disk (a power cut keeps them whole)."""
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            _fsync(path, os.O_RDONLY)
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (renames, new files) to disk; a no-op where directories cannot be opened."""
    if sys.platform != "win32":
        _fsync(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """glibc's renameat2, or None (not Linux, or a C library without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system or file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))
