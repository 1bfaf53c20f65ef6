"""The ingress application factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from relay import tracing
from relay.api import health, pull_routes
from relay.api.auth import KeyRing, admin_only, authenticated
from relay.api.errors import EXCEPTION_HANDLERS
from relay.api.openapi import Op, document
from relay.api.proxies import TrustedProxies
from relay.api.table import TABLE, Endpoint
from relay.config import Settings
from relay.console.routes import routes as console_routes
from relay.delivery import webhook_schemas
from relay.logging import register_secrets
from relay.store.autopipe import AutoPipeline
from relay.store.connection import connect
from relay.store.gauges import ApiMetrics
from relay.store.memory_guard import warn_if_evicting
from relay.vendors.registry import build_providers

__all__ = ["TABLE", "create_app", "openapi_document"]


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
        app.state.redis = redis or connect(settings.require_redis_url("api"))
        app.state.pipe = AutoPipeline(app.state.redis, own_connection=True)
        await warn_if_evicting(app.state.redis, "api")
        try:
            yield
        finally:
            await pull_routes.close(app.state)
            await app.state.pipe.aclose()
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
        app.state.pipe = AutoPipeline(redis)
    return app
