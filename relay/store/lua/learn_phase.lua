--[[
  Learn one phase length of a vendor status: an exponentially weighted mean and mean deviation
  (as TCP estimates a round trip), so the poll job can aim its next poll just after a run's
  expected transition (relay/vendors/polling.py). Atomic, because every worker feeds the same
  figures. Bounded: a status not yet known is learned only while fewer than `max_statuses` are
  (a vendor inventing statuses cannot grow the hash), and the key expires `ttl` seconds after the
  last phase learned, so a vendor no longer used leaves nothing behind.
  KEYS: the vendor's phase hash (keys.phases). ARGV: status, seconds, weight (0..1), ttl (s),
  max_statuses.
  The logic is includes/phase.lua's (shared with lua/record_event.lua).
  Returns 1 if learned, 0 if refused (hash full).
]]
--- @include "phase"

return ph_learn(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]))
