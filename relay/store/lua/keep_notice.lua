--[[
  Keep a notice for a tenant at most once per gate period (includes/notice.lua).

  KEYS: gate, notices
  ARGV: gate_ttl, notice, keep
  Returns 1 if the notice was kept, else 0.
]]
--- @include "notice"

if keep_notice(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]) then return 1 end
return 0
