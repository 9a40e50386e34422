"""Errors a user can hit: each message says what is wrong and what to do."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class ChurnError(Exception):
    """Base class of the errors a user can fix; the CLI prints them without a traceback."""


class ConfigError(ChurnError):
    """The configuration file is missing, malformed or has a bad value."""


class ContractError(ChurnError):
    """A data directory breaks the data contract (file, column, rule, offending rows)."""


class DataError(ChurnError):
    """The data cannot support the requested operation (e.g. too little history for a split)."""


class ModelNotFoundError(ChurnError):
    """No trained model where one was expected."""


class QualityError(DataError):
    """The data-quality gate failed (freshness, volume or schema): nothing was published."""


class NothingToMeasure(DataError):
    """No win-back list has reached the end of its horizon window yet: nothing to measure, not a fault."""


class MemoryBudgetError(ChurnError):
    """DuckDB ran out of the memory budget the settings give it (`[engine] duckdb_memory_limit`)."""


class OutputError(ChurnError):
    """An output cannot be written: a full disk, a read-only or locked place, a file where a directory should be."""


# What the operating system's refusals to write mean for the person running churn.
_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "a file is in the way",
    errno.EISDIR: "a directory is in the way",
}


def output_error(err: OSError, place: object, doing: str = "write") -> OutputError | None:
    """The OutputError for an OSError met while writing under `place`, or None when it is not the environment's.

    A full disk, a read-only or unwritable place, or a file where a directory should be is for
    the operator to fix; anything else (a path our code got wrong) stays a bug.
    """
    problem = _WRITE_PROBLEMS.get(err.errno)
    if problem is None:
        return None
    where = err.filename or place
    return OutputError(f"cannot {doing} {where}: {problem}. Free space, fix the permissions or choose another "
                       f"directory, then rerun; outputs published before are unchanged")


@contextmanager
def writing_to(place: object) -> Iterator[None]:
    """Within this block, an OSError from the environment (see `output_error`) becomes an OutputError."""
    try:
        yield
    except OSError as err:
        mapped = output_error(err, place)
        if mapped is None:
            raise
        raise mapped from err
