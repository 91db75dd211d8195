-- return_seats.lua: the seats of cancelled tickets go back on sale, after the
-- cancellation is done in PostgreSQL (the record); running it again changes nothing.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms  current time, ms since epoch (unused; kept for a uniform call)
-- ARGV[2..]       groups of 4, one per booking and section: ticket seq, booking id,
--                 section, cancelled positions (comma-separated)
-- Returns JSON [r] in request order, r one of:
--   "returned"           seats sold to this booking's ticket are free again
--   "done"               none of these seats is the ticket's any more (returned before)
--   "conflict:<reason>"  left alone: "booking" (the ticket is not confirmed with this
--                        booking), "section" (no such section)
-- A returned seat leaves the ticket record's seats (its list cx keeps them): the record
-- stays "confirmed" with the seats still booked, and a verified person's count of seats
-- (max_per_person) goes down by the seats cancelled. Seats sold -> free, counters with them,
-- so free + held + sold = capacity still holds. An event that was sold out opens again
-- (state "open", new joins taken); the clients told "sold out" already are done with,
-- their queued records marked so, as admission would have. A notify entry "return"
-- wakes admission workers waiting for seats (the line's head gets them as usual).

local out, returned = {}, 0
for a = 2, #ARGV, 4 do
  local seq, booking, section = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local i = SECTION_INDEX[section]
  local rec = get_ticket(seq)
  local r
  if i == nil then
    r = 'conflict:section'
  elseif rec == nil or rec.st ~= 'confirmed' or rec.bk ~= booking or rec.hs ~= section then
    r = 'conflict:booking'
  else
    local cancel = {}
    for p in string.gmatch(ARGV[a + 3], '[0-9]+') do
      cancel[tonumber(p)] = true
    end
    local keep, gone, sold = {}, {}, {}
    for _, p in ipairs(rec.seats or {}) do
      p = tonumber(p)
      if cancel[p] then
        gone[#gone + 1] = p
        if seat_at(i, p) == 's' then
          sold[#sold + 1] = p
        end
      else
        keep[#keep + 1] = p
      end
    end
    if #gone == 0 then
      r = 'done'
    else
      mark_seats(i, sold, '0')
      move_count(section, #sold, 'sold', 'free')
      returned = returned + #sold
      count_person(rec, -#gone) -- a person's cancelled seats no longer count to its limit
      rec.cx = rec.cx or {}
      for _, p in ipairs(gone) do
        rec.cx[#rec.cx + 1] = p
      end
      if #keep > 0 then
        rec.seats = keep
      else
        rec.seats = nil -- an empty table would be encoded as an object
      end
      put_ticket(seq, rec)
      r = 'returned'
    end
  end
  out[#out + 1] = r
end
flush_maps()
if returned > 0 then
  redis.call('HINCRBY', K_STATS, 'returned', returned)
  if redis.call('HGET', K_META, 'state') == 'sold_out' then
    -- Everyone after serving was told "sold out" when the event sold out: mark them
    -- so before the line takes new joins again.
    local serving, told = stat('serving'), 0
    local entries = redis.call('XRANGE', K_QUEUE, (serving + 1) .. '-0', '+')
    for _, entry in ipairs(entries) do
      local place = tonumber(string.match(entry[1], '^(%d+)'))
      local seq, fields = place, entry[2]
      for f = 3, #fields, 2 do
        if fields[f] == 't' then
          seq = tonumber(fields[f + 1])
        end
      end
      local q = get_ticket(seq)
      if q and q.st == 'queued' then
        q.st = 'sold_out'
        put_ticket(seq, q)
        told = told + 1
      end
      serving = place
    end
    redis.call('HSET', K_STATS, 'serving', serving)
    redis.call('HINCRBY', K_STATS, 'sold_out', told)
    redis.call('HSET', K_META, 'state', 'open')
  end
  notify('return', {}, nil)
end
return cjson.encode(out)
