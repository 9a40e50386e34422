"""Model registry: versioned models under `models/<version>/` and a champion pointer."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from churn.config import EvaluateConfig, RegistryConfig
from churn.model.backtest import quality_band
from churn.model.baselines import BGNBD_FILE, LOGISTIC_FILE, BGNBDChurnModel, LogisticChurnModel
from churn.errors import ModelNotFoundError
from churn.data.io import atomic_dir, write_json
from churn.model.backtest import metrics_markdown
from churn.model.classifier import BOOSTER_FILE, CALIBRATOR_FILE, PARAMS_FILE, ChurnModel

CHAMPION_FILE = "champion.json"
METADATA_FILE = "metadata.json"


def data_fingerprint(fingerprints: dict[str, str]) -> str:
    """One hash over the per-table file hashes: the same files give the same fingerprint."""
    blob = json.dumps(fingerprints, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def model_version(as_of: str, horizon_days: int, fingerprint: str, recipe: dict[str, Any] | None = None) -> str:
    """A readable, reproducible version: as-of date, horizon, data fingerprint prefix, recipe hash.

    The recipe (configuration, feature list, code version) is part of the version so that a
    retrained model with other settings never overwrites a registered one of the same data.
    """
    version = f"{as_of.replace('-', '')}-h{horizon_days}-{fingerprint[:8]}"
    if recipe is not None:
        version += "-" + hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return version


def promotion_decision(candidate: dict[str, Any] | None, champion: dict[str, Any] | None,
                       max_auc_drop: float, max_ece: float) -> tuple[bool, str]:
    """Should a candidate become champion? Compares backtest metrics of the same test split.

    `candidate` and `champion` are the `xgboost` metrics of each model on the same backtest
    (the champion's None when there is none). Promote when the candidate's ECE is at most
    `max_ece` and its ROC-AUC is not lower than the champion's by more than `max_auc_drop`.
    """
    if candidate is None or candidate.get("roc_auc") is None:
        return False, "no backtest metrics for the new model: kept as challenger"
    if (candidate.get("roc_auc_ci") or [candidate["roc_auc"]])[0] <= 0.5:
        return False, (f"its backtest ROC-AUC {candidate['roc_auc']:.3f} cannot be told from chance (interval "
                       f"reaching 0.5): kept as challenger, never champion")
    if champion is None and candidate["ece"] > max_ece:
        # Nothing could score without a champion: the first model is promoted, with the warning.
        return True, (f"no champion yet: promoted although its ECE {candidate['ece']:.3f} is above the "
                      f"{max_ece:.3f} limit (read its probabilities with care)")
    if candidate["ece"] > max_ece:
        return False, f"ECE {candidate['ece']:.3f} above the {max_ece:.3f} limit: kept as challenger"
    if champion is None or champion.get("roc_auc") is None:
        return True, "no comparable champion: promoted"
    drop = champion["roc_auc"] - candidate["roc_auc"]
    if drop > max_auc_drop:
        return False, (f"ROC-AUC {candidate['roc_auc']:.3f} is {drop:.3f} below the champion's "
                       f"{champion['roc_auc']:.3f} (limit {max_auc_drop:.3f}): kept as challenger")
    return True, (f"ROC-AUC {candidate['roc_auc']:.3f} vs champion {champion['roc_auc']:.3f}, "
                  f"ECE {candidate['ece']:.3f} <= {max_ece:.3f}: promoted")


def quality(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The model's quality band (see `churn.model.backtest.quality_band`): stored, else from its backtest.

    Models registered before the band existed get it from their backtest with the default thresholds.
    """
    if meta.get("quality"):
        return meta["quality"]
    bt = meta.get("backtest")
    if not bt:
        return None
    config = meta.get("config") or {}
    known = set(EvaluateConfig.__dataclass_fields__)
    evaluate = EvaluateConfig(**{k: v for k, v in config.get("evaluate", {}).items() if k in known})
    max_ece = config.get("registry", {}).get("max_ece", RegistryConfig().max_ece)
    return quality_band(bt["models"].get(meta.get("model_kind", "xgboost")), bt["base_rate"], evaluate, max_ece)


def _kind_line(meta: dict[str, Any]) -> str:
    kind = meta.get("model_kind", "xgboost")
    if meta.get("served_reason"):
        return f"- Kind: {kind}, a baseline served instead of the fitted model ({meta['served_reason']})."
    if kind == "bgnbd":
        return f"- Kind: bgnbd (small-store fallback: {meta.get('fallback_reason', '')})."
    return f"- Kind: {kind}."


def _model_card(meta: dict[str, Any]) -> str:
    """A short human-readable card: data, horizon, split, metrics beside the baselines, calibration, limits."""
    kind = meta.get("model_kind", "xgboost")
    band = quality(meta)
    lines = [f"# Churn model {meta['version']}", "",
             _kind_line(meta),
             *([f"- Quality: {band['text']}."] if band else []),
             f"- Trained as of {meta['as_of']} for a {meta['horizon_days']}-day horizon "
             f"(churned = no purchase in the {meta['horizon_days']} days after the scoring date).",
             f"- Training cutoffs: {', '.join(meta['split']['train_cutoffs'])}; validation cutoff "
             f"{meta['split']['val_cutoff']}" + (f" ({meta['best_iteration'] + 1} trees)." if kind == "xgboost" else "."),
             f"- Data fingerprint: `{meta['data_fingerprint'][:16]}`; {meta['n_train']} training rows, "
             f"{len(meta['features'])} features.", ""]
    gate = meta.get("gate")
    if gate:
        lines += [f"- Promotion gate: {gate['reason']}.", ""]
    if kind == "xgboost":
        calib = meta.get("calibration", {})
        lines += ["## Tuning and calibration", "",
                  f"- Hyper-parameters chosen among {meta.get('search_candidates', 1)} seeded candidates by "
                  f"log-loss on half of the validation customers: {meta.get('best_params', {})}.",
                  f"- Calibrator: {calib.get('method', 'none')}, fitted on the other half of the validation "
                  f"customers, which the booster never saw (cross-validated Brier: "
                  f"{', '.join(f'{k} {v:.4f}' for k, v in calib.get('briers', {}).items()) or 'not compared'}).",
                  *([f"- Seasonal correction: {meta['season']['method']} ({meta['season']['reason']})."]
                    if meta.get("season") else []), ""]
    bt = meta.get("backtest")
    if bt:
        lines += [f"## Out-of-time backtest (test cutoff {bt['test_cutoff']}, {bt['n_test']} customers, "
                  f"churn rate {bt['base_rate']:.1%})", "",
                  metrics_markdown(bt)]
        curve = bt.get("calibration_curve", {}).get(kind)
        if curve:
            lines += ["", "Calibration (test cutoff): predicted vs observed churn rate per probability bin.", "",
                      "| bin | customers | mean predicted | observed |", "|---|---|---|---|"]
            lines += [f"| {b['bin'][0]:.1f}-{b['bin'][1]:.1f} | {b['n']} | {b['mean_predicted']:.3f} | "
                      f"{b['observed']:.3f} |" for b in curve]
        lines.append("")
    lines += ["## Known limits", "",
              "- Scores are valid for customers active in the year before the scoring date; a customer's "
              "first weeks carry little history.",
              "- Calibration is fitted on one recent month: a shift in the churn rate (season, a campaign) "
              "moves the probabilities before it moves the ranking; the seasonal correction covers a season "
              "that repeats yearly once two years of orders show it; watch the calibration curve after each retrain.",
              "- Metrics come from one data set's past months; a new store or channel needs its own backtest.",
              "- BG/NBD treats every customer as buying at a steady rate until an unseen drop-out; it knows "
              "nothing of the season or of service trouble.", ""]
    return "\n".join(lines)


def register(model: ChurnModel | BGNBDChurnModel | LogisticChurnModel, metadata: dict[str, Any], models_dir: str | Path,
             make_champion: bool = True) -> Path:
    """Save the model as `models_dir/<version>/`; a version already registered is left as it is.

    A version names the data fingerprint and the recipe, so the same version is the same model:
    keeping the registered copy makes a rerun change nothing (the shipped champion included).
    """
    models_dir = Path(models_dir)
    version = metadata["version"]
    if not (models_dir / version / METADATA_FILE).exists():
        with atomic_dir(models_dir / version) as staging:
            model.save(staging)
            write_json(metadata, staging / METADATA_FILE)
            (staging / "model_card.md").write_text(_model_card(metadata), encoding="utf-8")
    if make_champion:
        set_champion(models_dir, version)
    return models_dir / version


def _pointer(models_dir: Path) -> dict[str, Any]:
    """The champion pointer; {} when there is none, or when it is unreadable (a rollback or a new champion rewrites it)."""
    path = models_dir / CHAMPION_FILE
    try:
        pointer = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        return {}
    return pointer if isinstance(pointer, dict) else {}


def set_champion(models_dir: str | Path, version: str) -> None:
    """Point the champion at `version` (atomic: readers see the old or the new pointer).

    The pointer keeps the earlier champions, newest first, so that a rollback needs no version.
    """
    models_dir = Path(models_dir)
    if not (models_dir / version / METADATA_FILE).exists():
        raise ModelNotFoundError(f"no model {version!r} under {models_dir}; see `churn models`")
    pointer = _pointer(models_dir)
    if pointer.get("version") == version:
        return
    previous = [v for v in [pointer.get("version"), *pointer.get("previous", [])] if v and v != version]
    tmp = models_dir / f".{CHAMPION_FILE}.tmp"
    write_json({"version": version, "previous": previous}, tmp)
    os.replace(tmp, models_dir / CHAMPION_FILE)


def rollback(models_dir: str | Path, version: str | None = None) -> str:
    """Make `version` (default: the champion before the current one) the champion again; return it."""
    models_dir = Path(models_dir)
    if version is None:
        earlier = [v for v in _pointer(models_dir).get("previous", []) if (models_dir / v / METADATA_FILE).exists()]
        if not earlier:
            raise ModelNotFoundError(f"no earlier champion recorded under {models_dir}: name a version "
                                     f"(see `churn models`)")
        version = earlier[0]
    set_champion(models_dir, version)
    return version


def champion_version(models_dir: str | Path) -> str:
    path = Path(models_dir) / CHAMPION_FILE
    if Path(models_dir).is_file():
        raise ModelNotFoundError(f"{models_dir} is a file, not a model registry directory: give the directory "
                                 f"that holds champion.json and the model versions")
    if not path.exists():
        raise ModelNotFoundError(f"no champion model under {models_dir}: run `churn train --data DIR` first")
    version = _pointer(Path(models_dir)).get("version")
    if not isinstance(version, str):
        raise ModelNotFoundError(f"{path} is unreadable (cut off or edited?): choose the champion again with "
                                 f"`churn rollback VERSION` (versions: `churn models`), or retrain")
    return version


def load(models_dir: str | Path, version: str | None = None) -> tuple[ChurnModel | BGNBDChurnModel | LogisticChurnModel,
                                                                     dict[str, Any]]:
    """Load a model and its metadata: the champion unless a version is given.

    Raises ModelNotFoundError naming the file when a model file is missing, cut off or edited
    (a model version is written once and never changed: rolling back or retraining is the fix).
    """
    version = version or champion_version(models_dir)
    directory = Path(models_dir) / version
    if not (directory / METADATA_FILE).exists():
        raise ModelNotFoundError(f"no model {version!r} under {models_dir}; see `churn models`")
    metadata = _read_json(directory / METADATA_FILE)
    if (directory / BGNBD_FILE).exists():
        kind, files = BGNBDChurnModel, (BGNBD_FILE,)
    elif (directory / LOGISTIC_FILE).exists():
        kind, files = LogisticChurnModel, (LOGISTIC_FILE,)
    else:
        kind, files = ChurnModel, (PARAMS_FILE, BOOSTER_FILE, CALIBRATOR_FILE)
    for name in files:  # each file is JSON: a cut-off or missing one is named before anything reads it
        if name == CALIBRATOR_FILE and not (directory / name).exists():
            continue  # a model saved before calibration existed loads uncalibrated
        _read_json(directory / name)
    try:
        return kind.load(directory), metadata
    except (ValueError, KeyError, TypeError, OSError) as err:  # XGBoostError is a ValueError
        raise ModelNotFoundError(f"model {version} under {models_dir} cannot be loaded ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:160] if str(err) else ''}; edited or from another "
                                 f"version?): {_FIX}") from None


_FIX = "roll back to another version (`churn rollback`, versions: `churn models`) or retrain (`churn train`)"


def _read_json(path: Path) -> Any:
    """A model file's JSON; ModelNotFoundError naming it when it is missing or does not parse (cut off, edited)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotFoundError(f"{path} is missing: {_FIX}") from None
    except (ValueError, UnicodeDecodeError):
        raise ModelNotFoundError(f"{path} is unreadable (cut off or edited?): {_FIX}") from None


def list_versions(models_dir: str | Path) -> list[dict[str, Any]]:
    """Every registered model's metadata, oldest as-of first; versions whose metadata is unreadable
    are left out (`unreadable_versions` names them)."""
    out = []
    for meta_path in sorted(Path(models_dir).glob(f"*/{METADATA_FILE}")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("version"), str) and isinstance(meta.get("as_of"), str):
            out.append(meta)
    return sorted(out, key=lambda m: (m["as_of"], m["version"]))


def unreadable_versions(models_dir: str | Path) -> list[Path]:
    """The metadata files that `list_versions` leaves out: cut off, edited, or missing their version and as-of."""
    listed = {m["version"] for m in list_versions(models_dir)}
    return [p for p in sorted(Path(models_dir).glob(f"*/{METADATA_FILE}")) if p.parent.name not in listed]
