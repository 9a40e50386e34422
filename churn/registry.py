"""Model registry: versioned models under `models/<version>/` and a champion pointer."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from churn.errors import ModelNotFoundError
from churn.io import atomic_dir, write_json
from churn.model import ChurnModel

CHAMPION_FILE = "champion.json"
METADATA_FILE = "metadata.json"


def data_fingerprint(fingerprints: dict[str, str]) -> str:
    """One hash over the per-table file hashes: the same files give the same fingerprint."""
    blob = json.dumps(fingerprints, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def model_version(as_of: str, horizon_days: int, fingerprint: str) -> str:
    """A readable, reproducible version: as-of date, horizon, data fingerprint prefix."""
    return f"{as_of.replace('-', '')}-h{horizon_days}-{fingerprint[:8]}"


def _model_card(meta: dict[str, Any]) -> str:
    """A short human-readable card: data, horizon, split, metrics beside the baselines."""
    lines = [f"# Churn model {meta['version']}", "",
             f"- Trained as of {meta['as_of']} for a {meta['horizon_days']}-day horizon "
             f"(churned = no purchase in the {meta['horizon_days']} days after the scoring date).",
             f"- Training cutoffs: {', '.join(meta['split']['train_cutoffs'])}; "
             f"early stopping on {meta['split']['val_cutoff']} ({meta['best_iteration'] + 1} trees).",
             f"- Data fingerprint: `{meta['data_fingerprint'][:16]}`; {meta['n_train']} training rows, "
             f"{len(meta['features'])} features.", ""]
    bt = meta.get("backtest")
    if bt:
        lines += [f"## Out-of-time backtest (test cutoff {bt['test_cutoff']}, {bt['n_test']} customers, "
                  f"churn rate {bt['base_rate']:.1%})", "",
                  "| model | ROC-AUC (95% CI) | PR-AUC | top-decile lift | Brier | ECE |",
                  "|---|---|---|---|---|---|"]
        for name, m in bt["models"].items():
            lo, hi = m["roc_auc_ci"]
            lines.append(f"| {name} | {m['roc_auc']:.3f} ({lo:.3f}-{hi:.3f}) | {m['pr_auc']:.3f} | "
                         f"{m['top_decile_lift']:.2f} | {m['brier']:.3f} | {m['ece']:.3f} |")
        lines.append("")
    lines += ["## Known limits", "",
              "- Probabilities are not yet recalibrated after training: read them as a ranking first.",
              "- Scores are valid for customers active in the year before the scoring date.", ""]
    return "\n".join(lines)


def register(model: ChurnModel, metadata: dict[str, Any], models_dir: str | Path,
             make_champion: bool = True) -> Path:
    """Save the model as `models_dir/<version>/` (replacing a same-version copy whole)."""
    models_dir = Path(models_dir)
    version = metadata["version"]
    with atomic_dir(models_dir / version) as staging:
        model.save(staging)
        write_json(metadata, staging / METADATA_FILE)
        (staging / "model_card.md").write_text(_model_card(metadata), encoding="utf-8")
    if make_champion:
        set_champion(models_dir, version)
    return models_dir / version


def set_champion(models_dir: str | Path, version: str) -> None:
    """Point the champion at `version` (atomic: readers see the old or the new pointer)."""
    models_dir = Path(models_dir)
    if not (models_dir / version / METADATA_FILE).exists():
        raise ModelNotFoundError(f"no model {version!r} under {models_dir}; see `churn models`")
    tmp = models_dir / f".{CHAMPION_FILE}.tmp"
    write_json({"version": version}, tmp)
    os.replace(tmp, models_dir / CHAMPION_FILE)


def champion_version(models_dir: str | Path) -> str:
    path = Path(models_dir) / CHAMPION_FILE
    if not path.exists():
        raise ModelNotFoundError(f"no champion model under {models_dir}: run `churn train --data DIR` first")
    return json.loads(path.read_text(encoding="utf-8"))["version"]


def load(models_dir: str | Path, version: str | None = None) -> tuple[ChurnModel, dict[str, Any]]:
    """Load a model and its metadata: the champion unless a version is given."""
    version = version or champion_version(models_dir)
    directory = Path(models_dir) / version
    if not (directory / METADATA_FILE).exists():
        raise ModelNotFoundError(f"no model {version!r} under {models_dir}; see `churn models`")
    metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    return ChurnModel.load(directory), metadata


def list_versions(models_dir: str | Path) -> list[dict[str, Any]]:
    """Every registered model's metadata, oldest as-of first."""
    out = []
    for meta_path in sorted(Path(models_dir).glob(f"*/{METADATA_FILE}")):
        out.append(json.loads(meta_path.read_text(encoding="utf-8")))
    return sorted(out, key=lambda m: (m["as_of"], m["version"]))
