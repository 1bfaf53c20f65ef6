"""The api's and worker's collector settings (relay/collector.py): young collections made rare, and
cyclic garbage still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from relay import collector


class _Node:
    def __init__(self) -> None:
        self.me: Any = self  # a cycle: only the collector frees it


@pytest.fixture
def restored() -> Iterator[None]:
    """The test process's own collector settings, put back afterwards."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_settle_freezes_start_up_and_raises_the_young_threshold(restored: None) -> None:
    middle, old = gc.get_threshold()[1:]
    collector.settle()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, middle, old)
    assert collector.YOUNG_THRESHOLD > 700  # CPython's default, ~5-10 % of the CPU
    assert gc.get_freeze_count() > 0


def test_cyclic_garbage_is_still_collected_after_settle(restored: None) -> None:
    collector.settle()
    young: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            young.append(info["generation"])

    gc.callbacks.append(count)
    try:
        first = _Node()
        gone = weakref.ref(first)
        del first
        # Twice the threshold of cycles nobody frees: the collector must run and free them.
        for _ in range(2 * collector.YOUNG_THRESHOLD):
            _Node()
    finally:
        gc.callbacks.remove(count)
    assert young, "no collection ran after 20,000 cycles were dropped"
    assert gone() is None
