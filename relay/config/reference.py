"""The configuration reference: what each setting of `Settings` means, and the README table
generated from it (names and defaults read from the fields themselves, so the table cannot list
a setting that does not exist, miss one that does, or show a stale default).

`python -m relay.config.reference` rewrites the table in README.md between its markers;
`--check` exits 1 when it differs (tests/test_config_reference.py fails the same way).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from relay.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- config-table:start (python -m relay.config.reference) -->"
END = "<!-- config-table:end -->"

#: The meaning of every setting, by its environment name (one per field of `Settings`).
MEANINGS: dict[str, str] = {
    "REDIS_URL": (
        "any Redis ≥ 6 or Valkey (a single primary or behind Sentinel; not Redis Cluster). "
        "Required by `relay api`, `relay worker` and the admin commands (they stop, naming it, "
        "when it is unset); unset under `relay dev` only, which then embeds Valkey"
    ),
    "RELAY_API_KEYS": "`tenant:key` pairs, comma-separated; keys ≥ 16 characters",
    "RELAY_API_KEYS_FILE": "the same from a file (a mounted Secret)",
    "RELAY_ENCRYPTION_KEY": (
        "Fernet key(s), comma-separated: the first encrypts, all decrypt (rotation: put the new "
        "key first, run `relay reencrypt`, drop the old one). Webhook secrets, callback secrets, "
        "subscription headers and tenants' vendor connections are encrypted at rest with it "
        "(without it they are stored as they are)"
    ),
    "RELAY_ADMIN_KEY": (
        "bearer key of the operator API `/v1/admin/api-keys` (make, list, revoke tenant API keys "
        "at run time); unset: the admin API answers 404; ≥ 16 characters"
    ),
    "RELAY_SHARED_CONNECTIONS": (
        "the operator's `CITEDY_API_KEY`/`AUTOPOSTING_API_KEY` serve tenants that have no "
        "connection of their own (their client idempotency keys are then scoped per tenant "
        "upstream); `false`: such a tenant gets 409 `no_connection` at `POST /v1/runs` and `POST "
        "/v1/watches`"
    ),
    "RELAY_MAX_ACTIVE_RUNS": (
        "runs a tenant may have starting or tracking at once (`POST /v1/runs`); over it: 429 "
        "`quota_exceeded` naming the limit"
    ),
    "RELAY_MAX_SUBSCRIPTIONS": "subscriptions per tenant; over it: 429 `quota_exceeded`",
    "RELAY_USAGE_DAYS": "days a tenant's daily usage counters (`GET /v1/usage`) are kept",
    "RELAY_TRUSTED_PROXIES": (
        "CIDRs (comma-separated) of the ingress/proxies whose `X-Forwarded-For` and "
        "`X-Forwarded-Proto` are believed (client address for login throttling, https for the "
        "Secure cookie); others' are ignored"
    ),
    "RELAY_SESSION_LIFETIME": (
        "absolute lifetime of a console session in seconds (it also ends after 8 idle hours, and "
        "at once when its API key is revoked)"
    ),
    "CITEDY_BASE_URL": "the Citedy API the relay calls",
    "CITEDY_API_KEY": (
        "the operator's Citedy key (tenants may bring their own: `PUT /v1/connections/citedy`)"
    ),
    "AUTOPOSTING_BASE_URL": "the Autoposting API the relay calls",
    "AUTOPOSTING_API_KEY": (
        "the operator's Autoposting key (tenants may bring their own: `PUT "
        "/v1/connections/autoposting`)"
    ),
    "RELAY_AUTOPOSTING_TERMINAL_STATUSES": (
        "which Autoposting statuses end a run (others are relayed and polled on)"
    ),
    "RELAY_ALLOW_PRIVATE_URLS": (
        "let subscriber and callback URLs point at private/loopback addresses (dev, tests)"
    ),
    "RELAY_RETRY_SCHEDULE": "delivery retry delays in seconds",
    "RELAY_RETRY_AFTER_MAX": "the most a subscriber's `Retry-After` can delay a retry",
    "RELAY_DELIVERY_TIMEOUT": "seconds per delivery attempt",
    "RELAY_DNS_THREADS": (
        "threads that resolve subscriber names (their own, not the process' default executor); "
        "one name takes at most one at a time, so a slow name stalls nobody else"
    ),
    "RELAY_DNS_TIMEOUT": (
        "seconds a subscriber name may take to resolve; a name that took longer fails fast for as "
        "long again (the delivery is retried on its schedule)"
    ),
    "RELAY_DELIVERY_CONCURRENCY": "deliveries in flight per worker",
    "RELAY_DELIVERY_PER_SUBSCRIPTION": (
        "deliveries in flight per subscription per worker (a subscription's further lanes wait, "
        "each woken when one of its deliveries ends; `relay_delivery_slot_waits_total` counts the "
        "waits)"
    ),
    "RELAY_DISABLE_AFTER": "seconds of nothing but failures before a subscription is disabled",
    "RELAY_SECRET_GRACE": "seconds a rotated-out secret keeps signing",
    "RELAY_ATTEMPT_RETENTION": "attempts kept per subscription in the log",
    "RELAY_POLL_MIN_INTERVAL": (
        "the shortest poll interval in seconds (the first poll, and after a change); polls"
        " falling due within a twentieth of it (at most 0.25 s) are sent together"
    ),
    "RELAY_POLL_MAX_INTERVAL": (
        "the longest poll interval in seconds (it grows by 30 % while nothing changes)"
    ),
    "RELAY_POLL_CONCURRENCY": "polls in flight per worker",
    "RELAY_VENDOR_RATE": "vendor requests per second per credential, across all workers",
    "RELAY_VENDOR_TIMEOUT": "seconds per vendor request",
    "RELAY_NOT_FOUND_LIMIT": "vendor 404s in a row before `run.tracking_failed`",
    "RELAY_TRACKING_WINDOW": (
        "seconds a run is polled before `run.tracking_failed` (restarted when `refresh` resumes a "
        "run that gave up)"
    ),
    "RELAY_UNAUTHORIZED_WINDOW": (
        "seconds of nothing but vendor 401/403 answers before a run gives up "
        "(`run.tracking_failed`, or `run.start_failed` with `credentials: true` at start); until "
        "then it backs off up to `RELAY_POLL_MAX_INTERVAL`"
    ),
    "RELAY_RETENTION": (
        "seconds an ended run (terminal, failed, stopped) is kept with its events, deliveries and "
        "attempts once its deliveries settled, then it is gone; also how long an event stays "
        "pullable from `GET /v1/events` (the tenant's stream is trimmed to it, and expires that "
        "long after its last event)"
    ),
    "RELAY_TOMBSTONE_TTL": (
        "seconds the tombstone of an expired or erased run's upstream key is kept, so a watch "
        "does not track it again"
    ),
    "RELAY_SWEEP_INTERVAL": (
        "seconds between a worker's retention sweeps (index entries, dead letters, attempt log, "
        "notices)"
    ),
    "RELAY_MEMORY_THRESHOLD": (
        "fraction of Redis `maxmemory` above which the api refuses new runs and subscriptions "
        "(503 `store_full`)"
    ),
    "RELAY_WATCH_INTERVAL": "seconds between listings of a watched agent's runs",
    "RELAY_LEASE_SECONDS": (
        "how long a claimed job is held before another worker may take it; must exceed the "
        "timeouts. Lease deadlines, tokens and the vendor budget use Redis's clock (`TIME`), not "
        "the workers'"
    ),
    "RELAY_POISON_AFTER": (
        "failed jobs in a row (exceptions) before a run's job is set aside (`job_error` on the "
        "run, metric `relay_jobs_set_aside_total`); `POST /v1/runs/{id}/refresh` puts a run back"
    ),
    "RELAY_WORKER_PUMPS": (
        "which kinds of work this worker claims (e.g. separate delivery workers; `chores` purges "
        "deleted subscriptions and resumes re-enabled ones in batches)"
    ),
    "RELAY_PUMP_STALE_AFTER": (
        "seconds a pump's loop may go without turning before the worker stops its heartbeat (a "
        "hung pump fails `relay check`)"
    ),
    "RELAY_MAX_BODY_BYTES": "largest request body the API reads",
    "RELAY_LOG_FORMAT": "`json` or `console`",
    "RELAY_LOG_LEVEL": "`debug`, `info`, `warning` or `error`",
    "RELAY_EVENT_LOOP": (
        "`auto` (uvloop where installed, the default), `asyncio` or `uvloop` (fails at start "
        "when not installed): the api's and the worker's event loop"
    ),
    "RELAY_WORKER_METRICS_PORT": "where a worker serves Prometheus metrics (0: off)",
    "RELAY_HEARTBEAT_FILE": (
        "touched by a live worker while every pump's loop turns; read by `relay check`"
    ),
    "RELAY_DATA_DIR": "`relay dev`'s embedded Valkey data and dev key",
    "RELAY_CHECK_MAX_AGE": (
        "seconds since the worker's last heartbeat after which `relay check` answers unhealthy "
        "(exit 1)"
    ),
    "RELAY_STRICT_CONFIG": (
        "`true`: a `RELAY_*` variable that is not a setting (a misspelling) stops the process, "
        "naming the closest setting; `false`: it is a warning at start"
    ),
}


def names() -> list[str]:
    """Every environment name `Settings` reads, in its declaration order."""
    return [info.alias or name.upper() for name, info in Settings.model_fields.items()]


def shown_default(value: Any) -> str:
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if value < 1e6 or not value.is_integer() else str(int(value))
    if isinstance(value, tuple | list):
        return ",".join(shown_default(v) for v in value) if value else "none"
    return str(value)


def render() -> str:
    """The Markdown table: one row per setting."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        env = info.alias or name.upper()
        default = info.get_default(call_default_factory=True)
        meaning = MEANINGS[env].replace("|", "\\|")
        rows.append(f"| `{env}` | `{shown_default(default)}` | {meaning} |")
    return "\n".join(rows)


def with_table(text: str) -> str:
    """`text` (the README) with the table between the markers replaced by `render()`."""
    head, found, rest = text.partition(START)
    if not found or END not in rest:
        raise ValueError(f"README.md lacks the markers {START!r} and {END!r}")
    tail = rest.partition(END)[2]
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    fresh = with_table(text)
    if "--check" in argv:
        if fresh != text:
            sys.stderr.write("README.md's configuration table differs from relay/config\n")
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    sys.stdout.write(f"wrote the configuration table of {README}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
