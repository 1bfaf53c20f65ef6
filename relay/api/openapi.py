"""The relay's own OpenAPI document, generated from the route table and the request models so
it cannot drift from what the handlers accept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    },
}


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
    #: The success body's schema: a name in components (default: any object).
    returns: str | None = None


def document(
    ops: list[Op],
    version: str,
    webhooks: dict[str, Any] | None = None,
    components: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`webhooks` and the `components` they refer to: relay/delivery/webhook_schemas.py."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR, **(components or {})}
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
        responses: dict[str, Any] = {
            **{
                code: {
                    "description": text,
                    **(
                        {"content": {"application/json": {"schema": _success(op, code)}}}
                        if code != "204"
                        else {}
                    ),
                }
                for code, text in successes.items()
            },
            **{
                code: {
                    "description": text,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code, text in errors.items()
            },
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


def _success(op: Op, code: str) -> dict[str, Any]:
    if op.returns and code == str(op.ok):
        return {"$ref": f"#/components/schemas/{op.returns}"}
    return {"type": "object"}


def _op_id(op: Op) -> str:
    words = [p.strip("{}") for p in op.path.strip("/").split("/") if p]
    return op.method.lower() + "_" + "_".join(w.replace("-", "_") for w in words)
