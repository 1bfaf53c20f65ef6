"""Search: find a run, an event or a subscription by its id, a run by its vendor (upstream) run
id, or runs by the company domain they were started for.

Bounded work: an id is one key lookup (an upstream id one per provider, an Autoposting one as
`agent_id/run_id`); a domain is looked for among the tenant's newest DOMAIN_WINDOW runs only
(one ZREVRANGE and one pipelined HMGET of their inputs), and the answer says so."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relay.ops.deps import Deps
from relay.ops.errors import Invalid
from relay.store import keys
from relay.store import subscriptions as subs_store
from relay.store.client import loads
from relay.store.lifecycle import TOMB
from relay.store.runs import get_tenant_run

DOMAIN_WINDOW = 500
MAX_HITS = 50


@dataclass(frozen=True)
class Hit:
    kind: str  # run | event | subscription
    id: str
    run_id: str | None  # the run it belongs to (an event's), or the run itself
    summary: str


@dataclass(frozen=True)
class Found:
    query: str
    hits: list[Hit] = field(default_factory=list)
    #: how many of the newest runs a domain search read (0: the query was an id)
    window: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "data": [h.__dict__ for h in self.hits],
            "domain_window": self.window,
        }


def _run_summary(run: dict[str, str]) -> str:
    domain = (loads(run.get("input"), {}) or {}).get("domain") or ""
    parts = [run.get("provider") or "", run.get("state") or "", run.get("status") or "", domain]
    return " · ".join(p for p in parts if p)


async def _by_id(deps: Deps, tenant: str, q: str) -> list[Hit]:
    r = deps.redis
    if q.startswith("run_"):
        run = await get_tenant_run(r, tenant, q)
        return [Hit("run", q, q, _run_summary(run))] if run else []
    if q.startswith("evt_"):
        event = await r.hmget(keys.event(q), ["id", "run_id", "tenant", "type", "status"])
        if not event[0]:
            return []
        run_id = event[1] or ""
        if run_id:
            run = await get_tenant_run(r, tenant, run_id)
            if run is None:
                return []
        elif event[2] != tenant:
            return []
        return [Hit("event", q, run_id or None, " ".join(x for x in event[3:] if x))]
    if q.startswith("sub_"):
        sub = await subs_store.get_tenant_sub(r, tenant, q)
        if sub is None or sub.get("kind") == subs_store.CALLBACK:
            return []
        return [Hit("subscription", q, None, sub.get("description") or sub.get("url") or "")]
    return []


async def _by_upstream(deps: Deps, tenant: str, q: str) -> list[Hit]:
    agent, _, upstream = q.rpartition("/")
    names = [
        keys.upstream(tenant, name, agent if provider.needs_agent_id else "", upstream)
        for name, provider in deps.providers.items()
        if bool(agent) == provider.needs_agent_id
    ]
    if not names or not upstream:
        return []
    hits = []
    for run_id in await deps.redis.mget(names):
        if run_id and run_id != TOMB:
            run = await get_tenant_run(deps.redis, tenant, run_id)
            if run is not None:
                hits.append(Hit("run", run_id, run_id, _run_summary(run)))
    return hits


async def _by_domain(deps: Deps, tenant: str, q: str) -> list[Hit]:
    r = deps.redis
    ids = await r.zrevrange(keys.tenant_runs(tenant), 0, DOMAIN_WINDOW - 1)
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for run_id in ids:
        pipe.hgetall(keys.run(run_id))
    hits = []
    needle = q.lower()
    for run_id, run in zip(ids, await pipe.execute(), strict=True):
        if not run or run.get("tenant") != tenant:
            continue
        domain = str((loads(run.get("input"), {}) or {}).get("domain") or "").lower()
        if domain and needle in domain:
            hits.append(Hit("run", run_id, run_id, _run_summary(run)))
            if len(hits) == MAX_HITS:
                break
    return hits


async def search(deps: Deps, tenant: str, query: str | None) -> Found:
    """None (no query at all) or blanks find nothing; an empty or over-long query is refused."""
    if query is None:
        return Found("")
    if not 1 <= len(query) <= 256:
        raise Invalid("q", "q: give 1-256 characters: an id, an upstream run id or a domain")
    q = query.strip()
    if not q:
        return Found(q)
    hits = await _by_id(deps, tenant, q) or await _by_upstream(deps, tenant, q)
    if hits or q.startswith(("run_", "evt_", "sub_")):
        return Found(q, hits)
    return Found(q, await _by_domain(deps, tenant, q), DOMAIN_WINDOW)
