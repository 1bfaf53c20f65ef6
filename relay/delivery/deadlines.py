"""Every outbound request's total time budget, kept by one timer per client instead of one each.

aiohttp's own total timeout makes a timer handle and a timer context per request and tears them
down again: about 8 µs of a delivery's CPU (bench/delivery.py, issue 27), for a timer that almost
never fires. Here a request notes its deadline in a dict, and one callback, armed only while a
request is in flight, looks every `TICK` seconds for a request past its deadline and cancels its
task, the way `asyncio.timeout` does. The request sees the cancellation where it waits, knows it
by `expired`, and raises a timeout instead. So a budget ends at most `TICK` late.

A cancellation that came from elsewhere (a worker draining at shutdown) is never taken for a
timeout: `expired` only answers for a task this module cancelled, and gives the cancellation
back (`Task.uncancel`) only when nobody else asked for one too.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: How often in-flight requests are checked against their deadlines (seconds): a budget ends at
#: most this late.
TICK = 0.1


class Deadlines:
    """The deadlines of one client's requests in flight. Each sweep walks them all: at most the
    client's connection limit (`make_client`'s `max_connections`), TICK apart."""

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def enter(self, budget: float) -> asyncio.Task[Any]:
        """The current task's request must end within `budget` seconds."""
        task = asyncio.current_task()
        assert task is not None, "a request runs in a task"
        loop = task.get_loop()
        self._due[task] = loop.time() + budget
        if self._timer is None:
            self._timer = loop.call_later(TICK, self._sweep, loop)
        return task

    def leave(self, task: asyncio.Task[Any]) -> None:
        """The request ended (answered, failed or timed out). A cancellation of this module's
        that the request never raised (something under it swallowed it) is taken back too, so
        it cannot reach the task's later awaits."""
        self._due.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether the cancellation `task` just met was its budget running out (then it is taken
        back, so the task goes on), and not a cancellation from elsewhere."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for task, deadline in list(self._due.items()):
            if deadline <= now:
                del self._due[task]
                self._expired.add(task)
                task.cancel()
        if self._due:
            self._timer = loop.call_later(TICK, self._sweep, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
