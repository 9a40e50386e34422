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
    forget            erase customers from everything written under OUT, and never score them again

Errors a user can fix are `churn.errors.ChurnError`s, raised before anything is written.

Every job that writes the output root (score, backfill, outcomes, forget) holds its lock
(`churn.publish.lock`) while it reads and writes the history, and first finishes or removes
what a dead run left there (`churn.publish.publication.recover`). A daily run publishes with
one commit point: files staged, history committed, files swapped in (see `_publish`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churn import faults
from churn.config import Config
from churn.data import contract
from churn.data.io import write_csv
from churn.decide import outcomes, quality, scoring, winback
from churn.errors import DataError, ModelNotFoundError, writing_to
from churn.features.cache import FeatureCache, features_key
from churn.features.engine import FeatureBuilder
from churn.model import backtest as evaluation
from churn.model import registry, training
from churn.model.classifier import ChurnModel
from churn.progress import Progress, StepRunner, Steps, notify
from churn.publish import erasure, files, lock, manifest, publication, warehouse
from churn.types import RunDate

__all__ = ["ScoreResult", "TrainResult", "OutcomesResult", "BackfillResult", "ForgetResult", "SCORE_STEPS",
           "TRAIN_STEPS", "load_dataset", "score_day", "train_model", "backtest", "measure_outcomes", "backfill",
           "forget", "published", "feature_cache"]

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


@dataclass(frozen=True)
class BackfillResult:
    """The dates a backfill scored and the ones it skipped as already published."""

    scored: list[str]
    skipped: list[str]


# --- shared steps ------------------------------------------------------------------------------


def load_dataset(data_dir: str | Path, config: Config) -> contract.Dataset:
    """Read and validate the data directory (raises ContractError naming file, column and rows)."""
    return contract.validate(data_dir, config.contract)


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


def suppressed_ids(dataset: contract.Dataset) -> set[str]:
    """Customers who must never be listed (the suppressions table)."""
    return set() if dataset.suppressions is None else set(dataset.suppressions["customer_id"])


def _lists(scores: pd.DataFrame, model: ChurnModel, suppressed: set[str], history: warehouse.History,
           run_date: RunDate, config: Config) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """EV policy, reasons for the customers taken, and the per-action lists for the service team."""
    taken = winback.assign(scores, suppressed, config.winback, run_date, history.last_listed, history.uplift)
    scores = scoring.add_reasons(scores, model, taken["customer_id"])
    reasons = scores.set_index("customer_id").loc[taken["customer_id"], scoring.REASON_COLUMNS]
    taken[scoring.REASON_COLUMNS] = reasons.to_numpy()
    return scores, taken, winback.service_lists(taken, run_date, config.winback)


def _publish(out_dir: Path, run: dict[str, Any], scores: pd.DataFrame, taken: pd.DataFrame,
             lists: dict[str, pd.DataFrame], run_manifest: dict[str, Any],
             dataset: contract.Dataset) -> publication.Staged:
    """Publish D: stage OUT/D/'s files, commit D's history with their token (the commit point), swap them in."""
    day = run["run_date"]
    return publication.publish(
        out_dir, day, lambda directory: files.write_outputs(directory, day, scores, lists, dataset.quarantine),
        run_manifest, lambda token: warehouse.write_run(warehouse.path_in(out_dir), {**run, "publication": token},
                                                        scores, taken, dataset.contacts))


def score_day(data_dir: str | Path, run_date: RunDate, out_dir: str | Path, models_dir: str | Path,
              config: Config, progress: Progress | None = None, runner: StepRunner | None = None) -> ScoreResult:
    """Score every customer as of the end of `run_date`, gate the data, publish the win-back lists and history.

    Writes OUT/D/ (scores.parquet, winback.xlsx, winback_<action>.csv, manifest.json) and D's
    rows of OUT/warehouse.duckdb, all or nothing. Raises ContractError, QualityError, DataError
    or ModelNotFoundError (nothing written) for problems the user must fix.
    """
    out_dir = Path(out_dir)
    lock.check_output_root(out_dir)
    steps = Steps(f"score {run_date}", SCORE_STEPS, progress, runner)
    dataset = steps.run("validate", load_dataset, data_dir, config, io=True)
    steps.done("validate", _table_counts(dataset))
    model, meta = steps.run("load model", registry.load, models_dir, io=True)
    config = config.with_horizon(meta["horizon_days"])
    # From reading the history (cooldowns) to publishing, no other job may write OUT.
    with publication.held_root(out_dir, f"score {run_date}", config.output.lock_wait_seconds):
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
        suppressed = suppressed_ids(dataset)
        scores, taken, lists = steps.run("lists", _lists, scores, model, suppressed, history, run_date, config)
        steps.done("lists", ", ".join(f"{action} {len(frame)}" for action, frame in lists.items()))
        run_manifest = manifest.run_manifest(run_date, meta, dataset, gate, scores, taken, lists, history,
                                             suppressed, config)
        run_manifest["forgotten_excluded"] = n_forgotten  # a count: the store holds hashes, never ids
        run = manifest.warehouse_run(run_manifest, gate, config)
        run_manifest["timings_seconds"] = dict(steps.timings)
        kept = manifest.assignments_for_history(taken, history, run_date, config)
        staged = steps.run("publish", _publish, out_dir, run, scores, kept, lists, run_manifest, dataset, io=True)
        steps.done("publish", f"published to {staged.target}")
    return ScoreResult(staged.manifest, staged.target)


def published(out_dir: str | Path, run_date: RunDate) -> bool:
    """True when OUT/D/ and D's history hold the same complete publication (see `churn.publish.publication`)."""
    return publication.is_published(out_dir, run_date, warehouse.publications(warehouse.path_in(out_dir)))


def backfill(data_dir: str | Path, start: RunDate, end: RunDate, out_dir: str | Path, models_dir: str | Path,
             config: Config, force: bool = False, progress: Progress | None = None,
             score: Callable[[RunDate], Any] | None = None) -> BackfillResult:
    """Score every date from `start` to `end` (included), one idempotent `score_day` per date.

    Resumable: dates already published are skipped unless `force`, so rerunning after a failure
    picks up where it stopped. `score` replaces `score_day` for one date (a flow passes its
    tracked run); `progress` hears of each date.
    """
    if end < start:
        raise DataError(f"backfill: --end {end} is before --start {start}")
    score = score or (lambda day: score_day(data_dir, day, out_dir, models_dir, config))
    days = [start.days(i) for i in range((end - start).days + 1)]
    scored, skipped = [], []
    for i, day in enumerate(days):
        notify(progress, f"scoring {day}", i, len(days))
        if not force and published(out_dir, day):
            skipped.append(str(day))
            continue
        score(day)
        scored.append(str(day))
    notify(progress, f"scored {len(scored)} dates, skipped {len(skipped)}", len(days), len(days))
    return BackfillResult(scored, skipped)


# --- erasure -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForgetResult:
    """What `forget` did, in counts (it never repeats the ids)."""

    n_customers: int
    n_new: int
    days_rewritten: list[str]
    rows_removed: int
    warehouse_rows: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"n_customers": self.n_customers, "n_new": self.n_new, "days_rewritten": self.days_rewritten,
                "rows_removed": self.rows_removed, "warehouse_rows": self.warehouse_rows}


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _erase_day(out_dir: Path, day: str, ids: set[str]) -> tuple[publication.Staged, int] | None:
    """Stage OUT/D/ without the ids' rows (manifest: the count of customers erased); None if D holds none."""
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
    return staged, removed[0]


