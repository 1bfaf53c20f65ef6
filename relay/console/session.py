"""Console sessions and CSRF.

- Logging in takes a relay API key once; the server keeps only a session record in Redis
  (`relay:console:session:{sha256(session id)}` → tenant and CSRF token, with a TTL). The API key
  itself is never stored, and the cookie holds only the random session id.
- A session ends after 8 idle hours, and at the latest RELAY_SESSION_LIFETIME after login
  (absolute), and at once when the API key it was opened with is revoked (checked on every
  request, so a revoked key's console answers like a logged-out one).
- The cookie is HttpOnly, SameSite=Strict, Path=/console, and Secure when the client's scheme was
  https (behind an ingress: as RELAY_TRUSTED_PROXIES' `X-Forwarded-Proto` says).
- Login throttling counts the client's address (behind an ingress: as RELAY_TRUSTED_PROXIES'
  `X-Forwarded-For` says, relay/api/proxies.py), not the ingress pod's.
- Every POST carries the session's CSRF token in a form field, compared in constant time, and a
  cross-origin `Origin` header is refused. The login form itself carries a token bound to a
  short-lived pre-login cookie (no login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import Response

from relay.store import keys
from relay.tenancy import apikeys

COOKIE = "relay_console"
LOGIN_COOKIE = "relay_console_login"
SESSION_TTL = 8 * 3600
LOGIN_TTL = 1800
MAX_FORM_BYTES = 16 * 1024
LOGIN_FAILURES_ALLOWED = 20
LOGIN_FAILURE_WINDOW = 900


def session_key(session_id: str) -> str:
    """The Redis key of a session. The id is hashed, so reading Redis gives no usable cookie."""
    return f"{keys.P}console:session:{hashlib.sha256(session_id.encode()).hexdigest()}"


def _failures_key(client: str) -> str:
    return f"{keys.P}console:login-failures:{hashlib.sha256(client.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class Session:
    id: str
    tenant: str
    csrf: str


def _ttl(lifetime: float) -> int:
    return max(1, int(min(SESSION_TTL, lifetime)))


async def create(
    r: aioredis.Redis, tenant: str, key_id: str = "", lifetime: float = SESSION_TTL
) -> Session:
    """A session of `tenant`, opened with the run-time API key `key_id` ('' for a key from the
    environment), ending at the latest `lifetime` seconds from now."""
    session = Session(secrets.token_urlsafe(32), tenant, secrets.token_urlsafe(32))
    now = time.time()
    pipe = r.pipeline(transaction=True)
    pipe.hset(
        session_key(session.id),
        mapping={
            "tenant": tenant,
            "csrf": session.csrf,
            "created_at": repr(now),
            "ends_at": repr(now + lifetime),
            "key_id": key_id,
        },
    )
    pipe.expire(session_key(session.id), _ttl(lifetime))
    await pipe.execute()
    return session


async def current(request: Request) -> Session | None:
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 128:
        return None
    r: aioredis.Redis = request.app.state.redis
    data: dict[str, str] = await r.hgetall(session_key(session_id))
    if not data or not data.get("tenant") or not data.get("csrf"):
        return None
    now = time.time()
    ends_at = float(data.get("ends_at") or 0)
    key_id = data.get("key_id") or ""
    if now >= ends_at or (key_id and not await apikeys.alive(r, key_id)):
        await r.delete(session_key(session_id))
        return None
    # Idle expiry slides, but never past the absolute end.
    await r.expire(session_key(session_id), _ttl(min(SESSION_TTL, ends_at - now)))
    return Session(session_id, data["tenant"], data["csrf"])


async def destroy(r: aioredis.Redis, session: Session) -> None:
    await r.delete(session_key(session.id))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(
    request: Request, response: Response, session: Session, lifetime: float = SESSION_TTL
) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=_ttl(lifetime),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")


def login_token(request: Request) -> tuple[str, bool]:
    """The pre-login token (reused while its cookie lives); True when a cookie must be set."""
    existing = request.cookies.get(LOGIN_COOKIE)
    if existing and 20 <= len(existing) <= 128:
        return existing, False
    return secrets.token_urlsafe(24), True


def set_login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_TTL,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def same_token(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(request: Request) -> bool:
    """A browser sends `Origin` on every POST; refuse one from elsewhere. No header (an old
    browser, a script) is left to the CSRF token."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def read_form(request: Request) -> dict[str, str] | None:
    """An application/x-www-form-urlencoded body, size-capped; None if it is not one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        return None
    parsed = parse_qs(text, keep_blank_values=True, max_num_fields=50)
    return {k: v[0] for k, v in parsed.items() if v}


async def login_blocked(r: aioredis.Redis, client: str) -> bool:
    count = await r.get(_failures_key(client))
    return count is not None and int(count) >= LOGIN_FAILURES_ALLOWED


async def login_failed(r: aioredis.Redis, client: str) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.incr(_failures_key(client))
    pipe.expire(_failures_key(client), LOGIN_FAILURE_WINDOW, nx=True)
    await pipe.execute()


# ---------------------------------------------------------------------------- one-time flash

FLASH_TTL = 300


def _flash_key(session: Session, token: str) -> str:
    digest = hashlib.sha256(f"{session.id}:{token}".encode()).hexdigest()
    return f"{keys.P}console:flash:{digest}"


async def put_flash(r: aioredis.Redis, session: Session, value: str) -> str:
    """Keep `value` (a secret just made) for this session to read once, within FLASH_TTL, on
    the page a POST redirects to: the secret is never in a URL, a form's answer or a second
    page view. Returns the token the redirect carries."""
    token = secrets.token_urlsafe(16)
    await r.set(_flash_key(session, token), value, ex=FLASH_TTL)
    return token


async def take_flash(r: aioredis.Redis, session: Session, token: str) -> str | None:
    """The value once (GETDEL); None when it was read already, expired, or is another
    session's."""
    if not token or len(token) > 64:
        return None
    value: str | None = await r.getdel(_flash_key(session, token))
    return value
