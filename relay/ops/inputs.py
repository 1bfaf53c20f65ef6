"""Typed inputs of the operations (`relay.ops`): the API parses request bodies into them, the
console builds them from its forms. They are also what `/openapi.json` describes."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from relay.delivery import rate_limit, sub_headers
from relay.delivery.events import EVENT_TYPES

SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
METADATA_MAX = 4096


class Strict(BaseModel):
    # strict: `"yes"` is not a boolean and `true` is not a time, whatever lax coercion says.
    model_config = ConfigDict(extra="forbid", strict=True)


class RunCreate(Strict):
    # Validated against the provider registry by the handler (whose message lists them); the
    # enum is for /openapi.json, and tests/test_schemathesis.py keeps the two in step.
    provider: str = Field(
        description="citedy or autoposting",
        min_length=1,
        max_length=40,
        json_schema_extra={"enum": ["citedy", "autoposting"]},
    )
    input: dict[str, Any] | None = Field(
        default=None,
        description="Start a run: the vendor's start request (Citedy's CreateWarmLeadRunRequest).",
    )
    upstream_run_id: str | None = Field(
        default=None, pattern=SAFE_ID, description="Track an existing vendor run."
    )
    agent_id: str | None = Field(
        default=None, pattern=SAFE_ID, description="Autoposting: the agent the run belongs to."
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="Echoed in every event, at most 4 KB."
    )
    callback_url: str | None = Field(
        default=None, max_length=2048, description="A subscriber for this run alone."
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if (
            value is not None
            and len(json.dumps(value, separators=(",", ":")).encode()) > METADATA_MAX
        ):
            raise ValueError(f"metadata is over {METADATA_MAX} bytes")
        return value


_NAME_ITEMS: JsonDict = {"items": {"type": "string", "minLength": 1, "maxLength": 64}}


class SubscriptionFilter(Strict):
    # The item constraints are checked by the validators below (with clearer messages);
    # json_schema_extra states them in /openapi.json too.
    providers: list[str] = Field(default_factory=list, max_length=20, json_schema_extra=_NAME_ITEMS)
    statuses: list[str] = Field(default_factory=list, max_length=50, json_schema_extra=_NAME_ITEMS)
    event_types: list[str] = Field(
        default_factory=list,
        max_length=10,
        json_schema_extra={"items": {"type": "string", "enum": list(EVENT_TYPES)}},
    )

    @field_validator("statuses", "providers")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for item in value:
            if not 1 <= len(item) <= 64:
                raise ValueError("each entry must be 1-64 characters")
        return value

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in EVENT_TYPES:
                raise ValueError(f"unknown event type; expected one of {', '.join(EVENT_TYPES)}")
        return value


HEADERS_DOC = (
    "Up to 10 extra request headers sent on every delivery. Values are write-only (encrypted at "
    "rest; only names are shown back). webhook-*, content-*, host and hop-by-hop names are refused."
)
RATE_DOC = "At most this many deliveries per second to this subscription, across all workers."


class SubscriptionCreate(Strict):
    url: str = Field(min_length=1, max_length=2048)
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)
    description: str = Field(default="", max_length=256)
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=sub_headers.MAX_HEADERS,
        description=HEADERS_DOC,
        json_schema_extra=sub_headers.json_schema(),
    )
    rate_limit: float | None = Field(
        default=None, gt=0, le=rate_limit.MAX_RATE, description=RATE_DOC
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return sub_headers.check(value)


class SubscriptionPatch(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    filter: SubscriptionFilter | None = None
    description: str | None = Field(default=None, max_length=256)
    enabled: bool | None = None
    headers: dict[str, str] | None = Field(
        default=None,
        max_length=sub_headers.MAX_HEADERS,
        description="Replaces all extra headers ({} removes them). " + HEADERS_DOC,
        json_schema_extra=sub_headers.json_schema(),
    )
    rate_limit: float | None = Field(
        default=None, ge=0, le=rate_limit.MAX_RATE, description=RATE_DOC + " 0 removes the limit."
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else sub_headers.check(value)


class Recover(Strict):
    since: float = Field(ge=0, description="Unix seconds: replay dead-lettered deliveries since.")


class NoticesAcknowledge(Strict):
    until: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Unix seconds: acknowledge the notices kept up to then (default: now).",
    )


class Redeliver(Strict):
    subscription_id: str | None = Field(default=None, pattern=SAFE_ID)


class WatchCreate(Strict):
    provider: Literal["autoposting"] = "autoposting"
    agent_id: str = Field(pattern=SAFE_ID)
    metadata: dict[str, Any] | None = None
    include_existing: bool = Field(
        default=False, description="Also track the runs already listed at the first look."
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return RunCreate._metadata_size(value)


class ConnectionPut(Strict):
    api_key: str = Field(
        min_length=8,
        max_length=512,
        pattern=r"^[\x21-\x7e]+$",
        description="The tenant's own vendor API key. Write-only: never shown back.",
    )


class ApiKeyCreate(Strict):
    tenant: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field(default="", max_length=256)
