"""The total time budget of outbound requests (relay/delivery/deadlines.py): one timer per client
cancels a request past its deadline, which then raises a timeout; a cancellation from elsewhere
stays a cancellation; a task whose budget ran out goes on."""

from __future__ import annotations

import asyncio

import pytest

from relay.delivery import deadlines as deadlines_module
from relay.delivery.deadlines import Deadlines


async def _request(d: Deadlines, budget: float, seen: list[bool]) -> str:
    """A request as `request_capped` makes one: waits, and tells a timeout from a cancellation."""
    task = d.enter(budget)
    try:
        await asyncio.sleep(30)
        return "answered"
    except asyncio.CancelledError:
        expired = d.expired(task)
        seen.append(expired)
        if expired:
            return "timed out"
        raise
    finally:
        d.leave(task)


async def test_a_request_past_its_budget_is_cut_off_within_a_tick() -> None:
    d, seen = Deadlines(), []
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await _request(d, 0.2, seen) == "timed out"
    took = loop.time() - started
    assert 0.2 <= took < 0.2 + deadlines_module.TICK + 1.0, took
    assert seen == [True]


async def test_the_task_goes_on_after_its_budget_ran_out() -> None:
    d, seen = Deadlines(), []
    assert await _request(d, 0.05, seen) == "timed out"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # would raise CancelledError if the cancellation were left over
    assert await asyncio.wait_for(asyncio.sleep(0, "still here"), 1) == "still here"


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    d, seen = Deadlines(), []
    task = asyncio.create_task(_request(d, 30, seen))
    await asyncio.sleep(0.05)
    task.cancel()  # a worker draining at shutdown
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]


async def test_a_budget_and_a_cancellation_from_elsewhere_at_once_stay_a_cancellation() -> None:
    d, seen = Deadlines(), []
    task = asyncio.create_task(_request(d, 0.0, seen))
    await asyncio.sleep(0)  # the request is waiting, already past its deadline
    d._sweep(asyncio.get_running_loop())  # the budget's cancellation...
    task.cancel()  # ...and another, before the task runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]


async def test_requests_within_budget_are_untouched_and_the_timer_stops_when_idle() -> None:
    d, seen = Deadlines(), []

    async def quick() -> str:
        task = d.enter(5.0)
        try:
            await asyncio.sleep(0.01)
            return "answered"
        finally:
            d.leave(task)

    assert await asyncio.gather(*(quick() for _ in range(50))) == ["answered"] * 50
    await asyncio.sleep(deadlines_module.TICK * 3)
    assert d._timer is None, "a timer still runs with nothing in flight"
    assert seen == []
