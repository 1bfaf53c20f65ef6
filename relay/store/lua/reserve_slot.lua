--[[
  Send slots (GCRA), for the vendor budget per credential (relay/budget.py) and a subscription's
  rate_limit (relay/rate_limit.py): slots `interval` apart from the key's next free one, on the
  server's clock (a worker's skewed clock neither starves the others nor overspends). A caller
  whose slot is within max_wait takes it and sleeps until it. A caller further back *reserves*
  its slot under its holder name (a run, a lane, a watch) and is told to come back then: it keeps
  its place in line. Without reservations every deferred caller came back at the same free slot,
  one took it and the rest were claimed and put back again, every turn, and that churn in the
  shared pumps is what delayed other tenants (bench/fairness.py). A reservation missed by more
  than max_wait (its worker stalled) lapses and its holder queues again, so no burst after a
  stall is larger than max_wait's worth of slots.
  Tenants sharing one credential (the operator's account): reservations are kept per tenant, with
  a count per tenant, and a caller that must wait while another tenant holds more reservations
  than it does takes that tenant's first reservation past max_wait, whose holder gets the new slot
  at the end instead (it finds out when it comes back early, and waits on). So a tenant with a
  few runs is not queued behind another's thousands; the slots themselves, and so the budget, are
  the same: each call spends one, a swap only changes who has which.
  KEYS (named by relay/slots.py, the one caller): next free slot, the caller's tenant's
  reservations (zset holder -> slot), the counts (zset tenant -> reservations held).
  ARGV: interval (s), max_wait (s), holder, tenant, the prefix of every tenant's reservations
  key (the prefix followed by a tenant name is its key).
  The logic is includes/slot.lua's (shared with lua/held_slots.lua).
  Returns seconds: >= 0 the slot is taken (sleep that long, then send), < 0 come back after
  -value. Ends: the free-slot key expires a second after its slot; a reservation leaves when its
  holder takes it or lapses (trimmed here), and both zsets expire a minute after the last slot
  they hold. A count is never added to or taken from: every time the script touches a tenant's
  set it writes the set's size as the count (its ZCARD: gone with the set), and the tenant at the
  top is checked against its set before it is used, so a count outlives neither a set that
  expired nor one erase-tenant deleted (relay/store/slots.py `drop`, one script with the set).
]]
--- @include "slot"

return tostring(slot_reserve(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]),
  ARGV[3], ARGV[4], ARGV[5]))