def forget(customer_ids: Iterable[str], out_dir: str | Path, models_dir: str | Path, config: Config) -> ForgetResult:
    """Erase customers from everything churn wrote under OUT, and keep them out of every later run.

    In order, under the output lock: their salted hashes go to the suppression store (from then
    on no run scores or lists them, even while the source data holds them); every published day
    that holds them is staged without their rows; the warehouse is rewritten without them, with
    the new days' tokens (the commit point); the days are swapped in; the feature cache is
    dropped. A kill part-way is finished by rerunning the same command. Raises DataError when
    the models directory holds one of the ids (it never should: models keep no ids).
    """
    ids = {str(cid).strip() for cid in customer_ids if str(cid).strip()}
    if not ids:
        raise DataError("no customer id given: name them, or give --file with one id per line")
    out_dir = Path(out_dir)
    lock.check_output_root(out_dir)
    with publication.held_root(out_dir, "forget", config.output.lock_wait_seconds), writing_to(out_dir):
        n_new = erasure.Store(out_dir).add(ids)
        path = warehouse.path_in(out_dir)
        committed = warehouse.publications(path)
        days = sorted(p.name for p in out_dir.iterdir() if _DAY.match(p.name) and p.is_dir()) \
            if out_dir.is_dir() else []
        staged: dict[str, tuple[publication.Staged, int]] = {}
        try:
            for day in days:
                erased = _erase_day(out_dir, day, ids)
                if erased is None:
                    continue
                staged[day] = erased
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
        shutil.rmtree(out_dir / CACHE_DIR, ignore_errors=True)  # every entry holds every customer of its day
    left = erasure.traces(models_dir, ids)
    if left:
        raise DataError(f"{len(left)} file(s) under {models_dir} hold an erased customer id (e.g. {left[0].name}): "
                        f"models should keep none; delete that model version")
    return ForgetResult(len(ids), n_new, sorted(staged), sum(n for _, n in staged.values()), rows)


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


