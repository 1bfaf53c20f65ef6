--[[
  Lua shared by the scripts that hold or release a lease. Time is the server's (TIME), never a
  worker's clock: a worker whose clock is off neither steals leases early nor hands them out
  already expired. A claim's token is its lease deadline as the server wrote it, kept in the due
  set's lease hash (`<due>:leases`) while the member is held; every script that finishes, retries
  or reschedules a member checks it (an empty token skips the check: a job run by hand, not
  claimed). Releasing deletes the hash entry and the member's failure count, so both end with the
  lease (a member removed from the due set by someone else loses its entry at the holder's
  release, or at DELETE of the run).
]]
--- @include "nudge"

local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function lease_held(leases, member, token)
  if leases == '' or token == '' then return true end
  return redis.call('HGET', leases, member) == token
end
local function release(due, leases, member, at)
  if leases ~= '' then
    redis.call('HDEL', leases, member)
    redis.call('HDEL', key_lease_fails(leases), member)
  end
  if at == nil then redis.call('ZREM', due, member)
  else
    redis.call('ZADD', due, 'XX', at, member)
    -- Due within a napping pump's nap: wake one, which naps again until exactly then.
    if at < server_now() + ${NAP} then nudge(due) end
  end
end
