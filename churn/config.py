"""Typed configuration, loaded from one TOML file (`churn.toml`) with defaults that work."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Callable
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
# The canonical order statuses (see churn.data.statuses): only "completed" orders are purchases.
ORDER_STATUSES = ("completed", "cancelled", "returned")


@dataclass(frozen=True)
class DataConfig:
    horizon_days: int = 90
    lookback_days: int = 365
    timezone: str = "UTC"  # the shop's zone (IANA name): what "day" means for orders, cutoffs and run dates


@dataclass(frozen=True)
class ContractConfig:
    duplicate_rows: Policy = "quarantine"
    unknown_customers: Policy = "quarantine"
    unmatched_suppressions: Literal["fail", "warn"] = "warn"
    unknown_statuses: Policy = "fail"
    implausible_timestamps: Policy = "quarantine"
    min_date: str = "1990-01-01"  # timestamps before this day are placeholders (1970-01-01, 1900-01-01) or typos
    max_date: str = "2089-12-31"  # ... and after this one (2099-12-31, 9999-12-31)
    # Names, e-mails, phones, addresses in any table (by column name or value, see churn.data.privacy):
    # "fail" refuses the data; "drop" removes such columns and blanks such cells, counted in the manifest.
    contact_details: Literal["fail", "drop"] = "fail"
    # A shop's own status values: spelling -> "completed" | "cancelled" | "returned" (see churn.data.statuses).
    statuses: dict[str, str] = field(default_factory=dict)


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
    calibration: Literal["auto", "platt", "isotonic", "none"] = "auto"
    calibration_share: float = 0.5
    min_train_customers: int = 500
    min_train_churners: int = 50
    min_train_minority: int = 50
    season_correction: str = "auto"
    season_min_checks: int = 3
    lean_learning_rate: float = 0.1
    lean_tolerance: float = 0.0  # the lowest log-loss: 0.01 cost 0.006 ROC-AUC out of time on Complete Journey
    n_jobs: int = 0  # all cores: measured 1.7x faster than 1 thread on 2 quiet cores (README, Configuration)


@dataclass(frozen=True)
class EvaluateConfig:
    n_bootstrap: int = 500
    n_bootstrap_segments: int = 100
    confidence: float = 0.95
    n_rolling: int = 1
    # Quality band: the backtest's top-decile lift as a share of the best lift possible at its
    # churn rate, at least this for Excellent / Good / Fair (below: Poor).
    band_excellent: float = 0.6
    band_good: float = 0.4
    band_fair: float = 0.2


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
    # An offer priced on the basket (the comeback coupon): at least min_offer_value, rounded up to
    # a multiple of offer_step (0: not rounded), valid offer_valid_days; the list says so.
    min_offer_value: float = 0.0
    offer_step: float = 0.0
    offer_valid_days: int = 14


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
    price_quantile: float = 0.7
    variety_quantile: float = 0.7
    callback: ActionPolicy = field(default_factory=lambda: ActionPolicy(
        stages=("new", "active", "dormant"), value_tiers=("mid", "high"), fixed_cost=12.0,
        uplift={"service": 0.30, "price": 0.08, "variety": 0.08, "none": 0.10}, cooldown_days=60, due_days=2))
    exclusive_discount: ActionPolicy = field(default_factory=lambda: ActionPolicy(
        basket_share_cost=0.2, cost_probability=0.35, min_offer_value=5.0, offer_step=1.0,
        uplift={"service": 0.05, "price": 0.25, "variety": 0.06, "none": 0.06}))
    trial: ActionPolicy = field(default_factory=lambda: ActionPolicy(
        value_tiers=("low", "mid"), fixed_cost=6.0,
        uplift={"service": 0.03, "price": 0.05, "variety": 0.20, "none": 0.05}))
    # Exploration (issue 16): this share of each action's daily capacity goes to the action's
    # candidates drawn at random (reproducible from campaign, run date, action and customer), so
    # that the uplift learned per customer sees customers the EV ranking would not pick.
    exploration_share: float = 0.05

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
    learned_strength: float = 500.0
    min_claim_treated: int = 200
    min_claim_holdout: int = 50
    # Exploration (issue 16): the largest weight an explored customer gets in the uplift learner,
    # 1 / selection_probability capped here; 1 weighs everyone alike (see README, "Exploration").
    max_selection_weight: float = 1.0


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
class OutputConfig:
    lock_wait_seconds: float = 600.0


@dataclass(frozen=True)
class ReportConfig:
    max_customers: int = 20000
    top_features: int = 15
    dependence_plots: int = 4
    psi_bins: int = 10
    psi_threshold: float = 0.2
    min_per_arm: int = 30  # fewer treated or holdout customers than this in a row: "too few to tell"


@dataclass(frozen=True)
class BusinessConfig:
    """What the lists and the report say about money."""

    currency: str = "USD"


@dataclass(frozen=True)
class AlertsConfig:
    webhook_url: str = ""
    webhook_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class EngineConfig:
    """Where the per-customer work runs: in this process ("local") or on a Dask cluster ("dask").

    See docs/scale.md. With "dask", customers are split into `partitions` by a stable hash of
    their id; `scheduler` is the address of a running Dask scheduler (e.g. tcp://10.0.0.5:8786),
    empty for a LocalCluster of `workers` processes on this machine (0: one per core).
    `storage` is where the partitions are written (a path or an fsspec URL that every worker can
    read: file://, s3://, gs://, memory://); empty: OUT/.cache/partitions. `training` chooses the
    fit of `churn.engine.training`: "xgboost_dask" (on the cluster) or "gather" (the snapshots
    gathered to one worker: exactly the local engine's model); the training job itself still
    trains on the validated data gathered to the driver (docs/scale.md).
    """

    kind: str = "local"
    scheduler: str = ""
    partitions: int = 8
    workers: int = 0
    threads_per_worker: int = 1
    memory_per_worker: str = "auto"
    storage: str = ""
    # DuckDB's memory budget per session (features, validation, warehouse): "2GB", "60%" of the
    # machine's memory, or "auto" (a quarter of it, at least 1 GB). See README, Configuration.
    duckdb_memory_limit: str = "1GB"
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
    business: BusinessConfig = field(default_factory=BusinessConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

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


# --- reading the TOML: every value converted to its field's type, or refused naming the key ----


def _choices(options: tuple[str, ...]) -> str:
    quoted = [repr(o) for o in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _convert(value: Any, hint: Any, key: str) -> Any:
    """A TOML value as the field type `hint` says (int, float, str, Literal, tuple, dict), else ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be {_choices(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(hints) != len(value):
            raise ConfigError(f"{key}: expected a list of {len(hints)} values, got {value!r}")
        return tuple(_convert(v, h, f"{key}[{i}]") for i, (v, h) in enumerate(zip(value, hints)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return {k: _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is str:
        if type(value) is dt.date:  # a TOML date, 1990-01-01 without quotes
            return value.isoformat()
        if isinstance(value, str):
            return value
    words = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(hint, str(hint))
    raise ConfigError(f"{key}: expected {words}, got {value!r}")


def _build(cls: type, values: dict[str, Any], where: str = "", base: Any = None) -> Any:
    """Build dataclass `cls` from a TOML table, refusing unknown keys and wrong types.

    `where` is the table's key (e.g. "winback.callback"). Keys not given keep the values of
    `base` (the enclosing default), else the class defaults; tables of values (capacity,
    uplift, statuses) add to the default table.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table, got {values!r}")
    base = cls() if base is None else base
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where or 'top level'}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default, key = getattr(base, name), f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key, default)
            continue
        value = _convert(value, hints[name], key)
        kwargs[name] = {**default, **value} if isinstance(default, dict) else value
    return dataclasses.replace(base, **kwargs)


# --- what each setting may be: checked once, when the configuration loads ---------------------

Rule = tuple[Callable[[Any], bool], str]
_WHOLE_1: Rule = (lambda v: v >= 1, "a whole number >= 1")
_WHOLE_0: Rule = (lambda v: v >= 0, "a whole number >= 0")
_SHARE: Rule = (lambda v: 0 <= v <= 1, "a number from 0 to 1")
_INSIDE: Rule = (lambda v: 0 < v < 1, "a number between 0 and 1, both excluded")
_UP_TO_1: Rule = (lambda v: 0 < v <= 1, "a number above 0, at most 1")
_POSITIVE: Rule = (lambda v: v > 0, "a number > 0")
_NON_NEGATIVE: Rule = (lambda v: v >= 0, "a number >= 0")

# Ranges per key; "a.*" applies to every value of the table a. Types are checked before (_convert).
_RULES: dict[str, Rule] = {
    "data.horizon_days": _WHOLE_1, "data.lookback_days": _WHOLE_1,
    "lifecycle.new_days": _WHOLE_0, "lifecycle.active_days": _WHOLE_1, "lifecycle.dormant_days": _WHOLE_1,
    "model.n_train_cutoffs": _WHOLE_1, "model.min_history_days": _WHOLE_0, "model.n_estimators": _WHOLE_1,
    "model.learning_rate": _UP_TO_1, "model.max_depth": _WHOLE_1, "model.min_child_weight": _NON_NEGATIVE,
    "model.subsample": _UP_TO_1, "model.colsample_bytree": _UP_TO_1, "model.early_stopping_rounds": _WHOLE_1,
    "model.random_state": (lambda v: 0 <= v < 2**32, "a whole number from 0 to 4294967295"),
    "model.search_budget": _WHOLE_1, "model.calibration_share": _INSIDE,
    "model.min_train_customers": _WHOLE_0, "model.min_train_churners": _WHOLE_0,
    "model.min_train_minority": _WHOLE_0, "model.season_min_checks": _WHOLE_1,
    "model.n_jobs": (lambda v: v >= 0, "a whole number >= 0 (0: all cores)"),
    "model.lean_learning_rate": _UP_TO_1, "model.lean_tolerance": _NON_NEGATIVE,
    "evaluate.n_bootstrap": _WHOLE_1, "evaluate.n_bootstrap_segments": _WHOLE_1, "evaluate.confidence": _INSIDE,
    "evaluate.n_rolling": _WHOLE_1, "evaluate.band_excellent": _SHARE, "evaluate.band_good": _SHARE,
    "evaluate.band_fair": _SHARE,
    "registry.max_auc_drop": _SHARE, "registry.max_ece": _SHARE,
    "score.margin_rate": _UP_TO_1,
    "winback.holdout_share": (lambda v: 0 <= v < 1, "a number from 0 to 1, 1 excluded"),
    "winback.min_p_churn": _SHARE, "winback.capacity.*": _WHOLE_0, "winback.service_returns_share": _SHARE,
    "winback.price_quantile": _SHARE, "winback.variety_quantile": _SHARE,
    "winback.exploration_share": (lambda v: 0 <= v <= 0.5, "a number from 0 to 0.5"),
    **{f"winback.{action}.{name}": rule for action in ACTIONS for name, rule in {
        "min_p_churn": _SHARE, "fixed_cost": _NON_NEGATIVE, "basket_share_cost": _NON_NEGATIVE,
        "cost_probability": _SHARE, "uplift.*": _SHARE, "cooldown_days": _WHOLE_0, "due_days": _WHOLE_0,
        "min_offer_value": _NON_NEGATIVE, "offer_step": _NON_NEGATIVE, "offer_valid_days": _WHOLE_1}.items()},
    "quality.max_lag_days": _WHOLE_0, "quality.volume_window_days": _WHOLE_1, "quality.max_volume_change": _POSITIVE,
    "outcomes.prior_strength": _POSITIVE, "outcomes.min_holdout": _WHOLE_0, "outcomes.confidence": _INSIDE,
    "outcomes.learned_strength": _POSITIVE, "outcomes.min_claim_treated": _WHOLE_1,
    "outcomes.min_claim_holdout": _WHOLE_1,
    "outcomes.max_selection_weight": (lambda v: v >= 1, "a number >= 1 (1: explored customers weigh like the rest)"),
    "schedule.server_port": (lambda v: 1 <= v <= 65535, "a port number from 1 to 65535"),
    "cache.feature_days": _WHOLE_0, "cache.feature_max_gb": _POSITIVE,
    "output.lock_wait_seconds": (lambda v: v >= 0, "a number of seconds >= 0 (0: refuse at once)"),
    "report.max_customers": _WHOLE_1, "report.top_features": _WHOLE_1, "report.dependence_plots": _WHOLE_0,
    "report.psi_bins": (lambda v: v >= 2, "a whole number >= 2"), "report.psi_threshold": _POSITIVE,
    "report.min_per_arm": _WHOLE_1, "alerts.webhook_timeout_seconds": _POSITIVE,
}


def _check(config: Config) -> Config:
    """Refuse settings that would crash later or silently give nonsense, naming the key and what it may be."""
    for key, (ok, words) in _RULES.items():
        table, _, name = key.rpartition(".")
        values = _get(config, table).items() if name == "*" else [(name, _get(config, key))]
        for item, value in values:
            if not ok(value):
                raise ConfigError(f"{table}.{item}: must be {words}, got {value!r}")
    lc = config.lifecycle
    if not lc.new_days <= lc.active_days < lc.dormant_days:
        raise ConfigError(f"lifecycle: new_days ({lc.new_days}) <= active_days ({lc.active_days}) < dormant_days "
                          f"({lc.dormant_days}) does not hold: the stages new, active, dormant, lapsed follow each other")
    lo, hi = config.score.risk_bands
    if not 0 < lo < hi < 1:
        raise ConfigError(f"score.risk_bands: must be two increasing numbers between 0 and 1, got [{lo}, {hi}]")
    cuts = config.score.value_tier_cuts
    if len(cuts) != 2 or not 0 < cuts[0] < cuts[1] < 1:
        raise ConfigError(f"score.value_tier_cuts: must be two increasing shares between 0 and 1, e.g. [0.4, 0.8], "
                          f"got {list(cuts)}")
    if config.model.calibration not in ("auto", "platt", "isotonic", "none"):
        raise ConfigError(f"model.calibration: must be 'auto', 'platt', 'isotonic' or 'none', got "
                          f"{config.model.calibration!r}")
    if config.model.season_correction not in ("auto", "none", "prior_shift"):
        raise ConfigError(f"model.season_correction: must be 'auto', 'none' or 'prior_shift', got "
                          f"{config.model.season_correction!r}")
    ev = config.evaluate
    if not ev.band_fair <= ev.band_good <= ev.band_excellent:
        raise ConfigError(f"evaluate: band_fair ({ev.band_fair}) <= band_good ({ev.band_good}) <= band_excellent "
                          f"({ev.band_excellent}) does not hold")
    if config.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"logging.level: must be one of DEBUG, INFO, WARNING, ERROR, got {config.logging.level!r}")
    if not config.winback.campaign.strip():
        raise ConfigError("winback.campaign: must not be empty (it keys the holdout draw)")
    unknown = set(config.winback.capacity) - set(ACTIONS)
    if unknown:
        raise ConfigError(f"winback.capacity: unknown action(s) {sorted(unknown)}; actions: {ACTIONS}")
    _check_actions(config.winback)
    _check_contract(config.contract)
    for key in ("data.timezone", "schedule.timezone"):
        _check_timezone(key, _get(config, key))
    for key in ("schedule.daily_cron", "schedule.retrain_cron", "schedule.outcomes_cron"):
        _check_cron(key, _get(config, key))
    _check_business(config.business)
    url = config.alerts.webhook_url
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"alerts.webhook_url: must start with http:// or https:// (or be empty), not {url!r}")
    return _check_engine(config)


# --- DuckDB's memory budget: `[engine] duckdb_memory_limit` ------------------------------------

_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*$", re.IGNORECASE)
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
# "auto": this share of the memory the process may use, and at least AUTO_FLOOR bytes (the budget
# Complete Journey's training needs, measured: 512 MB failed in 3 of 4 runs, 1 GB passed).
AUTO_SHARE = 0.25
AUTO_FLOOR = 10**9


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's RAM, or its container's limit when lower (cgroups)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def budget_bytes(setting: str) -> int:
    """The budget in bytes for a `duckdb_memory_limit` setting: "2GB", "512MB", "1.5GiB", "60%" of
    `machine_memory()`, or "auto" (a quarter of it, at least 1 GB).

    Raises ValueError, saying what the setting may be, for anything else (a size of 0, a share
    above 100%).
    """
    text = str(setting).strip().lower()
    if text == "auto":
        return max(AUTO_FLOOR, int(machine_memory() * AUTO_SHARE))
    size, share = _SIZE.match(text), _SHARE.match(text)
    if size:
        value = int(float(size.group(1)) * _BYTES[size.group(2).lower()])
    elif share and 0 < float(share.group(1)) <= 100:
        value = int(machine_memory() * float(share.group(1)) / 100)
    else:
        value = 0
    if value <= 0:
        raise ValueError(f'a size such as "2GB" or "512MB", a share of the machine\'s memory such as "50%", or '
                         f'"auto", got {setting!r}')
    return value


def _check_engine(config: Config) -> Config:
    """The `[engine]` settings: a known engine and training mode, positive sizes."""
    e = config.engine
    if e.kind not in ENGINES:
        raise ConfigError(f"engine.kind must be one of {list(ENGINES)}, not {e.kind!r}")
    if e.training not in TRAINING_MODES:
        raise ConfigError(f"engine.training must be one of {list(TRAINING_MODES)}, not {e.training!r}")
    try:
        budget_bytes(e.duckdb_memory_limit)
    except ValueError as err:
        raise ConfigError(f"engine.duckdb_memory_limit: must be {err}") from None
    if e.partitions < 1 or e.workers < 0 or e.threads_per_worker < 1:
        raise ConfigError("engine: partitions and threads_per_worker must be at least 1, workers at least 0 "
                          "(0: one per core)")
    return config


def _check_business(business: BusinessConfig) -> None:
    if len(business.currency) > 8 or any(c.isspace() or c.isdigit() for c in business.currency):
        raise ConfigError(f"business.currency: a code or symbol such as 'USD', 'EUR' or '£', not {business.currency!r}")


def _get(config: Config, key: str) -> Any:
    """The value of a dotted key, e.g. \"winback.callback.cooldown_days\"."""
    value: Any = config
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def _check_actions(winback: WinbackConfig) -> None:
    """Each action's eligibility names known stages, tiers and drivers, and its uplift known segments."""
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


def _check_contract(c: ContractConfig) -> None:
    for key in ("min_date", "max_date"):
        try:
            dt.date.fromisoformat(getattr(c, key))
        except ValueError:
            raise ConfigError(f"contract.{key}: {getattr(c, key)!r} is not a date (YYYY-MM-DD)") from None
    if c.min_date >= c.max_date:
        raise ConfigError(f"contract.min_date ({c.min_date}) must be before contract.max_date ({c.max_date})")
    for spelling, status in c.statuses.items():
        if status not in ORDER_STATUSES:
            raise ConfigError(f"contract.statuses.{spelling}: must be {_choices(ORDER_STATUSES)}, got {status!r}")
        if not any(ch.isalnum() for ch in spelling):
            raise ConfigError(f"contract.statuses: {spelling!r} is not a status (no letter or digit)")


def _check_timezone(key: str, name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{key}: {name!r} is not a time zone: use an IANA name such as \"Europe/Paris\", "
                          f"\"America/New_York\" or \"UTC\"") from None


# A cron field: (name, lowest, highest, names for values); the day-of-week field allows 7 for Sunday.
_CRON_FIELDS = (
    ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _check_cron(key: str, text: str) -> None:
    """A five-field cron string (minute hour day month weekday) as Prefect schedules take it, else ConfigError.

    Each field is `*` or a comma list of values and ranges (`1-5`), each with an optional step
    (`*/15`); months and weekdays may be named (`jan`, `mon-fri`); `L` (last day of the month)
    and `fri#2` (second Friday) are allowed too, as are the aliases @daily, @weekly, ... Stricter
    than Prefect's parser only in refusing a sixth (seconds) field.
    """
    fields = text.split()
    if len(fields) == 1 and fields[0].lower() in _CRON_ALIASES:
        return
    if len(fields) != 5:
        raise ConfigError(f"{key}: {text!r} is not a cron string: expected five fields (minute hour day month "
                          f"weekday), e.g. \"0 6 * * *\" for 06:00 every day")
    for value, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in value.lower().split(","):
            if not _cron_item_ok(item, name, low, high, names):
                raise ConfigError(f"{key}: {text!r} is not a cron string: {name} {item!r} is not {low}-{high}"
                                  + (f" or {names[0]}-{names[-1]}" if names else "")
                                  + ", a range of them or a step (*/15)")


def _cron_item_ok(item: str, name: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    """One comma-separated item of a cron field."""
    def number(word: str) -> int | None:
        if word in names:
            return names.index(word) + (1 if name == "month" else 0)
        return int(word) if word.isdigit() and low <= int(word) <= high else None

    if name == "day of month" and item == "l":
        return True
    if name == "day of week" and "#" in item:
        day, _, nth = item.partition("#")
        return number(day) is not None and nth in ("1", "2", "3", "4", "5")
    span, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return False
    if span == "*" or (span == "?" and name.startswith("day")):
        return True
    first, dash, last = span.partition("-")  # a range may wrap around: 22-2 is 22:00 to 02:00
    return number(first) is not None and (not dash or number(last) is not None)


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
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err})") from None
    try:
        return _check(_build(Config, values))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
