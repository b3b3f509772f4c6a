"""Typed, validated configuration: TOML defaults, then environment overrides.

Every section is a frozen dataclass; the loader rejects unknown keys and
ill-typed values with a message that names the offending key (``kafka.partitions``),
so a typo in a deployment fails at start-up instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_type_hints

__all__ = [
    "ConfigError",
    "Settings",
    "KafkaSettings",
    "RedisSettings",
    "ValidationSettings",
    "FeatureSettings",
    "ClockSettings",
    "ModelSettings",
    "SegmentSettings",
    "MetricsSettings",
    "DEFAULT_CONFIG_PATH",
    "load_settings",
]

DEFAULT_CONFIG_PATH = Path(__file__).with_name("pulse.toml")
ENV_PREFIX = "PULSE__"
# Conventional variables that deployments (and the test suite) already set.
ENV_ALIASES = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "REDIS_URL": ("redis", "url"),
}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key (also in ``key``)."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        msg = f"config key {key!r}: {why}"
        raise ConfigError(msg, key)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated broker list."""
    events_topic: str = "pulse.events"
    dead_letter_topic: str = "pulse.dead-letters"
    partitions: int = 4
    """Partitions created for the events topic by `pulse demo` / `pulse replay --create-topics`."""
    consumer_batch_size: int = 1000
    connect_timeout_seconds: float = 60.0
    """How long start-up waits for the brokers (retrying) before failing with a clear error."""

    def validate(self, key: str) -> None:
        _require(bool(self.bootstrap_servers.strip()), f"{key}.bootstrap_servers", "must not be empty")
        _require(self.connect_timeout_seconds > 0, f"{key}.connect_timeout_seconds", "must be > 0")
        _require(self.partitions >= 1, f"{key}.partitions", "must be >= 1")
        _require(self.consumer_batch_size >= 1, f"{key}.consumer_batch_size", "must be >= 1")

    @property
    def brokers(self) -> list[str]:
        return [b.strip() for b in self.bootstrap_servers.split(",") if b.strip()]


