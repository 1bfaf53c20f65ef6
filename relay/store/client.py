"""The scripts bound to one Redis client, registered once (EVALSHA thereafter)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from relay.store import scripts


@dataclass(frozen=True)
class Scripts:
    create_run: AsyncScript
    claim: AsyncScript
    record_event: AsyncScript
    enqueue_lane: AsyncScript
    recover_dead: AsyncScript
    lane_head: AsyncScript
    finish_head: AsyncScript
    retry_head: AsyncScript
    wait_lane: AsyncScript
    wake_lane: AsyncScript
    settle_lane: AsyncScript
    park_lane: AsyncScript
    reserve_slot: AsyncScript
    keep_notice: AsyncScript
    note_unauthorized: AsyncScript
    resume_run: AsyncScript
    delete_sub: AsyncScript
    release: AsyncScript
    fail: AsyncScript
    refresh_poll: AsyncScript
    bump: AsyncScript


def bind(r: aioredis.Redis) -> Scripts:
    cached: Scripts | None = getattr(r, "_relay_scripts", None)
    if cached is None:
        cached = Scripts(
            create_run=r.register_script(scripts.CREATE_RUN),
            claim=r.register_script(scripts.CLAIM),
            record_event=r.register_script(scripts.RECORD_EVENT),
            enqueue_lane=r.register_script(scripts.ENQUEUE_LANE),
            recover_dead=r.register_script(scripts.RECOVER_DEAD),
            lane_head=r.register_script(scripts.LANE_HEAD),
            finish_head=r.register_script(scripts.FINISH_HEAD),
            retry_head=r.register_script(scripts.RETRY_HEAD),
            wait_lane=r.register_script(scripts.WAIT_LANE),
            wake_lane=r.register_script(scripts.WAKE_LANE),
            settle_lane=r.register_script(scripts.SETTLE_LANE),
            park_lane=r.register_script(scripts.PARK_LANE),
            reserve_slot=r.register_script(scripts.RESERVE_SLOT),
            keep_notice=r.register_script(scripts.KEEP_NOTICE),
            note_unauthorized=r.register_script(scripts.NOTE_UNAUTHORIZED),
            resume_run=r.register_script(scripts.RESUME_RUN),
            delete_sub=r.register_script(scripts.DELETE_SUB),
            release=r.register_script(scripts.RELEASE),
            fail=r.register_script(scripts.FAIL),
            refresh_poll=r.register_script(scripts.REFRESH_POLL),
            bump=r.register_script(scripts.BUMP),
        )
        r._relay_scripts = cached  # type: ignore[attr-defined]
    return cached


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(raw: str | None, default: Any = None) -> Any:
    if not raw:
        return default
    return json.loads(raw)
