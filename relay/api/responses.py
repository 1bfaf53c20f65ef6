"""The JSON Schema of every response body the API answers, for `/openapi.json` (components).

Each is written against what the operations return (relay/ops/*.py `public`, the views'
renderings), and tests/test_openapi_responses.py validates the running app's real answers, one
per operation and status, against the document it serves: a field renamed or dropped there fails
here. Objects are open (`additionalProperties` is not closed): a field added later is not a break.
"""

from __future__ import annotations

from typing import Any

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _obj(props: dict[str, Any], *, optional: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """An object with `props`, all required but `optional`."""
    return {
        "type": "object",
        "required": [k for k in props if k not in optional],
        "properties": props,
        **extra,
    }


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


STR: dict[str, Any] = {"type": "string"}
NUM: dict[str, Any] = {"type": "number"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
OBJ: dict[str, Any] = {"type": "object"}
TIME = {"type": "number", "description": "Unix seconds."}
CURSOR = _nullable("string", description="Pass as `cursor` for the next page; null at the end.")


def _page(item: str, **more: Any) -> dict[str, Any]:
    return _obj({"data": {"type": "array", "items": ref(item)}, **more})


def _list(item: str) -> dict[str, Any]:
    return _obj({"data": {"type": "array", "items": ref(item)}})


ERROR = _obj(
    {
        "error": {"type": "string", "description": "A stable code, e.g. `not_found`."},
        "message": {"type": "string", "description": "What went wrong, in words."},
        "field": {"type": "string", "description": "The field at fault, when one is."},
        "limit": {"type": "string", "description": "`quota_exceeded`: the setting reached."},
    },
    optional=("field", "limit"),
)

DELIVERY_STATE = _obj(
    {
        "subscription_id": STR,
        "state": {
            "type": "string",
            "examples": ["pending", "retrying", "succeeded", "dead", "dropped", "expired"],
        },
        "attempts": INT,
        "last_status_code": _nullable("integer"),
        "last_error": _nullable("string"),
        "next_attempt_at": _nullable("number"),
    }
)

RUN_EVENT = _obj(
    {
        "id": {"type": "string", "description": "The event id (`webhook-id`)."},
        "type": STR,
        "sequence": INT,
        "status": _nullable("string"),
        "created_at": TIME,
        "deliveries": {"type": "array", "items": ref("DeliveryState")},
    }
)

RUN = _obj(
    {
        "id": {"type": "string", "description": "`run_…`"},
        "provider": STR,
        "agent_id": _nullable("string"),
        "upstream_run_id": _nullable("string"),
        "state": {
            "type": "string",
            "examples": [
                "starting",
                "tracking",
                "completed",
                "start_failed",
                "tracking_failed",
                "stopped",
                "joined",
            ],
        },
        "status": _nullable("string", description="The vendor's status."),
        "previous_status": _nullable("string"),
        "terminal": BOOL,
        "sequence": INT,
        "metadata": OBJ,
        "callback_url": _nullable("string"),
        "joined_run_id": _nullable("string"),
        "error": {"description": "Why the run failed (an object), or null."},
        "polls": INT,
        "deliveries_dead": {"type": "integer", "description": "Its deliveries dead-lettered."},
        "deliveries_failing": {"type": "integer", "description": "Its deliveries retrying."},
        "job_error": {"description": "Set aside after repeated failed jobs: why; else null."},
        "created_at": TIME,
        "updated_at": TIME,
        "upstream": {"description": "The vendor's run object as last read, or null."},
        "events": {"type": "array", "items": ref("RunEvent")},
        "refresh": {"type": "string", "description": "`POST …/refresh`: what it did."},
    },
    optional=("events", "refresh", "outcome", "input"),
)

RUN_PAGE = _page(
    "Run",
    next_cursor=CURSOR,
    prev_cursor=_nullable("string", description="Pass as `before` for the newer page."),
    total=INT,
)

SUBSCRIPTION = _obj(
    {
        "id": {"type": "string", "description": "`sub_…`"},
        "url": STR,
        "description": STR,
        "filter": _obj(
            {
                "providers": {"type": "array", "items": STR},
                "statuses": {"type": "array", "items": STR},
                "event_types": {"type": "array", "items": STR},
            }
        ),
        "enabled": BOOL,
        "disabled_reason": _nullable("string"),
        "disabled_at": _nullable("number"),
        "failing_since": _nullable("number"),
        "kind": STR,
        "headers": {"type": "array", "items": STR, "description": "Names only."},
        "rate_limit": _nullable("number"),
        "run_id": _nullable("string"),
        "created_at": TIME,
        "updated_at": TIME,
    }
)

SECRET = {
    "type": "string",
    "pattern": "^whsec_",
    "description": "The signing secret, shown this once: keep it.",
}
SUBSCRIPTION_CREATED = {"allOf": [ref("Subscription"), _obj({"secret": SECRET})]}
ROTATED = _obj({"id": STR, "secret": SECRET, "previous_secret_expires_at": TIME})
PINGED = _obj({"event_id": STR, "type": {"const": "ping"}})

ATTEMPT = _obj(
    {
        "id": STR,
        "event_id": STR,
        "run_id": STR,
        "subscription_id": STR,
        "attempt": INT,
        "at": TIME,
        "status_code": _nullable("integer"),
        "latency_ms": NUM,
        "error": _nullable("string"),
        "outcome": STR,
        "response_excerpt": STR,
    },
    optional=("id", "attempt", "status_code", "latency_ms", "response_excerpt"),
)
ATTEMPT_PAGE = _page("Attempt", next_cursor=CURSOR, total=INT)
DEAD_LETTER = _obj({"event_id": STR, "run_id": STR, "dead_at": TIME})
DEAD_LETTER_PAGE = _page("DeadLetter", next_cursor=CURSOR, total=INT)
SUB_HEALTH = _obj(
    {
        "state": {"type": "string", "enum": ["healthy", "failing", "disabled"]},
        "since": _nullable("number"),
        "reason": _nullable("string"),
        "dead_letters": INT,
        "window_seconds": NUM,
        "attempts": INT,
        "succeeded": INT,
        "success_rate": _nullable("number"),
        "last_attempt": {"oneOf": [ref("Attempt"), {"type": "null"}]},
    }
)
RECOVERED = _obj({"recovered": INT})
REDELIVERED = _obj({"event_id": STR, "subscriptions": {"type": "array", "items": STR}})

NOTICE = _obj(
    {
        "type": {
            "type": "string",
            "examples": [
                "subscription.disabled",
                "vendor.unauthorized",
                "watch.listing_truncated",
                "watch.set_aside",
                "deliveries.expired",
            ],
            "description": "Each type is also an operational event (see `webhooks`).",
        },
        "at": TIME,
        "acknowledged": {
            "type": "boolean",
            "description": "Kept before the tenant's last `POST /v1/notices/acknowledge`.",
        },
    },
    description="The fields of the operational event's `data` of the same type, plus `type`.",
)
NOTICES_ACKNOWLEDGED = _obj({"acknowledged_until": TIME})
NOTICE_PAGE = _page("Notice", next_cursor=CURSOR, total=INT)

WATCH = _obj(
    {
        "id": {"type": "string", "description": "`wch_…`"},
        "provider": STR,
        "agent_id": STR,
        "metadata": OBJ,
        "include_existing": BOOL,
        "created_at": TIME,
        "last_listed_at": _nullable("number"),
        "last_error": _nullable("string"),
        "set_aside": BOOL,
        "job_error": {"description": "Why its listing was set aside, or null."},
    }
)

CONNECTION = _obj(
    {
        "provider": STR,
        "key_hint": {"type": "string", "description": "The key's last 4 characters."},
        "created_at": TIME,
        "updated_at": TIME,
    }
)

COUNTS = {
    name: INT for name in ("runs_started", "credits", "vendor_requests", "deliveries", "delivered")
}
USAGE = _obj(
    {
        "since": {"type": "string", "format": "date"},
        "totals": _obj(dict(COUNTS)),
        "days": {
            "type": "array",
            "items": _obj({"day": {"type": "string", "format": "date"}, **COUNTS}),
        },
    }
)

API_KEY = _obj({"id": STR, "tenant": STR, "description": STR, "key_hint": STR, "created_at": TIME})
API_KEY_CREATED = {
    "allOf": [
        ref("ApiKey"),
        _obj({"key": {"type": "string", "description": "The API key, shown this once."}}),
    ]
}

SEARCH = _obj(
    {
        "query": STR,
        "data": {
            "type": "array",
            "items": _obj(
                {
                    "kind": {"type": "string", "examples": ["run", "event", "subscription"]},
                    "id": STR,
                    "run_id": _nullable("string"),
                    "summary": STR,
                },
                optional=("run_id",),
            ),
        },
        "domain_window": INT,
    }
)
CALLBACK_SECRET = _obj({"secret": SECRET})
HEALTHZ = _obj({"status": {"const": "ok"}})
READYZ = _obj(
    {
        "status": {"const": "ready"},
        "memory": _obj(
            {
                "used_memory": INT,
                "maxmemory": INT,
                "ratio": NUM,
                "threshold": NUM,
                "maxmemory_policy": _nullable("string"),
            },
            optional=("maxmemory_policy",),
        ),
        "accepting_new_work": BOOL,
    }
)
OPENAPI = _obj({"openapi": STR, "info": OBJ, "paths": OBJ}, description="This document.")

SCHEMAS: dict[str, Any] = {
    "Error": ERROR,
    "DeliveryState": DELIVERY_STATE,
    "RunEvent": RUN_EVENT,
    "Run": RUN,
    "RunPage": RUN_PAGE,
    "Subscription": SUBSCRIPTION,
    "SubscriptionCreated": SUBSCRIPTION_CREATED,
    "SubscriptionList": _list("Subscription"),
    "SecretRotated": ROTATED,
    "Pinged": PINGED,
    "Attempt": ATTEMPT,
    "AttemptPage": ATTEMPT_PAGE,
    "DeadLetter": DEAD_LETTER,
    "DeadLetterPage": DEAD_LETTER_PAGE,
    "SubscriptionHealth": SUB_HEALTH,
    "Recovered": RECOVERED,
    "Redelivered": REDELIVERED,
    "Notice": NOTICE,
    "NoticePage": NOTICE_PAGE,
    "NoticesAcknowledged": NOTICES_ACKNOWLEDGED,
    "Watch": WATCH,
    "WatchList": _list("Watch"),
    "Connection": CONNECTION,
    "ConnectionList": _list("Connection"),
    "Usage": USAGE,
    "ApiKey": API_KEY,
    "ApiKeyCreated": API_KEY_CREATED,
    "ApiKeyList": _list("ApiKey"),
    "SearchResult": SEARCH,
    "CallbackSecret": CALLBACK_SECRET,
    "Healthz": HEALTHZ,
    "Readyz": READYZ,
    "OpenApiDocument": OPENAPI,
}
