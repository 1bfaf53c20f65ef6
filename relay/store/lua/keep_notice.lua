--[[
  Keep a notice for a tenant at most once per gate period (the gate key expires), trimming the
  list. KEYS: gate, notices. ARGV: gate_ttl, notice, keep. Returns 1 if the notice was kept.
]]

if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