@dataclass(frozen=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "pulse"
    """Namespace of every key Pulse writes (see README, Redis key layout)."""
    profile_ttl_seconds: int = 90 * 86400
    """Profiles not rewritten for this long expire (0 = never)."""
    retry_attempts: int = 20
    retry_backoff_max_seconds: float = 10.0

    def validate(self, key: str) -> None:
        _require(self.url.startswith(("redis://", "rediss://", "unix://")), f"{key}.url", "must be a redis:// URL")
        _require(bool(self.key_prefix) and "{" not in self.key_prefix, f"{key}.key_prefix", "must be non-empty, no braces")
        _require(self.profile_ttl_seconds >= 0, f"{key}.profile_ttl_seconds", "must be >= 0")
        _require(self.retry_attempts >= 0, f"{key}.retry_attempts", "must be >= 0")


@dataclass(frozen=True)
class ValidationSettings:
    max_payload_bytes: int = 64 * 1024
    max_future_seconds: int = 86400
    """Events stamped further than this ahead of the wall clock are dead-lettered."""
    min_event_time: str = "1990-01-01T00:00:00Z"
    max_quantity: int = 10_000
    max_amount: float = 1_000_000.0

    def validate(self, key: str) -> None:
        _require(self.max_payload_bytes > 0, f"{key}.max_payload_bytes", "must be > 0")
        _require(self.max_future_seconds >= 0, f"{key}.max_future_seconds", "must be >= 0")
        try:
            datetime.fromisoformat(self.min_event_time)
        except ValueError:
            _require(False, f"{key}.min_event_time", "must be an RFC 3339 time")
        _require(self.max_quantity > 0 and self.max_amount > 0, key, "max_quantity and max_amount must be > 0")

    @property
    def min_event_ms(self) -> int:
        ts = datetime.fromisoformat(self.min_event_time)
        ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
        return int(ts.timestamp() * 1000)


@dataclass(frozen=True)
class FeatureSettings:
    allowed_lateness_seconds: int = 3600
    """Events older than the customer's clock minus this are counted as late and dropped."""
    dedup_capacity: int = 64
    """Recent event ids remembered per customer to drop at-least-once duplicates."""
    recent_products: int = 10
    category_half_life_days: float = 30.0
    max_categories: int = 8

    def validate(self, key: str) -> None:
        _require(self.allowed_lateness_seconds >= 0, f"{key}.allowed_lateness_seconds", "must be >= 0")
        _require(self.dedup_capacity >= 1, f"{key}.dedup_capacity", "must be >= 1")
        _require(self.recent_products >= 1, f"{key}.recent_products", "must be >= 1")
        _require(self.category_half_life_days > 0, f"{key}.category_half_life_days", "must be > 0")
        _require(self.max_categories >= 1, f"{key}.max_categories", "must be >= 1")


@dataclass(frozen=True)
class ClockSettings:
    mode: str = "wall"
    """`wall`: timers also fire on the wall clock (live); `event`: only as event time moves (replays).

    Bounded runs (``--until-eof``) always use event time."""

    def validate(self, key: str) -> None:
        _require(self.mode in ("event", "wall"), f"{key}.mode", "must be 'event' or 'wall'")


@dataclass(frozen=True)
class ModelSettings:
    horizon_days: float = 7.0
    """purchasePropensity = P(purchase within this horizon)."""
    snapshot_interval_hours: float = 24.0
    """At most one labelled training snapshot per customer per interval."""
    learning_rate: float = 0.05

    def validate(self, key: str) -> None:
        _require(self.horizon_days > 0, f"{key}.horizon_days", "must be > 0")
        _require(self.snapshot_interval_hours > 0, f"{key}.snapshot_interval_hours", "must be > 0")
        _require(0 < self.learning_rate < 10, f"{key}.learning_rate", "must be in (0, 10)")


@dataclass(frozen=True)
class SegmentSettings:
    rules_file: str = "rules.toml"
    """Relative paths are resolved against the directory of the config file."""

    def validate(self, key: str) -> None:
        _require(bool(self.rules_file), f"{key}.rules_file", "must not be empty")


@dataclass(frozen=True)
class MetricsSettings:
    port: int = 9108
    """Prometheus /metrics port of process 0; process N serves on port + N. 0 disables."""
    host: str = "127.0.0.1"

    def validate(self, key: str) -> None:
        _require(0 <= self.port < 65536, f"{key}.port", "must be a TCP port or 0")


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    clock: ClockSettings = field(default_factory=ClockSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    segments: SegmentSettings = field(default_factory=SegmentSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    config_dir: Path = DEFAULT_CONFIG_PATH.parent
    """Directory of the loaded config file (not a TOML key)."""

    @property
    def rules_path(self) -> Path:
        path = Path(self.segments.rules_file)
        return path if path.is_absolute() else self.config_dir / path

    def replace(self, **sections: Any) -> Settings:
        """Copy with whole sections or single keys replaced: ``replace(redis={"key_prefix": "t"})``."""
        changes = {}
        for name, value in sections.items():
            current = getattr(self, name)
            changes[name] = dataclasses.replace(current, **value) if isinstance(value, Mapping) else value
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                section.validate(f.name)


def _a(typ: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(typ, typ.__name__)


def _coerce(key: str, value: Any, typ: type) -> Any:
    """Check a TOML value (or parse an env string) against the field's declared type."""
    if isinstance(value, str) and typ is not str:
        try:
            if typ is bool:
                _require(value.lower() in ("true", "false", "1", "0"), key, "must be true or false")
                return value.lower() in ("true", "1")
            return typ(value)
        except ValueError:
            _require(False, key, f"must be {_a(typ)}, got {value!r}")
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    _require(isinstance(value, typ) and not (typ is int and isinstance(value, bool)), key,
             f"must be {_a(typ)}, got {type(value).__name__}")
    return value


def _build_section(name: str, cls: type, raw: Mapping[str, Any]) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        _require(key in known, f"{name}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
        values[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**values)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load ``path`` (default: the bundled ``config/pulse.toml``) and apply env overrides.

    Overrides: ``PULSE__<SECTION>__<KEY>=value`` for any key, plus the conventional
    ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``.
    """
    env = os.environ if env is None else env
    path = Path(path or env.get("PULSE_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except FileNotFoundError:
        msg = f"config file not found: {path}"
        raise ConfigError(msg) from None
    except OSError as exc:
        msg = f"config file {path}: {exc.strerror}"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"config file {path}: {exc}"
        raise ConfigError(msg) from None
    origins: dict[str, str] = {}
    for var, (section, key) in ENV_ALIASES.items():
        if env.get(var):
            raw.setdefault(section, {})[key] = env[var]
            origins[section] = origins[f"{section}.{key}"] = var
    for var, value in env.items():
        if var.startswith(ENV_PREFIX):
            parts = var[len(ENV_PREFIX):].lower().split("__")
            _require(len(parts) == 2, var, "environment override must be PULSE__<SECTION>__<KEY>")
            raw.setdefault(parts[0], {})[parts[1]] = value
            origins.setdefault(parts[0], var)
            origins[".".join(parts)] = var
    try:
        return _build(raw, path)
    except ConfigError as exc:
        if exc.key in origins:
            msg = f"{exc} (set by environment variable {origins[exc.key]})"
            raise ConfigError(msg, exc.key) from None
        raise


def _build(raw: dict[str, Any], path: Path) -> Settings:
    sections = {f.name: f.type for f in dataclasses.fields(Settings) if f.name != "config_dir"}
    built = {}
    for name, section in raw.items():
        _require(name in sections, name, f"unknown section (known: {', '.join(sorted(sections))})")
        _require(isinstance(section, Mapping), name, "must be a table")
        built[name] = _build_section(name, get_type_hints(Settings)[name], section)
    settings = Settings(**built, config_dir=path.resolve().parent)
    settings.validate()
    return settings
