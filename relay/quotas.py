"""Per-tenant quotas checked and taken in one script, so concurrent requests cannot overshoot.

Active runs (RELAY_MAX_ACTIVE_RUNS) are counted by CREATE_RUN itself (relay/store/scripts.py);
subscriptions (RELAY_MAX_SUBSCRIPTIONS) here: the tenant's subscription set is the count."""

from __future__ import annotations

import redis.asyncio as aioredis

from relay import keys

# KEYS: tenant_subs, sub. ARGV: limit, sub_id, field, value, ... Returns 1 (added) or 0 (full).
ADD_SUBSCRIPTION = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('SADD', KEYS[1], ARGV[2])
return 1
"""


async def add_subscription(
    r: aioredis.Redis, tenant: str, sub_id: str, fields: dict[str, str], limit: int
) -> bool:
    flat = [item for pair in fields.items() for item in pair]
    script = r.register_script(ADD_SUBSCRIPTION)
    added = await script(
        keys=[keys.tenant_subs(tenant), keys.subscription(sub_id)], args=[limit, sub_id, *flat]
    )
    return bool(added)
