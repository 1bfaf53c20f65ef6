"""What every operation works with: the store, the settings, the vendor clients. A view builds
one from wherever it keeps them (the API and the console from the Starlette app's state; a CLI
would call `Deps(connect(url), get_settings(), build_providers(settings))`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from relay.config import Settings
from relay.vendors.base import Provider


@dataclass(frozen=True)
class Deps:
    redis: aioredis.Redis
    settings: Settings
    providers: Mapping[str, Provider]

    @classmethod
    def of_state(cls, state: Any) -> Deps:
        """From an app's `state` holding `redis`, `settings` and `providers` (relay/api/app.py)."""
        return cls(state.redis, state.settings, state.providers)
