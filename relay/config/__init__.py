"""Settings read from the environment, validated once at start.

Every setting the relay reads is a field here, and only here: the README's configuration table
is generated from these fields (relay/config/reference.py holds what each means) and the chart's
values are checked against them (tests/test_config_reference.py), so they cannot drift apart. A
bad value stops the process with one line naming the variable, because a traceback at boot is
what a platform team least wants to read in a CrashLoopBackOff. A `RELAY_*` variable that is no
setting (a misspelling) is a warning at start naming the closest one, or with
`RELAY_STRICT_CONFIG=true` an error.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from cryptography.fernet import Fernet
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from relay.secret_box import key_list

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class ConfigError(ValueError):
    """A setting is malformed; the message names the variable and never echoes a secret."""


#: Secrets that may also come from a file (`<NAME>_FILE`).
FILE_SECRETS = ("CITEDY_API_KEY", "AUTOPOSTING_API_KEY", "RELAY_ENCRYPTION_KEY", "RELAY_ADMIN_KEY")


def _parse_float_list(raw: object, name: str) -> tuple[float, ...]:
    if isinstance(raw, list | tuple):
        items = [str(x) for x in raw]
    else:
        items = [p.strip() for p in str(raw).split(",") if p.strip()]
    if not items:
        raise ValueError(f"{name} must list at least one number of seconds")
    out = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{name} has {item!r}, which is not a number of seconds") from None
        if value < 0:
            raise ValueError(f"{name} has a negative delay")
        out.append(value)
    return tuple(out)


def parse_api_keys(raw: str) -> dict[str, str]:
    """`tenant:key,tenant:key` → {key: tenant}. Error messages name positions, never keys."""
    keys: dict[str, str] = {}
    for index, pair in enumerate(p.strip() for p in raw.replace("\n", ",").split(",")):
        if not pair:
            continue
        tenant, sep, key = pair.partition(":")
        tenant, key = tenant.strip(), key.strip()
        if not sep or not tenant or not key:
            raise ValueError(f"entry {index + 1} is not of the form tenant:key")
        if not tenant.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"entry {index + 1} has a tenant name outside [A-Za-z0-9_-]")
        if len(key) < 16:
            raise ValueError(f"entry {index + 1} has a key shorter than 16 characters")
        keys[key] = tenant
    return keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    relay_api_keys: str = Field(default="", alias="RELAY_API_KEYS", repr=False)
    relay_api_keys_file: Path | None = Field(default=None, alias="RELAY_API_KEYS_FILE")
    relay_encryption_key: str | None = Field(default=None, alias="RELAY_ENCRYPTION_KEY", repr=False)

    citedy_base_url: str = Field(default="https://www.citedy.com", alias="CITEDY_BASE_URL")
    citedy_api_key: str | None = Field(default=None, alias="CITEDY_API_KEY", repr=False)
    autoposting_base_url: str = Field(
        default="https://app.autoposting.ai/api-proxy", alias="AUTOPOSTING_BASE_URL"
    )
    autoposting_api_key: str | None = Field(default=None, alias="AUTOPOSTING_API_KEY", repr=False)

    allow_private_urls: bool = Field(default=False, alias="RELAY_ALLOW_PRIVATE_URLS")
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        default=DEFAULT_RETRY_SCHEDULE, alias="RELAY_RETRY_SCHEDULE"
    )
    retry_after_max: float = Field(default=3600.0, alias="RELAY_RETRY_AFTER_MAX", gt=0)
    delivery_timeout: float = Field(default=15.0, alias="RELAY_DELIVERY_TIMEOUT", gt=0)
    dns_threads: int = Field(default=16, alias="RELAY_DNS_THREADS", ge=1, le=256)
    dns_timeout: float = Field(default=5.0, alias="RELAY_DNS_TIMEOUT", gt=0)
    delivery_concurrency: int = Field(default=64, alias="RELAY_DELIVERY_CONCURRENCY", ge=1)
    delivery_per_subscription: int = Field(
        default=16, alias="RELAY_DELIVERY_PER_SUBSCRIPTION", ge=1
    )
    disable_after: float = Field(default=5 * 86400.0, alias="RELAY_DISABLE_AFTER", gt=0)
    secret_grace: float = Field(default=86400.0, alias="RELAY_SECRET_GRACE", ge=0)
    attempt_retention: int = Field(default=1000, alias="RELAY_ATTEMPT_RETENTION", ge=10)

    poll_min_interval: float = Field(default=2.0, alias="RELAY_POLL_MIN_INTERVAL", gt=0)
    poll_max_interval: float = Field(default=60.0, alias="RELAY_POLL_MAX_INTERVAL", gt=0)
    poll_concurrency: int = Field(default=256, alias="RELAY_POLL_CONCURRENCY", ge=1)
    tracking_window: float = Field(default=7 * 86400.0, alias="RELAY_TRACKING_WINDOW", gt=0)
    vendor_rate: float = Field(default=20.0, alias="RELAY_VENDOR_RATE", gt=0)
    vendor_timeout: float = Field(default=15.0, alias="RELAY_VENDOR_TIMEOUT", gt=0)
    not_found_limit: int = Field(default=3, alias="RELAY_NOT_FOUND_LIMIT", ge=1)
    # Vendor 401/403 is a credentials problem (a key mistake, a WAF hiccup), not the run's: a run
    # gives up only after this long of nothing but 401/403s (polls and starts alike).
    unauthorized_window: float = Field(default=3600.0, alias="RELAY_UNAUTHORIZED_WINDOW", gt=0)
    autoposting_terminal: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("completed", "failed", "succeeded", "partial", "cancelled", "canceled"),
        alias="RELAY_AUTOPOSTING_TERMINAL_STATUSES",
    )
    # How long an ended run is kept with everything about it (relay/store/lifecycle.py), and how
    # long an event stays pullable (GET /v1/events; the per-tenant stream is trimmed to it).
    retention: float = Field(default=30 * 86400.0, alias="RELAY_RETENTION", gt=0)
    tombstone_ttl: float = Field(default=180 * 86400.0, alias="RELAY_TOMBSTONE_TTL", gt=0)
    sweep_interval: float = Field(default=30.0, alias="RELAY_SWEEP_INTERVAL", gt=0)
    memory_threshold: float = Field(default=0.9, alias="RELAY_MEMORY_THRESHOLD", gt=0, le=1)
    lease_seconds: float = Field(default=30.0, alias="RELAY_LEASE_SECONDS", gt=0)
    poison_after: int = Field(default=5, alias="RELAY_POISON_AFTER", ge=1)
    pump_stale_after: float = Field(default=60.0, alias="RELAY_PUMP_STALE_AFTER", gt=0)
    worker_pumps: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("start", "poll", "deliver", "watch", "chores"), alias="RELAY_WORKER_PUMPS"
    )
    watch_interval: float = Field(default=30.0, alias="RELAY_WATCH_INTERVAL", gt=0)

    # Tenants (relay/vendors/connections.py, relay/tenancy/apikeys.py, relay/tenancy/quotas.py,
    # relay/tenancy/usage.py).
    relay_admin_key: str | None = Field(default=None, alias="RELAY_ADMIN_KEY", repr=False)
    shared_connections: bool = Field(default=True, alias="RELAY_SHARED_CONNECTIONS")
    max_active_runs: int = Field(default=10000, alias="RELAY_MAX_ACTIVE_RUNS", ge=1)
    max_subscriptions: int = Field(default=100, alias="RELAY_MAX_SUBSCRIPTIONS", ge=1)
    usage_days: int = Field(default=400, alias="RELAY_USAGE_DAYS", ge=1)
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), alias="RELAY_TRUSTED_PROXIES"
    )
    session_lifetime: float = Field(default=8 * 3600.0, alias="RELAY_SESSION_LIFETIME", gt=0)

    log_format: str = Field(default="json", alias="RELAY_LOG_FORMAT", pattern="^(json|console)$")
    log_level: str = Field(default="info", alias="RELAY_LOG_LEVEL")
    # The api's and the worker's event loop (relay/event_loop.py): uvloop where installed.
    event_loop: str = Field(
        default="auto", alias="RELAY_EVENT_LOOP", pattern="^(auto|asyncio|uvloop)$"
    )
    max_body_bytes: int = Field(default=64 * 1024, alias="RELAY_MAX_BODY_BYTES", ge=1024)
    data_dir: Path = Field(default=Path(".relay-data"), alias="RELAY_DATA_DIR")
    metrics_port: int = Field(default=9108, alias="RELAY_WORKER_METRICS_PORT", ge=0)
    heartbeat_file: Path = Field(
        default=Path("/tmp/relay-worker.heartbeat"),  # noqa: S108 (the container's tmpfs)
        alias="RELAY_HEARTBEAT_FILE",
    )
    check_max_age: float = Field(default=30.0, alias="RELAY_CHECK_MAX_AGE", gt=0)
    strict_config: bool = Field(default=False, alias="RELAY_STRICT_CONFIG")

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, raw: object) -> tuple[float, ...]:
        return _parse_float_list(raw, "RELAY_RETRY_SCHEDULE")

    @field_validator("worker_pumps", mode="before")
    @classmethod
    def _pumps(cls, raw: object) -> tuple[str, ...]:
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        names = tuple(str(x).strip() for x in items if str(x).strip())
        unknown = set(names) - {"start", "poll", "deliver", "watch", "chores"}
        if unknown or not names:
            raise ValueError(
                "RELAY_WORKER_PUMPS: a comma-separated subset of start,poll,deliver,watch,chores"
            )
        return names

    @field_validator("autoposting_terminal", mode="before")
    @classmethod
    def _terminal(cls, raw: object) -> tuple[str, ...]:
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        return tuple(str(s).strip() for s in items if str(s).strip())

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, raw: object) -> tuple[str, ...]:
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        out = []
        for item in (str(s).strip() for s in items):
            if not item:
                continue
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(
                    f"RELAY_TRUSTED_PROXIES has {item!r}, which is not a CIDR"
                ) from None
        return tuple(out)

    @field_validator("relay_api_keys")
    @classmethod
    def _keys(cls, raw: str) -> str:
        parse_api_keys(raw)
        return raw

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """A secret may come from a file named by `<NAME>_FILE` (how the Helm chart passes them:
        a mounted Secret, never an environment value, as checkov's CKV_K8S_35 asks); the value
        itself, when set, wins (dev)."""
        if not isinstance(data, dict):
            return data
        for name in FILE_SECRETS:
            path = os.environ.get(f"{name}_FILE")
            if path and not data.get(name):
                try:
                    data[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ValueError(f"{name}_FILE: {exc.strerror}") from None
        return data

    @model_validator(mode="after")
    def _bounds(self) -> Settings:
        if self.poll_max_interval < self.poll_min_interval:
            raise ValueError("RELAY_POLL_MAX_INTERVAL must be >= RELAY_POLL_MIN_INTERVAL")
        longest = max(self.delivery_timeout, self.vendor_timeout)
        if self.lease_seconds <= longest + 1:
            # A lease that can expire mid-request would let a second worker send the same lane.
            raise ValueError(
                "RELAY_LEASE_SECONDS must exceed the delivery and vendor timeouts "
                "by more than a second"
            )
        if self.relay_encryption_key:
            listed = key_list(self.relay_encryption_key)
            for index, key in enumerate(listed):
                try:
                    Fernet(key.encode())
                except ValueError:
                    which = f" entry {index + 1}" if len(listed) > 1 else ""
                    raise ValueError(
                        f"RELAY_ENCRYPTION_KEY{which} is not a Fernet key "
                        "(32 url-safe base64 bytes)"
                    ) from None
        if self.relay_admin_key is not None and len(self.relay_admin_key) < 16:
            raise ValueError("RELAY_ADMIN_KEY must be at least 16 characters")
        return self

    def require_redis_url(self, command: str) -> str:
        """REDIS_URL, which every command but `relay dev` (it embeds Valkey) needs."""
        if not self.redis_url:
            raise ConfigError(
                f"REDIS_URL is not set: `relay {command}` needs a Redis or Valkey "
                "(e.g. REDIS_URL=redis://127.0.0.1:6379/0); only `relay dev` embeds one"
            )
        return self.redis_url

    def api_keys(self) -> dict[str, str]:
        """Key → tenant, merging the inline list and the file (a mounted Kubernetes Secret)."""
        keys = parse_api_keys(self.relay_api_keys)
        if self.relay_api_keys_file is not None:
            keys.update(parse_api_keys(self.relay_api_keys_file.read_text()))
        return keys


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else ""
    info = Settings.model_fields.get(field)
    name = (info.alias if info and info.alias else field.upper()) or "configuration"
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"invalid {name}: {message}"


#: `RELAY_*` names that are read on purpose but are not settings: the crash-point harness of the
#: tests (relay/store/crashpoint.py).
NOT_SETTINGS = frozenset({"RELAY_CRASH_AFTER_WRITES"})


def known_names() -> list[str]:
    """Every environment name a field of `Settings` reads."""
    return [info.alias or name.upper() for name, info in Settings.model_fields.items()]


def unknown_names(environ: Mapping[str, str]) -> list[str]:
    """One line per `RELAY_*` variable of `environ` that is no setting, with the closest setting
    named when one is close (difflib)."""
    # (a secret may come from `<NAME>_FILE` instead: Settings._secret_files)
    files = [f"{name}_FILE" for name in FILE_SECRETS]
    known = [n for n in [*known_names(), *files] if n.startswith("RELAY_")]
    out = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("RELAY_") or upper in known or upper in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(f"{name} is not a setting{hint}")
    return out


def load_settings() -> Settings:
    """The settings from the environment. A `RELAY_*` name that is no setting is written to
    stderr as a warning, or refused with RELAY_STRICT_CONFIG=true."""
    try:
        settings = Settings()
        unknown = unknown_names(os.environ)
        if unknown and settings.strict_config:
            raise ConfigError("; ".join(unknown) + " (RELAY_STRICT_CONFIG=true)")
        for line in unknown:
            sys.stderr.write(f"relay: warning: {line}\n")
        if settings.relay_api_keys_file is not None:
            try:
                settings.api_keys()
            except OSError as exc:
                raise ConfigError(f"invalid RELAY_API_KEYS_FILE: {exc.strerror}") from None
            except ValueError as exc:
                raise ConfigError(f"invalid RELAY_API_KEYS_FILE: {exc}") from None
        return settings
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
