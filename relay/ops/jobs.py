"""Work set aside after RELAY_POISON_AFTER failed jobs in a row (lua/fail.lua puts a member of a
due set in its poison set, `keys.poison(due)`, with the error on its run or watch): see it and
put it back (`relay jobs list|retry`). Every call pages through the poison sets, `batch` members
at a time, so its Redis work per round trip is bounded however much was set aside."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from relay.ops.deps import Deps
from relay.ops.errors import Invalid
from relay.store import keys, leases
from relay.store.client import loads

#: Every due set whose members can be set aside, by the name its pump and `--kind` use.
KINDS = {
    "start": keys.DUE_START,
    "poll": keys.DUE_POLL,
    "deliver": keys.DUE_DELIVER,
    "watch": keys.DUE_WATCH,
}


@dataclass(frozen=True)
class SetAside:
    kind: str
    member: str
    set_aside_at: float
    error: Any  # the `job_error` on its run or watch (None when that record is gone)

    def public(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "member": self.member,
            "set_aside_at": self.set_aside_at,
            "error": self.error,
        }


def _kinds(kind: str | None) -> list[str]:
    if kind is None:
        return list(KINDS)
    if kind not in KINDS:
        raise Invalid("kind", f"kind: expected one of {', '.join(KINDS)}")
    return [kind]


async def each(deps: Deps, kind: str | None = None, batch: int = 100) -> AsyncIterator[SetAside]:
    """Every set-aside member (of one kind, or all), oldest first, read `batch` at a time."""
    if batch < 1:
        raise Invalid("batch", "batch: must be at least 1")
    r = deps.redis
    for name in _kinds(kind):
        poison = keys.poison(KINDS[name])
        offset = 0
        while True:
            page = await r.zrange(poison, offset, offset + batch - 1, withscores=True)
            if not page:
                break
            offset += len(page)
            pipe = r.pipeline(transaction=False)
            for member, _ in page:
                pipe.hget(leases.record_key(member) or poison, "job_error")
            errors = await pipe.execute()
            for (member, score), error in zip(page, errors, strict=True):
                yield SetAside(name, member, float(score), loads(error))
            if len(page) < batch:
                break


async def list_set_aside(
    deps: Deps, kind: str | None = None, limit: int = 100, batch: int = 100
) -> list[SetAside]:
    out: list[SetAside] = []
    async for item in each(deps, kind, batch):
        out.append(item)
        if len(out) >= limit:
            break
    return out


async def retry(deps: Deps, kind: str, member: str) -> bool:
    """Put one set-aside member back on its schedule, due now; False if it was not set aside."""
    (name,) = _kinds(kind)
    return await leases.put_back(deps.redis, KINDS[name], member)


async def retry_all(deps: Deps, kind: str | None = None, batch: int = 100) -> int:
    """Put every set-aside member (of one kind, or all) back, `batch` at a time."""
    if batch < 1:
        raise Invalid("batch", "batch: must be at least 1")
    done = 0
    for name in _kinds(kind):
        poison = keys.poison(KINDS[name])
        while True:
            page = await deps.redis.zrange(poison, 0, batch - 1)
            if not page:
                break
            for member in page:
                done += await leases.put_back(deps.redis, KINDS[name], member)
    return done
