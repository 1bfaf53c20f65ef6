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

    text = '{"status": "completed", "pad": "' + "x" * 3000 + '"}'
    old = PREFIX_B85 + base64.b85encode(zlib.compress(text.encode())).decode()
    assert unpack(old) == text
    assert pack(text).startswith(PREFIX) and unpack(pack(text)) == text
    assert unpack("plain") == "plain"


def test_small_texts_are_stored_as_they_are_and_larger_ones_compressed() -> None:
    """Under MIN_CHARS compression costs more CPU than its bytes are worth (a status change's
    ~0.7 KB body); from it on, a text that shrinks is stored compressed and reads back the same."""
    from relay.store.packing import MIN_CHARS, pack

    small = json.dumps({"status": "queued", "pad": "y" * (MIN_CHARS - 40)})
    assert len(small) < MIN_CHARS and pack(small) == small
    large = json.dumps({"status": "completed", "pad": "y" * MIN_CHARS})
    packed = pack(large)
    assert packed.startswith(PREFIX) and len(packed) < len(large) / 4
    assert unpack(packed) == large
    noise = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(MIN_CHARS))
    assert pack(noise) == noise  # does not shrink: stored as it is
