-- reconcile_bookings.lua: make Redis agree with bookings durable in PostgreSQL, the
-- record. A booking's seats end up sold to its ticket, or the booking is reported as
-- a conflict (its seats went to another ticket: refund it). Never sells a seat twice;
-- running it again changes nothing.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms  current time, ms since epoch (recorded as the join time of a
--                 ticket record Redis lost)
-- ARGV[2..]       groups of 7, one per booking: ticket seq, idempotency key,
--                 booking id, section, seat positions (comma-separated, ascending),
--                 client id, amount (cents)
-- Returns JSON [r] in request order, r one of:
--   "confirmed"          Redis already had it sold to this booking: nothing done
--   "sold"               the ticket still held or paid those seats: now sold
--   "retaken"            the hold had been released (or lost) and its seats were
--                        still free: taken back and sold
--   "conflict:<reason>"  left alone; reason: "seats" (held or sold by another
--                        ticket), "booking" (the ticket was confirmed with another
--                        booking), "section" (no such section)

local now = tonumber(ARGV[1])
local out, items = {}, {}

local function positions(csv)
  local list = {}
  for p in string.gmatch(csv, '[0-9]+') do
    list[#list + 1] = tonumber(p)
  end
  table.sort(list)
  return list
end

local function same_seats(a, b)
  if a == nil or #a ~= #b then
    return false
  end
  for i = 1, #a do
    if tonumber(a[i]) ~= b[i] then
      return false
    end
  end
  return true
end

local function all_free(i, seats)
  for _, p in ipairs(seats) do
    if seat_at(i, p) ~= '0' then
      return false
    end
  end
  return true
end

for a = 2, #ARGV, 7 do
  local seq, key, booking, section = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local seats = positions(ARGV[a + 4])
  local client, amount = ARGV[a + 5], tonumber(ARGV[a + 6])
  local i = SECTION_INDEX[section]
  local rec = get_ticket(seq)
  local r
  if i == nil then
    r = 'conflict:section'
  elseif rec and rec.st == 'confirmed' then
    r = (rec.bk == booking) and 'confirmed' or 'conflict:booking'
  elseif rec and (rec.st == 'held' or rec.st == 'paying') and rec.hs == section
      and same_seats(rec.seats, seats) then
    mark_seats(i, seats, 's')
    move_count(section, #seats, 'held', 'sold')
    rec.st, rec.k, rec.bk, rec.pu = 'confirmed', key, booking, nil
    put_ticket(seq, rec)
    redis.call('ZREM', K_EXPIRY, seq)
    redis.call('HINCRBY', K_STATS, 'confirmed', 1)
    r = 'sold'
  elseif all_free(i, seats) then
    mark_seats(i, seats, 's')
    move_count(section, #seats, 'free', 'sold')
    if rec == nil then
      rec = {q = #seats, s = section, c = client, j = now}
      redis.call('HSETNX', K_CLIENTS, client, seq)
      redis.call('HINCRBY', K_STATS, 'admitted', 1)
      -- New joins must not reuse the seq (and hold id) of a booked ticket.
      if tonumber(seq) > stat('seq') then
        redis.call('HSET', K_STATS, 'seq', seq)
      end
    else
      if rec.st == 'held' or rec.st == 'paying' then
        -- Its own hold names other seats (lost writes): give those back.
        release_seats(rec)
      elseif rec.st == 'expired' then
        redis.call('HINCRBY', K_STATS, 'expired', -1)
      elseif rec.st == 'sold_out' then
        redis.call('HINCRBY', K_STATS, 'sold_out', -1)
      end
      if rec.hs == nil then
        redis.call('HINCRBY', K_STATS, 'admitted', 1)
      end
      redis.call('ZREM', K_EXPIRY, seq)
    end
    rec.st, rec.hs, rec.seats, rec.amt = 'confirmed', section, seats, amount
    count_person(rec, #seats) -- freed or never counted above: the booking counts again
    rec.k, rec.bk, rec.pu, rec.rt = key, booking, nil, nil
    put_ticket(seq, rec)
    redis.call('HINCRBY', K_STATS, 'confirmed', 1)
    r = 'retaken'
  else
    r = 'conflict:seats'
  end
  if r == 'sold' or r == 'retaken' then
    items[#items + 1] = {tonumber(seq), 'confirmed', booking}
  end
  out[#out + 1] = r
end
flush_maps()
if #items > 0 then
  notify('confirm', items, nil)
end
return cjson.encode(out)
