"""Typed configuration, loaded from one TOML file (`churn.toml`) with defaults that work."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from churn.errors import ConfigError

Policy = Literal["fail", "quarantine"]
ACTIONS = ("callback", "exclusive_discount", "trial")


@dataclass(frozen=True)
class DataConfig:
    horizon_days: int = 90
    lookback_days: int = 365


@dataclass(frozen=True)
class ContractConfig:
    duplicate_rows: Policy = "quarantine"
    unknown_customers: Policy = "quarantine"


@dataclass(frozen=True)
class LifecycleConfig:
    new_days: int = 30
    active_days: int = 90
    dormant_days: int = 180


@dataclass(frozen=True)
class ModelConfig:
    n_train_cutoffs: int = 6
    min_history_days: int = 90
    n_estimators: int = 800
    learning_rate: float = 0.03
    max_depth: int = 4
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    early_stopping_rounds: int = 60
    random_state: int = 42


@dataclass(frozen=True)
class EvaluateConfig:
    n_bootstrap: int = 500
    confidence: float = 0.95


@dataclass(frozen=True)
class ScoreConfig:
    risk_bands: tuple[float, float] = (0.3, 0.6)
    margin_rate: float = 0.25


@dataclass(frozen=True)
class WinbackConfig:
    holdout_share: float = 0.10
    min_p_churn: float = 0.5
    campaign: str = "winback"
    capacity: dict[str, int] = field(
        default_factory=lambda: {"callback": 25, "exclusive_discount": 150, "trial": 100}
    )


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    contract: ContractConfig = field(default_factory=ContractConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    winback: WinbackConfig = field(default_factory=WinbackConfig)

    def with_horizon(self, horizon_days: int | None) -> Config:
        """Return a copy with another churn horizon (None keeps this one)."""
        if horizon_days is None:
            return self
        return dataclasses.replace(self, data=dataclasses.replace(self.data, horizon_days=horizon_days))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_ok(value: Any, default: Any) -> bool:
    """True when a TOML value fits the type of the field's default."""
    if isinstance(value, bool) != isinstance(default, bool):
        return False
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, tuple):
        return isinstance(value, list)
    return isinstance(value, type(default))


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a TOML table, refusing unknown keys and wrong types."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
            continue
        if not _type_ok(value, default):
            raise ConfigError(f"{where}.{name}: expected {type(default).__name__}, got {value!r}")
        if isinstance(default, tuple):
            value = tuple(value)
        elif isinstance(default, float):
            value = float(value)
        elif isinstance(default, dict):
            value = {**default, **value}
        kwargs[name] = value
    return cls(**kwargs)


def _check(config: Config) -> Config:
    """Reject settings that would silently give nonsense."""
    c = config.contract
    for name in ("duplicate_rows", "unknown_customers"):
        if getattr(c, name) not in ("fail", "quarantine"):
            raise ConfigError(f"contract.{name} must be 'fail' or 'quarantine'")
    if config.data.horizon_days < 1 or config.data.lookback_days < 1:
        raise ConfigError("data.horizon_days and data.lookback_days must be positive")
    lo, hi = config.score.risk_bands
    if not 0 < lo < hi < 1:
        raise ConfigError("score.risk_bands must be two increasing numbers between 0 and 1")
    if not 0 <= config.winback.holdout_share < 1:
        raise ConfigError("winback.holdout_share must be in [0, 1)")
    unknown = set(config.winback.capacity) - set(ACTIONS)
    if unknown:
        raise ConfigError(f"winback.capacity: unknown action(s) {sorted(unknown)}; actions: {ACTIONS}")
    return config


def load_config(path: str | Path | None = None) -> Config:
    """Load the configuration from `path`, else ./churn.toml if present, else defaults."""
    if path is None:
        path = Path("churn.toml")
        if not path.exists():
            return Config()
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    return _check(_build(Config, values, str(path)))
