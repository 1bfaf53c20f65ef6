"""The relay's own OpenAPI document, generated from the route table and the request models so
it cannot drift from what the handlers accept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from relay.api.responses import SCHEMAS

#: Error codes a status answers whatever the operation (`error` of the body); an operation's
#: `codes` add its own. 400 is left open: every field check has its own code.
COMMON_CODES: dict[int, tuple[str, ...]] = {
    401: ("unauthorized",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    503: ("unavailable",),
}


@dataclass(frozen=True)
class Header:
    name: str
    description: str
    required: bool = False
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    ok: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    #: (name, JSON type) or (name, full JSON schema of the parameter)
    query: tuple[tuple[str, str | dict[str, Any]], ...] = ()
    public: bool = False
    #: Operator only: the bearer is RELAY_ADMIN_KEY, not a tenant's key.
    admin: bool = False
    #: Other answers the operation gives: (status, description), e.g. a 200 beside a 202, a 409.
    also: tuple[tuple[int, str], ...] = ()
    #: The success body's schema: a name in components (every success but a 204 has one).
    returns: str | None = None
    #: The `error` codes an error status may carry here, beside COMMON_CODES: (status, codes).
    codes: tuple[tuple[int, tuple[str, ...]], ...] = ()
    #: Request headers the operation reads.
    headers: tuple[Header, ...] = ()


def document(
    ops: list[Op],
    version: str,
    webhooks: dict[str, Any] | None = None,
    components: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`webhooks` and the `components` they refer to: relay/delivery/webhook_schemas.py."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {**SCHEMAS, **(components or {})}
    for op in ops:
        params: list[dict[str, Any]] = [
            {
                "name": part[1:-1],
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
            }
            for part in op.path.split("/")
            if part.startswith("{")
        ]
        params += [
            {
                "name": n,
                "in": "query",
                "required": False,
                "schema": t if isinstance(t, dict) else {"type": t},
            }
            for n, t in op.query
        ]
        errors = {"400": "bad input", "404": "not found", "503": "store unreachable"}
        if not op.public:
            errors["401"] = "missing or unknown API key"
        if op.body is not None:
            errors["413"] = "body over RELAY_MAX_BODY_BYTES"
            errors["415"] = "body not sent as application/json"
        errors.update({str(code): text for code, text in op.also if code >= 400})
        successes = {str(op.ok): "success"}
        successes.update({str(code): text for code, text in op.also if code < 400})
        params += [
            {
                "name": h.name,
                "in": "header",
                "required": h.required,
                "description": h.description,
                "schema": h.schema or {"type": "string"},
            }
            for h in op.headers
        ]
        responses: dict[str, Any] = {
            **{
                code: {
                    "description": text,
                    **(
                        {"content": {"application/json": {"schema": _success(op)}}}
                        if code != "204"
                        else {}
                    ),
                }
                for code, text in successes.items()
            },
            **{code: _error(op, int(code), text) for code, text in errors.items()},
        }
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": _op_id(op),
            "parameters": params,
            "responses": responses,
        }
        if not op.public:
            entry["security"] = [{"bearer": []}]
        if op.body is not None:
            schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in [*schema.pop("$defs", {}).items(), (op.body.__name__, schema)]:
                if schemas.setdefault(name, sub) != sub:
                    raise ValueError(f"two different schemas are named {name}")
            entry["requestBody"] = {
                "required": op.body_required,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}
                    }
                },
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Run relay",
            "version": version,
            "description": "Vendors' poll-only job APIs as signed, retried, ordered webhooks.",
        },
        "paths": paths,
        **({"webhooks": webhooks} if webhooks else {}),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _success(op: Op) -> dict[str, Any]:
    if op.returns is None:
        raise ValueError(f"{op.method} {op.path} names no schema for its success body")
    return {"$ref": f"#/components/schemas/{op.returns}"}


def _error(op: Op, status: int, text: str) -> dict[str, Any]:
    """An error answer: the Error body, its `error` code one of those listed for the status
    (COMMON_CODES and the operation's), and `Retry-After` on a 503 or 429."""
    codes = [*COMMON_CODES.get(status, ()), *dict(op.codes).get(status, ())]
    schema: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
    if codes:
        text = f"{text} (`error`: {', '.join(f'`{c}`' for c in codes)})"
        schema = {"allOf": [schema, {"properties": {"error": {"enum": codes}}}]}
    out: dict[str, Any] = {
        "description": text,
        "content": {"application/json": {"schema": schema}},
    }
    if status == 503:
        out["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again (`store_full`, `unavailable`).",
                "schema": {"type": "string"},
            }
        }
    return out


def _op_id(op: Op) -> str:
    words = [p.strip("{}") for p in op.path.strip("/").split("/") if p]
    return op.method.lower() + "_" + "_".join(w.replace("-", "_") for w in words)
