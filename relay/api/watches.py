"""`/v1/watches`: follow an Autoposting agent so the runs it starts are tracked by themselves."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay import keys
from relay.api.auth import tenant_of
from relay.api.body import parse
from relay.api.errors import not_found
from relay.api.schemas import WatchCreate
from relay.ids import new_id
from relay.store.client import dumps, loads


def _public(w: dict[str, str]) -> dict[str, Any]:
    return {
        "id": w["id"],
        "provider": w["provider"],
        "agent_id": w["agent_id"],
        "metadata": loads(w.get("metadata"), {}),
        "include_existing": w.get("include_existing") == "1",
        "created_at": float(w["created_at"]),
        "last_listed_at": float(w["last_listed_at"]) if w.get("last_listed_at") else None,
        "last_error": w.get("last_error") or None,
    }


async def create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, WatchCreate)
    r = request.app.state.redis
    now = time.time()
    watch_id = new_id("wch")
    fields = {
        "id": watch_id,
        "tenant": tenant,
        "provider": body.provider,
        "agent_id": body.agent_id,
        "metadata": dumps(body.metadata or {}),
        "include_existing": "1" if body.include_existing else "0",
        "created_at": repr(now),
    }
    pipe = r.pipeline(transaction=True)
    pipe.hset(keys.watch(watch_id), mapping=fields)
    pipe.sadd(keys.tenant_watches(tenant), watch_id)
    pipe.zadd(keys.DUE_WATCH, {watch_id: now})
    await pipe.execute()
    return JSONResponse(_public(fields), status_code=201)


async def _own(request: Request) -> dict[str, str]:
    tenant = tenant_of(request)
    w: dict[str, str] = await request.app.state.redis.hgetall(
        keys.watch(request.path_params["watch_id"])
    )
    if not w or w.get("tenant") != tenant:
        raise not_found("watch")
    return w


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    r = request.app.state.redis
    ids = sorted(await r.smembers(keys.tenant_watches(tenant)))
    pipe = r.pipeline(transaction=False)
    for watch_id in ids:
        pipe.hgetall(keys.watch(watch_id))
    rows = await pipe.execute() if ids else []
    return JSONResponse({"data": [_public(w) for w in rows if w]})


async def get_one(request: Request) -> Response:
    return JSONResponse(_public(await _own(request)))


async def delete(request: Request) -> Response:
    w = await _own(request)
    r = request.app.state.redis
    pipe = r.pipeline(transaction=True)
    pipe.zrem(keys.DUE_WATCH, w["id"])
    pipe.delete(keys.watch(w["id"]), keys.watch(w["id"]) + ":seen")
    pipe.srem(keys.tenant_watches(w["tenant"]), w["id"])
    await pipe.execute()
    return Response(status_code=204)
