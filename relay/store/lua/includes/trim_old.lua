--[[
  Trim a list of JSON records (newest first, each with "at", unix seconds) to those newer than
  `cutoff`, from the oldest end.
]]

local function lc_trim_old(key, cutoff)
  for _ = 1, 10000 do
    local last = redis.call('LINDEX', key, -1)
    if not last then return end
    local ok, rec = pcall(cjson.decode, last)
    -- A record of another shape (no numeric "at") is kept: only what is known old goes.
    local at = ok and type(rec) == 'table' and tonumber(rec['at'])
    if not at or at >= cutoff then return end
    redis.call('RPOP', key)
  end
end
