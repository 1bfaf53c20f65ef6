--[[
  Settle one run now (stop, a deleted subscription): the listing indexes follow its state, and
  its retention clock starts if it ended and its deliveries settled.

  KEYS: none (key_* functions)
  ARGV[1] run_id
  Returns 1 if the clock started, else 0.
]]
--- @include "lifecycle"

lc_index(ARGV[1])
return lc_settle(ARGV[1])
