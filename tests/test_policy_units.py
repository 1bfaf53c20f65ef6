"""The pure policies alone, with no stack: polling growth, back-off, jitter and retry delays, event
ids, the budget's answer handling and settings parsing. Fast by design, so the mutation pass
(bench/mutation.py) can run them hundreds of times; each assertion pins a number or a boundary
that a plausible slip in the code would move."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from relay import config, ids
from relay.delivery import retry, signing, ssrf
from relay.store import slots
from relay.vendors import budget, polling

# --- polling: next_interval ---------------------------------------------------------------------


def test_next_interval_grows_by_the_factor_until_the_cap() -> None:
    assert polling.GROWTH == 1.3
    assert polling.next_interval(2, False, 2, 60) == pytest.approx(2.6)
    assert polling.next_interval(10, False, 2, 60) == pytest.approx(13.0)
    # The cap holds exactly, from below and from above.
    assert polling.next_interval(46.2, False, 2, 60) == 60
    assert polling.next_interval(50, False, 2, 60) == 60
    assert polling.next_interval(60, False, 2, 60) == 60
    # A chain of unchanged polls climbs monotonically to the cap and stays there.
    current, seen = 0.0, []
    for _ in range(30):
        current = polling.next_interval(current, False, 2, 60)
        seen.append(current)
    assert seen[0] == 2
    assert all(b > a for a, b in itertools.pairwise(seen[:14]))
    assert seen[-1] == 60


def test_next_interval_snaps_back_and_never_goes_below_the_minimum() -> None:
    assert polling.next_interval(40, True, 2, 60) == 2
    assert polling.next_interval(0, False, 2, 60) == 2
    assert polling.next_interval(-5, False, 2, 60) == 2
    # An interval below the minimum (settings changed) is lifted to it, not grown from it.
    assert polling.next_interval(1, False, 2, 60) == 2
    assert polling.next_interval(1.6, False, 2, 60) == pytest.approx(2.08)
    assert polling.next_interval(0.5, True, 3, 60) == 3
    # Below one second too: only a non-positive interval counts as "no interval yet".
    assert polling.next_interval(1, False, 0.5, 60) == pytest.approx(1.3)
    assert polling.next_interval(0.8, False, 0.5, 60) == pytest.approx(1.04)


# --- polling: jitter and backoff ----------------------------------------------------------------


def test_jitter_stays_within_its_spread_and_actually_varies() -> None:
    random.seed(7)
    draws = [retry.jitter(100.0) for _ in range(2000)]
    assert min(draws) >= 90 and max(draws) <= 110
    # Spread over the whole band, not a constant and not one side of it.
    assert min(draws) < 91 and max(draws) > 109
    assert 99 < sum(draws) / len(draws) < 101
    wide = [retry.jitter(100.0, spread=0.5) for _ in range(2000)]
    assert min(wide) < 55 and max(wide) > 145
    assert min(wide) >= 50 and max(wide) <= 150
    assert retry.jitter(0.0) == 0.0
    assert retry.jitter(-10.0) == 0.0  # never a negative delay


def test_jitter_uses_the_module_random_so_tests_can_seed_it() -> None:
    random.seed(11)
    first = [retry.jitter(10.0) for _ in range(5)]
    random.seed(11)
    assert [retry.jitter(10.0) for _ in range(5)] == first


def _backoff_band(errors: int, low: float, high: float, n: int = 400) -> tuple[float, float, float]:
    draws = [polling.backoff(errors, low, high) for _ in range(n)]
    return min(draws), max(draws), sum(draws) / n


@pytest.mark.parametrize(
    ("errors", "base"),
    [(0, 2), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (12, 60)],
)
def test_backoff_doubles_per_error_up_to_the_cap_with_a_quarter_jitter(
    errors: int, base: float
) -> None:
    random.seed(errors)
    lo, hi, mean = _backoff_band(errors, 2, 60)
    assert base * 0.75 <= lo and hi <= base * 1.25
    assert lo < base * 0.8 and hi > base * 1.2, "jittered over the whole +-25% band"
    assert base * 0.95 < mean < base * 1.05


def test_backoff_is_not_a_constant() -> None:
    random.seed(1)
    means = [_backoff_band(n, 2, 60)[2] for n in range(1, 8)]
    assert all(b > a for a, b in itertools.pairwise(means[:6]))
    assert means[-1] < 60 * 1.05


# --- polling: delivery_delay and Retry-After ---------------------------------------------------


def test_delivery_delay_follows_the_schedule_then_dead_letters() -> None:
    random.seed(3)
    schedule = (5.0, 300.0, 1800.0)
    for attempt, base in enumerate(schedule, start=1):
        delays = [retry.delivery_delay(attempt, schedule, None, 3600) for _ in range(300)]
        assert all(d is not None and base * 0.9 <= d <= base * 1.1 for d in delays)
        assert len(set(delays)) > 1, "jittered"
    assert retry.delivery_delay(3, schedule, None, 3600) is not None  # the last one is used
    assert retry.delivery_delay(4, schedule, None, 3600) is None
    assert retry.delivery_delay(8, (5, 300), None, 3600) is None


def test_retry_after_wins_within_bounds() -> None:
    schedule = (5.0, 300.0)
    assert retry.delivery_delay(1, schedule, 7200, 3600) == 3600
    assert retry.delivery_delay(1, schedule, 3600, 3600) == 3600
    assert retry.delivery_delay(1, schedule, 42, 3600) == 42
    assert retry.delivery_delay(2, schedule, 0.5, 3600) == 0.5
    assert retry.delivery_delay(1, schedule, -3, 3600) == 0.0
    assert retry.delivery_delay(1, schedule, 0.0, 3600) == 0.0
    # A spent schedule dead-letters even when the subscriber asks to come back.
    assert retry.delivery_delay(3, schedule, 10, 3600) is None


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(raw: str | None, seconds: float | None) -> None:
    assert retry.parse_retry_after(raw) == seconds


# --- ids -----------------------------------------------------------------------------------------


def test_event_id_is_a_stable_digest_of_all_four_parts() -> None:
    base = ids.event_id("t1", "citedy", "run-1", "queued")
    # Pinned: the id is what de-duplicates across processes and releases; it must not drift.
    assert (
        base
        == "evt_"
        + __import__("base64")
        .b32encode(__import__("hashlib").sha256(b"t1\x1fcitedy\x1frun-1\x1fqueued").digest()[:16])
        .decode()
        .rstrip("=")
        .lower()
    )
    assert base.startswith("evt_") and len(base) == 4 + 26 and "=" not in base
    assert base == base.lower()
    assert ids.event_id("t1", "citedy", "run-1", "queued") == base
    others = {
        ids.event_id("t2", "citedy", "run-1", "queued"),
        ids.event_id("t1", "autoposting", "run-1", "queued"),
        ids.event_id("t1", "citedy", "run-2", "queued"),
        ids.event_id("t1", "citedy", "run-1", "completed"),
        # The separator keeps ("ab", "c") and ("a", "bc") apart.
        ids.event_id("t1", "citedy", "run-1q", "ueued"),
    }
    assert base not in others and len(others) == 5


def test_new_ids_are_prefixed_random_and_unpadded() -> None:
    made = {ids.new_id("run") for _ in range(200)}
    assert len(made) == 200
    for value in made:
        prefix, _, token = value.partition("_")
        assert prefix == "run"
        assert len(token) == 20 and token == token.lower() and "=" not in token
        assert set(token) <= set("abcdefghijklmnopqrstuvwxyz234567")


def test_vendor_idempotency_key_is_derived_from_the_run() -> None:
    assert ids.vendor_idempotency_key("run_abc") == "relay-run_abc"
    assert ids.vendor_idempotency_key("run_abc") == ids.vendor_idempotency_key("run_abc")


# --- budget: how the reservation script's answer is used ---------------------------------------


class _FakeRedis:
    pass


class _Pipe:
    redis = _FakeRedis()


@pytest.fixture()
def reservation(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replaces the Lua call with a scripted answer and records what the caller passed and how
    long it slept; the script's own arithmetic is tested against real Redis elsewhere."""
    seen: dict[str, Any] = {"answer": 0.0, "sleeps": [], "calls": []}

    class Scripts:
        reserve_slot = object()

    async def run_script(pipe: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
        assert isinstance(pipe, _Pipe), "the caller's pipeline runs the script"
        seen["calls"].append((script, keys, args))
        return seen["answer"]

    async def sleep(seconds: float) -> None:
        seen["sleeps"].append(seconds)

    def bind(redis: Any) -> Any:
        assert redis is _Pipe.redis, "scripts are bound to the pipeline's client"
        return Scripts

    # The budget calls the script through relay/store/slots.py, the one caller of RESERVE_SLOT.
    monkeypatch.setattr(slots, "bind", bind)
    monkeypatch.setattr(slots, "run_script", run_script)
    # The module's own name only: patching asyncio.sleep itself would catch every other task on
    # the shared event loop too. (The time is the script's: Redis TIME, never the worker's.)
    monkeypatch.setattr(budget, "asyncio", SimpleNamespace(sleep=sleep))
    seen["script"] = Scripts.reserve_slot
    return seen


def _count(metric: Any, label: str) -> float:
    return float(metric.labels(label)._value.get())


async def test_budget_send_now(reservation: dict[str, Any]) -> None:
    before = _count(budget.BUDGET_REQUESTS, "cred-now")
    deferred = _count(budget.BUDGET_DEFERRED, "cred-now")
    reservation["answer"] = "0"
    assert await budget.acquire(_Pipe(), "cred-now", 20.0, "run_1", "t1") == 0.0  # type: ignore[arg-type]
    assert reservation["sleeps"] == []
    script, keys, args = reservation["calls"][0]
    assert script is reservation["script"]
    prefix = budget.keys.budget("cred-now") + ":held:"
    assert keys == [
        budget.keys.budget("cred-now"),
        prefix + "t1",
        budget.keys.budget("cred-now") + ":tenants",
    ]
    assert args == [0.05, budget.MAX_WAIT, "run_1", "t1", prefix]
    assert budget.MAX_WAIT == 1.0
    assert _count(budget.BUDGET_REQUESTS, "cred-now") == before + 1
    assert _count(budget.BUDGET_DEFERRED, "cred-now") == deferred


async def test_budget_short_wait_sleeps_then_sends(reservation: dict[str, Any]) -> None:
    before = _count(budget.BUDGET_REQUESTS, "cred-wait")
    reservation["answer"] = "0.25"
    waits = budget.BUDGET_WAIT.labels("cred-wait")._sum.get()
    assert await budget.acquire(_Pipe(), "cred-wait", 5.0, "r", "t") == 0.0  # type: ignore[arg-type]
    assert reservation["sleeps"] == [0.25]
    assert budget.BUDGET_WAIT.labels("cred-wait")._sum.get() == waits + 0.25
    assert _count(budget.BUDGET_REQUESTS, "cred-wait") == before + 1


async def test_budget_long_wait_comes_back_just_before_its_slot(
    reservation: dict[str, Any],
) -> None:
    requests = _count(budget.BUDGET_REQUESTS, "cred-later")
    deferred = _count(budget.BUDGET_DEFERRED, "cred-later")
    reservation["answer"] = "-2.5"
    back = await budget.acquire(_Pipe(), "cred-later", 5.0, "r", "t")  # type: ignore[arg-type]
    assert back == 2.5 - budget.LEAD
    assert 0 < budget.LEAD < budget.MAX_WAIT
    assert reservation["sleeps"] == []
    assert _count(budget.BUDGET_REQUESTS, "cred-later") == requests
    assert _count(budget.BUDGET_DEFERRED, "cred-later") == deferred + 1


# --- config parsing -----------------------------------------------------------------------------

KEY = "k" * 16


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", {}),
        (f"t1:{KEY}", {KEY: "t1"}),
        (
            f" t1 : {KEY} ,, t_2-x:{KEY}2\n t3:{KEY}3,",
            {KEY: "t1", KEY + "2": "t_2-x", KEY + "3": "t3"},
        ),
        (f"t1:{KEY}:with:colons", {f"{KEY}:with:colons": "t1"}),
    ],
)
def test_parse_api_keys_accepts(raw: str, parsed: dict[str, str]) -> None:
    assert config.parse_api_keys(raw) == parsed


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (f"t1{KEY}", "entry 1 is not of the form tenant:key"),
        (f":{KEY}", "entry 1 is not of the form tenant:key"),
        ("t1:", "entry 1 is not of the form tenant:key"),
        (f"t1:{KEY},bad tenant:{KEY}", "entry 2 has a tenant name outside"),
        (f"t.1:{KEY}", "entry 1 has a tenant name outside"),
        ("t1:" + "k" * 15, "entry 1 has a key shorter than 16 characters"),
    ],
)
def test_parse_api_keys_refuses_naming_the_position_not_the_key(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        config.parse_api_keys(raw)
    assert KEY not in str(info.value)


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> config.Settings:
    for name in list(config.Settings.model_fields):
        alias = config.Settings.model_fields[name].alias
        if alias:
            monkeypatch.delenv(alias, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return config.load_settings()


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(monkeypatch)
    assert s.retry_schedule == config.DEFAULT_RETRY_SCHEDULE
    assert config.DEFAULT_RETRY_SCHEDULE == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    assert (s.poll_min_interval, s.poll_max_interval) == (2.0, 60.0)
    assert s.tracking_window == 7 * 86400
    assert s.disable_after == 5 * 86400
    assert s.lease_seconds == 30.0
    assert s.allow_private_urls is False
    assert s.autoposting_terminal == (
        "completed",
        "failed",
        "succeeded",
        "partial",
        "cancelled",
        "canceled",
    )
    assert s.api_keys() == {}


def test_settings_parse_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(
        monkeypatch,
        RELAY_RETRY_SCHEDULE=" 0.5, 2 ,,10 ",
        RELAY_AUTOPOSTING_TERMINAL_STATUSES=" done , ,gone",
        RELAY_API_KEYS=f"t1:{KEY}",
    )
    assert s.retry_schedule == (0.5, 2.0, 10.0)
    assert s.autoposting_terminal == ("done", "gone")
    assert s.api_keys() == {KEY: "t1"}
    assert config._parse_float_list([1, "2.5"], "X") == (1.0, 2.5)
    assert config._parse_float_list("0", "X") == (0.0,)


def test_settings_read_keys_from_a_file_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"t2:{KEY}2\nt3:{KEY}3\n")
    s = _settings(monkeypatch, RELAY_API_KEYS=f"t1:{KEY}", RELAY_API_KEYS_FILE=str(path))
    assert s.api_keys() == {KEY: "t1", KEY + "2": "t2", KEY + "3": "t3"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"RELAY_RETRY_SCHEDULE": ""},
            "invalid RELAY_RETRY_SCHEDULE: RELAY_RETRY_SCHEDULE must list at least one number "
            "of seconds",
        ),
        (
            {"RELAY_RETRY_SCHEDULE": "5,soon"},
            "invalid RELAY_RETRY_SCHEDULE: RELAY_RETRY_SCHEDULE has 'soon', which is not a "
            "number of seconds",
        ),
        (
            {"RELAY_RETRY_SCHEDULE": "5,-1"},
            "invalid RELAY_RETRY_SCHEDULE: RELAY_RETRY_SCHEDULE has a negative delay",
        ),
        (
            {"RELAY_POLL_MIN_INTERVAL": "10", "RELAY_POLL_MAX_INTERVAL": "5"},
            "invalid configuration: RELAY_POLL_MAX_INTERVAL must be >= RELAY_POLL_MIN_INTERVAL",
        ),
        (
            {"RELAY_LEASE_SECONDS": "16", "RELAY_DELIVERY_TIMEOUT": "15"},
            "invalid configuration: RELAY_LEASE_SECONDS must exceed the delivery and vendor "
            "timeouts by more than a second",
        ),
        (
            {
                "RELAY_LEASE_SECONDS": "5",
                "RELAY_VENDOR_TIMEOUT": "4",
                "RELAY_DELIVERY_TIMEOUT": "1",
            },
            "invalid configuration: RELAY_LEASE_SECONDS must exceed the delivery and vendor "
            "timeouts by more than a second",
        ),
        (
            {"RELAY_ENCRYPTION_KEY": "not-a-key"},
            "invalid configuration: RELAY_ENCRYPTION_KEY is not a Fernet key (32 url-safe "
            "base64 bytes)",
        ),
        (
            {"RELAY_API_KEYS": "t1:short"},
            "invalid RELAY_API_KEYS: entry 1 has a key shorter than 16 characters",
        ),
        (
            {"RELAY_POLL_MIN_INTERVAL": "0"},
            "invalid RELAY_POLL_MIN_INTERVAL: Input should be greater than 0",
        ),
        (
            {"RELAY_LOG_FORMAT": "xml"},
            "invalid RELAY_LOG_FORMAT: String should match pattern '^(json|console)$'",
        ),
    ],
)
def test_settings_refuse_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(config.ConfigError) as info:
        _settings(monkeypatch, **env)
    assert str(info.value) == message


