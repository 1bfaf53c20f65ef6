"""Which asyncio event loop the api and the worker run on: uvloop where it is installed.

uvloop (libuv under asyncio's API) moves the same bytes with less CPU per socket operation,
and a delivery or an API request is mostly socket operations: in bench/delivery.py it took the
worker's CPU per delivery down by a share the issue note of #27 gives. It is a dependency for
CPython on Linux and macOS (pyproject.toml), so it is on by default wherever it installs;
`RELAY_EVENT_LOOP=asyncio` turns it off (e.g. to rule it out when chasing a bug), and where it
is not installed the standard loop runs with no further ado.
"""

from __future__ import annotations

import asyncio
import importlib.util

AUTO, ASYNCIO, UVLOOP = "auto", "asyncio", "uvloop"


def available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def choose(wanted: str) -> str:
    """The loop to run for the setting `wanted` (auto | asyncio | uvloop): `uvloop` asked for but
    not installed is a configuration error, said at start rather than ignored."""
    if wanted == ASYNCIO:
        return ASYNCIO
    if available():
        return UVLOOP
    if wanted == UVLOOP:
        raise RuntimeError("RELAY_EVENT_LOOP=uvloop but uvloop is not installed")
    return ASYNCIO


def install(wanted: str) -> str:
    """Make `choose(wanted)` the loop of every `asyncio.run` and new loop of this process (the
    worker's arq host creates its own); returns its name, for the start-up log line."""
    chosen = choose(wanted)
    if chosen == UVLOOP:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return chosen
