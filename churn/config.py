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
# What drives a customer's risk, read from their features (see churn.winback.drivers);
# "none" is the segment of customers with no driver. Uplift priors are set per segment.
DRIVERS = ("service", "price", "variety")
SEGMENTS = (*DRIVERS, "none")


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
    search_budget: int = 8
    calibration: str = "auto"
    calibration_share: float = 0.5
    min_train_customers: int = 500
    min_train_churners: int = 50
    n_jobs: int = 1


@dataclass(frozen=True)
class EvaluateConfig:
    n_bootstrap: int = 500
    n_bootstrap_segments: int = 100
    confidence: float = 0.95
    n_rolling: int = 1


@dataclass(frozen=True)
class RegistryConfig:
    max_auc_drop: float = 0.005
    max_ece: float = 0.03


@dataclass(frozen=True)
class ScoreConfig:
    risk_bands: tuple[float, float] = (0.3, 0.6)
    margin_rate: float = 0.25
    value_tier_cuts: tuple[float, float] = (0.4, 0.8)  # value rank (share of customers): above 0.8 high, above 0.4 mid


@dataclass(frozen=True)
class ActionPolicy:
    """One win-back action: who may get it, what it costs, how much it helps, how often."""

    min_p_churn: float = 0.0  # on top of winback.min_p_churn
    stages: tuple[str, ...] = ("new", "active", "dormant", "lapsed")
    value_tiers: tuple[str, ...] = ("low", "mid", "high")
    drivers: tuple[str, ...] = ()  # the customer must show one of these drivers; empty: anyone
    fixed_cost: float = 0.0  # per customer listed
    basket_share_cost: float = 0.0  # plus this share of the customer's average basket
    cost_probability: float = 1.0  # chance that the cost is really incurred (coupon redemption)
    uplift: dict[str, float] = field(default_factory=lambda: {s: 0.05 for s in SEGMENTS})
    cooldown_days: int = 30  # no new list for a customer contacted or held out this recently
    due_days: int = 7  # the list's due date: run date + due_days


@dataclass(frozen=True)
class WinbackConfig:
    holdout_share: float = 0.10
    min_p_churn: float = 0.3
    campaign: str = "winback"
    capacity: dict[str, int] = field(
        default_factory=lambda: {"callback": 25, "exclusive_discount": 150, "trial": 100}
    )
    service_returns_share: float = 0.2
    service_events: tuple[str, ...] = ("complaint", "support_ticket", "return_request")
    coupon_valid_days: int = 14
    price_quantile: float = 0.7
    variety_quantile: float = 0.7
    callback: ActionPolicy = field(default_factory=lambda: ActionPolicy(
        stages=("new", "active", "dormant"), value_tiers=("mid", "high"), fixed_cost=12.0,
        uplift={"service": 0.30, "price": 0.08, "variety": 0.08, "none": 0.10}, cooldown_days=60, due_days=2))
    exclusive_discount: ActionPolicy = field(default_factory=lambda: ActionPolicy(
        basket_share_cost=0.2, cost_probability=0.35,
        uplift={"service": 0.05, "price": 0.25, "variety": 0.06, "none": 0.06}))
    trial: ActionPolicy = field(default_factory=lambda: ActionPolicy(
        value_tiers=("low", "mid"), fixed_cost=6.0,
        uplift={"service": 0.03, "price": 0.05, "variety": 0.20, "none": 0.05}))

    def action(self, name: str) -> ActionPolicy:
        """The policy of one action (callback, exclusive_discount or trial)."""
        return getattr(self, name)


@dataclass(frozen=True)
class QualityConfig:
    max_lag_days: int = 3
    volume_window_days: int = 28
    max_volume_change: float = 0.5


@dataclass(frozen=True)
class OutcomesConfig:
    prior_strength: float = 200.0
    min_holdout: int = 20
    confidence: float = 0.95


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"


@dataclass(frozen=True)
class ScheduleConfig:
    daily_cron: str = "0 6 * * *"
    retrain_cron: str = "0 3 1 * *"
    outcomes_cron: str = "0 7 * * 1"
    timezone: str = "UTC"
    server_port: int = 4200


@dataclass(frozen=True)
class CacheConfig:
    feature_days: int = 7
    feature_max_gb: float = 20.0


@dataclass(frozen=True)
class ReportConfig:
    max_customers: int = 20000
    top_features: int = 15
    dependence_plots: int = 4
    psi_bins: int = 10
    psi_threshold: float = 0.2


@dataclass(frozen=True)
class EngineConfig:
    """Where the per-customer work runs: in this process ("local") or on a Dask cluster ("dask").

    See docs/scale.md. With "dask", customers are split into `partitions` by a stable hash of
    their id; `scheduler` is the address of a running Dask scheduler (e.g. tcp://10.0.0.5:8786),
    empty for a LocalCluster of `workers` processes on this machine (0: one per core).
    `storage` is where the partitions are written (a path or an fsspec URL that every worker can
    read: file://, s3://, gs://, memory://); empty: OUT/.cache/partitions. `training` is
    "xgboost_dask" (xgboost.dask on the cluster) or "gather" (the snapshots gathered to one
    worker, which fits exactly the local engine's model).
    """

    kind: str = "local"
    scheduler: str = ""
    partitions: int = 8
    workers: int = 0
    threads_per_worker: int = 1
    memory_per_worker: str = "auto"
    storage: str = ""
    training: str = "xgboost_dask"


