"""The ingress application factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay import tracing
from relay.api import (
    admin,
    connections,
    events_routes,
    health,
    notices_routes,
    pull_routes,
    runs,
    search_routes,
    subscriptions,
    usage_routes,
    watches,
)
from relay.api.auth import KeyRing, admin_only, authenticated
from relay.api.errors import EXCEPTION_HANDLERS
from relay.api.openapi import Op, document
from relay.api.proxies import TrustedProxies
from relay.api.schemas import (
    ApiKeyCreate,
    ConnectionPut,
    Recover,
    Redeliver,
    RunCreate,
    SubscriptionCreate,
    SubscriptionPatch,
    WatchCreate,
)
from relay.config import Settings
from relay.console.routes import routes as console_routes
from relay.delivery import webhook_schemas
from relay.delivery.pull import CURSOR_PATTERN as EVENTS_CURSOR
from relay.delivery.pull import MAX_WAIT
from relay.logging import register_secrets
from relay.ops.runs import CURSOR_PATTERN
from relay.store.connection import connect
from relay.store.gauges import ApiMetrics
from relay.store.memory_guard import warn_if_evicting
from relay.vendors.registry import build_providers

Endpoint = Callable[[Request], Awaitable[Response]]

LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": 200})
# The runs cursor is "<score>:<id>" as the relay writes it; the deliveries cursor an offset.
RUNS_CURSOR = ("cursor", {"type": "string", "pattern": CURSOR_PATTERN})
OFFSET_CURSOR = ("cursor", {"type": "string", "pattern": "^[0-9]{1,9}$"})
TABLE: list[tuple[Op, Endpoint]] = [
    (Op("GET", "/healthz", "Liveness", public=True), health.healthz),
    (Op("GET", "/readyz", "Readiness: Redis reachable", public=True), health.readyz),
    (Op("GET", "/openapi.json", "This document", public=True), health.openapi),
    (
        Op(
            "POST",
            "/v1/runs",
            "Start or track a vendor run",
            202,
            RunCreate,
            also=(
                (200, "an existing run: same Idempotency-Key and body, or already tracked"),
                (409, "the Idempotency-Key was used with another body"),
            ),
        ),
        runs.create,
    ),
    (
        Op(
            "GET",
            "/v1/runs",
            "List runs",
            query=(
                LIMIT,
                RUNS_CURSOR,
                ("before", {"type": "string", "pattern": CURSOR_PATTERN}),
                ("provider", "string"),
                ("status", "string"),
            ),
        ),
        runs.list_all,
    ),
    (Op("GET", "/v1/runs/{run_id}", "One run with its events and deliveries"), runs.get_one),
    (
        Op(
            "POST",
            "/v1/runs/{run_id}/refresh",
            "Poll now",
            202,
            also=((409, "the run is not being polled"),),
        ),
        runs.refresh,
    ),
    (Op("DELETE", "/v1/runs/{run_id}", "Stop tracking", 204), runs.stop),
    (
        Op(
            "POST",
            "/v1/runs/{run_id}/erase",
            "Stop tracking and delete the run with everything about it now",
            204,
        ),
        runs.erase,
    ),
    (Op("POST", "/v1/watches", "Follow an Autoposting agent", 201, WatchCreate), watches.create),
    (Op("GET", "/v1/watches", "List watches"), watches.list_all),
    (Op("GET", "/v1/watches/{watch_id}", "One watch"), watches.get_one),
    (Op("DELETE", "/v1/watches/{watch_id}", "Stop following", 204), watches.delete),
    (
        Op(
            "POST",
            "/v1/watches/{watch_id}/refresh",
            "List the agent's runs now (a watch set aside after repeated failures comes back)",
            202,
        ),
        watches.refresh,
    ),
    (
        Op(
            "POST",
            "/v1/subscriptions",
            "Subscribe a URL",
            201,
            SubscriptionCreate,
            also=((429, "quota_exceeded: the tenant has RELAY_MAX_SUBSCRIPTIONS"),),
        ),
        subscriptions.create,
    ),
    (Op("GET", "/v1/subscriptions", "List subscriptions"), subscriptions.list_all),
    (Op("GET", "/v1/subscriptions/{sub_id}", "One subscription"), subscriptions.get_one),
    (
        Op(
            "PATCH",
            "/v1/subscriptions/{sub_id}",
            "Change url, filter, description, enabled, headers, rate_limit",
            200,
            SubscriptionPatch,
        ),
        subscriptions.patch,
    ),
    (Op("DELETE", "/v1/subscriptions/{sub_id}", "Remove", 204), subscriptions.delete),
    (
        Op(
            "POST",
            "/v1/subscriptions/{sub_id}/rotate-secret",
            "New secret; the old one keeps signing for the grace period",
        ),
        subscriptions.rotate_secret,
    ),
    (
        Op(
            "POST",
            "/v1/subscriptions/{sub_id}/test",
            "Send a ping event",
            202,
            also=((409, "the subscription is disabled"),),
        ),
        subscriptions.send_test,
    ),
    (
        Op(
            "GET",
            "/v1/subscriptions/{sub_id}/deliveries",
            "The attempt log, newest first",
            query=(LIMIT, OFFSET_CURSOR, ("event_id", "string")),
        ),
        subscriptions.deliveries_log,
    ),
    (
        Op(
            "GET",
            "/v1/subscriptions/{sub_id}/dead-letters",
            "Dead-lettered deliveries, newest first, with their total",
            query=(LIMIT, OFFSET_CURSOR),
        ),
        subscriptions.dead_letters,
    ),
    (
        Op(
            "GET",
            "/v1/subscriptions/{sub_id}/health",
            "Delivery health: healthy, failing since when, or disabled; success rate recently",
        ),
        subscriptions.health,
    ),
    (
        Op(
            "POST",
            "/v1/subscriptions/{sub_id}/recover",
            "Replay dead-lettered deliveries since a time",
            202,
            Recover,
        ),
        subscriptions.recover,
    ),
    (
        Op(
            "POST",
            "/v1/events/{event_id}/redeliver",
            "Send one event again",
            202,
            Redeliver,
            body_required=False,
        ),
        events_routes.redeliver,
    ),
    (
        Op(
            "GET",
            "/v1/events",
            "Pull: the tenant's events in recording order, each the webhook body plus its id",
            query=(
                ("after", {"type": "string", "pattern": EVENTS_CURSOR}),
                LIMIT,
                ("wait", {"type": "number", "minimum": 0, "maximum": MAX_WAIT}),
            ),
            returns="EventPage",
        ),
        pull_routes.list_events,
    ),
    (
        Op(
            "GET",
            "/v1/notices",
            "What the tenant must know (a subscription disabled, credentials refused, ...)",
            query=(LIMIT, OFFSET_CURSOR),
        ),
        notices_routes.list_all,
    ),
    (
        Op(
            "GET",
            "/v1/search",
            "Find a run, event or subscription by id, upstream run id or domain",
            query=(("q", {"type": "string", "minLength": 1, "maxLength": 256}),),
        ),
        search_routes.search,
    ),
    (
        Op(
            "POST",
            "/v1/callback-secret",
            "Reveal (once) or rotate the secret that signs callback_url deliveries",
            query=(("rotate", "string"),),
            also=((409, "already revealed; rotate=true makes a new one"),),
        ),
        events_routes.callback_secret,
    ),
    (
        Op("GET", "/v1/connections", "The tenant's vendor connections (hints only)"),
        connections.list_all,
    ),
    (
        Op(
            "PUT",
            "/v1/connections/{provider}",
            "Set the tenant's own vendor API key (write-only; a key_hint is shown)",
            200,
            ConnectionPut,
            also=((201, "a new connection"),),
        ),
        connections.put,
    ),
    (Op("GET", "/v1/connections/{provider}", "One connection (its key_hint)"), connections.get_one),
    (Op("DELETE", "/v1/connections/{provider}", "Remove a connection", 204), connections.delete),
    (
        Op(
            "GET",
            "/v1/usage",
            "Usage per day: runs started, vendor credits, vendor requests, deliveries",
            query=(("since", {"type": "number", "minimum": 0}),),
        ),
        usage_routes.read,
    ),
    (
        Op(
            "POST",
            "/v1/admin/api-keys",
            "Make a tenant API key (shown once)",
            201,
            ApiKeyCreate,
            admin=True,
        ),
        admin.create,
    ),
    (Op("GET", "/v1/admin/api-keys", "List API keys made at run time", admin=True), admin.list_all),
    (
        Op("DELETE", "/v1/admin/api-keys/{key_id}", "Revoke an API key now", 204, admin=True),
        admin.revoke,
    ),
]


def _guarded(op: Op, endpoint: Endpoint) -> Endpoint:
    if op.public:
        return endpoint
    return admin_only(endpoint) if op.admin else authenticated(endpoint)


def _version() -> str:
    try:
        return version("run-relay")
    except PackageNotFoundError:
        return "0.0.0"


def openapi_document() -> dict[str, Any]:
    """What `/openapi.json` serves: the routes, and the webhooks the relay sends."""
    return document(
        [op for op, _ in TABLE],
        _version(),
        webhook_schemas.webhooks(),
        webhook_schemas.components(),
    )


def create_app(settings: Settings, redis: aioredis.Redis | None = None) -> Starlette:
    routes = [Route(op.path, _guarded(op, endpoint), methods=[op.method]) for op, endpoint in TABLE]
    # Prometheus scrape target (unauthenticated, counts only) and the operator console (HTML).
    routes += [Route("/metrics", health.metrics, methods=["GET"]), *console_routes()]
    keys_by_value = settings.api_keys()
    register_secrets(
        settings.citedy_api_key,
        settings.autoposting_api_key,
        settings.relay_admin_key,
        *keys_by_value,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = redis is None
        app.state.redis = redis or connect(settings.redis_url or "redis://127.0.0.1:6379")
        await warn_if_evicting(app.state.redis, "api")
        try:
            yield
        finally:
            await pull_routes.close(app.state)
            if owned:
                await app.state.redis.aclose()

    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
        middleware=[
            Middleware(TrustedProxies, cidrs=settings.trusted_proxies),
            # Installed only when tracing is on (OTEL_* variables, relay/tracing.py).
            *([Middleware(tracing.ServerSpans)] if tracing.ENABLED else []),
        ],
    )
    app.state.settings = settings
    app.state.keyring = KeyRing(keys_by_value)
    app.state.providers = build_providers(settings)
    app.state.metrics = ApiMetrics(
        keys_by_value.values(), [p.credential for p in app.state.providers.values()]
    )
    app.state.openapi = openapi_document()
    if redis is not None:
        app.state.redis = redis
    return app
