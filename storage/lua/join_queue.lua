-- join_queue.lua: put clients in the waiting line, one place per client id.
--
-- Before opens_at a join takes a ticket in the pre-queue (no place yet); the
-- first call at or after opens_at, of this script or admit_next, shuffles the
-- pre-queue into the line (open_line in _prelude.lua); later joins queue in order.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms   current time, ms since epoch
-- ARGV[2] seed1    random integer in [0, 2^31) for the opening shuffle
-- ARGV[3] seed2    random integer in [0, 2^31) for the opening shuffle
-- ARGV[4..]        quadruples: client_id, quantity, section ("" = any), traceparent
--                  ("" = not traced; else kept in the line's entry, field tp, or
--                  while in the pre-queue in the ticket record, until the shuffle)
-- Returns JSON [{seq, st, serving, place}] in request order; place is 0 while
-- the ticket waits in the pre-queue. A client id that already has a place gets
-- that place back (idempotent, and it counts as being back: see mark_presence.lua);
-- joins after the event sold out or closed get
-- st "sold_out" / "closed" and seq 0.

local now = tonumber(ARGV[1])
open_line(now, ARGV[2], ARGV[3])
local state = redis.call('HGET', K_META, 'state')
local opened = line_opened()
local out = {}
for a = 4, #ARGV, 4 do
  local client, qty, section, tp = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local existing = redis.call('HGET', K_CLIENTS, client)
  if existing then
    local rec = get_ticket(existing)
    if rec.gone then -- back before its place was given up
      rec.gone = nil
      put_ticket(existing, rec)
    end
    out[#out + 1] = {seq = tonumber(existing), st = rec.st, place = place_of(existing, rec)}
  elseif state == 'sold_out' or state == 'closed' then
    out[#out + 1] = {seq = 0, st = state, place = 0}
  else
    local seq = redis.call('HINCRBY', K_STATS, 'seq', 1)
    local place = 0
    local rec = {st = 'queued', q = qty, s = section, c = client, j = now}
    if opened then
      place = seq
      if tp == '' then
        redis.call('XADD', K_QUEUE, seq .. '-0', 'c', client)
      else
        redis.call('XADD', K_QUEUE, seq .. '-0', 'c', client, 'tp', tp)
      end
    elseif tp ~= '' then
      rec.tp = tp
    end
    put_ticket(seq, rec)
    redis.call('HSET', K_CLIENTS, client, seq)
    out[#out + 1] = {seq = seq, st = 'queued', place = place}
  end
end
local serving = stat('serving')
for _, r in ipairs(out) do
  r.serving = serving
end
return cjson.encode(out)
