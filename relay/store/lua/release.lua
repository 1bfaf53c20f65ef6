--[[
  Release a held member: reschedule it `delay` seconds from now (server time), or remove it
  (delay '') — only if the lease is still this claim's, and only if the member is still in the
  due set (XX: a run stopped meanwhile stays stopped). Optional run fields are written with it
  (only to a record that still exists: a deleted run or watch is never brought back as a stub),
  and a poll asked for again while it was held (`poll_again`) is due at once.
  KEYS: due, leases, run ('' for none). ARGV: member, token, delay, observed_at, field, value...
  Returns 1, 0 (the lease was lost: nothing written) or -1 (an older observation: nothing written
  to the run, the member released).
]]
--- @include "lease"

if not lease_held(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
local now = server_now()
local delay = ARGV[3]
local written = 1
if KEYS[3] ~= '' then
  local seen = tonumber(redis.call('HGET', KEYS[3], 'observed_at') or '0')
  local obs = tonumber(ARGV[4]) or 0
  if obs > 0 and obs < seen then written = -1
  elseif #ARGV > 4 and redis.call('EXISTS', KEYS[3]) == 1 then
    local fields = {}
    for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
    if obs > 0 then fields[#fields + 1] = 'observed_at'; fields[#fields + 1] = ARGV[4] end
    redis.call('HSET', KEYS[3], unpack(fields))
  end
  if delay ~= '' and redis.call('HGET', KEYS[3], 'poll_again') then
    redis.call('HDEL', KEYS[3], 'poll_again')
    delay = '0'
  end
end
if delay == '' then release(KEYS[1], KEYS[2], ARGV[1], nil)
else release(KEYS[1], KEYS[2], ARGV[1], now + tonumber(delay)) end
return written
