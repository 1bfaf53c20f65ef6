--[[
  A subscription's waiting lanes (workers/deliver.py): a lane claimed while its worker already
  has RELAY_DELIVERY_PER_SUBSCRIPTION deliveries to that subscription in flight does not come
  back every fraction of a second to check again (thousands of such lanes, claimed and put back
  all the time, were what delayed every other subscriber: bench/fairness.py). It waits in
  `waiting` (zset lane -> since when, FIFO) with a safety-net time on the schedule, and each
  delivery to the subscription that ends (delivered, finish_head, retry_head) wakes the first
  one: due now, its score -1, which tells the worker that claims it that it takes the slot just
  freed (a lane that goes on back to back keeps its slot: delivered.lua wakes no one then, and
  goes on only while no lane waits). Entries leave when their lane's delivery ends or their lane is found gone; the zset goes with its
  subscription (DELETE_SUB) and expires a day after its last wait in any case.
]]
--- @include "nudge"

local function wake_one(due, leases, waiting, now)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', waiting, 0, '+inf', 'LIMIT', 0, 8)) do
    if not redis.call('ZSCORE', due, m) then
      redis.call('ZREM', waiting, m)
    elseif redis.call('HEXISTS', leases, m) == 0 then
      redis.call('ZADD', waiting, 'XX', -1, m)
      redis.call('ZADD', due, 'XX', now, m)
      nudge(due)
      return
    end
  end
end
