"""The architecture holds: stage packages import only downwards, the library never imports the faces.

    data <- features <- model <- decide <- publish <- engine <- pipeline <- {cli, flows, bench}

Read from the source (every import statement, also those inside functions), so that a lazy import
cannot hide a wrong-way dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["data", "features", "model", "decide", "publish", "engine", "pipeline"]
BASE = {"churn.config", "churn.errors", "churn.progress", "churn.types", "churn"}  # usable by every stage
FACES = ("prefect", "typer", "flows", "rich")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "churn" or len(parts) < 2 or module in BASE:
        return None
    return parts[1] if parts[1] in ORDER else None


def _library_modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "churn").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[module] = path
    return out


def test_stage_packages_import_only_earlier_stages():
    wrong = []
    for module, path in _library_modules().items():
        mine = _stage(module)
        if mine is None:
            continue
        for imported in _imports(path):
            theirs = _stage(imported)
            if theirs is not None and ORDER.index(theirs) > ORDER.index(mine):
                wrong.append(f"{module} imports {imported} ({theirs} comes after {mine})")
    assert not wrong, "\n".join(wrong)


def test_the_base_modules_import_no_stage():
    for module in ("churn.config", "churn.errors", "churn.progress", "churn.types"):
        stages = {_stage(m) for m in _imports(_library_modules()[module])} - {None}
        assert not stages, f"{module} imports stage(s) {stages}"


def test_only_the_cli_imports_prefect_typer_rich_or_flows():
    offenders = [f"{module} imports {imported}" for module, path in _library_modules().items()
                 if module != "churn.cli"
                 for imported in _imports(path) if imported.split(".")[0] in FACES]
    assert not offenders, "\n".join(offenders)


def test_bench_calls_the_pipeline_never_the_flows():
    offenders = [f"{path.name} imports {imported}" for path in (ROOT / "bench").glob("*.py")
                 for imported in _imports(path) if imported.split(".")[0] in ("flows", "prefect")]
    assert not offenders, "\n".join(offenders)


def _cli_in_a_fresh_process(tmp_path, argv: list[str], probe: str) -> subprocess.CompletedProcess:
    """Run churn's command line with `argv` in a new interpreter; after it exits, `probe` is printed to stderr."""
    code = ("import sys\n"
            "from churn import cli\n"
            f"sys.argv = {['churn', *argv]!r}\n"
            "try:\n"
            "    cli.main()\n"
            "except SystemExit as done:\n"
            f"    print({probe}, done.code, file=sys.stderr)\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path / ".mpl")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)


def test_a_plain_command_never_imports_prefect_and_fails_in_one_line(tmp_path):
    """`churn score` on a missing data directory: exit 1, one line, and Prefect never loaded."""
    got = _cli_in_a_fresh_process(tmp_path, ["score", "--data", str(tmp_path / "missing"), "--date", "2024-06-30",
                                             "--out", str(tmp_path / "out")], "'prefect' in sys.modules")
    error, probe = got.stderr.splitlines()
    assert probe.split() == ["False", "1"], got.stderr
    assert error.startswith("error: ") and "missing" in error
    assert not (tmp_path / "out").exists()


def test_help_loads_neither_pandas_nor_prefect(tmp_path):
    """`churn --help` answers without importing the heavy libraries (it must answer in under a second)."""
    got = _cli_in_a_fresh_process(tmp_path, ["--help"],
                                  "sorted(m for m in ('pandas', 'prefect', 'duckdb', 'xgboost') if m in sys.modules)")
    assert got.stderr.strip().splitlines()[-1] == "[] 0", got.stderr
    assert "score" in got.stdout
