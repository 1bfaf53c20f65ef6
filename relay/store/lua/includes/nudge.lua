--[[
  Wake one idle worker of a due set (workers/pump.py): a pump with nothing due blocks on the set's
  nudge list (BLPOP) until its next member is due, at most NAP seconds, so an idle worker costs
  Redis a few commands a second, not fifty; a script that makes a member due within NAP pushes
  one token (the list holds at most one, and expires a minute after the last push if no pump
  took it), and the pump it wakes claims at once, or naps again until exactly that member's time.

  nudge(due)
]]
local function nudge(due)
  local list = key_nudge(due)
  if redis.call('LLEN', list) == 0 then
    redis.call('RPUSH', list, '1')
    redis.call('PEXPIRE', list, 60000)
  end
end