def train_model(data_dir: str | Path, models_dir: str | Path, config: Config, as_of: RunDate | None = None,
                progress: Progress | None = None, runner: StepRunner | None = None) -> TrainResult:
    """Train, backtest and register a churn model for the data in `data_dir`; the gate decides the champion.

    `as_of` (default: the day of the last order) is the day whose known labels train the model.
    Writes models/<version>/ and, when the gate promotes it, models/champion.json.
    """
    steps = Steps(f"train h{config.data.horizon_days}", (), progress, runner)
    dataset = steps.run("validate", load_dataset, data_dir, config, io=True)
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
                            dataset.orders, dataset.contacts, config, where=str(path))


def _store_outcomes(found: outcomes.Measured, out_dir: Path) -> Path:
    """Store outcomes and estimates in the warehouse (one transaction) and the summary as OUT/outcomes.csv."""
    with writing_to(out_dir):
        warehouse.write_outcomes(warehouse.path_in(out_dir), found.follow, found.estimates)
        write_csv(found.table, out_dir / "outcomes.csv")
    return out_dir / "outcomes.csv"


def measure_outcomes(data_dir: str | Path, out_dir: str | Path, config: Config,
                     runner: StepRunner | None = None) -> OutcomesResult:
    """Measure every published list whose horizon window lies inside the data; store what it teaches.

    Raises NothingToMeasure while no list has come of age (a normal state for a new schedule).
    """
    out_dir = Path(out_dir)
    steps = Steps("outcomes", (), None, runner)
    dataset = steps.run("validate", load_dataset, data_dir, config, io=True)
    steps.done("validate", f"orders {len(dataset.orders)} rows")
    with publication.held_root(out_dir, "outcomes", config.output.lock_wait_seconds):
        dataset, _ = erasure.without(dataset, erasure.Store(out_dir))
        found = steps.run("measure", _measure, dataset, out_dir, config, io=True)
        steps.done("measure", f"{len(found.follow)} listed customers, {len(found.list_dates)} list dates")
        csv = steps.run("write", _store_outcomes, found, out_dir, io=True)
        steps.done("write", "warehouse outcomes and uplift, outcomes.csv")
    return OutcomesResult(found, csv)

