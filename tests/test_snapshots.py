"""A run's vendor snapshot is written only when it changes, once, compressed (invariant 9: an
unchanged poll of a Citedy run rewrote its whole 17 KB result every time)."""

from __future__ import annotations

import json

from relay.store import snapshots
from relay.store.packing import PREFIX, unpack


def _result(n: int) -> dict[str, object]:
    return {"status": "drafting_running", "contacts": [{"name": f"c{i}" * 40} for i in range(n)]}


def test_an_unchanged_snapshot_writes_nothing_and_a_changed_one_is_stored_compressed() -> None:
    run: dict[str, str] = {}
    first = snapshots.fields(run, _result(60))
    assert first["snapshot"].startswith(PREFIX)  # compressed
    assert len(first["snapshot"]) < len(json.dumps(_result(60))) / 3
    assert json.loads(unpack(first["snapshot"])) == _result(60)
    run.update(first)
    assert snapshots.fields(run, _result(60)) == {}  # the same content: nothing to write
    changed = snapshots.fields(run, _result(61))
    assert changed and changed[snapshots.DIGEST] != first[snapshots.DIGEST]


def test_the_earlier_base85_form_still_reads() -> None:
    """Bodies and snapshots written before the base64 form (`z:` + base85) read unchanged."""
    import base64
    import zlib

    from relay.store.packing import PREFIX_B85, pack

    text = '{"status": "completed", "pad": "' + "x" * 900 + '"}'
    old = PREFIX_B85 + base64.b85encode(zlib.compress(text.encode())).decode()
    assert unpack(old) == text
    assert pack(text).startswith(PREFIX) and unpack(pack(text)) == text
    assert unpack("plain") == "plain"
