"""The pipeline: one plain function per job, calling the stages in order.

Every face calls these and nothing else: the command line (in-process), the Prefect flows
(which only add scheduling, retries and observability by passing a step `runner`), and the
benchmarks. Each function takes typed arguments (a `RunDate`, paths, the `Config`), runs named
steps (each timed and logged as one line, see `churn.progress.Steps`), reports progress
through the optional callback, and returns a typed result.

    score_day         validate, features, quality gate, score, lists with reasons, publish
    train_model       validate, fit, backtest, promotion gate, register
    backtest          out-of-time evaluation of the model and the baselines
    measure_outcomes  win-back rates of published lists, treated vs holdout; learned uplift
    backfill          score_day for every date of a range that is not published yet
    import_contacts   the team's filled-in lists back into the warehouse; "do not contact" suppresses
    forget            erase customers from everything written under OUT, and never score them again

Errors a user can fix are `churn.errors.ChurnError`s, raised before anything is written.

Every job that writes the output root (score, backfill, outcomes, contacts import, forget)
holds its lock (`churn.publish.lock`) for the whole job, validation included, and first finishes
or removes what a dead run left there (`churn.publish.publication.recover`). A daily run
publishes with one commit point: files staged, history committed, files swapped in (see `_publish`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn import faults
from churn.config import Config
from churn.data import contract, database, spelling
from churn.data.io import write_csv
from churn.decide import outcomes, quality, scoring, uplift, winback
from churn.engine import PARTITIONS_DIR, open_engine
from churn.errors import DataError, ModelNotFoundError, writing_to
from churn.features.cache import FeatureCache, features_key
from churn.features.engine import FeatureBuilder
from churn.model import backtest as evaluation
from churn.model import registry, training
from churn.model.classifier import ChurnModel
from churn.progress import Progress, StepRunner, Steps, notify, run_log
from churn.publish import alerts, erasure, files, lock, manifest, publication, warehouse
from churn.types import RunDate

if TYPE_CHECKING:
    from churn.engine.dask import DaskEngine, PartitionedData

__all__ = ["ScoreResult", "TrainResult", "OutcomesResult", "BackfillResult", "SCORE_STEPS", "TRAIN_STEPS",
           "load_dataset", "ValidatedData", "score_day", "train_model", "backtest", "measure_outcomes", "backfill",
           "published", "feature_cache", "import_contacts", "ContactsImport", "forget", "ForgetResult"]

SCORE_STEPS = ("validate", "features", "quality", "score", "lists", "publish")
TRAIN_STEPS = ("validate", "fit", "backtest", "gate", "register")
CACHE_DIR = Path(".cache") / "features"  # under the output root


@dataclass(frozen=True)
class ScoreResult:
    """A published daily run: its manifest (as in OUT/D/manifest.json) and where it was published."""

    manifest: dict[str, Any]
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {**self.manifest, "path": str(self.path)}


@dataclass(frozen=True)
class TrainResult:
    """A registered model: its metadata (as in models/<version>/metadata.json) and its directory."""

    metadata: dict[str, Any]
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {**self.metadata, "path": str(self.path)}


@dataclass(frozen=True)
class OutcomesResult:
    """One measurement of the published lists, and the summary file written."""

    measured: outcomes.Measured
    summary_csv: Path
    uplift_model: uplift.UpliftModel | None = None  # learnt per customer; None while too few were treated


@dataclass(frozen=True)
class BackfillResult:
    """The dates a backfill scored, the ones it skipped as already published, and the ones it published by
    finishing what a stopped run had committed (not scored again)."""

    scored: list[str]
    skipped: list[str]
    recovered: list[str] = dataclasses.field(default_factory=list)


# --- shared steps ------------------------------------------------------------------------------


def _within_budget(job: Callable[..., Any]) -> Callable[..., Any]:
    """Run a job (a function with a `config` argument) inside its DuckDB memory budget.

    Every DuckDB session the job opens gets `[engine] duckdb_memory_limit`, and running out of it
    is a MemoryBudgetError saying to raise that setting (`churn.data.database.budget`), raised
    before anything is published, like any other ChurnError.
    """
    signature = inspect.signature(job)

    @functools.wraps(job)
    def run(*args: Any, **kwargs: Any) -> Any:
        config = signature.bind(*args, **kwargs).arguments["config"]
        with database.budget(config.engine.duckdb_memory_limit):
            return job(*args, **kwargs)

    return run


def load_dataset(data_dir: str | Path, config: Config) -> contract.Dataset:
    """Read and validate the data directory (raises ContractError naming file, column and rows)."""
    return contract.validate(data_dir, config)


def _check_today(dataset: contract.Dataset, today: RunDate | None) -> None:
    """Refuse data dated after the day the run happens (when the caller says which day that is)."""
    if today is not None:
        contract.check_not_after(dataset, today)


def _use_threads(model: object, config: Config) -> None:
    """A loaded booster scores and explains with `model.n_jobs` threads (XGBoost's default is every core)."""
    if isinstance(model, ChurnModel):
        model.use_threads(config.model.n_jobs)


def _warn_unmatched(dataset: contract.Dataset) -> None:
    """Say loudly when suppressions name no known customer: they still apply, but may be misspelt ids."""
    found = dataset.unmatched.get("suppressions")
    if found is not None and found.rows:
        run_log.warning("suppressions: %d rows (%d customer ids) match no known customer; they still apply. "
                        "If the ids are spelt otherwise than in the orders, fix the file: `churn validate` "
                        "lists the first ones", found.rows, found.customers)


def _table_counts(dataset: contract.Dataset) -> str:
    return ", ".join(f"{name} {n} rows" for name, n in dataset.row_counts.items())


def feature_cache(out_dir: str | Path, config: Config) -> FeatureCache:
    """The feature cache of an output root: `OUT/.cache/features`, sized by `[cache]`."""
    return FeatureCache(Path(out_dir) / CACHE_DIR, config.cache.feature_days, config.cache.feature_max_gb * 1e9)


# --- daily scoring -----------------------------------------------------------------------------


def _features(dataset: contract.Dataset, run_date: RunDate, config: Config,
              cache: FeatureCache, forgotten: str = "") -> tuple[pd.DataFrame, bool]:
    """Features of every customer in the population as of D, and whether they came from the cache.

    `forgotten` is the suppression store's version: features computed before a customer was
    erased must not be read back.
    """
    fingerprints = {**dataset.fingerprints, "forgotten": forgotten} if forgotten else dataset.fingerprints
    key = features_key(fingerprints, run_date, config) if dataset.fingerprints else None
    frame = cache.get(key)
    if frame is not None:
        return frame, True
    # The fast engine sums money exactly (integers), so a rerun publishes the same bytes on any
    # number of threads.
    frame = FeatureBuilder(dataset, config.data.lookback_days).build([run_date.timestamp])
    if frame.empty:
        raise DataError(f"no customer bought in the {config.data.lookback_days} days up to {run_date}: "
                        f"is the data directory current?")
    cache.put(key, frame)
    return frame, False


def _quality(dataset: contract.Dataset, n_population: int, run_date: RunDate, history: warehouse.History,
             config: Config) -> dict[str, Any]:
    """The data-quality gate: freshness, volume against the previous run, schema. Raises when it fails."""
    measured = quality.figures(dataset, str(run_date), n_population, config.quality)
    return {**measured, "passed": quality.check(measured, str(run_date), history.previous_run, config.quality)}


def suppressed_ids(dataset: contract.Dataset, history: warehouse.History | None = None) -> set[str]:
    """Customers who must never be listed: the data's suppressions table and the warehouse's
    (customers the team marked "do not contact again", see `import_contacts`)."""
    ours = set() if dataset.suppressions is None else set(dataset.suppressions["customer_id"].astype(str))
    return ours | (history.suppressed if history is not None else set())


@dataclass(frozen=True)
class Lists:
    """The day's decisions: scores with reasons, the customers taken, the team's lists, and the funnel."""

    scores: pd.DataFrame
    taken: pd.DataFrame
    lists: dict[str, pd.DataFrame]
    funnel: dict[str, dict[str, Any]]


def _lists(scores: pd.DataFrame, model: ChurnModel, suppressed: set[str], history: warehouse.History,
           run_date: RunDate, config: Config) -> Lists:
    """EV policy, reasons for the customers taken, the per-action lists, and what kept each list short.

    Once `churn outcomes` has learnt a per-customer uplift model from the holdout, EV uses it
    (shrunk to the segment estimates by sample size), else the segment uplift.
    """
    learned = (None if history.uplift_model is None else
               uplift.per_customer(history.uplift_model, scores, history.uplift, config.winback))
    taken = winback.assign(scores, suppressed, config.winback, run_date, history.last_listed, history.uplift,
                           customer_uplift=learned)
    scores = scoring.add_reasons(scores, model, taken["customer_id"], config.business.currency)
    reasons = scores.set_index("customer_id").loc[taken["customer_id"], scoring.REASON_COLUMNS]
    taken[scoring.REASON_COLUMNS] = reasons.to_numpy()
    funnel = winback.funnel(scores, suppressed, config.winback, taken, run_date, history.last_listed, history.uplift,
                            learned)
    return Lists(scores, taken, winback.service_lists(taken, run_date, config.winback, config.business.currency),
                 funnel)


def _offers(taken: pd.DataFrame) -> dict[str, pd.Series]:
    """Each list's offer values, in list order (treated customers)."""
    treated = taken[taken["arm"] == "treated"]
    return {action: treated.loc[treated["action"] == action, "offer_value"].reset_index(drop=True)
            for action in treated["action"].unique()}


def _publish(out_dir: Path, run: dict[str, Any], scores: pd.DataFrame, taken: pd.DataFrame,
             lists: dict[str, pd.DataFrame], run_manifest: dict[str, Any], dataset: contract.Dataset,
             config: Config) -> publication.Staged:
    """Publish D: stage OUT/D/'s files, commit D's history with their token (the commit point), swap them in."""
    day = run["run_date"]
    return publication.publish(
        out_dir, day, lambda directory: files.write_outputs(directory, day, scores, lists, run_manifest,
                                                            dataset.quarantine, config.business.currency,
                                                            _offers(taken)),
        run_manifest, lambda token: warehouse.write_run(warehouse.path_in(out_dir), {**run, "publication": token},
                                                        scores, taken, dataset.contacts))


@_within_budget
def score_day(data_dir: str | Path, run_date: RunDate, out_dir: str | Path, models_dir: str | Path,
              config: Config, progress: Progress | None = None, runner: StepRunner | None = None,
              dataset: contract.Dataset | None = None, today: RunDate | None = None,
              engine: DaskEngine | None = None) -> ScoreResult:
    """Score every customer as of the end of `run_date`, gate the data, publish the win-back lists and history.

    Writes OUT/D/ (scores.parquet, winback.xlsx, winback_<action>.csv, crm_import.csv,
    manifest.json) and D's rows of OUT/warehouse.duckdb, all or nothing. Raises ContractError,
    QualityError, DataError or ModelNotFoundError (nothing written) for problems the user must
    fix. `dataset`: `data_dir` already validated (a caller scoring several dates in one process,
    see `ValidatedData`). `today`: the day the run happens (the clock, read by the caller): data
    dated after it cannot be real and stops the run (`contract.check_not_after`). `engine` (a
    `churn.engine` Dask engine) runs the per-customer steps per partition; with none and
    `[engine] kind = "dask"`, one is opened for this run (see `_score_day_partitioned`).
    """
    if engine is None and config.engine.kind == "dask":
        with open_engine(config.engine, out_dir) as engine:
            return score_day(data_dir, run_date, out_dir, models_dir, config, progress, runner, dataset, today, engine)
    if engine is not None:
        return _score_day_partitioned(data_dir, run_date, out_dir, models_dir, config, engine, progress, runner,
                                      today)
    out_dir = Path(out_dir)
    lock.check_output_root(out_dir)
    # The whole job under the output lock, validation included: a second run is refused (or waits)
    # from the first run's start, not only once it reads the history (cooldowns) to publish.
    with publication.held_root(out_dir, f"score {run_date}", config.output.lock_wait_seconds):
        steps = Steps(f"score {run_date}", SCORE_STEPS, progress, runner)
        given = dataset is not None
        if dataset is None:
            dataset = steps.run("validate", load_dataset, data_dir, config, io=True)
        _check_today(dataset, today)
        steps.run("freshness", quality.check_freshness, dataset, run_date, config.quality)
        steps.done("validate", _table_counts(dataset) + (" (validated once by the caller)" if given else ""))
        _warn_unmatched(dataset)
        model, meta = steps.run("load model", registry.load, models_dir, io=True)
        _use_threads(model, config)
        config = config.with_horizon(meta["horizon_days"])
        # Customers who asked to be forgotten leave the data before anything is computed.
        store = erasure.Store(out_dir)
        dataset, n_forgotten = erasure.without(dataset, store)
        history = steps.run("read history", warehouse.history, warehouse.path_in(out_dir), run_date,
                            dataset.contacts, config.winback, io=True)
        feats, cached = steps.run("features", _features, dataset, run_date, config, feature_cache(out_dir, config),
                                  store.version())
        steps.done("features", f"{len(feats)} customers in the population" + (", from the cache" if cached else ""))
        gate = steps.run("quality", _quality, dataset, len(feats), run_date, history, config)
        steps.done("quality", "checks passed")
        scores = steps.run("score", scoring.score, feats, model, config, False)
        steps.done("score", f"{len(scores)} customers scored with model {meta['version']}")
        suppressed = suppressed_ids(dataset, history)
        made = steps.run("lists", _lists, scores, model, suppressed, history, run_date, config)
        return _publish_day(steps, out_dir, run_date, meta, dataset, gate, made, history, suppressed, n_forgotten,
                            config)


def _score_day_partitioned(data_dir: str | Path, run_date: RunDate, out_dir: str | Path, models_dir: str | Path,
                           config: Config, engine: DaskEngine, progress: Progress | None = None,
                           runner: StepRunner | None = None, today: RunDate | None = None) -> ScoreResult:
    """`score_day` on the Dask engine: the same steps, each per customer partition where it is per customer.

    Validation, features, scores and the lists' candidates run on the partitions; the quality
    gate, the fill of the lists (capacity is global), reasons for the customers taken, the
    manifest and the publication run here on their global results, with the local functions. The
    outputs are those of the local engine (tests/engine). Features are not cached (the partitions are).
    """
    out_dir = Path(out_dir)
    lock.check_output_root(out_dir)
    # As in score_day: the whole job under the output lock (the partitions are written under OUT too).
    with publication.held_root(out_dir, f"score {run_date}", config.output.lock_wait_seconds):
        steps = Steps(f"score {run_date}", SCORE_STEPS, progress, runner)
        data = steps.run("validate", engine.load, str(data_dir), config, io=True)
        if today is not None:
            engine.check_not_after(data, today)
        steps.run("freshness", engine.check_freshness, data, run_date, config.quality)
        dataset = data.summary  # what is global and small: counts, quarantine, contacts, suppressions
        steps.done("validate", _table_counts(dataset) + f"; {engine.k} partitions"
                               + (" (reused: files unchanged)" if data.reused else " written"))
        _warn_unmatched(dataset)
        model, meta = steps.run("load model", registry.load, models_dir, io=True)
        _use_threads(model, config)
        config = config.with_horizon(meta["horizon_days"])
        store = erasure.Store(out_dir)
        dataset, _ = erasure.without(dataset, store)  # the global part: contacts, suppressions, quarantine
        history = steps.run("read history", warehouse.history, warehouse.path_in(out_dir), run_date,
                            dataset.contacts, config.winback, io=True)
        feats = steps.run("features", engine.features, data, [run_date.timestamp], config.data.lookback_days)
        n_population = engine.count(feats)
        if n_population == 0:
            raise DataError(f"no customer bought in the {config.data.lookback_days} days up to {run_date}: "
                            f"is the data directory current?")
        steps.done("features", f"{n_population} customers in the population, {engine.k} partitions")
        measured = steps.run("quality", engine.quality_figures, data, run_date, n_population, config.quality)
        gate = {**measured, "passed": quality.check(measured, str(run_date), history.previous_run, config.quality)}
        steps.done("quality", "checks passed")
        parts = steps.run("score", engine.score, feats, model, config)
        steps.done("score", f"{n_population} customers scored with model {meta['version']}")
        suppressed = suppressed_ids(dataset, history)
        made = steps.run("lists", _lists_partitioned, engine, data, parts, model, suppressed, history, run_date,
                         config)
        # The partitions hold the source data: customers erased from it are taken out here (the
        # lists filled again without them), before anything is published.
        forgotten = store.forgotten_among(made.scores["customer_id"]) if store.version() else set()
        if forgotten:
            made = _lists_partitioned(engine, data, parts, model, suppressed | forgotten, history, run_date, config)
            made = dataclasses.replace(made, scores=made.scores[~made.scores["customer_id"].isin(forgotten)])
        return _publish_day(steps, out_dir, run_date, meta, dataset, gate, made, history, suppressed, len(forgotten),
                            config)


def _publish_day(steps: Steps, out_dir: str | Path, run_date: RunDate, meta: dict[str, Any],
                 dataset: contract.Dataset, gate: dict[str, Any], made: Lists, history: warehouse.History,
                 suppressed: set[str], n_forgotten: int, config: Config) -> ScoreResult:
    """The daily run's end on either engine: the manifest, the warehouse row, and the publish step."""
    scores, taken, lists = made.scores, made.taken, made.lists
    steps.done("lists", "; ".join(f"{action} {made.funnel[action]['blocked']}" for action in lists))
    run_manifest = manifest.run_manifest(run_date, meta, dataset, gate, scores, taken, lists, history,
                                         suppressed, config, made.funnel)
    run_manifest["forgotten_excluded"] = n_forgotten  # a count: the store holds hashes, never ids
    run = manifest.warehouse_run(run_manifest, gate, config)
    run_manifest["timings_seconds"] = dict(steps.timings)
    kept = manifest.assignments_for_history(taken, history, run_date, config)
    staged = steps.run("publish", _publish, out_dir, run, scores, kept, lists, run_manifest, dataset, config,
                       io=True)
    steps.done("publish", f"published to {staged.target}")
    return ScoreResult(staged.manifest, staged.target)


def _lists_partitioned(engine: DaskEngine, data: PartitionedData, parts: list, model: ChurnModel,
                       suppressed: set[str], history: warehouse.History, run_date: RunDate, config: Config) -> Lists:
    """`_lists` from the partitions' shortlists: the same customers taken, in the same EV order.

    Each partition finds its EV-positive candidates (with the drivers' thresholds and, once learnt,
    the per-customer uplift computed over all partitions) and sends its shortlist; the fill runs
    here on their union. When a list that some partition cut short is not full, every partition
    sends all its candidates and the fill is redone (as `winback.assign` does on one machine).
    The funnel and the reasons use the scored customers gathered for the publication.
    """
    w = config.winback
    rows, cuts, cut_short = engine.candidates(data, parts, w, run_date, history.last_listed, history.uplift,
                                              suppressed, history.uplift_model)

    def taken_from(candidates: pd.DataFrame) -> pd.DataFrame:
        learned = (None if history.uplift_model is None else
                   uplift.per_customer(history.uplift_model, candidates, history.uplift, w, cuts))
        return winback.assign(candidates, suppressed, w, run_date, history.last_listed, history.uplift,
                              customer_uplift=learned, cuts=cuts)

    scores = engine.collect(parts)
    if any(winback.exploration_slots(w).values()):
        # Exploration draws among every candidate, whatever its EV, and its selection probability
        # counts them all: the partitions' EV shortlists cannot hold them, so assign on everyone.
        taken = taken_from(scores)
    else:
        taken = taken_from(rows)
        treated = taken.loc[taken["arm"] == "treated", "action"].value_counts()
        if any(treated.get(a, 0) < w.capacity.get(a, 0) for a in cut_short):
            taken = taken_from(engine.all_candidates(data, parts, w, run_date, history.last_listed, history.uplift,
                                                     cuts, suppressed, history.uplift_model))
    learned = (None if history.uplift_model is None else
               uplift.per_customer(history.uplift_model, scores, history.uplift, w, cuts))
    scores = scoring.add_reasons(scores, model, taken["customer_id"], config.business.currency)
    reasons = scores.set_index("customer_id").loc[taken["customer_id"], scoring.REASON_COLUMNS]
    taken[scoring.REASON_COLUMNS] = reasons.to_numpy()
    funnel = winback.funnel(scores, suppressed, w, taken, run_date, history.last_listed, history.uplift, learned,
                            cuts)
    return Lists(scores, taken, winback.service_lists(taken, run_date, w, config.business.currency), funnel)


class ValidatedData:
    """A data directory validated once and reused while its files stay the same.

    A backfill scores many dates from the same files: validating (and hashing) them again for
    every date would repeat the same work. Each file's identity is noted at validation: its name,
    size, inode, modification time and status-change time (to the nanosecond); when any of them
    differs, the directory is validated again (and every file hashed again: the fingerprints stay
    full SHA-256 hashes of the bytes). A tool can give a new file the old one's size and
    modification time (`cp -p`, `touch -r`, `rsync -t`), but not its status-change time, which
    the kernel sets on every write, rename or `utime` call; a file replaced by a rename also has
    another inode.
    """

    def __init__(self, data_dir: str | Path, config: Config):
        self.data_dir, self.config = Path(data_dir), config
        self._stamp: tuple | None = None
        self._dataset: contract.Dataset | None = None
        self.reused = False

    def _files(self) -> tuple:
        if not self.data_dir.is_dir():
            return ()
        stats = ((p.name, p.stat()) for p in self.data_dir.iterdir() if p.is_file())
        return tuple(sorted((name, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns) for name, st in stats))

    def dataset(self) -> contract.Dataset:
        """The validated data set: from memory when the files are unchanged, else validated now."""
        stamp = self._files()
        self.reused = self._dataset is not None and stamp == self._stamp
        if not self.reused:
            self._dataset = load_dataset(self.data_dir, self.config)
            self._stamp = stamp
        return self._dataset


def published(out_dir: str | Path, run_date: RunDate) -> bool:
    """True when OUT/D/ and D's history hold the same complete publication (see `churn.publish.publication`)."""
    return publication.is_published(out_dir, run_date, warehouse.publications(warehouse.path_in(out_dir)))


@_within_budget
def backfill(data_dir: str | Path, start: RunDate, end: RunDate, out_dir: str | Path, models_dir: str | Path,
             config: Config, force: bool = False, progress: Progress | None = None,
             score: Callable[[RunDate], Any] | None = None, today: RunDate | None = None,
             engine: DaskEngine | None = None) -> BackfillResult:
    """Score every date from `start` to `end` (included), one idempotent `score_day` per date.

    Resumable: dates already published are skipped unless `force`, so rerunning after a failure
    picks up where it stopped. `score` replaces `score_day` for one date (a flow passes its
    tracked run); `progress` hears of each date. `engine`: one Dask engine for every date (with
    none and `[engine] kind = "dask"`, one is opened for the whole backfill).
    """
    if end < start:
        raise DataError(f"backfill: --end {end} is before --start {start}")
    if score is None and engine is None and config.engine.kind == "dask":
        with open_engine(config.engine, out_dir) as engine:
            return backfill(data_dir, start, end, out_dir, models_dir, config, force, progress, score, today, engine)
    validated = ValidatedData(data_dir, config)
    if engine is not None:  # the Dask engine validates per partition (partitions reused while the files stay)
        score = score or (lambda day: score_day(data_dir, day, out_dir, models_dir, config, today=today,
                                                engine=engine))
    score = score or (lambda day: score_day(data_dir, day, out_dir, models_dir, config, dataset=validated.dataset(),
                                            today=today))
    days = [start.days(i) for i in range((end - start).days + 1)]
    lock.check_output_root(Path(out_dir))
    before = {str(day) for day in days if published(out_dir, day)}
    # The whole backfill is one job under the output lock (each date's run holds it already, see
    # `lock.held`); taking it first finishes or removes what a dead run left (also when every date
    # turns out published): a date whose history was committed before a crash is published by that,
    # not scored again.
    with publication.held_root(out_dir, f"backfill {start}..{end}", config.output.lock_wait_seconds):
        recovered = [str(day) for day in days if str(day) not in before and published(out_dir, day)]
        scored, skipped = [], []
        for i, day in enumerate(days):
            notify(progress, f"scoring {day}", i, len(days))
            if not force and published(out_dir, day):
                skipped.append(str(day))
                continue
            score(day)
            scored.append(str(day))
    notify(progress, f"scored {len(scored)} dates, skipped {len(skipped)}", len(days), len(days))
    return BackfillResult(scored, [d for d in skipped if d not in recovered], recovered)


# --- erasure -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForgetResult:
    """What `forget` did, in counts (it never repeats the ids)."""

    n_customers: int
    n_new: int
    days_rewritten: list[str]
    rows_removed: int
    warehouse_rows: dict[str, int]
    alerts_scrubbed: int = 0
    model_files_quoting: list[str] = dataclasses.field(default_factory=list)  # should stay empty
    n_found: int = 0  # of n_customers, how many any published day or the warehouse held

    def to_dict(self) -> dict[str, Any]:
        return {"n_customers": self.n_customers, "n_found": self.n_found, "n_new": self.n_new,
                "days_rewritten": self.days_rewritten,
                "rows_removed": self.rows_removed, "warehouse_rows": self.warehouse_rows,
                "alerts_scrubbed": self.alerts_scrubbed, "model_files_quoting": self.model_files_quoting}


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _erase_day(out_dir: Path, day: str, ids: set[str]) -> tuple[publication.Staged, int, set[str]] | None:
    """Stage OUT/D/ without the ids' rows (manifest: the count of customers erased); with the rows removed and
    the ids found; None if D holds none."""
    source = out_dir / day
    found = erasure.found_in_day(source, ids)
    if not found:
        return None
    previous = json.loads((source / publication.MANIFEST).read_text(encoding="utf-8")) \
        if (source / publication.MANIFEST).is_file() else {"run_date": day}
    previous.pop("publication", None)
    later = {**previous, "erased_customers": int(previous.get("erased_customers", 0)) + len(found)}
    removed = []
    staged = publication.stage(out_dir, day, lambda d: removed.append(erasure.rewrite_day(source, d, ids, day)),
                               later)
    return staged, removed[0], found


@_within_budget
def forget(customer_ids: Iterable[str], out_dir: str | Path, models_dir: str | Path, config: Config) -> ForgetResult:
    """Erase customers from everything churn wrote under OUT, and keep them out of every later run.

    In order, under the output lock: their salted hashes go to the suppression store (from then
    on no run scores or lists them, even while the source data holds them); every published day
    that holds them is staged without their rows; the warehouse is rewritten without them, with
    the new days' tokens (the commit point); the days are swapped in; the feature cache is
    dropped; the ids are blanked out of failed runs' alerts. A kill part-way is finished by
    rerunning the same command. The result names any model file that quotes one of the ids (it
    never should: models keep no ids; churn does not edit a registered model).
    """
    # The written form the contract gives ids (whitespace stripped, `682.0` is `682`, leading zeros
    # kept): the outputs and the erasure store hold that form, so an id typed otherwise is the same customer.
    ids = {spelling.normal_id(str(cid)) for cid in customer_ids if str(cid).strip()}
    if not ids:
        raise DataError("no customer id given: name them, or give --file with one id per line")
    out_dir = Path(out_dir)
    lock.check_output_root(out_dir)
    with publication.held_root(out_dir, "forget", config.output.lock_wait_seconds), writing_to(out_dir):
        n_new = erasure.Store(out_dir).add(ids)
        path = warehouse.path_in(out_dir)
        committed = warehouse.publications(path)
        found = warehouse.holding(path, ids)
        days = sorted(p.name for p in out_dir.iterdir() if _DAY.match(p.name) and p.is_dir()) \
            if out_dir.is_dir() else []
        staged: dict[str, tuple[publication.Staged, int]] = {}
        try:
            for day in days:
                erased = _erase_day(out_dir, day, ids)
                if erased is None:
                    continue
                staged[day], found_on_day = erased[:2], erased[2]
                found |= found_on_day
                erased = staged[day]
                if day not in committed:  # files without history: no commit to wait for
                    publication.swap_in(erased[0])
            tokens = {day: s.token for day, (s, _) in staged.items() if day in committed}
            rows = warehouse.erase(path, ids, tokens)
        except BaseException:
            for s, _ in staged.values():
                publication.discard(s)  # (nothing left to discard for a day already swapped in)
            raise
        faults.point("history committed")
        for day, (s, _) in staged.items():
            if day in committed:
                publication.swap_in(s)
        # Every cached entry holds every customer of its day (features; the Dask engine's partitions,
        # under OUT, and under the models directory for training).
        shutil.rmtree(out_dir / CACHE_DIR.parent, ignore_errors=True)
        shutil.rmtree(Path(models_dir) / PARTITIONS_DIR, ignore_errors=True)
        n_alerts = erasure.scrub_alerts(out_dir / alerts.ALERTS_DIR, ids)
    in_models = [str(path) for path in erasure.quoted_in(models_dir, ids)]
    return ForgetResult(len(ids), n_new, sorted(staged), sum(n for _, n in staged.values()), rows, n_alerts,
                        in_models, len(found))


# --- training and evaluation -------------------------------------------------------------------


def _champion(models_dir: str | Path) -> tuple[Any, dict[str, Any]] | tuple[None, None]:
    """The champion model and its metadata, or (None, None) when there is none yet."""
    try:
        return registry.load(models_dir)
    except ModelNotFoundError:
        return None, None


def _register(result: training.TrainingResult, models_dir: str | Path, promoted: bool) -> Path:
    """Save the model under models/<version>/; point the champion at it if the gate promoted it."""
    registry.register(result.model, result.metadata, models_dir, make_champion=promoted)
    return Path(models_dir) / result.metadata["version"]


def _fit_counts(meta: dict[str, Any]) -> str:
    """The fit step's log line: model kind, as-of date, training rows and cutoffs, search and calibration."""
    split = meta["split"]
    line = (f"{meta['model_kind']} as of {meta['as_of']}, {meta['n_train']} training rows from "
            f"{len(split['train_cutoffs'])} cutoffs, validation cutoff {split['val_cutoff']}")
    if meta["model_kind"] == "xgboost":
        return (f"{line}, {meta['search_candidates']} candidates searched, {meta['best_iteration'] + 1} trees, "
                f"{meta['calibration']['method']} calibration")
    return f"{line} ({meta['fallback_reason']})"


def _backtest_counts(meta: dict[str, Any]) -> str:
    """The backtest step's log line: test cutoff, customers, churn rate and each model's ROC-AUC."""
    bt = meta.get("backtest")
    if not bt:
        return "none: the data cannot support one"
    aucs = ", ".join(f"{name} {m['roc_auc']:.3f}" for name, m in bt["models"].items() if m["roc_auc"] is not None)
    return (f"test cutoff {bt['test_cutoff']}, {bt['n_test']} customers, churn rate {bt['base_rate']:.1%}; "
            f"ROC-AUC {aucs}")


@_within_budget
def train_model(data_dir: str | Path, models_dir: str | Path, config: Config, as_of: RunDate | None = None,
                progress: Progress | None = None, runner: StepRunner | None = None,
                today: RunDate | None = None, engine: DaskEngine | None = None) -> TrainResult:
    """Train, backtest and register a churn model for the data in `data_dir`; the gate decides the champion.

    `as_of` (default: the day of the last order) is the day whose known labels train the model.
    Writes models/<version>/ and, when the gate promotes it, models/champion.json. `today`: the
    day the run happens; data dated after it stops the run (it would move the default as-of date).
    `engine`: as for `score_day` (the partitions are written under the models directory's .cache
    when `[engine] storage` is empty).
    """
    if engine is None and config.engine.kind == "dask":
        with open_engine(config.engine, Path(models_dir)) as engine:
            return train_model(data_dir, models_dir, config, as_of, progress, runner, today, engine)
    if engine is not None:
        return _train_model_partitioned(data_dir, models_dir, config, engine, as_of, progress, runner, today)
    steps = Steps(f"train h{config.data.horizon_days}", (), progress, runner)
    dataset = steps.run("validate", load_dataset, data_dir, config, io=True)
    _check_today(dataset, today)
    steps.done("validate", _table_counts(dataset))
    as_of = as_of or RunDate.parse(training.default_as_of(dataset))
    result = steps.run("fit", training.train, dataset, as_of.timestamp, config, False, progress)
    steps.done("fit", _fit_counts(result.metadata))
    result.metadata["backtest"] = steps.run("backtest", training.backtest_recipe, dataset, result.metadata, config,
                                            progress)
    steps.done("backtest", _backtest_counts(result.metadata))
    champion, champion_meta = steps.run("read champion", _champion, models_dir, io=True)
    gate = steps.run("gate", training.gate, dataset, result.metadata, champion, champion_meta, config)
    result.metadata["gate"] = gate
    steps.done("gate", f"{'champion' if gate['promoted'] else 'challenger'}: {gate['reason']}")
    path = steps.run("register", _register, result, models_dir, gate["promoted"], io=True)
    steps.done("register", f"model {result.metadata['version']} in {models_dir}")
    return TrainResult(result.metadata, path)


def _train_model_partitioned(data_dir: str | Path, models_dir: str | Path, config: Config, engine: DaskEngine,
                             as_of: RunDate | None = None, progress: Progress | None = None,
                             runner: StepRunner | None = None, today: RunDate | None = None) -> TrainResult:
    """`train_model` on the Dask engine: validation per partition, then the local training steps on the
    validated data gathered here (the same model, version, backtest and gate as the local engine).

    The training job's own steps (season check, served baseline, backtest, gate) need every
    customer's snapshots in one process; `churn.engine.training` builds them per partition and fits
    with `xgboost.dask` for data beyond one machine (docs/scale.md), not yet wired into this job.
    """
    steps = Steps(f"train h{config.data.horizon_days}", (), progress, runner)
    data = steps.run("validate", engine.load, str(data_dir), config, io=True)
    if today is not None:
        engine.check_not_after(data, today)
    dataset = steps.run("gather", engine.dataset, data)
    steps.done("validate", _table_counts(dataset) + f"; validated in {engine.k} partitions, gathered")
    as_of = as_of or RunDate.parse(training.default_as_of(dataset))
    result = steps.run("fit", training.train, dataset, as_of.timestamp, config, False, progress)
    steps.done("fit", _fit_counts(result.metadata))
    result.metadata["backtest"] = steps.run("backtest", training.backtest_recipe, dataset, result.metadata, config,
                                            progress)
    steps.done("backtest", _backtest_counts(result.metadata))
    champion, champion_meta = steps.run("read champion", _champion, models_dir, io=True)
    gate = steps.run("gate", training.gate, dataset, result.metadata, champion, champion_meta, config)
    result.metadata["gate"] = gate
    steps.done("gate", f"{'champion' if gate['promoted'] else 'challenger'}: {gate['reason']}")
    path = steps.run("register", _register, result, models_dir, gate["promoted"], io=True)
    steps.done("register", f"model {result.metadata['version']} in {models_dir}")
    return TrainResult(result.metadata, path)


@_within_budget
def backtest(data_dir: str | Path, test_cutoff: RunDate, config: Config,
             test_cutoffs: list[RunDate] | None = None, n_rolling: int = 1,
             progress: Progress | None = None) -> dict[str, Any]:
    """Out-of-time evaluation of the model and the baselines on the same split(s): the backtest report.

    With `test_cutoffs`, each is evaluated with its own split (the first is `test_cutoff`);
    otherwise `n_rolling` monthly test cutoffs ending at `test_cutoff`.
    """
    dataset = load_dataset(data_dir, config)
    cutoffs = None if test_cutoffs is None else [c.timestamp for c in [test_cutoff, *test_cutoffs]]
    return evaluation.backtest(dataset, test_cutoff.timestamp, config, test_cutoffs=cutoffs, n_rolling=n_rolling,
                               progress=progress)


# --- outcomes ----------------------------------------------------------------------------------


def _measure(dataset: contract.Dataset, out_dir: Path, config: Config) -> outcomes.Measured:
    path = warehouse.path_in(out_dir)
    return outcomes.measure(warehouse.read_table(path, "assignments"), warehouse.read_table(path, "runs"),
                            dataset.orders, warehouse.contacts_with_imports(path, dataset.contacts), config,
                            where=str(path))


def _learn_uplift(found: outcomes.Measured, out_dir: Path, config: Config) -> uplift.UpliftModel | None:
    """The per-customer uplift model learnt from the measured lists (their features as published that day)."""
    scores = {day: pd.read_parquet(out_dir / day / "scores.parquet") for day in found.list_dates
              if (out_dir / day / "scores.parquet").exists()}
    segment_uplift, _ = outcomes.uplift_for_run(found.estimates, config.winback)
    return uplift.learn(found.follow, scores, segment_uplift, config.winback, config.outcomes.learned_strength,
                        config.outcomes.max_selection_weight)


def _store_outcomes(found: outcomes.Measured, model: uplift.UpliftModel | None, out_dir: Path) -> Path:
    """Store outcomes, estimates and the uplift model in the warehouse (one transaction) and OUT/outcomes.csv."""
    with writing_to(out_dir):
        warehouse.write_outcomes(warehouse.path_in(out_dir), found.follow, found.estimates, model)
        write_csv(found.table, out_dir / "outcomes.csv")
    return out_dir / "outcomes.csv"


@_within_budget
def measure_outcomes(data_dir: str | Path, out_dir: str | Path, config: Config,
                     runner: StepRunner | None = None, dataset: contract.Dataset | None = None) -> OutcomesResult:
    """Measure every published list whose horizon window lies inside the data; store what it teaches.

    Raises NothingToMeasure while no list has come of age (a normal state for a new schedule).
    `dataset`: `data_dir` already validated.
    """
    out_dir = Path(out_dir)
    with publication.held_root(out_dir, "outcomes", config.output.lock_wait_seconds):  # the whole job
        steps = Steps("outcomes", (), None, runner)
        if dataset is None:
            dataset = steps.run("validate", load_dataset, data_dir, config, io=True)
        steps.done("validate", f"orders {len(dataset.orders)} rows")
        dataset, _ = erasure.without(dataset, erasure.Store(out_dir))
        found = steps.run("measure", _measure, dataset, out_dir, config, io=True)
        steps.done("measure", f"{len(found.follow)} listed customers, {len(found.list_dates)} list dates")
        model = steps.run("learn uplift", _learn_uplift, found, out_dir, config, io=True)
        steps.done("learn uplift", "no action has enough treated customers yet" if model is None else
                   "per-customer uplift learnt for " + ", ".join(f"{a} ({fit['n']} treated)"
                                                              for a, fit in model.treated.items()))
        csv = steps.run("write", _store_outcomes, found, model, out_dir, io=True)
        steps.done("write", "warehouse outcomes and uplift, outcomes.csv")
    return OutcomesResult(found, csv, model)



# --- the team's filled-in lists ----------------------------------------------------------------


@dataclass(frozen=True)
class ContactsImport:
    """What one import recorded: rows read, left blank, recorded per outcome, and new suppressions."""

    n_read: int
    n_blank: int
    n_recorded: int
    outcomes: dict[str, int]
    n_suppressed: int
    list_dates: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def import_contacts(path: str | Path, out_dir: str | Path) -> ContactsImport:
    """Read the team's filled-in list (winback.xlsx or winback_<action>.csv) into the warehouse.

    Every filled row is checked (choices, dates, consistent answers, a customer on that list);
    with any problem, a ContractError names every bad row and nothing is recorded. Otherwise the
    rows replace earlier imports of the same list date, customer and action in the `contacts`
    table (so importing a list again after more calls is safe), and "do not contact again"
    becomes a suppression at once: the next daily run will not list the customer, whatever the
    date. `churn outcomes` then reports the share of treated customers the team reached.
    """
    from churn.publish import contacts

    where = warehouse.path_in(out_dir)
    if not where.is_file():  # checked before the lock, which would create OUT and leave .churn.lock in it
        raise DataError(f"no win-back lists in {out_dir} (no {where.name} there): import into the output root the "
                        f"lists were published to (--out)")
    with publication.held_root(out_dir, "contacts import", Config().output.lock_wait_seconds), writing_to(out_dir):
        filled = contacts.read_filled_lists(path)
        # A list filled in before `churn forget` may still name an erased customer: never recorded.
        erased = erasure.Store(out_dir).forgotten_among(filled.rows["customer_id"].astype(str))
        kept = filled.rows[~filled.rows["customer_id"].astype(str).isin(erased)]
        assignments = warehouse.read_table(where, "assignments")
        if assignments.empty and len(kept):
            raise DataError(f"no win-back lists in {where}: import into the output root the lists were published "
                            f"to (--out)")
        rows, stop = contacts.to_contacts(kept, assignments, str(where))
        warehouse.write_contacts(where, rows, stop)
    counts = rows["outcome"].fillna("(no outcome)").value_counts().sort_index()
    return ContactsImport(filled.n_read, filled.n_blank, len(rows), {k: int(v) for k, v in counts.items()},
                          len(stop), sorted({str(d) for d in filled.rows["list_date"]}))
