"""Property tests of the ingress against the real stack: whatever body arrives, the relay never
answers 5xx, every 4xx has the `{"error", "message"}` shape, and a rejected request records
nothing (tests/support/audit.py). Bodies come from strategies shaped like the request models
(valid values mixed with wrong ones), from arbitrary JSON, and from byte-level mutations of valid
bodies.

URLs are generated so that nothing is ever resolved by DNS or sent off this machine: hosts are
loopback literals or `localhost`, and any other generated URL must be one the relay refuses on
syntax alone (`dns_safe` replaces anything else before it is sent).
"""

from __future__ import annotations

import functools
import json
import string
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from relay.delivery.ssrf import UnsafeURL, check_url_syntax, parse_ip
from tests.support import audit
from tests.support.stack import CITEDY_KEY, Stack, unique, wait_for

TENANT = "t3"
SAFE_URL = "http://127.0.0.1:9/fuzz"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OK = {200, 201, 202, 204}
#: Subscription fields that may move without a PATCH (deliveries, failures).
_SUB_VOLATILE = {"failing_since", "updated_at"}


# --- keeping generated URLs on this machine ---------------------------------------------------


def dns_safe(url: Any) -> bool:
    """True if the relay would never resolve or contact this URL's host outside 127.0.0.1: it
    is refused on syntax, or its host is a loopback literal or `localhost`."""
    if not isinstance(url, str):
        return True
    try:
        check_url_syntax(url)
    except UnsafeURL:
        return True
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    ip = parse_ip(host)
    return ip is not None and ip.is_loopback


def make_safe(body: Any) -> Any:
    """Replace any URL-bearing field that is not `dns_safe`, at every depth (cheap insurance:
    only the top-level `url`/`callback_url` are ever resolved)."""
    if isinstance(body, dict):
        out = {}
        for key, value in body.items():
            if key in ("url", "callback_url") and not dns_safe(value):
                value = SAFE_URL
            out[key] = make_safe(value)
        return out
    if isinstance(body, list):
        return [make_safe(v) for v in body]
    return body


def test_dns_safe_guard() -> None:
    for url in (SAFE_URL, "https://localhost/x", "http://[::1]:8/", "ftp://example.com/", "x y"):
        assert dns_safe(url), url
    for url in ("http://example.com/", "https://a/", "http://8.8.8.8/", "http://10.0.0.1/"):
        assert not dns_safe(url), url
    assert make_safe({"url": "http://example.com/", "x": [{"callback_url": "http://a/"}]}) == {
        "url": SAFE_URL,
        "x": [{"callback_url": SAFE_URL}],
    }


# --- strategies -------------------------------------------------------------------------------

short_text = st.text(max_size=12)
ascii_text = st.text(alphabet=string.printable, max_size=20)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | short_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(short_text, json_values, max_size=5)


