"""Every Redis key the relay uses, in one place, so a reader can see the whole data model.

The Lua scripts spell no key either: `key_<name>(...)` and `KEY_<NAME>` in a script are generated
from the function or constant of that name here (relay/store/scripts.py), so a format changed
here changes everywhere."""

from __future__ import annotations

P = "relay:"

DUE_START = P + "due:start"
DUE_POLL = P + "due:poll"
DUE_DELIVER = P + "due:deliver"
DUE_WATCH = P + "due:watch"
#: Background chores done in bounded batches (workers/chores.py): `purge|<sub_id>` removes a
#: deleted subscription's lanes and dead letters, `resume|<sub_id>|<ms>` schedules a re-enabled
#: one's parked lanes. A member leaves when its chore is done.
DUE_CHORES = P + "due:chores"
#: chore member -> SSCAN cursor of a resume in progress; an entry ends with its chore.
CHORE_CURSORS = P + "chores:cursors"
WORKER_HEARTBEATS = P + "workers"
#: run id -> retain_until: the runs whose retention clock runs (lifecycle `lc_settle`); the sweep
#: (SWEEP_RUN) takes each member out when it removes the run.
RETENTION = P + "retention"


def leases(due: str) -> str:
    """Hash member -> lease token of the members of a due set held now (see lua/claim.lua);
    `<leases>:fails` counts a member's consecutive failed jobs. Entries end at release."""
    return f"{due}:leases"


def nudge(due: str) -> str:
    """A list of at most one token: pushed by a script that makes a member of `due` due now,
    popped (BLPOP) by an idle pump waiting for work (lua/includes/nudge.lua). Ends: popped, or
    expires a minute after its push."""
    return f"{due}:nudge"


def lease_fails(leases_key: str) -> str:
    """Hash member -> consecutive failed jobs of a held member (scripts FAIL); entries end with
    the member's lease (includes/lease.lua `release`)."""
    return f"{leases_key}:fails"


def poison(due: str) -> str:
    """Members of a due set set aside after repeated failures (lua/fail.lua), trimmed to
    RELAY_RETENTION; a refresh of the run takes its member out."""
    return P + "poison:" + due.removeprefix(P + "due:")


def run(run_id: str) -> str:
    return f"{P}run:{run_id}"


def run_events(run_id: str) -> str:
    return f"{P}run:{run_id}:events"


def tenant_runs(tenant: str) -> str:
    return f"{P}tenant:{tenant}:runs"


def runs_by_provider(tenant: str, provider: str) -> str:
    """Listing index of the tenant's runs of one provider (lifecycle `lc_index`); entries leave
    with the run (sweep, erase)."""
    return f"{tenant_runs(tenant)}:p:{provider}"


def runs_by_status(tenant: str, status: str) -> str:
    """Listing index of the tenant's runs by vendor status or relay state (lifecycle `lc_index`
    moves a run between them)."""
    return f"{tenant_runs(tenant)}:s:{status}"


def runs_by_provider_status(tenant: str, provider: str, status: str) -> str:
    return f"{tenant_runs(tenant)}:ps:{provider}:{status}"


#: What a run's deliveries can be listed by (GET /v1/runs?delivery=): `dead`, a delivery of the
#: run is dead-lettered; `failing`, one is retrying. Counted on the run hash (`dlv_dead`,
#: `dlv_failing`) by the scripts that change a delivery's state (lua/includes/delivery_state.lua).
DELIVERY_OUTCOMES = ("dead", "failing")


def runs_by_delivery(tenant: str, outcome: str) -> str:
    """Listing index of the tenant's runs with a delivery in `outcome` (DELIVERY_OUTCOMES),
    scored by created_at: a run joins when its count goes 0 -> 1 and leaves when it goes back to
    0 (includes/delivery_state.lua), or with the run (lifecycle `lc_unindex`)."""
    return f"{tenant_runs(tenant)}:d:{outcome}"


def runs_by_provider_delivery(tenant: str, provider: str, outcome: str) -> str:
    return f"{tenant_runs(tenant)}:pd:{provider}:{outcome}"


def tenant_subs(tenant: str) -> str:
    return f"{P}tenant:{tenant}:subs"


def tenant_watches(tenant: str) -> str:
    return f"{P}tenant:{tenant}:watches"


def tenant_callback_secret(tenant: str) -> str:
    return f"{P}tenant:{tenant}:callback-secret"


def tenant_events(tenant: str) -> str:
    """The tenant's pull log (GET /v1/events): a stream of event ids in recording order.
    Trimmed by MINID to RELAY_RETENTION and expiring RELAY_RETENTION after its last event, both
    in RECORD_EVENT (relay/store/lua/record_event.lua)."""
    return f"{P}tenant:{tenant}:events"


