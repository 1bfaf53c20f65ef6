"""What every operation works with: the store, the settings, the vendor clients. A view builds
one from wherever it keeps them (the API and the console from the Starlette app's state; a CLI
would call `Deps(connect(url), get_settings(), build_providers(settings))`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from relay.config import Settings
from relay.store.autopipe import AutoPipeline
from relay.vendors.base import Provider


@dataclass(frozen=True)
class Deps:
    redis: aioredis.Redis
    settings: Settings
    providers: Mapping[str, Provider]
    #: The process's auto-pipeline for the hot write of the api (`POST /v1/runs`): concurrent
    #: requests share one round trip per loop turn. None: each call takes its own round trip.
    pipe: AutoPipeline | None = None

    @classmethod
    def of_state(cls, state: Any) -> Deps:
        """From an app's `state` holding `redis`, `settings`, `providers` and, once it serves,
        `pipe` (relay/api/app.py)."""
        return cls(state.redis, state.settings, state.providers, getattr(state, "pipe", None))
