-- release_hold.lua: the holder gives its seats back before the deadline; they go
-- to the next clients in line, as when a hold runs out.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms  current time, ms since epoch
-- ARGV[2] seq     the ticket whose hold is given back
-- Returns JSON: "released"; "paying" (a payment is in flight: nothing changes);
-- or "not_held" (no open hold: it ran out, was paid, or was never made).
-- A released ticket ends as "expired" with rt, the release time (ms), and its
-- client is told "expired" through the notify stream, like a hold that ran out.

local now, seq = tonumber(ARGV[1]), ARGV[2]
local rec = get_ticket(seq)
if not rec or (rec.st ~= 'held' and rec.st ~= 'paying') then
  return cjson.encode('not_held')
end
if rec.st == 'paying' then
  return cjson.encode('paying')
end
release_seats(rec)
rec.st, rec.rt = 'expired', now
put_ticket(seq, rec)
redis.call('HINCRBY', K_STATS, 'expired', 1)
redis.call('ZREM', K_EXPIRY, seq)
flush_maps()
notify('expire', {{tonumber(seq), 'expired'}}, nil)
return cjson.encode('released')