#: Published (by RECORD_EVENT) with the tenant's events key whenever an event is recorded; each
#: api process listens on one subscription to wake its long-polls (relay/delivery/pull.py).
EVENTS_WAKE = P + "events:wake"


def tenant_notices(tenant: str) -> str:
    return f"{P}tenant:{tenant}:notices"


def tenant_notices_acked(tenant: str) -> str:
    """Unix seconds up to which the tenant acknowledged its notices (relay/ops/notices.py
    `acknowledge`): a zset of one member scored by that time, moved only forward (ZADD GT).
    Ends: expires RELAY_RETENTION after the last acknowledge, by when the notices it covered are
    trimmed too."""
    return f"{P}tenant:{tenant}:notices-acked"


def idempotency(tenant: str, key: str) -> str:
    return f"{P}idem:{tenant}:{key}"


def input_idempotency(tenant: str, provider: str, key: str) -> str:
    """A client's `input.idempotencyKey` (the one the vendor sees) as the tenant's idempotency key
    at the relay too (CREATE_RUN): the request hash and the run it made, for IDEMPOTENCY_TTL."""
    return f"{P}idem:{tenant}:input:{provider}:{key}"


def upstream(tenant: str, provider: str, agent_id: str, upstream_run_id: str) -> str:
    return f"{P}upstream:{tenant}:{provider}:{agent_id}:{upstream_run_id}"


def event(event_id: str) -> str:
    return f"{P}event:{event_id}"


def subscription(sub_id: str) -> str:
    return f"{P}sub:{sub_id}"


def sub_attempts(sub_id: str) -> str:
    return f"{P}sub:{sub_id}:attempts"


def sub_dead(sub_id: str) -> str:
    return f"{P}sub:{sub_id}:dead"


def sub_pairs(sub_id: str) -> str:
    return f"{P}sub:{sub_id}:pairs"


def sub_waiting(sub_id: str) -> str:
    """Lanes waiting for a delivery slot of the subscription (lua/includes/wake.lua says where each
    entry ends; the zset goes with the subscription, or a day after its last wait)."""
    return f"{P}sub:{sub_id}:waiting"


def pair(sub_id: str, run_id: str) -> str:
    """Member of DUE_DELIVER: one ordered lane per (subscription, run)."""
    return f"{sub_id}|{run_id}"


def lane(sub_id: str, run_id: str) -> str:
    return f"{P}lane:{sub_id}:{run_id}"


def delivery(event_id: str, sub_id: str) -> str:
    return f"{P}dlv:{event_id}:{sub_id}"


def watch(watch_id: str) -> str:
    return f"{P}watch:{watch_id}"


def watch_seen(watch_id: str) -> str:
    """Upstream run ids a watch has seen (FINISH_LISTING adds); members leave with their run's
    sweep, the set with the watch."""
    return f"{P}watch:{watch_id}:seen"


def phases(provider: str) -> str:
    """Hash of the learned phase lengths of a vendor's statuses (relay/store/phases.py): two
    fields per status, at most PHASE_STATUSES statuses; the key expires PHASE_TTL after the last
    phase learned (lua/learn_phase.lua)."""
    return f"{P}phases:{provider}"


def budget(provider: str) -> str:
    return f"{P}budget:{provider}"


def connection(tenant: str, provider: str) -> str:
    """A tenant's own vendor credential (sealed) and its hint. Ends with DELETE
    /v1/connections/{provider} (relay/ops/connections.py)."""
    return f"{P}tenant:{tenant}:conn:{provider}"


def api_key(key_id: str) -> str:
    """An API key made at run time (relay/tenancy/apikeys.py): tenant, description, digest. Ends
    when the key is revoked (the revoke deletes it)."""
    return f"{P}apikey:{key_id}"


#: digest (hex SHA-256 of the key) → key id, for lookup; entries leave with their key.
API_KEY_DIGESTS = P + "apikeys:digest"
#: key id → created_at, for listing; members leave with their key.
API_KEYS = P + "apikeys"


def tenant_active(tenant: str) -> str:
    """The tenant's runs counted against RELAY_MAX_ACTIVE_RUNS: CREATE_RUN adds a run; it leaves
    in the script that ends it (lifecycle `lc_index`), or when swept or erased. Kept exact, so the
    quota check is one SCARD; bounded by the limit; gone when empty."""
    return f"{P}tenant:{tenant}:active"


def usage(tenant: str, day: str) -> str:
    """Usage counters of one tenant for one UTC day (YYYYMMDD); expire RELAY_USAGE_DAYS after."""
    return f"{P}usage:{tenant}:{day}"


def notice_gate(tenant: str, name: str) -> str:
    """Set (with an expiry) when a notice `name` was last kept for a tenant, so a fault that hits
    many runs at once makes one notice per period, not one per run. Ends: its own expiry."""
    return f"{P}tenant:{tenant}:notice-gate:{name}"