ENGINES = ("local", "dask")
TRAINING_MODES = ("xgboost_dask", "gather")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    contract: ContractConfig = field(default_factory=ContractConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    winback: WinbackConfig = field(default_factory=WinbackConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    outcomes: OutcomesConfig = field(default_factory=OutcomesConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def with_horizon(self, horizon_days: int | None) -> Config:
        """Return a copy with another churn horizon (None keeps this one)."""
        if horizon_days is None:
            return self
        return dataclasses.replace(self, data=dataclasses.replace(self.data, horizon_days=horizon_days))

    def with_engine(self, kind: str | None = None, scheduler: str | None = None) -> Config:
        """Return a copy with another engine and/or scheduler address (None keeps the configured one)."""
        changes = {k: v for k, v in (("kind", kind), ("scheduler", scheduler)) if v is not None}
        if not changes:
            return self
        return _check_engine(dataclasses.replace(self, engine=dataclasses.replace(self.engine, **changes)))

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


def _build(cls: type, values: dict[str, Any], where: str, base: Any = None) -> Any:
    """Build dataclass `cls` from a TOML table, refusing unknown keys and wrong types.

    Keys not given keep the values of `base` (the enclosing default), else the class defaults.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table, got {values!r}")
    base = cls() if base is None else base
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default = getattr(base, name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}", default)
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
    return dataclasses.replace(base, **kwargs)


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
    cuts = config.score.value_tier_cuts
    if len(cuts) != 2 or not 0 < cuts[0] < cuts[1] < 1:
        raise ConfigError("score.value_tier_cuts must be two increasing shares between 0 and 1, e.g. [0.4, 0.8]")
    if config.winback.coupon_valid_days < 1:
        raise ConfigError("winback.coupon_valid_days must be at least 1")
    if config.model.calibration not in ("auto", "platt", "isotonic", "none"):
        raise ConfigError("model.calibration must be 'auto', 'platt', 'isotonic' or 'none'")
    if not 0 < config.model.calibration_share < 1 or config.model.search_budget < 1:
        raise ConfigError("model.calibration_share must be in (0, 1) and model.search_budget at least 1")
    if config.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("logging.level must be one of DEBUG, INFO, WARNING, ERROR")
    if not 0 <= config.winback.holdout_share < 1:
        raise ConfigError("winback.holdout_share must be in [0, 1)")
    unknown = set(config.winback.capacity) - set(ACTIONS)
    if unknown:
        raise ConfigError(f"winback.capacity: unknown action(s) {sorted(unknown)}; actions: {ACTIONS}")
    _check_actions(config.winback)
    if config.quality.max_lag_days < 0 or config.quality.volume_window_days < 1 \
            or config.quality.max_volume_change <= 0:
        raise ConfigError("quality: max_lag_days >= 0, volume_window_days >= 1 and max_volume_change > 0")
    if config.outcomes.prior_strength <= 0 or not 0 < config.outcomes.confidence < 1:
        raise ConfigError("outcomes: prior_strength must be positive and confidence in (0, 1)")
    if config.cache.feature_days < 0 or config.cache.feature_max_gb <= 0:
        raise ConfigError("cache: feature_days must be >= 0 (0 turns the cache off) and feature_max_gb positive")
    return _check_engine(config)


def _check_engine(config: Config) -> Config:
    """The `[engine]` settings: a known engine and training mode, positive sizes."""
    e = config.engine
    if e.kind not in ENGINES:
        raise ConfigError(f"engine.kind must be one of {list(ENGINES)}, not {e.kind!r}")
    if e.training not in TRAINING_MODES:
        raise ConfigError(f"engine.training must be one of {list(TRAINING_MODES)}, not {e.training!r}")
    if e.partitions < 1 or e.workers < 0 or e.threads_per_worker < 1:
        raise ConfigError("engine: partitions and threads_per_worker must be at least 1, workers at least 0 "
                          "(0: one per core)")
    return config


def _check_actions(winback: WinbackConfig) -> None:
    """Each action's eligibility names known stages, tiers and drivers; costs and uplifts make sense."""
    allowed = {"stages": ("new", "active", "dormant", "lapsed"), "value_tiers": ("low", "mid", "high"),
               "drivers": DRIVERS}
    for action in ACTIONS:
        policy = winback.action(action)
        for key, names in allowed.items():
            unknown = sorted(set(getattr(policy, key)) - set(names))
            if unknown:
                raise ConfigError(f"winback.{action}.{key}: unknown {unknown}; choose from {list(names)}")
        unknown = sorted(set(policy.uplift) - set(SEGMENTS))
        if unknown:
            raise ConfigError(f"winback.{action}.uplift: unknown segment(s) {unknown}; segments: {list(SEGMENTS)}")
        if not all(0 <= u <= 1 for u in policy.uplift.values()):
            raise ConfigError(f"winback.{action}.uplift: each uplift is a share of would-be churners, in [0, 1]")
        if min(policy.fixed_cost, policy.basket_share_cost, policy.cooldown_days, policy.due_days) < 0 \
                or not 0 <= policy.cost_probability <= 1:
            raise ConfigError(f"winback.{action}: costs, cooldown_days and due_days must be >= 0 and "
                              f"cost_probability in [0, 1]")


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
