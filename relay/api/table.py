"""The route table: every operation of the JSON API with what `/openapi.json` says of it (its
request body, query, headers, success body and error codes) beside the view that answers it.
relay/api/app.py mounts it; relay/api/openapi.py renders it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

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
from relay.api.openapi import Header, Op
from relay.api.schemas import (
    ApiKeyCreate,
    ConnectionPut,
    NoticesAcknowledge,
    Recover,
    Redeliver,
    RunCreate,
    SubscriptionCreate,
    SubscriptionPatch,
    WatchCreate,
)
from relay.delivery.pull import CURSOR_PATTERN as EVENTS_CURSOR
from relay.delivery.pull import MAX_WAIT
from relay.ops.runs import CURSOR_PATTERN

IDEMPOTENCY_KEY = Header(
    "Idempotency-Key",
    "Send one with every start, kept with your own record of the job (1-255 characters). The "
    "same key and body again answer 200 with the run it made; another body, 409 "
    "`idempotency_conflict`. A start answered with a 5xx, or not answered at all (a timeout, a "
    "dropped connection), may still have created the run and been charged by the vendor: retry "
    "it with the same key, and nothing is started or charged twice. Kept 24 h.",
)
TRACEPARENT = Header(
    "traceparent",
    "W3C Trace Context: the caller's trace becomes the run's (its webhooks carry it).",
)
Endpoint = Callable[[Request], Awaitable[Response]]

RUN_CREATE_HEADERS = (IDEMPOTENCY_KEY, TRACEPARENT)
RUN_CREATE_CODES = (
    (409, ("idempotency_conflict", "no_connection", "conflict")),
    (429, ("quota_exceeded",)),
    (503, ("store_full",)),
)


LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": 200})
# The runs cursor is "<score>:<id>" as the relay writes it; the deliveries cursor an offset.
RUNS_CURSOR = ("cursor", {"type": "string", "pattern": CURSOR_PATTERN})
OFFSET_CURSOR = ("cursor", {"type": "string", "pattern": "^[0-9]{1,9}$"})
TABLE: list[tuple[Op, Endpoint]] = [
    (Op("GET", "/healthz", "Liveness", public=True, returns="Healthz"), health.healthz),
    (
        Op("GET", "/readyz", "Readiness: Redis reachable", public=True, returns="Readyz"),
        health.readyz,
    ),
    (
        Op("GET", "/openapi.json", "This document", public=True, returns="OpenApiDocument"),
        health.openapi,
    ),
    (
        Op(
            "POST",
            "/v1/runs",
            "Start or track a vendor run",
            202,
            RunCreate,
            also=(
                (200, "an existing run: same Idempotency-Key and body, or already tracked"),
                (
                    409,
                    "the Idempotency-Key (or input.idempotencyKey) was used with another body, "
                    "or the tenant has no connection to the vendor",
                ),
                (429, "the tenant has RELAY_MAX_ACTIVE_RUNS runs active (`limit` names it)"),
                (503, "the store is unreachable, or above RELAY_MEMORY_THRESHOLD"),
            ),
            returns="Run",
            codes=RUN_CREATE_CODES,
            headers=RUN_CREATE_HEADERS,
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
                (
                    "delivery",
                    {
                        "type": "string",
                        "enum": ["dead", "failing"],
                        "description": "Only runs with a delivery dead-lettered (`dead`) or "
                        "retrying (`failing`) now; with `provider` or alone, not with `status` "
                        "(400).",
                    },
                ),
            ),
            returns="RunPage",
        ),
        runs.list_all,
    ),
    (
        Op("GET", "/v1/runs/{run_id}", "One run with its events and deliveries", returns="Run"),
        runs.get_one,
    ),
    (
        Op(
            "POST",
            "/v1/runs/{run_id}/refresh",
            "Poll now",
            202,
            also=((409, "the run is not being polled"),),
            returns="Run",
            codes=((409, ("not_tracking",)),),
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
    (
        Op(
            "POST",
            "/v1/watches",
            "Follow an Autoposting agent",
            201,
            WatchCreate,
            also=((409, "the tenant has no connection to Autoposting"),),
            returns="Watch",
            codes=((409, ("no_connection",)),),
        ),
        watches.create,
    ),
    (Op("GET", "/v1/watches", "List watches", returns="WatchList"), watches.list_all),
    (Op("GET", "/v1/watches/{watch_id}", "One watch", returns="Watch"), watches.get_one),
    (Op("DELETE", "/v1/watches/{watch_id}", "Stop following", 204), watches.delete),
    (
        Op(
            "POST",
            "/v1/watches/{watch_id}/refresh",
            "List the agent's runs now (a watch set aside after repeated failures comes back)",
            202,
            returns="Watch",
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
            returns="SubscriptionCreated",
            codes=((429, ("quota_exceeded",)), (503, ("store_full",))),
        ),
        subscriptions.create,
    ),
    (
        Op("GET", "/v1/subscriptions", "List subscriptions", returns="SubscriptionList"),
        subscriptions.list_all,
    ),
    (
        Op("GET", "/v1/subscriptions/{sub_id}", "One subscription", returns="Subscription"),
        subscriptions.get_one,
    ),
    (
        Op(
            "PATCH",
            "/v1/subscriptions/{sub_id}",
            "Change url, filter, description, enabled, headers, rate_limit",
            200,
            SubscriptionPatch,
            returns="Subscription",
        ),
        subscriptions.patch,
    ),
    (Op("DELETE", "/v1/subscriptions/{sub_id}", "Remove", 204), subscriptions.delete),
    (
        Op(
            "POST",
            "/v1/subscriptions/{sub_id}/rotate-secret",
            "New secret; the old one keeps signing for the grace period",
            returns="SecretRotated",
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
            returns="Pinged",
            codes=((409, ("subscription_disabled",)),),
        ),
        subscriptions.send_test,
    ),
    (
        Op(
            "GET",
            "/v1/subscriptions/{sub_id}/deliveries",
            "The attempt log, newest first",
            query=(LIMIT, OFFSET_CURSOR, ("event_id", "string")),
            returns="AttemptPage",
        ),
        subscriptions.deliveries_log,
    ),
    (
        Op(
            "GET",
            "/v1/subscriptions/{sub_id}/dead-letters",
            "Dead-lettered deliveries, newest first, with their total",
            query=(LIMIT, OFFSET_CURSOR),
            returns="DeadLetterPage",
        ),
        subscriptions.dead_letters,
    ),
    (
        Op(
            "GET",
            "/v1/subscriptions/{sub_id}/health",
            "Delivery health: healthy, failing since when, or disabled; success rate recently",
            returns="SubscriptionHealth",
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
            returns="Recovered",
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
            returns="Redelivered",
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
            returns="NoticePage",
        ),
        notices_routes.list_all,
    ),
    (
        Op(
            "POST",
            "/v1/notices/acknowledge",
            "Acknowledge the notices kept up to a time (default now)",
            200,
            NoticesAcknowledge,
            body_required=False,
            returns="NoticesAcknowledged",
        ),
        notices_routes.acknowledge,
    ),
    (
        Op(
            "GET",
            "/v1/search",
            "Find a run, event or subscription by id, upstream run id or domain",
            query=(("q", {"type": "string", "minLength": 1, "maxLength": 256}),),
            returns="SearchResult",
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
            returns="CallbackSecret",
            codes=((409, ("already_revealed",)),),
        ),
        events_routes.callback_secret,
    ),
    (
        Op(
            "GET",
            "/v1/connections",
            "The tenant's vendor connections (hints only)",
            returns="ConnectionList",
        ),
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
            returns="Connection",
        ),
        connections.put,
    ),
    (
        Op(
            "GET",
            "/v1/connections/{provider}",
            "One connection (its key_hint)",
            returns="Connection",
        ),
        connections.get_one,
    ),
    (Op("DELETE", "/v1/connections/{provider}", "Remove a connection", 204), connections.delete),
    (
        Op(
            "GET",
            "/v1/usage",
            "Usage per day: runs started, vendor credits, vendor requests, deliveries",
            query=(("since", {"type": "number", "minimum": 0}),),
            returns="Usage",
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
            returns="ApiKeyCreated",
        ),
        admin.create,
    ),
    (
        Op(
            "GET",
            "/v1/admin/api-keys",
            "List API keys made at run time",
            admin=True,
            returns="ApiKeyList",
        ),
        admin.list_all,
    ),
    (
        Op("DELETE", "/v1/admin/api-keys/{key_id}", "Revoke an API key now", 204, admin=True),
        admin.revoke,
    ),
]
