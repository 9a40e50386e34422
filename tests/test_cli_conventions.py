"""Command-line conventions: --help documents every option with its default, exit codes, progress bars."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import typer
from typer import rich_utils
from typer.testing import CliRunner

from churn import cli
from tests.conftest import pretend_terminal, run


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command of the app (click objects, vendored by typer) with the words that invoke it."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group of sub-commands
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _help_line(help_text: str, name: str) -> str:
    """The line of a rendered --help that documents the option or argument `name`."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", re.IGNORECASE)
    lines = [line for line in help_text.splitlines() if pattern.search(line) and "Usage:" not in line]
    assert lines, f"{name} is not in the help:\n{help_text}"
    return lines[0]


def test_every_option_has_help_and_shows_its_default(monkeypatch):
    # One line per option: the default must be on the option's own line of the rendered help.
    monkeypatch.setattr(rich_utils, "MAX_WIDTH", 400)
    commands = list(_commands(typer.main.get_command(cli.app)))
    assert {path for path, _ in commands} >= {("score",), ("backfill",), ("outcomes",), ("datasets", "synthetic")}
    for path, command in commands:
        assert (command.help or "").strip(), f"churn {' '.join(path)} has no description"
        result = CliRunner().invoke(cli.app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        for param in command.params:
            where = f"churn {' '.join(path)} {param.name}"
            assert (getattr(param, "help", None) or "").strip(), f"{where}: no help text"
            is_option = param.param_type_name == "option"
            name = max(param.opts, key=len) if is_option else param.name
            line = _help_line(result.output, name)
            if param.required:
                assert "[required]" in line, where
            elif is_option and param.is_flag and param.default is False:
                continue  # a one-way flag (--json, --force) is off unless given
            elif isinstance(param.show_default, str):  # a default computed at run time, described in words
                assert f"[default: ({param.show_default})]" in line, where
            else:
                assert param.default is not None, f"{where}: a None default needs show_default in words"
                assert f"[default: {param.default}]" in line, where


def test_a_date_that_is_not_a_date_is_a_usage_error(monkeypatch, capsys, tmp_path):
    code, _, err = run(monkeypatch, capsys, "score", "--data", str(tmp_path), "--date", "2024-13-01")
    assert code == 2 and "YYYY-MM-DD" in err
    code, _, err = run(monkeypatch, capsys, "datasets", "synthetic", "--out", str(tmp_path), "--format", "xls")
    assert code == 2 and "xls" in err and not list(tmp_path.iterdir())


def test_a_bug_exits_apart_from_user_errors_and_keeps_its_traceback(monkeypatch, capsys, tmp_path):
    from churn.data import contract

    def broken(*args, **kwargs):
        raise KeyError("a column our own code forgot")

    monkeypatch.setattr(contract, "validate", broken)
    code, _, err = run(monkeypatch, capsys, "validate", "--data", str(tmp_path))
    assert code == cli.INTERNAL_ERROR and code not in (0, 1, 2)
    assert "Traceback" in err and "a column our own code forgot" in err and "bug" in err


def test_an_interrupt_is_exit_130_with_one_line_never_a_bug(monkeypatch, capsys, tmp_path):
    # Ctrl-C reaches Python as KeyboardInterrupt, or inside a DuckDB statement as its
    # "Query interrupted" RuntimeError (before: exit 70 and a traceback at the warehouse COMMIT).
    from churn.data import contract

    for failure in (KeyboardInterrupt(), RuntimeError("Query interrupted")):
        def interrupted(*args, **kwargs):
            raise failure

        monkeypatch.setattr(contract, "validate", interrupted)
        code, _, err = run(monkeypatch, capsys, "validate", "--data", str(tmp_path))
        assert code == 130 and "Traceback" not in err and "interrupted" in err, failure
        assert len(err.strip().splitlines()) == 1, err


def test_bars_are_for_a_terminal_only_and_never_with_json(monkeypatch):
    pretend_terminal(monkeypatch)
    assert cli._bars_wanted() and not cli._bars_wanted(as_json=True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)  # piped into a script or a file
    assert not cli._bars_wanted()
    with cli._progress_bar() as progress:
        assert progress is None


def test_backtest_at_a_terminal_draws_its_bar_on_stderr_and_keeps_stdout_for_results(
        monkeypatch, capsys, synthetic_dir, tmp_path):
    pretend_terminal(monkeypatch)
    config = tmp_path / "churn.toml"
    config.write_text("[model]\nn_estimators = 60\nlearning_rate = 0.2\nsearch_budget = 2\nn_train_cutoffs = 3\n"
                      "[evaluate]\nn_bootstrap = 10\nn_bootstrap_segments = 10\n")
    code, out, err = run(monkeypatch, capsys, "backtest", "--data", str(synthetic_dir), "--horizon", "60",
                         "--test-cutoff", "2024-03-01", "--out", str(tmp_path / "bt.json"), "--config", str(config))
    assert code == 0, err
    assert "backtest 2024-03-01 (1 of 1)" in err  # the bar's label, on stderr
    assert "\x1b[" not in out and "hyper-parameter search" not in out  # no bar drawn on stdout
    assert out.startswith("backtest: horizon 60 days") and "written to" in out


def test_an_empty_output_path_and_a_horizon_below_one_are_usage_errors(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    for command in (["score", "--data", str(tmp_path), "--date", "2024-06-30"], ["backfill", "--data", str(tmp_path),
                    "--start", "2024-06-29", "--end", "2024-06-30"], ["outcomes", "--data", str(tmp_path)],
                    ["forget", "c1"]):
        code, _, err = run(monkeypatch, capsys, *command, "--out", "")
        assert code == 2 and "an empty path" in err, command
    assert not list(tmp_path.iterdir())  # nothing written into the current directory
    for horizon in ("0", "-30"):
        code, _, err = run(monkeypatch, capsys, "train", "--data", str(tmp_path), "--horizon", horizon)
        assert code == 2 and "--horizon" in err and "greater than or equal to 1" in err, horizon


def test_a_bad_setting_is_exit_1_naming_the_key_for_every_command_that_reads_settings(monkeypatch, capsys, tmp_path):
    config = tmp_path / "churn.toml"
    config.write_text("[winback.capacity]\ncallback = 25\ncalls = 3\n")
    out = ["--out", str(tmp_path / "out")]
    for command in (["score", "--date", "2024-06-30", *out], ["backfill", "--start", "2024-06-29", "--end",
                    "2024-06-30", *out], ["outcomes", *out], ["train"], ["validate"]):
        code, _, err = run(monkeypatch, capsys, *command, "--data", str(tmp_path), "--config", str(config))
        assert code == 1 and "winback.capacity" in err and "calls" in err and "Traceback" not in err, command
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_empty_paths_files_for_directories_and_a_rolling_of_zero_are_usage_errors(monkeypatch, capsys, tmp_path):
    # Before: --data "" read as the current directory, --data FILE "data directory not found",
    # --models FILE "no champion model ... run churn train", --rolling 0 accepted.
    monkeypatch.chdir(tmp_path)
    a_file = tmp_path / "orders.csv"
    a_file.write_text("customer_id\n1\n")
    for option in ("--data", "--models", "--config"):
        code, _, err = run(monkeypatch, capsys, "score", "--data", str(tmp_path), "--date", "2024-06-30", option, "")
        assert code == 2 and "an empty path" in err, option
    for option in ("--data", "--models"):
        code, _, err = run(monkeypatch, capsys, "score", "--data", str(tmp_path), "--date", "2024-06-30", option,
                           a_file.name)
        assert code == 2 and "is a file" in err, option
    code, _, err = run(monkeypatch, capsys, "validate", "--data", "")
    assert code == 2 and "an empty path" in err
    code, _, err = run(monkeypatch, capsys, "forget", "--file", "", "--out", str(tmp_path / "out"))
    assert code == 2 and "an empty path" in err
    code, _, err = run(monkeypatch, capsys, "backtest", "--data", str(tmp_path), "--test-cutoff", "2024-03-01",
                       "--out", str(tmp_path / "bt.json"), "--rolling", "0")
    assert code == 2 and "--rolling" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.csv"]  # nothing written anywhere


def test_a_backtest_into_a_directory_and_an_import_into_no_output_root_stop_before_any_work(
        monkeypatch, capsys, tmp_path):
    # Before: the backtest ran 54 s and then failed naming an internal temporary path; the import
    # failed but created the missing output root with a .churn.lock in it.
    code, _, err = run(monkeypatch, capsys, "backtest", "--data", str(tmp_path / "nowhere"), "--test-cutoff",
                       "2024-03-01", "--out", str(tmp_path))
    assert code == 1 and f"--out {tmp_path} is a directory" in err and "Traceback" not in err
    filled = tmp_path / "winback_callback.csv"
    filled.write_text("rank,customer_id,outcome\n1,c1,reached\n")
    code, _, err = run(monkeypatch, capsys, "contacts", "import", str(filled), "--out", str(tmp_path / "out"))
    assert code == 1 and "no win-back lists in" in err and not (tmp_path / "out").exists()