def test_settings_bounds_accept_the_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(
        monkeypatch,
        RELAY_POLL_MIN_INTERVAL="5",
        RELAY_POLL_MAX_INTERVAL="5",
        RELAY_LEASE_SECONDS="16.5",
        RELAY_DELIVERY_TIMEOUT="15",
        RELAY_VENDOR_TIMEOUT="15",
        RELAY_ENCRYPTION_KEY="a" * 43 + "=",
    )
    assert s.poll_min_interval == s.poll_max_interval == 5


def test_settings_key_file_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(config.ConfigError, match=r"^invalid RELAY_API_KEYS_FILE: No such file"):
        _settings(monkeypatch, RELAY_API_KEYS_FILE=str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_text(f"t1:{KEY}\nt2:short\n")
    with pytest.raises(config.ConfigError) as info:
        _settings(monkeypatch, RELAY_API_KEYS_FILE=str(bad))
    assert (
        str(info.value)
        == "invalid RELAY_API_KEYS_FILE: entry 2 has a key shorter than 16 characters"
    )


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    config.get_settings.cache_clear()
    try:
        _settings(monkeypatch)
        first = config.get_settings()
        monkeypatch.setenv("RELAY_POLL_MAX_INTERVAL", "99")
        assert config.get_settings() is first
    finally:
        config.get_settings.cache_clear()


# --- ssrf: the exact edges and messages ---------------------------------------------------------


def test_unsafe_url_keeps_its_reason() -> None:
    assert ssrf.UnsafeURL("why").reason == "why"


@pytest.mark.parametrize(
    ("host", "parsed"),
    [
        ("[::1]", "::1"),
        ("[2606:4700::1111]", "2606:4700::1111"),
        ("[1.2.3.4]", "1.2.3.4"),
        ("1.2.3.4", "1.2.3.4"),
        ("[::1", None),
        ("::1]", None),
        ("[]", None),
        ("example.com", None),
    ],
)
def test_parse_ip_takes_brackets_only_in_pairs(host: str, parsed: str | None) -> None:
    ip = ssrf.parse_ip(host)
    assert (str(ip) if ip is not None else None) == parsed


def test_forbidden_hostname_strips_only_dots() -> None:
    assert ssrf.is_forbidden_hostname(" Metadata.. ")
    assert not ssrf.is_forbidden_hostname("metadataX")
    assert not ssrf.is_forbidden_hostname("localhostX.")


def _syntax_error(url: str) -> str | None:
    try:
        ssrf.check_url_syntax(url)
    except ssrf.UnsafeURL as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://public.example/" + "a" * (2048 - 23), None),
        ("https://public.example/" + "a" * (2049 - 23), "URL is longer than 2048 characters"),
        ("https://public.example/a!b", None),
        (
            "https://public.example/a\x7fb",
            "URL contains whitespace, control characters or backslashes",
        ),
        (
            "https://public.example/a b",
            "URL contains whitespace, control characters or backslashes",
        ),
        ("http://[::1/", "URL is not well formed"),
        ("ftp://public.example/", "URL scheme must be http or https"),
        ("https://u:p@public.example/", "URL must not contain credentials"),
        ("http:///nohost", "URL has no host"),
        ("http://public.example:1/", None),
        ("http://public.example:65535/", None),
        ("http://public.example:65536/", "URL port must be between 1 and 65535"),
        ("http://public.example:0/", "URL port must be between 1 and 65535"),
    ],
)
def test_check_url_syntax_exact(url: str, message: str | None) -> None:
    assert _syntax_error(url) == message


