-- set_admission.lua: change an event's admission caps while it runs.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms         current time, ms since epoch (unused; kept for a uniform call)
-- ARGV[2] max_active     most holds open at once (>= 1), or "" to keep it
-- ARGV[3] rate_per_min   most admissions per minute (0 = no cap), or "" to keep it
-- Returns JSON {max_active, rate_per_min}: the caps now in force. Setting the same
-- values again changes nothing but the notify entry that wakes waiting workers.
-- The token bucket (see admit_next.lua) keeps its tokens, clamped to the new
-- rate's one-second burst on the next admission.

local max_active, rate = ARGV[2], ARGV[3]
if max_active ~= '' then
  redis.call('HSET', K_META, 'max_active', tonumber(max_active))
end
if rate ~= '' then
  redis.call('HSET', K_META, 'rate_per_min', tonumber(rate))
end
notify('config', {}, nil)
return cjson.encode({max_active = num(redis.call('HGET', K_META, 'max_active')),
  rate_per_min = num(redis.call('HGET', K_META, 'rate_per_min'))})
