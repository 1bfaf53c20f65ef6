"""The API's request bodies are the operations' typed inputs (`relay.ops.inputs`); this name stays
so `/openapi.json` and the tests find them where they always were."""

from __future__ import annotations

from relay.ops.inputs import (
    METADATA_MAX,
    SAFE_ID,
    ApiKeyCreate,
    ConnectionPut,
    NoticesAcknowledge,
    Recover,
    Redeliver,
    RunCreate,
    Strict,
    SubscriptionCreate,
    SubscriptionFilter,
    SubscriptionPatch,
    WatchCreate,
)

__all__ = [
    "METADATA_MAX",
    "SAFE_ID",
    "ApiKeyCreate",
    "ConnectionPut",
    "NoticesAcknowledge",
    "Recover",
    "Redeliver",
    "RunCreate",
    "Strict",
    "SubscriptionCreate",
    "SubscriptionFilter",
    "SubscriptionPatch",
    "WatchCreate",
]
