"""The Dask engine: the same per-customer code, run per customer partition on a Dask cluster.

A data directory (a local path or an fsspec URL) is split once per data fingerprint into K
partitions by a stable hash of customer id (`churn.data.partitions`), written as Parquet by the
workers. Every per-customer step then runs on each partition with the library's own functions,
the partition's data staying in the workers' memory between steps:

- validation: `contract.validate_tables` on each partition (its rows quote their file rows);
  what spans customers stays global: order ids unique across partitions, an empty orders file;
- features: `FeatureBuilder` on each partition with the event types of all partitions; the RFM
  quintiles, which rank a customer among the whole population, are re-ranked globally
  (`churn.engine.ranks`, exact);
- scores: `scoring.score` per partition; the value tier ranked globally;
- lists: `winback.candidates` per partition with the drivers' thresholds of all partitions; each
  partition sends its shortlist, and `winback.assign` fills the lists from their union in EV order
  (capacity is global; holdout, cooldown and suppressions are per customer, as locally);
- training: snapshots (features and labels) per partition, then `xgboost.dask` on the cluster or
  the snapshots gathered to one worker (`churn.engine.training`).

The driver (this process) holds only what is global and small: counts, thresholds, shortlists,
the contacts and suppressions tables, and the scored customers for publishing (one
scores.parquet and the warehouse, as the local engine writes them).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import logging
import operator
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from distributed import Future

from churn.config import Config, ContractConfig, EngineConfig, QualityConfig, WinbackConfig
from churn.data import contract, database, parsing, partitions
from churn.data.io import NoFinalNewline, ends_with_newline
from churn.data.partitions import PART, ROW, PartitionedFiles
from churn.decide import quality, scoring, winback
from churn.engine import ranks
from churn.errors import ContractError
from churn.features.engine import FeatureBuilder

__all__ = ["DaskEngine", "PartitionedData"]

log = logging.getLogger(__name__)

CSV_BLOCK = "64MB"  # CSV files are read in blocks of this size (Parquet by row groups)
# Above this many files (input blocks x partitions), rows are shuffled by partition first, so that
# each partition gets one file per table instead of one per input block.
MAX_PIECES = 20_000
QUARANTINE_ROW = "file_row"


@dataclass
class PartitionedData:
    """A validated data directory split into partitions: per-partition data sets kept on the workers.

    `parts` are futures of `contract.Dataset`s (one per partition); `summary` is a `contract.Dataset`
    with what is global and small, for the manifest, the warehouse and the publication: the
    fingerprints, row counts and quarantined rows of all partitions, the contacts and the
    suppressions (its `orders` is None: the orders stay on the workers).
    """

    parts: list[Any]
    summary: contract.Dataset
    event_types: list[str]
    files: PartitionedFiles
    reused: bool = False
    checked: list[Any] = field(default_factory=list)  # futures of each partition's validation

    @property
    def fingerprints(self) -> dict[str, str]:
        return self.summary.fingerprints

    @property
    def row_counts(self) -> dict[str, int]:
        return self.summary.row_counts


@dataclass
class _Validated:
    """One partition after validation: its data set, or its problems; the rows it kept per table."""

    dataset: contract.Dataset | None
    problems: list[str]
    kept_rows: dict[str, np.ndarray] = field(default_factory=dict)


class DaskEngine:
    """Runs the per-customer steps on a Dask cluster through a `distributed.Client`."""

    def __init__(self, client: Any, config: EngineConfig, storage: str, storage_options: dict | None = None):
        self.client, self.config, self.storage = client, config, storage
        self.storage_options = dict(storage_options or {})

    @property
    def k(self) -> int:
        return self.config.partitions

    @classmethod
    @contextmanager
    def open(cls, config: EngineConfig, storage: str, client: Any = None) -> Iterator[DaskEngine]:
        """An engine on `client`, on the scheduler at `config.scheduler`, or on a LocalCluster started here.

        The workers import the library once at the start (several seconds each), so that the
        first step's timing is its own.
        """
        from distributed import Client, LocalCluster

        if client is not None:
            yield cls(client, config, storage).warm()
            return
        if config.scheduler:
            with Client(config.scheduler) as connected:
                yield cls(connected, config, storage).warm()
            return
        # The cluster's own start and stop chatter (INFO, and a nanny's "still alive, killing" on close).
        logging.getLogger("distributed").setLevel(logging.WARNING)
        for chatty in ("distributed.nanny", "distributed.shuffle"):
            logging.getLogger(chatty).setLevel(logging.ERROR)
        workers = config.workers or os.cpu_count() or 1
        memory = config.memory_per_worker if config.memory_per_worker != "auto" else "auto"
        with LocalCluster(n_workers=workers, threads_per_worker=config.threads_per_worker, processes=True,
                          memory_limit=memory, dashboard_address=None, silence_logs=logging.WARNING) as cluster, \
                Client(cluster) as started:
            yield cls(started, config, storage).warm()

    def warm(self) -> DaskEngine:
        """Import the engine's modules on every worker (and nothing else: never Prefect), and give each
        worker's DuckDB sessions the configured budget (`[engine] duckdb_memory_limit`, sized on the
        worker's own machine when it is a share or "auto")."""
        self.client.run(importlib.import_module, "churn.engine.training")
        self.client.run(database.set_budget, self.config.duckdb_memory_limit)
        return self

    # --- running on the partitions -------------------------------------------------------------

    def map(self, fn: Callable[..., Any], *items: Sequence[Any], **kwargs: Any) -> list[Any]:
        """Futures of `fn(*item, **kwargs)` for each item of the zipped `items` (results stay on the workers)."""
        # Futures among the keywords (a shipped model) go through `Client.map`, which resolves them on the
        # worker; other keywords travel inside the function (Client.map would put a large one in the
        # graph under the keyword's own name, and two maps at once would collide on it).
        futures = {k: v for k, v in kwargs.items() if isinstance(v, Future)}
        plain = {k: v for k, v in kwargs.items() if k not in futures}
        return self.client.map(functools.partial(fn, **plain), *[list(i) for i in items], pure=False, **futures)

    def gather(self, futures: Sequence[Any]) -> list[Any]:
        return self.client.gather(list(futures))

    def mapper(self, parts: Sequence[Any]) -> ranks.Mapper:
        """A `ranks.Mapper` over `parts`: run a function on every partition, gather the (small) results."""
        return lambda fn, **kwargs: self.gather(self.map(fn, parts, **kwargs))

    def ship(self, obj: Any) -> Any:
        """`obj` sent once to every worker (a model, a table of past listings): a future to pass to `map`."""
        # In a list of one: `scatter` would send each item of a set, list or dict as a future of its own.
        return self.client.scatter([obj], broadcast=True, hash=False)[0]

    # --- validation ----------------------------------------------------------------------------

    def load(self, data_dir: str, policy: Config | ContractConfig) -> PartitionedData:
        """Validate `data_dir` per partition (partitioning it first, once per data fingerprint).

        Raises ContractError with every partition's problems (file rows as in the input files) and
        the global ones; nothing is written but the partitions themselves.
        """
        tables = partitions.table_urls(str(data_dir), self.storage_options)
        digests = self.gather(self.map(_sha256, list(tables.values()), storage_options=self.storage_options))
        fingerprints = dict(zip(tables, digests))
        root = partitions.join(self.storage, partitions.partition_key(fingerprints, self.k))
        files = PartitionedFiles.open(root, self.storage_options)
        reused = files is not None
        if files is None:
            files = self._write_partitions(tables, root)
        checked = self.map(_validate_partition, range(self.k), files=files, policy=policy)
        summaries = self.gather(self.map(_summary, checked))
        problems = _unique([p for s in summaries for p in s["problems"]])
        if files.rows.get("orders", 1) == 0:
            problems.insert(0, f"{files.tables['orders']}: no data rows")
        elif not problems and sum(s["row_counts"].get("orders", 0) for s in summaries) == 0:
            reasons = pd.concat([s["quarantine"]["orders"] for s in summaries])["reason"].value_counts()
            why = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
            problems.append(f"{files.tables['orders']}: all {files.rows['orders']} rows were set aside ({why}): "
                            f"nothing is left to work with; see the quarantine, fix the file or the [contract] policy")
        duplicates = self._duplicate_order_ids([c for c, s in zip(checked, summaries) if not s["problems"]], files)
        if duplicates:  # after the orders file's own problems, as the contract orders its checks
            orders_file = files.tables["orders"] + ":"
            at = max((i + 1 for i, p in enumerate(problems) if p.startswith(orders_file)), default=0)
            problems[at:at] = duplicates
        if problems:
            raise ContractError("\n".join(problems))
        parts = self.map(_dataset_of, checked)
        return PartitionedData(parts, _summary_dataset(summaries, fingerprints, files),
                               sorted({t for s in summaries for t in s["event_types"]}), files, reused, checked)

    def dataset(self, data: PartitionedData) -> contract.Dataset:
        """The validated partitions gathered here as one `contract.Dataset`, rows in file order.

        What `contract.validate` returns for the whole directory (the tests hold it so), for the
        steps that need all customers at once in one process (the training job, see docs/scale.md).
        """
        tables = self.gather(self.map(_numbered_tables, data.checked))
        summary = data.summary
        frames = {}
        for name in [n for n in contract.TABLES if any(n in t for t in tables)]:
            frame = pd.concat([t[name] for t in tables if name in t], ignore_index=True)
            frames[name] = frame.sort_values(ROW, kind="stable").drop(columns=[ROW]).reset_index(drop=True)
        return contract.Dataset(**frames, quarantine=summary.quarantine, fingerprints=summary.fingerprints,
                                row_counts=summary.row_counts, unmatched=summary.unmatched, sources=summary.sources,
                                cleared=summary.cleared, contact_details=summary.contact_details)

    def check_not_after(self, data: PartitionedData, last_day: object) -> None:
        """`contract.check_not_after` on every partition (quoting file rows); one ContractError for all."""
        found = [p for part in self.gather(self.map(_not_after, data.checked, last_day=last_day)) for p in part]
        if found:
            raise ContractError("\n".join(found) + "\nfix these dates at the source: data cannot come from the future")

    # --- the daily run's steps -----------------------------------------------------------------

    def latest_order(self, data: PartitionedData, run_date: object) -> str | None:
        """The day of the latest order on or before D, over all partitions (`quality.latest_order`)."""
        found = [d for d in self.gather(self.map(quality.latest_order, data.parts, run_date=run_date)) if d]
        return max(found) if found else None

    def check_freshness(self, data: PartitionedData, run_date: object, config: QualityConfig) -> None:
        """`quality.check_freshness` on the latest order of all partitions (the same message)."""
        latest = self.latest_order(data, run_date)
        orders = pd.DataFrame({"order_ts": pd.to_datetime([] if latest is None else [latest])})
        quality.check_freshness(contract.Dataset(orders=orders), run_date, config)

    def quality_figures(self, data: PartitionedData, run_date: object, n_scored: int,
                        config: QualityConfig) -> dict[str, Any]:
        """`quality.figures` of all partitions: the latest order, the orders in the window (summed)."""
        each = self.gather(self.map(quality.figures, data.parts, run_date=str(run_date), n_scored=0, config=config))
        latest = [f["latest_order"] for f in each if f["latest_order"]]
        return {"latest_order": max(latest) if latest else None,
                "orders_window": int(sum(f["orders_window"] for f in each)), "n_scored": int(n_scored),
                "table_schema": each[0]["table_schema"]}

    def features(self, data: PartitionedData, cutoffs: Sequence[object], lookback_days: int) -> list[Any]:
        """Futures of each partition's features at the cutoffs, the RFM scores ranked among all partitions."""
        feats = self.map(_features, data.parts, cutoffs=[pd.Timestamp(c) for c in cutoffs],
                         lookback_days=lookback_days, event_types=data.event_types,
                         threads=self.config.threads_per_worker)
        return self.rank_rfm(feats, cutoffs)

    def rank_rfm(self, feats: list[Any], cutoffs: Sequence[object]) -> list[Any]:
        """Futures of the frames with r_score, f_score, m_score (and what uses them) ranked globally."""
        thresholds = ranks.rfm_thresholds(self.mapper(feats), [pd.Timestamp(c).normalize() for c in cutoffs])
        return self.map(ranks.apply_rfm_scores, feats, thresholds=thresholds)

    def count(self, frames: list[Any]) -> int:
        return int(sum(self.gather(self.map(len, frames))))

    def score(self, feats: list[Any], model: Any, config: Config) -> list[Any]:
        """Futures of each partition's scores (`scoring.score`, no reasons), the value tier ranked globally."""
        scores = self.map(scoring.score, feats, model=self.ship(model), config=config, explain=False)
        _, starts = ranks.value_tier_threshold(self.mapper(scores), config.score.value_tier_cuts)
        return self.map(ranks.apply_value_tier, scores, starts=starts)

    def candidates(self, data: PartitionedData, scores: list[Any], config: WinbackConfig, run_date: object,
                   last_listed: pd.Series, uplift: Any, suppressed: set[str], uplift_model: Any = None
                   ) -> tuple[pd.DataFrame, dict[str, float], set[str]]:
        """The scored customers who may make the lists, from every partition's EV shortlist.

        Returns their score rows (sorted by customer id), the drivers' thresholds of all partitions,
        and the actions that some partition cut short (see `winback.shortlisted`).
        """
        cuts = ranks.global_quantiles(self.mapper(scores), ranks.quantile_specs(),
                                      {"price": config.price_quantile, "variety": config.variety_quantile})
        got = self.gather(self.map(_candidates, scores, config=config, run_date=run_date,
                                   last_listed=self.ship(last_listed), uplift=uplift, cuts=cuts, everything=False,
                                   suppressed=self.ship(suppressed), uplift_model=self.ship(uplift_model)))
        rows = pd.concat([g[0] for g in got]).sort_values("customer_id", ignore_index=True)
        return rows, cuts, set().union(*[g[1] for g in got])

    def all_candidates(self, data: PartitionedData, scores: list[Any], config: WinbackConfig, run_date: object,
                       last_listed: pd.Series, uplift: Any, cuts: dict[str, float], suppressed: set[str],
                       uplift_model: Any = None) -> pd.DataFrame:
        """Every scored customer with a positive-EV action (when a shortlist was not enough)."""
        got = self.gather(self.map(_candidates, scores, config=config, run_date=run_date,
                                   last_listed=self.ship(last_listed), uplift=uplift, cuts=cuts, everything=True,
                                   suppressed=self.ship(suppressed), uplift_model=self.ship(uplift_model)))
        return pd.concat([g[0] for g in got]).sort_values("customer_id", ignore_index=True)

    def collect(self, frames: list[Any], by: str | list[str] = "customer_id") -> pd.DataFrame:
        """The partitions' frames in one, sorted by `by` (as the local engine orders them)."""
        return pd.concat(self.gather(frames)).sort_values(by, kind="stable", ignore_index=True)

    def _write_partitions(self, tables: dict[str, str], root: str) -> PartitionedFiles:
        """Split every table by customer partition and write it under `root` (see churn.data.partitions)."""
        import dask.dataframe as dd

        fs, path = fsspec.core.url_to_fs(root, **self.storage_options)
        if fs.exists(path):  # an earlier attempt that did not finish
            fs.rm(path, recursive=True)
        frames, rows = {}, {}
        for name, url in tables.items():
            try:
                frames[name], rows[name] = _numbered(url, self.storage_options)
            except NoFinalNewline as err:
                raise ContractError(str(err)) from None
            except (OSError, ValueError, UnicodeDecodeError) as err:  # as the contract reports an unreadable file
                raise ContractError(f"{url.rstrip('/').rsplit('/', 1)[-1]}: cannot be read ({err})") from None
        for name, frame in frames.items():
            if "customer_id" in frame.columns:
                frames[name] = frame.assign(**{PART: frame["customer_id"].map_partitions(
                    _parts_of, self.k, meta=(PART, "int32"))})
        items, orders = frames.get("order_items"), frames.get("orders")
        if items is not None and "order_id" in items.columns and orders is not None and "order_id" in orders.columns:
            keys = orders[["order_id", PART]].map_partitions(_id_key, meta={"_key": "str", PART: "int32"})
            keyed = items.map_partitions(_with_key, meta={**items._meta.dtypes.to_dict(), "_key": "str"})
            joined = keyed.merge(keys.drop_duplicates(subset="_key"), on="_key", how="left")
            frames["order_items"] = joined.map_partitions(_orphans_by_order, self.k,
                                                          meta={**items._meta.dtypes.to_dict(), PART: "int32"})
        for name, frame in frames.items():
            if PART not in frame.columns:  # no customer_id column: validation says so, in partition 0
                frame = frame.assign(**{PART: np.int32(0)})
            if frame.npartitions * self.k > MAX_PIECES:
                frame = frame.shuffle(on=PART, npartitions=self.k)
            target = partitions.join(root, name)
            frame.to_parquet(target, partition_on=[PART], write_index=False, write_metadata_file=False,
                             storage_options=self.storage_options)
            schema = frame._meta.drop(columns=[PART])
            with fsspec.open(partitions.join(target, partitions.SCHEMA), "wb", **self.storage_options) as f:
                schema.to_parquet(f, index=False)
        sources = {name: url.rstrip("/").rsplit("/", 1)[-1] for name, url in tables.items()}
        log.info("partitioned %s into %d partitions at %s", ", ".join(sources.values()), self.k, root)
        return PartitionedFiles.seal(root, self.k, sources, rows, self.storage_options)

    def _duplicate_order_ids(self, checked: list[Any], files: PartitionedFiles) -> list[str]:
        """Order ids that two partitions both hold (two customers' orders), as the contract words it.

        Each partition hashes its order ids (64 bits) into `buckets` by the hash's top bits; one
        task per bucket finds the hashes that occur twice (8 bytes per order move, not the ids);
        the partitions then send the few rows behind those hashes, compared as text.
        """
        if not checked:
            return []
        buckets = max(1, self.k)
        hashed = self.map(_order_id_hashes, checked, buckets=buckets)
        pieces = [[self.client.submit(operator.getitem, h, b, pure=False) for h in hashed] for b in range(buckets)]
        repeated = self.gather([self.client.submit(_repeated, *bucket, pure=False) for bucket in pieces])
        suspects = np.concatenate(repeated) if repeated else np.empty(0, dtype=np.uint64)
        if not len(suspects):
            return []
        found = pd.concat(self.gather(self.map(_rows_of_orders, checked, hashes=suspects)), ignore_index=True)
        found = found[found["order_id"].duplicated(keep=False)].sort_values(ROW, kind="stable")
        if found.empty:  # distinct ids that share a 64-bit hash
            return []
        shown = found.head(5)
        more = ", ..." if len(found) > 5 else ""
        detail = ("row " if len(found) == 1 else "rows ") + ", ".join(str(r + 1) for r in shown[ROW]) + more
        detail += ": " + ", ".join(repr(v) for v in shown["order_id"]) + more
        return [f"{files.tables['orders']}: column order_id: {len(found)} rows with a duplicate order_id ({detail})"]


