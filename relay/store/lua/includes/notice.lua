--[[
  A notice for a tenant, kept at most once per gate period (the gate key expires), the list
  trimmed to `keep` (relay/tenancy/notices.py says what notices are).

  keep_notice(gate, notices, gate_ttl, notice, keep)   returns true if the notice was kept
]]
local function keep_notice(gate, notices, gate_ttl, notice, keep)
  if not redis.call('SET', gate, '1', 'NX', 'EX', tonumber(gate_ttl)) then return false end
  redis.call('LPUSH', notices, notice)
  redis.call('LTRIM', notices, 0, tonumber(keep) - 1)
  return true
end
