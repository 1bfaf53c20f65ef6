"""The JSON Schema of every webhook body, for the `webhooks` section of `/openapi.json`.

The relay's own parts (envelope, `data.run`, errors, ping) come from the pydantic models in
relay/delivery/events.py, the same models every body is built through. `data.upstream` is the
vendor's run
object, typed per provider from the vendor's own OpenAPI contract (contracts/ in the repo),
opened up so that fields and statuses a vendor adds later still validate: `additionalProperties:
false` is dropped and enums become "known values" (listed as `examples`).

The contracts are YAML in the repo and the relay image does not carry them, so their schemas are
converted once, at development time, into relay/upstream_schemas.json (package data):
`python -m relay.delivery.webhook_schemas` rewrites it, and tests/test_webhook_schemas.py fails
when it no
longer matches contracts/.
"""

from __future__ import annotations

import copy
import json
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from relay.delivery import events

REF = "#/components/schemas/"
CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
GENERATED = "upstream_schemas.json"

#: provider → (contract file, root schema of the run object the relay forwards as `upstream`)
PROVIDER_CONTRACTS: dict[str, tuple[str, str]] = {
    "citedy": ("citedy-warm-lead.openapi.yaml", "WarmLeadRun"),
    "autoposting": ("autoposting-agent-runs.openapi.yaml", "AgentRun"),
}
#: The vendor's refusal details carried in `run.start_failed` `data.error` (Citedy's 402 body).
START_ERROR_CONTRACT = ("citedy", "PaymentRequiredResponse")

SIGNATURE_HEADERS = [
    ("webhook-id", "The event id (`evt_…`): the same across retries; de-duplicate on it."),
    ("webhook-timestamp", "Unix seconds at send time."),
    ("webhook-signature", "`v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>`, space-separated"),
]


def _prefix(provider: str) -> str:
    return provider[:1].upper() + provider[1:]


