-- join_queue.lua: put clients in the waiting line, one place per client id.
--
-- A verified person (an event that requires identity) joins under one client id
-- derived from its identity, so a second device gets the same place back. Once
-- that person's ticket has ended (confirmed, expired, left, sold_out) a new join
-- takes a new place (a further order; once the sale is over it gets its ended ticket
-- back, as any client id does), unless the seats the person holds or bought
-- plus the quantity asked would pass meta.max_per_person (0: no limit): st
-- "person_limit", seq 0.
--
-- Before opens_at a join takes a ticket in the pre-queue (no place yet); the
-- first call at or after opens_at, of this script or admit_next, shuffles the
-- pre-queue into the line (open_line in _prelude.lua); later joins queue in order.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms   current time, ms since epoch
-- ARGV[2] seed1    random integer in [0, 2^31) for the opening shuffle
-- ARGV[3] seed2    random integer in [0, 2^31) for the opening shuffle
-- ARGV[4..]        quintuples: client_id, quantity, section ("" = any), traceparent
--                  ("" = not traced; else kept in the line's entry, field tp, or
--                  while in the pre-queue in the ticket record, until the shuffle),
--                  person ("" = no verified identity; else kept as the ticket's pn)
-- Returns JSON [{seq, st, serving, place}] in request order; place is 0 while
-- the ticket waits in the pre-queue. A client id that already has a place gets
-- that place back (idempotent, and it counts as being back: see mark_presence.lua);
-- joins after the event sold out or closed get
-- st "sold_out" / "closed" and seq 0.

local now = tonumber(ARGV[1])
open_line(now, ARGV[2], ARGV[3])
local state = redis.call('HGET', K_META, 'state')
local opened = line_opened()
local max_per_person = num(redis.call('HGET', K_META, 'max_per_person'))
local ENDED = {confirmed = true, expired = true, left = true, sold_out = true}
local out = {}
for a = 4, #ARGV, 5 do
  local client, qty, section, tp = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local person = ARGV[a + 4]
  local existing = redis.call('HGET', K_CLIENTS, client)
  local rec = existing and get_ticket(existing)
  local over = state == 'sold_out' or state == 'closed'
  if existing and not (person ~= '' and ENDED[rec.st] and not over) then
    if rec.gone then -- back before its place was given up
      rec.gone = nil
      put_ticket(existing, rec)
    end
    out[#out + 1] = {seq = tonumber(existing), st = rec.st, place = place_of(existing, rec)}
  elseif over then
    out[#out + 1] = {seq = 0, st = state, place = 0}
  elseif person ~= '' and max_per_person > 0 and person_seats(person) + qty > max_per_person then
    out[#out + 1] = {seq = 0, st = 'person_limit', place = 0}
  else
    local seq = redis.call('HINCRBY', K_STATS, 'seq', 1)
    local place = 0
    rec = {st = 'queued', q = qty, s = section, c = client, j = now}
    if person ~= '' then
      rec.pn = person
    end
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
