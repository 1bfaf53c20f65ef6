"""A worker's copy of the learned phase lengths (relay/store/phases.py), so a poll reads them
from memory: one HGETALL per vendor every REFRESH seconds, not one per poll, and concurrent polls
share the read in flight. Learning goes straight to Redis (every worker feeds the same figures);
a copy a few seconds old only aims a poll by a slightly older mean."""

from __future__ import annotations

import asyncio
import time

from relay.store import phases
from relay.store.autopipe import AutoPipeline
from relay.store.phases import Phase

REFRESH = 5.0


class PhaseBook:
    def __init__(self, refresh: float = REFRESH) -> None:
        self._refresh = refresh
        self._book: dict[str, tuple[float, dict[str, Phase]]] = {}
        self._reading: dict[str, asyncio.Future[dict[str, Phase]]] = {}

    async def get(self, pipe: AutoPipeline, provider: str, status: str) -> Phase | None:
        """How long `status` lasts at `provider`, as last read (None: not learned)."""
        held = self._book.get(provider)
        if held is not None and time.monotonic() - held[0] < self._refresh:
            return held[1].get(status)
        return (await self._read(pipe, provider)).get(status)

    async def _read(self, pipe: AutoPipeline, provider: str) -> dict[str, Phase]:
        pending = self._reading.get(provider)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dict[str, Phase]] = asyncio.get_running_loop().create_future()
        self._reading[provider] = future
        try:
            book = await phases.read(pipe, provider)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a failed read is every waiter's error, not a leak
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._reading[provider]
        self._book[provider] = (time.monotonic(), book)
        future.set_result(book)
        return book