# --- tasks (run on the workers; module-level functions so that they pickle by reference) -----------


def _sha256(url: str, storage_options: dict) -> str:
    """SHA-256 of a file's bytes: the same fingerprint as the local engine's."""
    digest = hashlib.sha256()
    with fsspec.open(url, "rb", **storage_options) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _numbered(url: str, storage_options: dict) -> tuple[Any, int]:
    """A table file as a Dask frame read the way the contract reads it, with each row's file position."""
    import dask
    import dask.dataframe as dd

    if url.endswith(".parquet"):
        frame = dd.read_parquet(url, storage_options=storage_options)
    else:
        frame = dd.read_csv(url, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8",
                            blocksize=CSV_BLOCK, storage_options=storage_options)
    lengths = dask.compute(*[dask.delayed(len)(block) for block in frame.to_delayed()])
    if not url.endswith(".parquet"):  # as the contract reads a CSV file (churn.data.io.read_raw)
        with fsspec.open(url, "rb", **storage_options) as f:
            if not ends_with_newline(f):
                raise NoFinalNewline(url.rstrip("/").rsplit("/", 1)[-1], int(sum(lengths)))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    meta = frame._meta.assign(**{ROW: np.int64(0)}).iloc[:0]
    blocks = [dask.delayed(_with_rows)(block, int(offset)) for block, offset in zip(frame.to_delayed(), offsets)]
    return dd.from_delayed(blocks, meta=meta), int(sum(lengths))


