"""The cyclic garbage collector's settings for the api and worker processes (issue 27).

Almost nothing the relay allocates per request or job is cyclic garbage: reference counting
frees a delivery's, a poll's or a `POST /v1/runs`'s objects the moment it lets go of them. Yet
CPython runs a young collection whenever tracked objects made minus those freed passes 700, and
with dozens of requests in flight that count swings past 700 dozens of times a second. Each pass
walks the live requests' objects for nothing, and promotes them, so the older generations fill
and get walked too. Measured (bench/README.md, "Issue 27, fourth pass"):
- a worker, with a `gc.callbacks` timer, in a 30,000-delivery bench run: 1,263 young, 114 middle
  and 10 full collections, 0.24 s, about 5 % of its CPU; with a young threshold of 10,000: one
  collection, 1 ms. In the polling bench (10,000 runs): 3,045 / 276 / 25 collections, 1.3 s;
  at 10,000: 13 / 1 / 0, 0.06 s;
- the api (`bench/ingress.py`): 230 -> 207-216 us of CPU per accepted run, and p99 latency
  37 -> 11-13 ms (the full collections were its slowest requests).

Cyclic garbage is still collected: after 10,000 tracked objects more were made than freed, a
few MB of objects at most, so memory stays bounded.
"""

from __future__ import annotations

import gc

#: Tracked objects made (net of those freed) before a young collection; CPython's default is 700.
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Called once a process's start-up is done (`relay api` before it serves, the worker's
    start-up before its pumps turn), never by an app built in someone else's process (tests).
    Everything made until now (modules, settings, scripts) lives as long as the process:
    collected once, then frozen out of every later pass, which only walks what requests and
    jobs allocate. Then the young threshold is raised; the older generations keep their
    ratios."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
