"""Customer partitions: a data directory split by a stable hash of customer id, for the Dask engine.

Partition `p` of K holds every row about the customers whose `stable_share(customer_id)` lies
in [p / K, (p + 1) / K): their orders, events, contacts, suppressions and customer record, and
the order_items of their orders. So every per-customer step (validation rules, features, labels,
scores, reasons) sees a customer's whole history in one partition, and runs there with the same
code as on the whole data; a partition is a small data set of its own.

On storage (a local path or an fsspec URL every worker can read: file://, s3://, gs://, memory://)
the partitions of one data version live under a key made of the input files' fingerprints and K,
so they are written once per data fingerprint and reused while the files stay the same:

    <root>/<key>/<table>/_part=<p>/part.<n>.parquet   one directory per table and partition
    <root>/<key>/<table>/_schema.parquet              the table's columns (for an empty partition)
    <root>/<key>/_manifest.json                       written last: the partitioning is complete

Each row keeps `_row`, its 0-based position in the input file, so that validation messages and
the quarantine quote the same file rows as the local engine. Rows are in file order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from churn.data import contract, parsing
from churn.data.hashing import stable_shares
from churn.data.io import SUFFIXES
from churn.errors import ContractError

__all__ = ["PART", "ROW", "FORMAT_VERSION", "PartitionedFiles", "partition_of", "partition_key", "join",
           "read_partition", "table_urls"]

PART, ROW = "_part", "_row"
# Part of the key: a change to the layout or to the partition function writes new partitions.
FORMAT_VERSION = 1
MANIFEST = "_manifest.json"
SCHEMA = "_schema.parquet"


def partition_of(customer_ids: pd.Series | np.ndarray, k: int) -> np.ndarray:
    """The partition (0..k-1) of each customer id: floor(stable_share(id) x k), the same on every machine.

    Hashes each distinct id once (an id's orders share its hash). A missing id gets partition 0:
    validation there reports it like the local engine does.
    """
    codes, uniques = pd.factorize(parsing.cells(pd.Series(customer_ids)), use_na_sentinel=True)  # ids as the contract reads them
    parts = np.minimum((stable_shares(uniques) * k).astype(np.int32), k - 1)
    out = np.zeros(len(codes), dtype=np.int32)
    known = codes >= 0
    out[known] = parts[codes[known]]
    return out


def partition_key(fingerprints: Mapping[str, str], k: int) -> str:
    """The storage key of a data version's partitions: its files' fingerprints, K and the layout version."""
    recipe = json.dumps({"fingerprints": dict(sorted(fingerprints.items())), "k": k, "format": FORMAT_VERSION},
                        sort_keys=True)
    return f"k{k}-{hashlib.sha256(recipe.encode()).hexdigest()[:24]}"


def join(root: str, *parts: str) -> str:
    """A path under `root` (a local path or an fsspec URL), with '/' separators."""
    return "/".join([root.rstrip("/"), *parts])


@dataclass(frozen=True)
class PartitionedFiles:
    """Where one data version's partitions are, and what the manifest says about them.

    `tables`: per table, the input file's name (e.g. orders.csv), quoted in validation messages;
    `rows`: per table, the rows in the input file.
    """

    root: str
    k: int
    tables: dict[str, str]
    rows: dict[str, int]
    storage_options: dict[str, Any]

    def table_dir(self, table: str) -> str:
        return join(self.root, table)

    @classmethod
    def open(cls, root: str, storage_options: Mapping[str, Any] | None = None) -> PartitionedFiles | None:
        """The partitions under `root` if they were completely written, else None."""
        fs, path = fsspec.core.url_to_fs(join(root, MANIFEST), **dict(storage_options or {}))
        if not fs.exists(path):
            return None
        with fs.open(path, "r") as f:
            manifest = json.load(f)
        return cls(root, manifest["k"], manifest["tables"], manifest["rows"], dict(storage_options or {}))

    @staticmethod
    def seal(root: str, k: int, tables: Mapping[str, str], rows: Mapping[str, int],
             storage_options: Mapping[str, Any] | None = None) -> PartitionedFiles:
        """Write the manifest (last: from then on the partitions are complete) and return them."""
        fs, path = fsspec.core.url_to_fs(join(root, MANIFEST), **dict(storage_options or {}))
        with fs.open(path, "w") as f:
            json.dump({"k": k, "tables": dict(tables), "rows": dict(rows), "format": FORMAT_VERSION}, f,
                      sort_keys=True)
        return PartitionedFiles(root, k, dict(tables), dict(rows), dict(storage_options or {}))


def table_urls(data_dir: str, storage_options: dict) -> dict[str, str]:
    """The table files of a data directory, as the contract finds them (Parquet preferred to CSV)."""
    fs, root = fsspec.core.url_to_fs(data_dir, **storage_options)
    if not fs.isdir(root):
        raise ContractError(f"{data_dir}: data directory not found")
    found = {}
    for name, spec in contract.TABLES.items():
        for suffix in SUFFIXES:
            url = join(data_dir, f"{name}{suffix}")
            if fs.exists(join(root, f"{name}{suffix}")):
                found[name] = url
                break
        else:
            if spec.required:
                looked_for = ", ".join(f"{name}{suffix}" for suffix in SUFFIXES)
                raise ContractError(f"{name}: file not found in {data_dir} (looked for {looked_for})")
    return found


def read_partition(files: PartitionedFiles, table: str, part: int) -> tuple[pd.DataFrame, np.ndarray]:
    """One table's rows in partition `part`, in file order, and their 0-based rows in the input file.

    The frame has the input file's columns (as the local engine reads them); an empty partition
    gives an empty frame with those columns.
    """
    fs, path = fsspec.core.url_to_fs(join(files.table_dir(table), f"{PART}={part}"), **files.storage_options)
    pieces = sorted(fs.glob(path + "/*.parquet")) if fs.exists(path) else []
    if pieces:
        frame = pd.concat([_read_parquet(fs, p) for p in pieces], ignore_index=True)
    else:
        frame = _read_parquet(fs, fsspec.core.url_to_fs(join(files.table_dir(table), SCHEMA),
                                                        **files.storage_options)[1])
    if len(pieces) > 1:
        frame = frame.sort_values(ROW, kind="stable", ignore_index=True)
    rows = frame.pop(ROW).to_numpy(dtype=np.int64)
    return frame.drop(columns=[PART], errors="ignore"), rows


def _read_parquet(fs: fsspec.AbstractFileSystem, path: str) -> pd.DataFrame:
    with fs.open(path, "rb") as f:
        return pd.read_parquet(f)
