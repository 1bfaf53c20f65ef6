"""Knobs, stores and counters shared by both simulated vendors.

Everything lives in one in-process object so `/_sim/reset` wipes it in one go, and runs advance
lazily from their creation time, so there is no background task that could outlive the app or make
a test's outcome depend on scheduling.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

FaultPhase = Literal["before", "after"]
ANONYMOUS = "anonymous"


@dataclass
class SimConfig:
    """The simulator's knobs. `fault_phase="after"` injects 500s and malformed bodies *after* the
    request took effect (run created, credits charged): the case that tests a client's
    idempotent retry, since the caller cannot tell whether its start went through."""

    step_seconds: float = 2.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    latency_ms: float = 0.0
    malformed_rate: float = 0.0
    rate_limit_per_second: float = 0.0
    seed: int | None = None
    default_credits: int = 10000
    fault_phase: FaultPhase = "before"
    #: Seconds a Citedy run spends in each named non-terminal status (the others last
    #: `step_seconds`): real Citedy phases do not last alike, and a poller that learns phase
    #: lengths must be measured against uneven ones, e.g. {"queued": 2, "signals_running": 9}.
    citedy_phase_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FRACTIONS = frozenset({"error_rate", "rate_limit_rate", "malformed_rate"})
_SECONDS = frozenset({"step_seconds", "latency_ms", "rate_limit_per_second"})
_COUNTS = frozenset({"retry_after", "default_credits"})


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _check_knob(name: str, value: object) -> object:
    if name in _FRACTIONS:
        number = _number(value)
        if number is None or not 0 <= number <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1")
        return number
    if name in _SECONDS:
        number = _number(value)
        if number is None or number < 0:
            raise ValueError(f"{name} must be a number >= 0")
        return number
    if name in _COUNTS:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0")
        return value
    if name == "citedy_phase_seconds":
        return _phase_seconds(value)
    if name == "seed":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError("seed must be an integer or null")
        return value
    if value not in ("before", "after"):
        raise ValueError("fault_phase must be 'before' or 'after'")
    return value


#: The Citedy statuses a run passes through (contract: WarmLeadRun.status), the ones a phase
#: length can be set for.
CITEDY_PHASES = frozenset({"queued", "signals_running", "contacts_running", "drafting_running"})


def _phase_seconds(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError("citedy_phase_seconds must be an object of status -> seconds")
    out: dict[str, float] = {}
    for status, seconds in value.items():
        if status not in CITEDY_PHASES:
            raise ValueError(f"citedy_phase_seconds: {str(status)[:64]!r} is not a Citedy phase")
        number = _number(seconds)
        if number is None or number < 0:
            raise ValueError(f"citedy_phase_seconds[{status!r}] must be a number >= 0")
        out[status] = number
    return out


def apply_config_patch(config: SimConfig, patch: Mapping[str, object]) -> SimConfig:
    """A copy of `config` with `patch` applied; ValueError naming the knob if anything is off, in
    which case nothing changes."""
    known = [f.name for f in fields(SimConfig)]
    changes: dict[str, Any] = {}
    for name, value in patch.items():
        if name not in known:
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise ValueError(f"unknown knob {shown!r}; known knobs: {', '.join(known)}")
        changes[name] = _check_knob(name, value)
    return replace(config, **changes)


def key_id(api_key: str) -> str:
    """A short, stable stand-in for an API key: stats and logs must never carry the key itself."""
    return "k_" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def step_index(created_at: float, step_seconds: float, now: float, steps: int) -> int:
    """Which status of a path a run shows at `now`: one step per `step_seconds`, then it stays."""
    if step_seconds <= 0:
        return steps - 1
    return max(0, min(int((now - created_at) / step_seconds), steps - 1))


def phase_index(created_at: float, durations: tuple[float, ...], now: float) -> tuple[int, float]:
    """Which status of a path a run shows at `now`, and since when: `durations[i]` is how long
    status i lasts (one per status but the last, which stays)."""
    started = created_at
    for index, seconds in enumerate(durations):
        if now < started + seconds:
            return index, started
        started += seconds
    return len(durations), started


@dataclass
class Stats:
    """Counters the tests (and benchmarks) assert on, e.g. that the relay never double-charged
    and never exceeded the vendor's rate limit."""

    requests: dict[str, int] = field(default_factory=dict)
    charges: dict[str, int] = field(default_factory=dict)
    credits_charged_total: int = 0
    charged_runs: int = 0
    runs_created: int = 0
    status_429: int = 0
    status_500: int = 0
    status_401: int = 0
    unauthorized_forced: dict[str, int] = field(default_factory=dict)
    #: Answers replaced by the malformed-JSON fault, so a test can check the fault fired.
    malformed: int = 0
    max_requests_per_second: int = 0
    #: The same per API key (by key_id), for a test that shares the simulator with others.
    max_per_second_by_key: dict[str, int] = field(default_factory=dict)
    gets_per_run: dict[str, int] = field(default_factory=dict)
    _windows: dict[str, deque[float]] = field(default_factory=dict, repr=False)

    def record_request(self, endpoint: str, who: str, now: float) -> None:
        self.requests[endpoint] = self.requests.get(endpoint, 0) + 1
        window = self._windows.setdefault(who, deque())
        window.append(now)
        while window and window[0] <= now - 1.0:
            window.popleft()
        self.max_requests_per_second = max(self.max_requests_per_second, len(window))
        self.max_per_second_by_key[who] = max(self.max_per_second_by_key.get(who, 0), len(window))

    def record_status(self, status: int) -> None:
        if status == 429:
            self.status_429 += 1
        elif status == 500:
            self.status_500 += 1
        elif status == 401:
            self.status_401 += 1

    def record_charge(self, who: str, credits: int) -> None:
        self.charges[who] = self.charges.get(who, 0) + 1
        self.credits_charged_total += credits
        self.charged_runs += 1

    def record_get(self, run_id: str) -> None:
        self.gets_per_run[run_id] = self.gets_per_run.get(run_id, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "charges": dict(self.charges),
            "credits_charged_total": self.credits_charged_total,
            "charged_runs": self.charged_runs,
            "runs_created": self.runs_created,
            "status_429": self.status_429,
            "status_500": self.status_500,
            "status_401": self.status_401,
            "unauthorized_forced": dict(self.unauthorized_forced),
            "malformed": self.malformed,
            "max_requests_per_second": self.max_requests_per_second,
            "max_per_second_by_key": dict(self.max_per_second_by_key),
            "gets_per_run": dict(self.gets_per_run),
        }