def wrong(*good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right shape, sometimes any JSON value at all."""
    return st.one_of(*good, json_values)


safe_hosts = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "127.0.0.2", "", "[::1"])
urls = st.builds(
    lambda scheme, cred, host, port, path: f"{scheme}{cred}{host}{port}/{path}",
    st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "javascript:", "", "http:/"]),
    st.sampled_from(["", "", "", "user:pw@", "@"]),
    safe_hosts,
    st.one_of(st.just(""), st.integers(-1, 70000).map(lambda p: f":{p}"), st.just(":x")),
    ascii_text,
) | st.text(max_size=30)

ids = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}\Z"),
    st.sampled_from(["..", "../x", "a/b", "%2e%2e", "", "a" * 129, "a b", ".x"]),
    short_text,
)
domains = st.one_of(
    st.sampled_from(
        [
            "example.com",
            "https://www.example.com/",
            "example.com/path",
            "linkedin.com",
            "",
            "a" * 250 + ".com",
            "127.0.0.1",
            "EXAMPLE.com.",
            "xn--bcher-kva.example",
            "bücher.example",
        ]
    ),
    st.from_regex(r"\A[a-z0-9-]{1,20}(\.[a-z]{2,6}){1,2}\Z"),
    short_text,
)
citedy_inputs = st.fixed_dictionaries(
    {"domain": wrong(domains)},
    optional={
        "icp": wrong(st.sampled_from(["seo-geo-agency", "content-led-saas", "vertical-saas"])),
        "buyerRoles": wrong(st.lists(st.text(max_size=90), max_size=8)),
        "maxContacts": wrong(st.integers(-1, 5)),
        "drafts": wrong(st.integers(-1, 5)),
        "freshnessDays": wrong(st.integers(0, 400)),
        "idempotencyKey": wrong(st.text(min_size=5, max_size=130)),
        "extra": json_values,
    },
)
metadata = wrong(
    json_objects,
    st.dictionaries(short_text, st.text(min_size=500, max_size=1500), min_size=2, max_size=5),
)
run_bodies = st.fixed_dictionaries(
    {"provider": wrong(st.sampled_from(["citedy", "autoposting"]))},
    optional={
        "input": wrong(citedy_inputs),
        "upstream_run_id": wrong(ids),
        "agent_id": wrong(ids),
        "metadata": metadata,
        "callback_url": wrong(urls),
        "unknown": json_values,
    },
)
filters = wrong(
    st.fixed_dictionaries(
        {},
        optional={
            "providers": wrong(st.lists(wrong(st.sampled_from(["citedy", "autoposting"])))),
            "statuses": wrong(st.lists(st.text(max_size=70), max_size=4)),
            "event_types": wrong(
                st.lists(
                    st.sampled_from(
                        ["run.status_changed", "run.start_failed", "ping", "run.nope", ""]
                    ),
                    max_size=4,
                )
            ),
            "other": json_values,
        },
    )
)
sub_bodies = st.fixed_dictionaries(
    {"url": wrong(urls)},
    optional={
        "filter": filters,
        "description": wrong(st.text(max_size=300)),
        "enabled": json_values,
        "secret": json_values,
    },
)
patch_bodies = st.fixed_dictionaries(
    {},
    optional={
        "url": wrong(urls),
        "filter": filters,
        "description": wrong(st.text(max_size=300)),
        "enabled": wrong(st.booleans()),
        "tenant": json_values,
    },
)
watch_bodies = st.fixed_dictionaries(
    {"agent_id": wrong(ids)},
    optional={
        "provider": wrong(st.just("autoposting")),
        "metadata": metadata,
        "include_existing": wrong(st.booleans()),
        "interval": json_values,
    },
)
recover_bodies = st.fixed_dictionaries(
    {},
    optional={
        "since": wrong(st.floats(min_value=-10, max_value=2e9), st.integers(-5, 2**40)),
        "until": json_values,
    },
)


# Valid bodies, so that accepted requests (and bodies one field away from valid) are common.
good_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,30}\Z")
good_domains = st.from_regex(r"\A[a-z][a-z0-9]{0,15}\.(com|io|example)\Z")
small_metadata = st.dictionaries(
    st.text(max_size=8), st.one_of(json_scalars, st.lists(json_scalars, max_size=3)), max_size=4
)
local_urls = st.builds(
    lambda host, path: f"http://{host}:9/{path}",
    st.sampled_from(["127.0.0.1", "localhost", "[::1]"]),
    st.from_regex(r"\A[a-z0-9/_-]{0,20}\Z"),
)
valid_runs = st.one_of(
    st.fixed_dictionaries(
        {
            "provider": st.just("citedy"),
            "input": st.fixed_dictionaries(
                {"domain": good_domains},
                optional={
                    "icp": st.sampled_from(["seo-geo-agency", "vertical-saas"]),
                    "buyerRoles": st.lists(st.text(min_size=1, max_size=80), max_size=6),
                    "maxContacts": st.integers(1, 3),
                    "drafts": st.integers(1, 3),
                    "freshnessDays": st.integers(7, 365),
                    "idempotencyKey": st.text(min_size=8, max_size=128),
                },
            ),
        },
        optional={"metadata": small_metadata, "callback_url": local_urls},
    ),
    st.fixed_dictionaries(
        {"provider": st.just("citedy"), "upstream_run_id": good_ids},
        optional={"metadata": small_metadata, "callback_url": local_urls},
    ),
    st.fixed_dictionaries(
        {"provider": st.just("autoposting"), "agent_id": good_ids, "upstream_run_id": good_ids},
        optional={"metadata": small_metadata},
    ),
)
valid_filters = st.fixed_dictionaries(
    {},
    optional={
        "providers": st.lists(st.sampled_from(["citedy", "autoposting"]), max_size=2),
        "statuses": st.lists(st.text(min_size=1, max_size=64), max_size=3),
        "event_types": st.lists(st.sampled_from(["run.status_changed", "ping"]), max_size=2),
    },
)
valid_subs = st.fixed_dictionaries(
    {"url": local_urls},
    optional={"filter": valid_filters, "description": st.text(max_size=256)},
)
valid_patches = st.fixed_dictionaries(
    {},
    optional={
        "url": local_urls,
        "filter": valid_filters,
        "description": st.text(max_size=256),
        "enabled": st.booleans(),
    },
)
valid_watches = st.fixed_dictionaries(
    {"agent_id": good_ids},
    optional={
        "provider": st.just("autoposting"),
        "metadata": small_metadata,
        "include_existing": st.booleans(),
    },
)
valid_recovers = st.fixed_dictionaries(
    {"since": st.one_of(st.floats(min_value=0, max_value=2e9), st.integers(0, 2**40))}
)


@st.composite
def one_field_off(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid body with one field dropped, replaced by any JSON value, or one field added;
    recursing into a nested object some of the time."""
    body = dict(draw(valid))
    target: dict[str, Any] = body
    nested = [k for k, v in body.items() if isinstance(v, dict) and v]
    if nested and draw(st.booleans()):
        name = draw(st.sampled_from(nested))
        target = body[name] = dict(body[name])
    op = draw(st.sampled_from(["drop", "replace", "add"]))
    if op == "add" or not target:
        target[draw(short_text)] = draw(json_values)
    elif op == "drop":
        del target[draw(st.sampled_from(sorted(target)))]
    else:
        target[draw(st.sampled_from(sorted(target)))] = draw(json_values)
    return body


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[Any]) -> bytes:
    """A body serialised, then a few bytes deleted, replaced or inserted."""
    raw = bytearray(json.dumps(make_safe(draw(bodies))).encode())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "replace", "insert"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        byte = draw(st.sampled_from(list(b'{}[]",:\\0 \x00\xff\xc3e.-nNtf')))
        if op == "delete" and raw:
            del raw[at]
        elif op == "replace" and raw:
            raw[at] = byte
        else:
            raw.insert(at, byte)
    return bytes(raw)


