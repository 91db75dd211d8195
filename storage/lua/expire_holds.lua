-- expire_holds.lua: release holds whose time is up; their seats go back to the
-- free pool for the next clients in line. Safe to run from every worker at once.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms  current time, ms since epoch
-- ARGV[2] limit   most holds to release in this call
-- Returns JSON {released, next_ms, active, waiting, hold_ms}: holds released,
-- when the next one is due (ms since epoch, -1 when no hold is open), holds still
-- open, clients still waiting in line, and how long a hold lasts (no hold made
-- from now on falls due sooner than now + hold_ms).
-- A hold being paid for ("paying") is kept until its payment window ends.
-- Each released ticket records rt, the release time (ms), for audits.

local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now, 'LIMIT', 0, limit)
local items = {}
for _, seq in ipairs(due) do
  local rec = get_ticket(seq)
  if rec and rec.st == 'paying' and now < rec.pu then
    redis.call('ZADD', K_EXPIRY, rec.pu, seq)
  else
    if rec and (rec.st == 'held' or rec.st == 'paying') then
      release_seats(rec)
      rec.st, rec.rt = 'expired', now
      put_ticket(seq, rec)
      redis.call('HINCRBY', K_STATS, 'expired', 1)
      items[#items + 1] = {tonumber(seq), 'expired'}
    end
    redis.call('ZREM', K_EXPIRY, seq)
  end
end
flush_maps()
if #items > 0 then
  notify('expire', items, nil)
end
local next_due = redis.call('ZRANGE', K_EXPIRY, 0, 0, 'WITHSCORES')
local next_ms = -1
if #next_due > 0 then
  next_ms = tonumber(next_due[2])
end
return cjson.encode({released = #items, next_ms = next_ms, active = redis.call('ZCARD', K_EXPIRY),
  waiting = stat('seq') - stat('serving'), hold_ms = num(redis.call('HGET', K_META, 'hold_ms'))})
