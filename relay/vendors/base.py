"""The small interface a vendor implements. A third vendor is one module with a subclass of
`Provider` and one line in `registry.py`; the workers, events and deliveries do not change."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson

from relay import tracing
from relay.delivery.http_client import request_capped
from relay.store.client import dumps

VENDOR_BODY_LIMIT = 8 * 1024 * 1024  # a completed Citedy result is tens of KB


@dataclass(frozen=True)
class Observed:
    """What one read of a vendor run showed. `digest`: of the vendor's answer as it came (''
    when not taken), so a poll tells unchanged content from its bytes without re-serialising the
    snapshot (relay/store/snapshots.py)."""

    upstream_run_id: str
    status: str
    snapshot: dict[str, Any]
    digest: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A vendor's answer, read whole: its status, body and headers (names lower-cased). Plain,
    because building an httpx.Response per poll cost about 50 us of the worker's CPU."""

    status_code: int
    content: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Started(Observed):
    idempotent: bool = False


@dataclass(frozen=True)
class RunsPage:
    """One page of an agent's runs (newest first) and the vendor's count of them all (None when
    it gives none)."""

    runs: list[Observed]
    total: int | None


class VendorError(Exception):
    """A vendor answer that is not a run. Subclasses say what the worker should do about it."""

    def __init__(self, reason: str, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class Transient(VendorError):
    """5xx, timeouts, connection errors, malformed bodies: back off with jitter and retry."""


class RateLimited(VendorError):
    def __init__(self, retry_after: float, status_code: int | None = 429) -> None:
        super().__init__(f"rate limited, retry after {retry_after:g}s", status_code)
        self.retry_after = retry_after


class NotFound(VendorError):
    """The run is not (or no longer) there."""


class Unauthorized(VendorError):
    """Our vendor credentials are missing, wrong or revoked."""


class Rejected(VendorError):
    """The vendor refused a start (400/402/409): final, reported as `run.start_failed`."""

    def __init__(
        self, status_code: int, error: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{error}: {message}", status_code)
        self.error = error
        self.message = message
        self.details = details or {}


class Provider:
    """Base class: subclasses set `name` and implement `fetch` (and `start`/`list_runs` if the
    vendor has them). `credential` names the request budget shared by every worker.

    The instance built from the settings speaks with the operator's key; `with_key` gives a copy
    speaking with a tenant's own connection (relay/vendors/connections.py), whose `credential` is a
    digest of that key, so each vendor account has its own budget and no key reaches Redis."""

    name: ClassVar[str]
    terminal_statuses: frozenset[str] = frozenset()
    can_start: ClassVar[bool] = False
    needs_agent_id: ClassVar[bool] = False
    can_watch: ClassVar[bool] = False

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key

    _shared_key: bool = True

    def with_key(self, api_key: str | None) -> Provider:
        """A copy of this client that sends `api_key` (None: no key at all, the call is refused
        before it leaves, as `Unauthorized`)."""
        clone = copy.copy(self)
        clone._api_key = api_key
        clone._shared_key = False
        return clone

    @property
    def credential(self) -> str:
        """The budget's name: the vendor's name for the operator's key, else the vendor's name and
        a digest of the key (a vendor's rate limit is per account)."""
        if self._shared_key or not self._api_key:
            return self.name
        return f"{self.name}:{hashlib.sha256(self._api_key.encode()).hexdigest()[:16]}"

    def _key(self) -> str:
        if not self._shared_key and not self._api_key:
            raise Unauthorized("no vendor connection for this tenant")
        return self._api_key or ""

    def is_terminal(self, status: str) -> bool:
        return status in self.terminal_statuses

    def changed_at(self, snapshot: dict[str, Any]) -> float | None:
        """When the vendor says the run last changed (unix seconds), if it says: the poll policy
        learns phase lengths and aims polls by it (relay/vendors/polling.py)."""
        return None

    def follows(self, previous: str, status: str) -> bool:
        """Whether `status` can come straight after `previous` (no status in between that the
        relay missed): only then is the time between them `previous`'s length, to learn from.
        Without a known order every pair is taken as direct."""
        return True

    def validate_input(self, raw: Any) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} runs cannot be started through the relay")

    async def start(
        self, client: httpx.AsyncClient, payload: dict[str, Any], idempotency_key: str
    ) -> Started:
        raise NotImplementedError

    async def fetch(
        self, client: httpx.AsyncClient, agent_id: str, upstream_run_id: str
    ) -> Observed:
        raise NotImplementedError

    async def list_runs(
        self, client: httpx.AsyncClient, agent_id: str, offset: int = 0, limit: int = 100
    ) -> RunsPage:
        raise NotImplementedError


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    json: Any = None,
) -> Answer:
    """One vendor request with transport failures mapped to `Transient`.

    It goes through `request_capped` (the aiohttp fast path polling lives on: the full httpx
    client pipeline cost about a third of a poll's CPU), and the answer is read whole up to
    `VENDOR_BODY_LIMIT`, so a vendor gone wrong cannot fill a worker's memory."""
    content = b""
    if json is not None:
        content = dumps(json).encode()
        headers = {**headers, "content-type": "application/json"}
    if tracing.ENABLED:  # a client span under the job's (relay/tracing.py)
        with tracing.client_span(method, url) as span:
            try:
                response = await _send(client, method, url, headers, content)
            except VendorError as exc:
                tracing.failed(exc.reason.split(":", 1)[0])
                raise
            tracing.responded(span, response.status_code)
            return response
    return await _send(client, method, url, headers, content)


async def _send(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], content: bytes
) -> Answer:
    try:
        code, body, answer = await request_capped(
            client, method, url, content, headers, VENDOR_BODY_LIMIT + 1
        )
    except httpx.TimeoutException:
        raise Transient("vendor timed out") from None
    except httpx.HTTPError as exc:
        raise Transient(f"vendor unreachable: {type(exc).__name__}") from None
    if len(body) > VENDOR_BODY_LIMIT:
        raise Transient(f"vendor answer larger than {VENDOR_BODY_LIMIT} bytes", code)
    return Answer(code, body, answer)


#: Every digit read as "0", so a run of 19 digits is 19 zeros (nothing else becomes "0"): found
#: with `bytes.translate` and a substring search, both in C, in 0.5-1.6 us on a Citedy answer,
#: where the regex `[0-9]{19}` took 6-27 us (about 2 % of a poll's CPU, bench/polling.py).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER = b"0" * 19


def body_json(response: Answer) -> Any:
    """The answer's JSON: orjson (about 2.5x the standard library on a Citedy run object, read
    on every poll), and the standard library for what orjson refuses but JSON allows (NaN, a lone
    surrogate escape) and for a text with a run of 19 digits or more (orjson reads an integer
    past 64 bits as a float), so every answer reads as before."""
    content = response.content
    if _LONG_NUMBER not in content.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(content)
    except ValueError:
        raise Transient("vendor answered malformed JSON", response.status_code) from None


def retry_after(response: Answer, body: Any) -> float:
    value: Any = body.get("retry_after") if isinstance(body, dict) else None
    if value is None:
        value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 1.0


def raise_for_common(response: Answer) -> None:
    """The failures every vendor shares; a 4xx specific to the call is the caller's to map."""
    code = response.status_code
    if code == 429:
        body: Any
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        raise RateLimited(retry_after(response, body))
    if code >= 500:
        raise Transient(f"vendor answered {code}", code)
    if code in (401, 403):
        raise Unauthorized(f"vendor answered {code}", code)
    if code == 404:
        raise NotFound("vendor has no such run", code)
