-- confirm_paid.lua: mark the seats of paid holds sold, after their bookings are
-- durable in PostgreSQL; tell the clients. Repeating a confirmation is safe.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms  current time, ms since epoch (unused; kept for a uniform call)
-- ARGV[2..]       quadruples: ticket seq, idempotency key, booking id, traceparent
--                 ("" = not traced; else the confirmed item carries it, 4th)
-- Returns JSON [r] in request order: "confirmed", or "conflict:<state>" when the
-- hold was not being paid with that key (reconciliation must look at it).

local out, items = {}, {}
for a = 2, #ARGV, 4 do
  local seq, key, booking, tp = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local rec = get_ticket(seq)
  if rec and rec.st == 'confirmed' and rec.bk == booking then
    out[#out + 1] = 'confirmed'
  elseif rec and rec.st == 'paying' and rec.k == key then
    mark_seats(SECTION_INDEX[rec.hs], rec.seats, 's')
    move_count(rec.hs, #rec.seats, 'held', 'sold')
    rec.st, rec.bk = 'confirmed', booking
    put_ticket(seq, rec)
    redis.call('ZREM', K_EXPIRY, seq)
    redis.call('HINCRBY', K_STATS, 'confirmed', 1)
    if tp == '' then
      items[#items + 1] = {tonumber(seq), 'confirmed', booking}
    else
      items[#items + 1] = {tonumber(seq), 'confirmed', booking, tp}
    end
    out[#out + 1] = 'confirmed'
  else
    out[#out + 1] = 'conflict:' .. ((rec and rec.st) or 'missing')
  end
end
flush_maps()
if #items > 0 then
  notify('confirm', items, nil)
end
return cjson.encode(out)
