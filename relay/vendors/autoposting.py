"""Autoposting agent runs: read-only; runs are started by the vendor's scheduled agents, so the
relay tracks them one by one or follows an agent's run list (a watch)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx

from relay.vendors.base import (
    Answer,
    Observed,
    Provider,
    RunsPage,
    Transient,
    body_json,
    raise_for_common,
    send,
)


def _run(item: Any) -> Observed:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item.get("status"):
        raise Transient("vendor answered without a run object")
    return Observed(upstream_run_id=item["id"], status=str(item["status"]), snapshot=item)


def _data(response: Answer) -> Any:
    raise_for_common(response)
    if response.status_code != 200:
        raise Transient(f"vendor answered {response.status_code}", response.status_code)
    body = body_json(response)
    if not isinstance(body, dict) or body.get("success") is not True:
        raise Transient("vendor answered without a success envelope")
    return body.get("data")


class Autoposting(Provider):
    name = "autoposting"
    needs_agent_id = True
    can_watch = True

    def __init__(self, base_url: str, api_key: str | None, terminal: tuple[str, ...]) -> None:
        super().__init__(base_url, api_key)
        self.terminal_statuses = frozenset(terminal)

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._key()}"}

    async def fetch(
        self, client: httpx.AsyncClient, agent_id: str, upstream_run_id: str
    ) -> Observed:
        url = f"{self.base_url}/agents/{agent_id}/runs/{upstream_run_id}"
        return _run(_data(await send(client, "GET", url, headers=self._headers())))

    async def list_runs(
        self, client: httpx.AsyncClient, agent_id: str, offset: int = 0, limit: int = 100
    ) -> RunsPage:
        """One page. The contract documents no paging parameters; `limit`/`offset` are sent
        anyway (a vendor that ignores them answers its first page again, which the watch
        notices) and `total` is read when the vendor gives it."""
        query = urlencode({"limit": limit, "offset": offset})
        url = f"{self.base_url}/agents/{agent_id}/runs?{query}"
        data = _data(await send(client, "GET", url, headers=self._headers()))
        runs = data.get("runs") if isinstance(data, dict) else None
        if not isinstance(runs, list):
            raise Transient("vendor answered a runs list without runs")
        total = data.get("total")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            total = None
        return RunsPage(runs=[_run(item) for item in runs], total=total)
