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
-- Each released ticket records rt, the release time (ms), for audits (release_due).

local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local released = release_due(now, limit)
local next_due = redis.call('ZRANGE', K_EXPIRY, 0, 0, 'WITHSCORES')
local next_ms = -1
if #next_due > 0 then
  next_ms = tonumber(next_due[2])
end
return cjson.encode({released = released, next_ms = next_ms, active = redis.call('ZCARD', K_EXPIRY),
  waiting = stat('seq') - stat('serving'), hold_ms = num(redis.call('HGET', K_META, 'hold_ms'))})
