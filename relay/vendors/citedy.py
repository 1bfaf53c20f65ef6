"""Citedy warm-lead reports: start with POST, poll with GET."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import httpx

from relay.vendors.base import (
    Observed,
    Provider,
    Rejected,
    Started,
    Transient,
    body_json,
    raise_for_common,
    send,
)
from relay.vendors.citedy_models import CreateWarmLeadRunRequest

PATH = "/api/agent/citedy-warm-lead"
#: The contract's order of a run that completes; `blocked` and `failed` may end it at any stage.
ORDER = ("queued", "signals_running", "contacts_running", "drafting_running", "completed")


def _observed(body: Any, cls: type[Observed] = Observed, **extra: Any) -> Any:
    run = body.get("run") if isinstance(body, dict) else None
    if not isinstance(run, dict) or not isinstance(run.get("id"), str) or not run.get("status"):
        raise Transient("vendor answered without a run object")
    return cls(upstream_run_id=run["id"], status=str(run["status"]), snapshot=run, **extra)


def digest(content: bytes) -> str:
    """Of a GET's answer as it came: the body is the run object alone (`{"run": ...}`), so the
    same bytes are the same snapshot."""
    return hashlib.blake2b(content, digest_size=12).hexdigest()


class Citedy(Provider):
    name = "citedy"
    terminal_statuses = frozenset({"completed", "blocked", "failed"})
    can_start = True

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._key()}"}

    def changed_at(self, snapshot: dict[str, Any]) -> float | None:
        """`updated_at` (contract: WarmLeadRun, date-time): when the run took its status."""
        value = snapshot.get("updated_at")
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    def follows(self, previous: str, status: str) -> bool:
        """A poll that missed a whole phase (a worker running late) would otherwise teach the
        phase before it twice its length, aim later, and miss more."""
        if status not in ORDER or previous not in ORDER:
            return True
        return ORDER.index(status) == ORDER.index(previous) + 1

    def validate_input(self, raw: Any) -> dict[str, Any]:
        model = CreateWarmLeadRunRequest.model_validate(raw)
        return model.model_dump(exclude_none=True, exclude_unset=True)

    async def start(
        self, client: httpx.AsyncClient, payload: dict[str, Any], idempotency_key: str
    ) -> Started:
        body_out = {**payload}
        body_out.setdefault("idempotencyKey", idempotency_key)
        response = await send(
            client, "POST", self.base_url + PATH, json=body_out, headers=self._headers()
        )
        if response.status_code in (400, 402, 409):
            body = body_json(response)
            body = body if isinstance(body, dict) else {}
            details = {k: v for k, v in body.items() if k not in ("error", "message")}
            raise Rejected(
                response.status_code,
                str(body.get("error") or f"http_{response.status_code}"),
                str(body.get("message") or ""),
                details,
            )
        raise_for_common(response)
        if response.status_code not in (200, 202):
            raise Transient(f"vendor answered {response.status_code}", response.status_code)
        body = body_json(response)
        started: Started = _observed(body, Started, idempotent=bool(body.get("idempotent")))
        return started

    async def fetch(
        self, client: httpx.AsyncClient, agent_id: str, upstream_run_id: str
    ) -> Observed:
        url = f"{self.base_url}{PATH}/{upstream_run_id}"
        response = await send(client, "GET", url, headers=self._headers())
        raise_for_common(response)
        if response.status_code != 200:
            raise Transient(f"vendor answered {response.status_code}", response.status_code)
        observed: Observed = _observed(body_json(response), digest=digest(response.content))
        return observed
