--[[
  Ending the delivery of a lane's head, shared by finish_head.lua (dead-lettered or dropped) and
  delivered.lua (the receiver took it). Only a holder of the lane's lease whose head is still
  that event may end it, so a late finisher whose lease was taken over cannot pop someone
  else's event.

  pop_head(lane, dlv, dead_index, leases, pair, token, event_id, now, run_id, state, attempts,
           code, err, dead)   false when the lease was lost or the head is another event
  let_go(lane, due, pairs, leases, waiting, pair, run_id)
      the lane is due again at once if it has more, else leaves the schedule; the
      subscription's first waiting lane is woken (includes/wake.lua); one delivery of the run
      fewer waits, and the last one of an ended run starts its retention (includes/lifecycle.lua)
]]
--- @include "lifecycle"
--- @include "lease"
--- @include "wake"
--- @include "delivery_state"

local function pop_head(lane, dlv, dead_index, leases, pair, token, event_id, now, run_id, state,
    attempts, code, err, dead)
  if not lease_held(leases, pair, token) then return false end
  -- Popped, then put back if it was another event (rare: a late finisher), one call less
  -- than reading the head first on every delivery.
  local head = redis.call('LPOP', lane)
  if head ~= event_id then
    if head then redis.call('LPUSH', lane, head) end
    return false
  end
  ds_set(dlv, run_id, state)
  redis.call('HSET', dlv, 'state', state, 'attempts', attempts, 'last_code', code,
    'last_error', err, 'updated_at', now, 'next_at', '')
  if dead == '1' then
    redis.call('ZADD', dead_index, now, event_id .. '|' .. run_id)
  end
  return true
end

local function let_go(lane, due, pairs, leases, waiting, pair, run_id)
  if redis.call('LLEN', lane) > 0 then
    release(due, leases, pair, server_now())
  else
    release(due, leases, pair, nil)
    redis.call('SREM', pairs, run_id)
  end
  redis.call('ZREM', waiting, pair)
  wake_one(due, leases, waiting, server_now())
  lc_queued(run_id, -1)
  lc_settle(run_id)
end
