"""Vendor objects as the contracts shape them, for tests that record transitions directly."""

from __future__ import annotations

import uuid
from typing import Any


def citedy_run(status: str, domain: str) -> dict[str, Any]:
    """The least a Citedy warm-lead run object carries (contracts/citedy-warm-lead.openapi.yaml):
    a fresh id, the status, the domain and the credits of an accepted run."""
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "domain": domain,
        "normalized_domain": domain,
        "credits_charged": 40,
        "created_at": "2026-11-27T00:00:00Z",
        "updated_at": "2026-11-27T00:00:00Z",
    }