async def _refusal(coro: Any) -> str | None:
    try:
        await coro
    except ssrf.UnsafeURL as exc:
        return str(exc)
    return None


async def test_resolved_addresses_are_read_without_their_zone() -> None:
    def answers(*addresses: str) -> Any:
        return lambda host, port: list(addresses)

    # A zone id is cut at the first %; what is left must be a public address.
    for address in ("93.184.216.34%eth0", "93.184.216.34%x%y", "2606:4700:4700::1111%"):
        assert await ssrf.resolve_and_check("h.example", 443, False, answers(address)) == [address]
    assert (
        await _refusal(ssrf.resolve_and_check("h.example", 443, False, answers("10.0.0.1%eth0")))
        == "host resolves to a private, loopback or reserved address"
    )
    assert (
        await _refusal(ssrf.resolve_and_check("h.example", 443, False, answers()))
        == "host does not resolve"
    )
    assert (
        await _refusal(ssrf.resolve_and_check("h.example", 443, True, answers()))
        == "host does not resolve"
    )
    assert await ssrf.resolve_and_check("h.example", 443, True, answers("10.0.0.1")) == ["10.0.0.1"]


async def test_resolve_and_check_messages() -> None:
    def broken(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    assert (
        await _refusal(ssrf.resolve_and_check("10.1.1.1", 80, False))
        == "host is a private, loopback or reserved address"
    )
    assert await ssrf.resolve_and_check("10.1.1.1", 80, True) == ["10.1.1.1"]
    assert (
        await _refusal(ssrf.resolve_and_check("localhost", 80, False))
        == "host names the local machine or a metadata service"
    )
    assert (
        await _refusal(ssrf.resolve_and_check("h.example", 80, False, broken))
        == "host does not resolve"
    )


async def test_the_resolver_gets_the_host_and_the_default_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["93.184.216.34"]

    await ssrf.check_url("https://h.example/x", False, resolver)
    await ssrf.check_url("http://h.example/x", False, resolver)
    await ssrf.check_url("http://h.example:8080/x", False, resolver)
    await ssrf.check_url("https://h.example:8443/x", False, resolver)
    assert asked == [
        ("h.example", 443),
        ("h.example", 80),
        ("h.example", 8080),
        ("h.example", 8443),
    ]

    async def system(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["93.184.216.34"]

    asked.clear()
    monkeypatch.setattr(ssrf, "_getaddrinfo", system)
    assert await ssrf.resolve_and_check("h.example", 8443, False) == ["93.184.216.34"]
    assert asked == [("h.example", 8443)]


async def test_system_lookup_of_a_literal_answers_that_address() -> None:
    # A literal needs no DNS: getaddrinfo echoes it (no network traffic).
    assert await ssrf._getaddrinfo("127.0.0.2", 80) == ["127.0.0.2"]
    assert await ssrf._getaddrinfo("::2", 80) == ["::2"]


# --- signing: the exact edges -------------------------------------------------------------------


def test_signature_header_needs_a_secret() -> None:
    with pytest.raises(ValueError) as info:
        signing.signature_header([], "id", 1, b"{}")
    assert str(info.value) == "at least one secret is needed to sign"


def _signed(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    return signing.sign(secret, msg_id, ts, body).partition(",")[2]


def test_verify_edges() -> None:
    secret = signing.new_secret()
    body, ts = b'{"a":1}', 1_700_000_000
    good = _signed(secret, "msg_1", ts, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts)}

    def ok(signature: str, now: int = ts, **extra: str) -> bool:
        return signing.verify(
            secret, {**headers, "webhook-signature": signature, **extra}, body, now=now
        )

    assert ok(f"v1,{good}")
    # Freshness: exactly at the tolerance still verifies, one second past does not.
    assert ok(f"v1,{good}", now=ts + 300) and ok(f"v1,{good}", now=ts - 300)
    assert not ok(f"v1,{good}", now=ts + 301)
    # Other versions and undecodable candidates are skipped, not the end of the search.
    assert ok(f"v2,{good} v1,{good}")
    assert ok(f"v1,!!notbase64!! v1,{good}")
    # Strict base64: junk inside a signature is not silently dropped.
    assert not ok(f"v1,{good[:10]}!{good[10:]}")
    # The header is space-delimited (Standard Webhooks): a tab does not separate candidates.
    assert not ok(f"v1,AAAA\tv1,{good}")
    # Each of id, timestamp and signature is required; missing ones fail without raising.
    assert not signing.verify(secret, {"webhook-signature": f"v1,{good}"}, body, now=ts)
    none_signed = _signed(secret, "None", ts, body)
    assert not signing.verify(
        secret,
        {"webhook-timestamp": str(ts), "webhook-signature": f"v1,{none_signed}"},
        body,
        now=ts,
    )
    assert not signing.verify(
        secret, {"webhook-id": "msg_1", "webhook-timestamp": str(ts)}, body, now=ts
    )
