-- set_event_state.lua: pause, resume or close admission for an event.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms  current time, ms since epoch
-- ARGV[2] action  "pause", "resume" or "close"
-- Closing tells the clients still waiting that nothing is left (see below).
-- Returns JSON {ok, state}: ok false (state unchanged) when the action does not
-- apply to the current state, e.g. resuming an event that is not paused.

local now, action = tonumber(ARGV[1]), ARGV[2]
local state = redis.call('HGET', K_META, 'state')
local new = nil
if action == 'pause' and (state == 'open' or state == 'scheduled') then
  new = 'paused'
elseif action == 'resume' and state == 'paused' then
  new = 'scheduled'
  if now >= num(redis.call('HGET', K_META, 'opens_at_ms')) then
    new = 'open'
  end
elseif action == 'close' and state ~= 'closed' then
  new = 'closed'
end
if new == nil then
  return cjson.encode({ok = false, state = state})
end
redis.call('HSET', K_META, 'state', new)
if new == 'closed' then
  -- No seat can come back to the line any more: everyone still waiting (the pre-queue
  -- too) is told a final "sold out" at once, by one notify entry (field sold_out_after:
  -- the places after it). Their records stay queued; a closed sale reads them as sold out.
  notify('close', {}, {sold_out_after = stat('serving')})
end
return cjson.encode({ok = true, state = new})