@dataclass
class TokenBucket:
    """A real per-key limiter (burst = one second's worth), so a client that ignores its own
    request budget is caught the way the vendor would catch it."""

    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float | None:
        """Spend one token; None if allowed, else the seconds until one is available."""
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


@dataclass
class CitedyRun:
    """A warm-lead run. `owner` is the full API key, kept in memory only to scope reads; it is
    never rendered."""

    id: str
    owner: str
    domain: str
    normalized_domain: str
    params: dict[str, Any]
    idempotency_key: str | None
    created_at: float
    #: How long each status of `path` but the last lasts, fixed when the run is created.
    durations: tuple[float, ...]
    path: tuple[str, ...]


@dataclass
class AgentRun:
    """An Autoposting agent run following `path`, one status per step."""

    id: str
    agent_id: str
    created_at: float
    step_seconds: float
    path: tuple[str, ...]
    error: str | None
    seq: int


@dataclass
class Schedule:
    """A scheduled agent: run k starts at `anchor + k * every_seconds`, materialized on read."""

    agent_id: str
    every_seconds: float
    anchor: float
    ticks_done: int = 0


class SimState:
    """All mutable simulator state. Handlers mutate it without awaiting in between, so the single
    event loop is the only lock needed."""

    def __init__(self, config: SimConfig | None = None, clock: Callable[[], float] = time.time):
        self.initial = replace(config) if config else SimConfig()
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Back to the configuration the app was built with; every run, balance and count gone."""
        self.config = replace(self.initial)
        self.rng = random.Random(self.config.seed)
        self.stats = Stats()
        self.citedy_runs: dict[str, CitedyRun] = {}
        self.idempotency: dict[tuple[str, str], str] = {}
        self.credits: dict[str, int] = {}
        self.revoked: set[str] = set()
        # vendor ("citedy", "autoposting") -> clock time until which every call answers 401, as a
        # key mistake or a WAF hiccup looks from outside (set by POST /_sim/unauthorized).
        self.unauthorized_until: dict[str, float] = {}
        self.agent_runs: dict[str, AgentRun] = {}
        self.schedules: dict[str, Schedule] = {}
        # Agents whose runs list ignores `limit`/`offset` (always the first page), as a vendor
        # that documents no paging may (set by POST /_sim/autoposting/agents/{id}/paging).
        self.paging_ignored: set[str] = set()
        self.buckets: dict[str, TokenBucket] = {}
        self.seq = 0

    def update_config(self, patch: Mapping[str, object]) -> SimConfig:
        new = apply_config_patch(self.config, patch)
        if "seed" in patch:
            self.rng = random.Random(new.seed)
        if new.rate_limit_per_second != self.config.rate_limit_per_second:
            self.buckets.clear()
        self.config = new
        return new

    def balance(self, api_key: str) -> int:
        return self.credits.get(api_key, self.config.default_credits)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def throttle(self, who: str, now: float) -> float | None:
        """Seconds to wait if `who` is over `rate_limit_per_second`, else None (limit off: None)."""
        rate = self.config.rate_limit_per_second
        if rate <= 0:
            return None
        bucket = self.buckets.get(who)
        if bucket is None:
            bucket = self.buckets[who] = TokenBucket(rate=rate, tokens=rate, updated=now)
        return bucket.take(now)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def forced_unauthorized(self, vendor: str, now: float) -> bool:
        """True (and counted) if `vendor` is told to answer 401 at `now`."""
        if now >= self.unauthorized_until.get(vendor, 0.0):
            return False
        self.stats.unauthorized_forced[vendor] = self.stats.unauthorized_forced.get(vendor, 0) + 1
        return True

    def delete_run(self, run_id: str) -> bool:
        """Make a run vanish from either vendor, as if the vendor purged it."""
        run = self.citedy_runs.pop(run_id, None)
        if run is not None:
            if run.idempotency_key is not None:
                self.idempotency.pop((run.owner, run.idempotency_key), None)
            return True
        return self.agent_runs.pop(run_id, None) is not None
