"""The vendor snapshot of a run (`upstream` in the API), stored once per distinct content.

A transition's event body carries the snapshot the worker saw, so when the run's latest snapshot
is that same one (always, once a run ended) the run hash holds only a reference to the event
(`@<event id>`), not a second copy. A poll that sees new content without a new status writes it
into the run hash itself, compressed (relay/store/packing.py), and a poll that sees the very same
content writes nothing of it (the run keeps the digest of what it stores)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis.asyncio as aioredis

from relay.store import keys
from relay.store.client import dumps
from relay.store.packing import pack, unpack

REF = "@"
#: The run field holding the digest of the snapshot it stores.
DIGEST = "snapshot_digest"


def fields(
    run: dict[str, str], snapshot: Any, *, digest: str = "", referenced: bool = False
) -> dict[str, str]:
    """The run fields that store `snapshot`: none when the run stores this content already (an
    unchanged poll rewrites nothing), else the compressed text and its digest. The recorder turns
    a snapshot that goes with a transition into a reference to the event (`REF`): with
    `referenced` (the caller records a transition with it) the text is not even packed, only
    marked. `digest`: the caller's own of the content (e.g. of the vendor's answer bytes), so an
    unchanged poll serialises nothing; else the digest of the JSON text."""
    text = ""
    if not digest:
        text = dumps(snapshot)
        digest = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    if run.get(DIGEST) == digest:
        return {}
    if referenced:
        return {"snapshot": REF, DIGEST: digest}
    return {"snapshot": pack(text or dumps(snapshot)), DIGEST: digest}


async def resolve(r: aioredis.Redis, runs: list[dict[str, str]]) -> None:
    """Replace each run's stored `snapshot` (a reference or compressed) by its JSON text, in
    place, for reading; one round trip for all the references."""
    refs = [run for run in runs if (run.get("snapshot") or "").startswith(REF)]
    for run in runs:
        if run.get("snapshot") and run not in refs:
            run["snapshot"] = unpack(run["snapshot"])
    if not refs:
        return
    pipe = r.pipeline(transaction=False)
    for run in refs:
        pipe.hget(keys.event(run["snapshot"][len(REF) :]), "body")
    for run, body in zip(refs, await pipe.execute(), strict=True):
        upstream = json.loads(unpack(body))["data"].get("upstream") if body else None
        run["snapshot"] = dumps(upstream)
