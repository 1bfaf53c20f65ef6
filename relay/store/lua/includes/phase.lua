--[[
  One phase length learned (lua/learn_phase.lua says how and why, and where the hash ends),
  shared with lua/record_event.lua, which learns the phase a transition ended in the same step.
  ph_learn(key, status, seconds, weight, ttl, max_statuses) returns 1 if learned, 0 if refused
  (the hash full).
]]

local function ph_learn(key, status, seconds, weight, ttl, max_statuses)
  local mean_f, dev_f = 'm:' .. status, 'd:' .. status
  local known = redis.call('HMGET', key, mean_f, dev_f)
  local mean, dev = tonumber(known[1]), tonumber(known[2])
  if mean == nil then
    if redis.call('HLEN', key) >= 2 * max_statuses then return 0 end
    mean, dev = seconds, seconds / 4
  else
    dev = dev + weight * (math.abs(seconds - mean) - dev)
    mean = mean + weight * (seconds - mean)
  end
  redis.call('HSET', key, mean_f, tostring(mean), dev_f, tostring(dev))
  redis.call('EXPIRE', key, ttl)
  return 1
end
