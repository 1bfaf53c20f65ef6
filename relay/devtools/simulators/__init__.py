"""Faithful stand-ins for the Citedy and Autoposting APIs, so the relay can be run and tested end
to end with no vendor account: one Starlette app, knobs for faults, counters for assertions."""

from relay.devtools.simulators.app import create_app, serve
from relay.devtools.simulators.state import SimConfig

__all__ = ["SimConfig", "create_app", "serve"]
