-- mark_presence.lua: note that waiting clients lost (or regained) their connection.
--
-- A queued ticket marked gone keeps its place for a grace period; admit_next.lua
-- skips it as "left" when it reaches the head after the grace (ARGV grace_ms there).
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms   current time, ms since epoch
-- ARGV[2..]        pairs: ticket seq, "1" (connection lost) or "0" (back)
-- Returns JSON [st] in request order: each ticket's state ("" when unknown).
-- Idempotent: a ticket already marked keeps its first mark time (field gone, ms);
-- only queued tickets are marked.

local now = tonumber(ARGV[1])
local out = {}
for a = 2, #ARGV, 2 do
  local seq, gone = ARGV[a], ARGV[a + 1] == '1'
  local rec = get_ticket(seq)
  if not rec then
    out[#out + 1] = ''
  else
    if rec.st == 'queued' then
      if gone and not rec.gone then
        rec.gone = now
        put_ticket(seq, rec)
      elseif not gone and rec.gone then
        rec.gone = nil
        put_ticket(seq, rec)
      end
    end
    out[#out + 1] = rec.st
  end
end
return cjson.encode(out)