def _dump(value: Any) -> bytes:
    return json.dumps(make_safe(value)).encode()


def payloads(
    bodies: st.SearchStrategy[Any], valid: st.SearchStrategy[dict[str, Any]]
) -> st.SearchStrategy[bytes]:
    """Valid bodies, valid bodies one field off, model-shaped bodies with wrong values mixed
    in, arbitrary JSON values, and byte-mutated bodies."""
    return st.one_of(
        valid.map(_dump),
        one_field_off(valid).map(_dump),
        bodies.map(_dump),
        json_values.map(_dump),
        mutated(valid | bodies),
    )


# --- fixtures and the property ----------------------------------------------------------------


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(TENANT) as client:
        yield client


@pytest.fixture(scope="module")
def sub_id(api: httpx.Client) -> str:
    """A subscription no event matches: only PATCH and recover examples touch it."""
    response = api.post(
        "/v1/subscriptions",
        json={"url": SAFE_URL, "filter": {"providers": ["fuzz-no-such-provider"]}},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def send(
    rdb: redis.Redis,
    api: httpx.Client,
    method: str,
    path: str,
    raw: bytes,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send one generated body and check the properties; undo whatever an accepted one made."""
    before = audit.take(rdb)
    response = api.request(
        method, path, content=raw, headers={"content-type": "application/json", **(headers or {})}
    )
    event(f"{method} -> {response.status_code}")
    assert response.status_code < 500, (response.status_code, response.text, raw[:500])
    if response.status_code in OK:
        _undo(api, path, response)
        return response
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert set(body) <= {"error", "message", "field"}, body
    assert "field" not in body or isinstance(body["field"], str), body
    found = audit.changes(rdb, before, TENANT)
    # Not this request: a watch worker mid-listing when an earlier example's watch was deleted
    # writes into the deleted hash (WATCH_BUG). Only those are set aside, and the test that saw
    # them fails naming the regression (see known_bug below).
    bug = [f for f in found if any(w in f for w in _deleted_watches)]
    _watch_bug_seen.extend(bug)
    # Likewise a poll or start that was in flight when an earlier example's run was deleted
    # (POLL_BUG): writes to the run's hash, or the upstream index key naming it.
    late = [
        f
        for f in found
        if f not in bug
        and (
            any(f"relay:run:{r} " in f for r in _deleted_runs)
            or (
                f.startswith("new key relay:upstream:")
                and rdb.get(f.removeprefix("new key ")) in _deleted_runs
            )
        )
    ]
    # Not a bug, and not this request either: an event an earlier example's run recorded before
    # it was deleted is still delivered (DELETE stops tracking, not delivery), and the end of
    # that delivery keeps the run's delivery counts and, with the last one, starts its
    # retention (lua/includes/lifecycle.lua, delivery_state.lua).
    settling = [f for f in late if _only_delivery_bookkeeping(f)]
    late = [f for f in late if f not in settling]
    _poll_bug_seen.extend(late)
    bug += late + settling
    assert [f for f in found if f not in bug] == [], (found, raw[:500])
    return response


#: The run-hash fields the delivery path writes (a delivery's end, a settled run's retention).
DELIVERY_BOOKKEEPING = frozenset(
    {"pending", "dlv_dead", "dlv_failing", "retain_until", "subs_seen"}
)


def _only_delivery_bookkeeping(found: str) -> bool:
    """`found` (audit.changes) is a change of a run hash's delivery bookkeeping fields only."""
    head, _, fields = found.partition(" (fields ")
    if not head.startswith("changed key relay:run:") or not fields:
        return False
    return set(fields.rstrip(")").split(", ")) <= DELIVERY_BOOKKEEPING


def _undo(api: httpx.Client, path: str, response: httpx.Response) -> None:
    created = response.json() if response.content else {}
    if path == "/v1/runs" and created.get("id"):
        api.delete(f"/v1/runs/{created['id']}")
        _deleted_runs.add(created["id"])
    elif path == "/v1/subscriptions" and created.get("id"):
        api.delete(f"/v1/subscriptions/{created['id']}")
    elif path == "/v1/watches" and created.get("id"):
        api.delete(f"/v1/watches/{created['id']}")
        _deleted_watches.add(created["id"])


_deleted_watches: set[str] = set()
_deleted_runs: set[str] = set()
_watch_bug_seen: list[str] = []
_poll_bug_seen: list[str] = []


def known_bug(test: Callable[..., None]) -> Callable[..., None]:
    """Runs a fuzz test; if it met WATCH_BUG or POLL_BUG along the way (both fixed: a job whose
    lease DELETE took writes nothing, and a release writes only to a record that still exists),
    it fails naming the regression and what was seen."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        _watch_bug_seen.clear()
        _poll_bug_seen.clear()
        test(*args, **kwargs)
        if _watch_bug_seen:
            pytest.fail(f"regression of {WATCH_BUG}; seen: {sorted(set(_watch_bug_seen))[:3]}")
        if _poll_bug_seen:
            pytest.fail(f"regression of {POLL_BUG}; seen: {sorted(set(_poll_bug_seen))[:3]}")

    return wrapper


WATCH_BUG = (
    "the bug in workers/watch.py (fixed): a listing that fails (VendorError branch) writes "
    "last_error with HSET into the watch's hash even when the watch was deleted during the "
    "listing, bringing a one-field hash back with no expiry"
)


POLL_BUG = (
    "the bug in workers/poll.py and workers/start.py (fixed): a job in flight when DELETE "
    "/v1/runs/{id} lands still writes to the stopped run afterwards (poll: _again's HSET of "
    "snapshot/poll_interval/last_polled_at, HINCRBY of errors/not_found, on a terminal status "
    "HSET state=completed; start: HSET upstream_run_id and SET of the relay:upstream:* key)"
)


def test_run_deleted_mid_poll_is_not_written_to(
    rdb: redis.Redis, api: httpx.Client, sim: httpx.Client
) -> None:
    """The case behind POLL_BUG, made deterministic: the vendor answers slowly, and the run is
    deleted while the worker waits for it."""
    sim.post("/_sim/config", json={"step_seconds": 60}).raise_for_status()
    created = sim.post(
        "/api/agent/citedy-warm-lead",
        json={"domain": f"{unique('midpoll')}.example"},
        headers={"authorization": f"Bearer {CITEDY_KEY}"},
    ).json()
    response = api.post(
        "/v1/runs", json={"provider": "citedy", "upstream_run_id": created["run"]["id"]}
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    wait_for(
        lambda: api.get(f"/v1/runs/{run_id}").json()["status"] == "queued",
        what="the first observation",
    )
    # From now on every poll sees no change (the next step is a minute away) and answers late.
    sim.post("/_sim/config", json={"latency_ms": 1500}).raise_for_status()
    polls = sim.get("/_sim/stats").json()["requests"]["citedy.get_run"]
    wait_for(
        lambda: sim.get("/_sim/stats").json()["requests"]["citedy.get_run"] > polls,
        what="a slow poll in flight",
    )
    assert api.delete(f"/v1/runs/{run_id}").status_code == 204
    stopped = rdb.hgetall(f"relay:run:{run_id}")
    assert stopped["state"] == "stopped"
    # A negative, so it is watched until the slow answer has certainly been handled.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert rdb.hgetall(f"relay:run:{run_id}") == stopped
        time.sleep(0.05)


def test_watch_deleted_mid_listing_stays_deleted(
    rdb: redis.Redis, api: httpx.Client, sim: httpx.Client
) -> None:
    """The case behind the xfail above, made deterministic: the vendor's listing is slow and
    then fails, and the watch is deleted while the worker waits for it."""
    sim.post("/_sim/config", json={"latency_ms": 1500, "error_rate": 1.0}).raise_for_status()
    created = api.post("/v1/watches", json={"agent_id": unique("agent")})
    assert created.status_code == 201, created.text
    watch_id = created.json()["id"]
    wait_for(
        lambda: sim.get("/_sim/stats").json()["requests"].get("autoposting.list_runs"),
        what="a listing in flight",
    )
    assert api.delete(f"/v1/watches/{watch_id}").status_code == 204
    assert not rdb.exists(f"relay:watch:{watch_id}")
    wait_for(lambda: sim.get("/_sim/stats").json()["status_500"] >= 1, what="the listing failed")
    # A negative, so it is watched for a while: the worker answers the failure within ms.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert not rdb.exists(f"relay:watch:{watch_id}"), rdb.hgetall(f"relay:watch:{watch_id}")
        time.sleep(0.05)


idempotency_keys = st.one_of(
    st.none(), st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=300)
)


@known_bug
@FUZZ
@given(raw=payloads(run_bodies, valid_runs), idem=idempotency_keys)
def test_fuzz_create_run(
    rdb: redis.Redis, api: httpx.Client, sim: httpx.Client, raw: bytes, idem: str | None
) -> None:
    """`sim` resets the simulators (credits spent by accepted starts) after the test."""
    headers = {"idempotency-key": idem} if idem is not None else None
    send(rdb, api, "POST", "/v1/runs", raw, headers)


@known_bug
@FUZZ
@given(raw=payloads(sub_bodies, valid_subs))
def test_fuzz_create_subscription(rdb: redis.Redis, api: httpx.Client, raw: bytes) -> None:
    send(rdb, api, "POST", "/v1/subscriptions", raw)


@known_bug
@FUZZ
@given(raw=payloads(patch_bodies, valid_patches))
def test_fuzz_patch_subscription(
    rdb: redis.Redis, api: httpx.Client, sub_id: str, raw: bytes
) -> None:
    key = f"relay:sub:{sub_id}"

    def stored() -> dict[str, str]:
        return {k: v for k, v in rdb.hgetall(key).items() if k not in _SUB_VOLATILE}

    before = stored()
    response = send(rdb, api, "PATCH", f"/v1/subscriptions/{sub_id}", raw)
    if response.status_code >= 400:
        assert stored() == before
    else:
        # Put it back, so the next example starts from a known subscription.
        restore = api.patch(
            f"/v1/subscriptions/{sub_id}",
            json={
                "url": SAFE_URL,
                "filter": {"providers": ["fuzz-no-such-provider"]},
                "description": "",
                "enabled": True,
            },
        )
        assert restore.status_code == 200, restore.text


@known_bug
@FUZZ
@given(raw=payloads(watch_bodies, valid_watches))
def test_fuzz_create_watch(rdb: redis.Redis, api: httpx.Client, raw: bytes) -> None:
    send(rdb, api, "POST", "/v1/watches", raw)


@known_bug
@FUZZ
@given(raw=payloads(recover_bodies, valid_recovers))
def test_fuzz_recover(rdb: redis.Redis, api: httpx.Client, sub_id: str, raw: bytes) -> None:
    response = send(rdb, api, "POST", f"/v1/subscriptions/{sub_id}/recover", raw)
    if response.status_code in OK:
        assert response.json() == {"recovered": 0}
