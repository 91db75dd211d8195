-- use_challenges.lua: remember solved join challenges, each once. Loaded without
-- _prelude.lua: its keys are used-solution markers, not an event's layout.
--
-- KEYS: used-solution strings of one event (`ev:{E}:challenge:used:<nonce>`, one hash tag)
-- ARGV[i] expires_ms  when KEYS[i]'s challenge expires, ms since epoch (the marker lives
--                     until then)
-- Returns JSON [1 | 0] in key order: 1 first use (the join goes ahead), 0 used already
-- (by an earlier call, or by an earlier key of this call: the same solution twice in a
-- batch joins once).

local used = {}
for i, key in ipairs(KEYS) do
  local first = redis.call('SET', key, 1, 'NX', 'PXAT', math.max(tonumber(ARGV[i]), 1))
  used[i] = first and 1 or 0
end
return cjson.encode(used)