def _open(node: Any, rename: dict[str, str]) -> Any:
    """A vendor schema made tolerant of what the vendor adds later, with its $refs renamed."""
    if isinstance(node, list):
        return [_open(item, rename) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "additionalProperties" and value is False:
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = REF + rename[value.removeprefix(REF)]
        elif key == "enum":
            # Known values, not a closed set: vendors' guides already name statuses beyond it.
            out["examples"] = value
        else:
            out[key] = _open(value, rename)
    return out


def _closure(schemas: dict[str, Any], root: str) -> list[str]:
    seen: list[str] = []
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        text = json.dumps(schemas[name])
        todo += [
            part.split('"')[0] for part in text.split('"$ref": "' + REF)[1:] if part.split('"')[0]
        ]
    return seen


def from_contracts(contracts: Path = CONTRACTS) -> dict[str, Any]:
    """Convert the vendors' contracts (YAML; needs PyYAML, a dev dependency) into the relay's
    upstream schemas: `{"roots": {provider: name}, "schemas": {name: schema}}`."""
    import yaml

    roots: dict[str, str] = {}
    out: dict[str, Any] = {}
    wanted: dict[str, list[str]] = {p: [root] for p, (_, root) in PROVIDER_CONTRACTS.items()}
    wanted[START_ERROR_CONTRACT[0]].append(START_ERROR_CONTRACT[1])
    for provider, (filename, root) in PROVIDER_CONTRACTS.items():
        schemas = yaml.safe_load((contracts / filename).read_text())["components"]["schemas"]
        names = [n for w in wanted[provider] for n in _closure(schemas, w)]
        rename = {name: _prefix(provider) + name for name in schemas}
        for name in names:
            out[rename[name]] = _open(schemas[name], rename)
        roots[provider] = rename[root]
    start_error = _prefix(START_ERROR_CONTRACT[0]) + START_ERROR_CONTRACT[1]
    return {"roots": roots, "start_error": start_error, "schemas": dict(sorted(out.items()))}


@cache
def upstream() -> dict[str, Any]:
    """The converted vendor schemas shipped with the package."""
    data: dict[str, Any] = json.loads(
        (resources.files("relay.delivery") / GENERATED).read_text(encoding="utf-8")
    )
    return data


def _models_schemas() -> dict[str, Any]:
    """Every event model and the models they use, as components (pydantic's output)."""
    out: dict[str, Any] = {}
    for model in events.MODELS.values():
        schema = model.model_json_schema(ref_template=REF + "{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _typed_upstream(schemas: dict[str, Any], up: dict[str, Any]) -> None:
    """`StatusChangedData` becomes one variant per provider, told apart by `run.provider`, each
    with that vendor's run object as `upstream`."""
    base = schemas.pop("StatusChangedData")
    variants = []
    for provider, root in up["roots"].items():
        name = f"StatusChangedData{_prefix(provider)}"
        variant = copy.deepcopy(base)
        variant["title"] = name
        variant["properties"]["run"] = {
            "$ref": REF + "RunPart",
            "properties": {"provider": {"const": provider}},
        }
        variant["properties"]["upstream"] = {
            "$ref": REF + root,
            "description": base["properties"]["upstream"].get("description", ""),
        }
        schemas[name] = variant
        variants.append({"$ref": REF + name})
    schemas["StatusChangedData"] = {
        "oneOf": variants,
        "description": "Told apart by `run.provider`; `upstream` is that vendor's run object.",
    }
    # The refusal's details as the vendor's contract describes them (extra fields, all optional).
    detail = schemas[up["start_error"]]
    extra: dict[str, Any] = {}
    for part in detail.get("allOf", [detail]):
        extra.update(part.get("properties", {}) if "$ref" not in part else {})
    start = schemas["StartError"]
    for key, value in extra.items():
        start["properties"].setdefault(key, value)


def components() -> dict[str, Any]:
    """The schemas the `webhooks` section refers to, plus `WebhookEvent` (any body) and
    `PulledEvent` (a body plus its `id`, as `GET /v1/events` returns it)."""
    up = upstream()
    schemas = _models_schemas()
    schemas.update(copy.deepcopy(up["schemas"]))
    _typed_upstream(schemas, up)
    mapping = {t: REF + m.__name__ for t, m in events.MODELS.items()}
    schemas["WebhookEvent"] = {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    pulled = {}
    for event_type, model in events.MODELS.items():
        item = copy.deepcopy(schemas[model.__name__])
        item["title"] = "Pulled" + model.__name__
        item["properties"] = {
            "id": {"type": "string", "description": "The event id, as `webhook-id`."},
            **item["properties"],
        }
        item["required"] = ["id", *item.get("required", [])]
        schemas[item["title"]] = item
        pulled[event_type] = REF + item["title"]
    schemas["PulledEvent"] = {
        "oneOf": [{"$ref": ref} for ref in pulled.values()],
        "discriminator": {"propertyName": "type", "mapping": pulled},
    }
    schemas["EventPage"] = {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": REF + "PulledEvent"}},
            "next_cursor": {
                "type": "string",
                "description": "Pass as `after` to get what follows (the same when nothing did).",
            },
        },
    }
    return schemas


def webhooks() -> dict[str, Any]:
    """The OpenAPI 3.1 `webhooks` section: one POST per event type."""
    out: dict[str, Any] = {}
    for event_type, model in events.MODELS.items():
        doc = (model.__doc__ or "").strip()
        out[event_type] = {
            "post": {
                "summary": doc.splitlines()[0] if doc else event_type,
                "description": doc,
                "operationId": "webhook_" + event_type.replace(".", "_"),
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "description": text,
                        "schema": {"type": "string"},
                    }
                    for name, text in SIGNATURE_HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": REF + model.__name__}}},
                },
                "responses": {
                    "2XX": {"description": "Received. Anything else is retried."},
                    "410": {"description": "Gone: the relay disables the subscription."},
                },
            }
        }
    return out


def body_validator(document: dict[str, Any], name: str = "WebhookEvent") -> Any:
    """A JSON Schema (2020-12, as OpenAPI 3.1 uses) validator for one component of `document`
    (an OpenAPI document such as `/openapi.json`): `WebhookEvent` takes any body the relay sends.
    Uses `jsonschema` (a dev dependency: tests and examples)."""
    from jsonschema import Draft202012Validator

    schema = {"$ref": REF + name, "components": document["components"]}
    return Draft202012Validator(schema)


def main() -> None:
    """Rewrite relay/upstream_schemas.json from contracts/."""
    target = Path(__file__).with_name(GENERATED)
    target.write_text(json.dumps(from_contracts(), indent=1, sort_keys=False) + "\n")
    sys.stdout.write(f"wrote {target}\n")


if __name__ == "__main__":
    main()
