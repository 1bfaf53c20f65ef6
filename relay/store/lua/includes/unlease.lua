--[[
  ul_forget(due, member): a member's lease entry and failure count in a due set's lease hash
  (keys.leases), removed when what the member stands for is gone (erase, sweep): a worker that
  still holds it finds its lease gone and writes nothing more, and no entry outlives the member.
]]
local function ul_forget(due, member)
  local held = key_leases(due)
  redis.call('HDEL', held, member)
  redis.call('HDEL', key_lease_fails(held), member)
end
