-- report_backlog.lua: one realtime server's delivery report for one event, read by
-- admit_next.lua to pace admission by what the servers have delivered. Loaded without
-- _prelude.lua: it touches one key.
--
-- KEYS[1] the event's backlog hash (ev:{E}:backlog): server id -> report
-- ARGV[1] server   the reporting server's id (unique per process)
-- ARGV[2] pending  prompts routed to this server's clients and not yet written to
--                  their sockets
-- ARGV[3] seen     the newest notify entry id whose prompts this server has routed
-- ARGV[4] ttl_ms   how long the report counts: a server that stops reporting (dead,
--                  or cut off from Redis) stops holding admission back after this
-- The report's lifetime runs on Redis's clock (TIME), the clock admit_next.lua reads it
-- by, so the servers' and workers' clocks need not agree. The hash itself expires
-- with its longest-lived report: an event nobody serves leaves nothing behind.
-- Returns 1.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. (now + ttl))
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