def _with_rows(block: pd.DataFrame, offset: int) -> pd.DataFrame:
    return block.assign(**{ROW: np.arange(offset, offset + len(block), dtype=np.int64)})


def _parts_of(customer_ids: pd.Series, k: int) -> pd.Series:
    return pd.Series(partitions.partition_of(customer_ids, k), index=customer_ids.index, name=PART)


def _id_key(frame: pd.DataFrame) -> pd.DataFrame:
    """An order id as the contract reads ids (text, stripped), for matching items to their order."""
    return pd.DataFrame({"_key": parsing.cells(frame["order_id"]), PART: frame[PART].to_numpy()})


def _with_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(_key=parsing.cells(frame["order_id"]))


def _orphans_by_order(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Items whose order is not in orders go to their order id's partition (validation reports them there)."""
    part = np.array(frame[PART], dtype="float64")  # a copy: the column may be read-only
    missing = np.isnan(part)
    if missing.any():
        part[missing] = partitions.partition_of(frame.loc[missing, "order_id"], k)
    return frame.drop(columns=["_key"]).assign(**{PART: part.astype(np.int32)})


def _validate_partition(part: int, files: PartitionedFiles, policy: Config | ContractConfig) -> _Validated:
    """Run the contract on one partition; its problems are returned, not raised, to be reported together."""
    tables, rows = {}, {}
    for name in files.tables:
        tables[name], rows[name] = partitions.read_partition(files, name, part)
    try:
        dataset = contract.validate_tables(tables, policy, source=files.tables, file_rows=rows)
    except ContractError as err:
        return _Validated(None, str(err).splitlines())
    kept = {}
    for name, r in rows.items():
        set_aside = dataset.quarantine.get(name)
        kept[name] = r if set_aside is None else np.setdiff1d(r, set_aside[QUARANTINE_ROW].to_numpy() - 1)
    return _Validated(dataset, [], kept)


def _summary(checked: _Validated) -> dict[str, Any]:
    """What the driver needs of a partition: problems, counts, quarantine, contacts, suppressions, event types."""
    ds = checked.dataset
    if ds is None:
        return {"problems": checked.problems, "event_types": []}
    def numbered(name: str) -> pd.DataFrame | None:
        frame = getattr(ds, name)
        return None if frame is None else frame.assign(**{ROW: checked.kept_rows[name]})

    events = [] if ds.events is None else list(ds.events["event_type"].dropna().unique())
    return {"problems": [], "row_counts": ds.row_counts, "quarantine": ds.quarantine, "contacts": numbered("contacts"),
            "suppressions": numbered("suppressions"), "event_types": events, "unmatched": ds.unmatched,
            "cleared": ds.cleared, "contact_details": ds.contact_details}


def _features(dataset: contract.Dataset, cutoffs: list[pd.Timestamp], lookback_days: int,
              event_types: list[str], threads: int) -> pd.DataFrame:
    """One partition's features (`FeatureBuilder`, the event types of all partitions)."""
    builder = FeatureBuilder(dataset, lookback_days, event_types=event_types)
    builder.con.execute(f"SET threads = {int(threads)}")  # a worker's share of the machine
    return builder.build(cutoffs)


def _candidates(scores: pd.DataFrame, config: WinbackConfig, run_date: object, last_listed: pd.Series,
                uplift: Any, cuts: dict[str, float], everything: bool, suppressed: set[str],
                uplift_model: Any) -> tuple[pd.DataFrame, set[str]]:
    """One partition's customers with an EV-positive action on the shortlist (all of them with `everything`).

    `suppressed`: the data's and the warehouse's; `uplift_model`: the learnt per-customer uplift (or None).
    """
    from churn.decide import uplift as uplift_models

    learned = (None if uplift_model is None else
               uplift_models.per_customer(uplift_model, scores, uplift, config, cuts))
    pairs = winback.candidates(scores, suppressed, config, run_date, last_listed, uplift, positive_only=True,
                               customer_uplift=learned, cuts=cuts)
    if everything:
        keep, dropped = np.ones(len(pairs), dtype=bool), set()
    else:
        keep, dropped = winback.shortlisted(pairs, config)
    return scores.iloc[np.unique(pairs["row"].to_numpy()[keep])], dropped


def _dataset_of(checked: _Validated) -> contract.Dataset:
    return checked.dataset


def _hashes(ids: pd.Series) -> np.ndarray:
    return pd.util.hash_pandas_object(ids, index=False).to_numpy(dtype=np.uint64)


def _order_id_hashes(checked: _Validated, buckets: int) -> list[np.ndarray]:
    """The partition's order id hashes, sorted, split into `buckets` by their top bits."""
    h = np.sort(_hashes(checked.dataset.orders["order_id"]))
    edges = np.searchsorted(h, (np.arange(1, buckets, dtype=np.float64) * (2.0**64 / buckets)).astype(np.uint64))
    return np.split(h, edges)


def _repeated(*pieces: np.ndarray) -> np.ndarray:
    """Hashes that occur more than once across the partitions' pieces of one bucket."""
    h = np.sort(np.concatenate(pieces)) if pieces else np.empty(0, dtype=np.uint64)
    return np.unique(h[1:][h[1:] == h[:-1]])


def _rows_of_orders(checked: _Validated, hashes: np.ndarray) -> pd.DataFrame:
    """The partition's orders whose id hash is among `hashes`: the id and its file row."""
    ids = checked.dataset.orders["order_id"]
    hit = np.isin(_hashes(ids), hashes)
    return pd.DataFrame({"order_id": ids.astype("str").to_numpy()[hit], ROW: checked.kept_rows["orders"][hit]})


def _unique(lines: list[str]) -> list[str]:
    """Problems in first-seen order, each once (a missing column shows in every partition)."""
    return list(dict.fromkeys(lines))


def _numbered_tables(checked: _Validated) -> dict[str, pd.DataFrame]:
    """The partition's validated tables, each row with its file row (to restore the file's order)."""
    return {name: frame.assign(**{ROW: checked.kept_rows[name]}) for name, frame in checked.dataset.tables().items()}


def _not_after(checked: _Validated, last_day: object) -> list[str]:
    """`contract.check_not_after` on one partition, quoting the input file's rows."""
    ds = checked.dataset
    end = pd.Timestamp(last_day).normalize() + pd.Timedelta(days=1)
    problems = []
    for name, frame in ds.tables().items():
        if name == "suppressions":
            continue
        for column in contract.TABLES[name].columns:
            if column.kind not in ("timestamp", "date") or column.name not in frame:
                continue
            later = (frame[column.name] >= end).to_numpy()
            if later.any():
                rows = checked.kept_rows[name][later]
                problems.append(contract._rows(ds.sources.get(name, name), column.name, rows,
                                               f"after {end.date() - pd.Timedelta(days=1)}, the day of the run",
                                               pd.Series(frame.loc[later, column.name].to_numpy(), index=rows)))
    return problems


def _merged_unmatched(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per table, the partitions' unmatched ids added up (a customer is in one partition)."""
    out = {}
    for name in [n for n in contract.TABLES if any(n in s["unmatched"] for s in summaries)]:
        parts = [s["unmatched"][name] for s in summaries if name in s["unmatched"]]
        first = tuple(i for p in parts for i in p.first_ids)[:contract._SHOWN]
        out[name] = dataclasses.replace(parts[0], rows=sum(p.rows for p in parts),
                                        customers=sum(p.customers for p in parts), first_ids=first)
    return out


def _summary_dataset(summaries: list[dict[str, Any]], fingerprints: dict[str, str],
                     files: PartitionedFiles) -> contract.Dataset:
    """The global, small part of a partitioned data set, as a `contract.Dataset` without orders."""
    tables = list(summaries[0]["row_counts"])
    counts = {name: int(sum(s["row_counts"].get(name, 0) for s in summaries)) for name in tables}
    quarantine = {}
    for name in [n for n in contract.TABLES if any(n in s["quarantine"] for s in summaries)]:
        parts = [s["quarantine"][name] for s in summaries if name in s["quarantine"]]
        quarantine[name] = pd.concat(parts).sort_values(QUARANTINE_ROW, kind="stable").reset_index(drop=True)

    def stacked(name: str) -> pd.DataFrame | None:
        """A small table of every partition, in file order."""
        parts = [s[name] for s in summaries if s[name] is not None]
        if not parts:
            return None
        frame = pd.concat(parts, ignore_index=True)
        return frame.sort_values(ROW, kind="stable").drop(columns=[ROW]).reset_index(drop=True)

    cleared: dict[str, dict[str, int]] = {}
    contact: dict[str, dict[str, int]] = {}
    for s in summaries:
        for total, key in ((cleared, "cleared"), (contact, "contact_details")):
            for name, columns in s[key].items():
                for column, n in columns.items():
                    total.setdefault(name, {})[column] = total.get(name, {}).get(column, 0) + n
    return contract.Dataset(orders=None, contacts=stacked("contacts"), suppressions=stacked("suppressions"),
                            quarantine=quarantine, unmatched=_merged_unmatched(summaries), sources=dict(files.tables),
                            cleared=cleared, contact_details=contact,
                            fingerprints=fingerprints, row_counts=counts)
