-- _prelude.lua: shared by every event script; the loader puts it in front of each.
--
-- KEYS, the same layout for every event script (built by storage/keys.py):
--   KEYS[1] meta     hash: state, opens_at_ms, hold_ms, max_active, max_per_order,
--                    sections (comma-separated ids, best first), price:<S> (cents),
--                    opened ("1" once the pre-queue was shuffled into the line),
--                    rate_per_min (admissions per minute, absent or 0 = no cap)
--   KEYS[2] stats    hash: seq, serving, capacity, free, held, sold, free:<S>,
--                    held:<S>, sold:<S>, admitted, expired, confirmed, sold_out, left,
--                    tb_mt / tb_ms (admission token bucket: milli-tokens, last refill ms)
--   KEYS[3] queue    stream: one entry per place in line, id "<place>-0", fields
--                    c (client id), for shuffled pre-queue tickets t (ticket seq),
--                    and for a traced join tp (its W3C traceparent)
--   KEYS[4] tickets  hash: seq -> JSON ticket record (see below)
--   KEYS[5] clients  hash: client id -> seq; and '#n:<person>' -> seats that verified
--                    person holds or bought in this event (client ids cannot hold '#')
--   KEYS[6] expiry   zset: seq of each open hold, score = release time (ms)
--   KEYS[7] notify   stream: outcomes for the realtime servers
--   KEYS[8] backlog  hash: realtime server id -> "<prompts not yet written> <notify id
--                    read up to> <expires, ms of Redis's clock>" (report_backlog.lua)
--   KEYS[8+i]        string: seat map of the i-th section of meta.sections
--
-- Seat maps: one byte per seat, "0" free, "h" held, "s" sold; rows end with "|",
-- best row first. A seat's position is its 1-based byte offset in the map.
--
-- Ticket record fields: st (queued, held, paying, confirmed, expired, sold_out,
-- left), gone (ms since the client's connection was lost, while queued),
-- q (quantity), s (requested section, "" = any), c (client id), j (join ms),
-- pl (place in line of a pre-queue ticket, set when the line opens; any other
-- ticket's place is its seq),
-- hs (held section), seats (positions), amt (cents), exp (hold ends, ms),
-- an (the hold's number: 1 for the event's first hold, then in the order made),
-- pu (payment window ends, ms), k (idempotency key), bk (booking id),
-- rt (released by the expiry sweep, ms), tp (a traced join's traceparent, while
-- the ticket waits in the pre-queue: the shuffle moves it to the line's entry),
-- pn (the verified person the ticket belongs to, when the event requires identity),
-- cx (positions of a confirmed ticket's cancelled seats, returned to sale and
-- taken out of seats; see return_seats.lua).

local K_META, K_STATS, K_QUEUE, K_TICKETS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_CLIENTS, K_EXPIRY, K_NOTIFY, K_BACKLOG = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local MAPS_AT = 8 -- KEYS[MAPS_AT + i]: the seat map of section i
local NOTIFY_MAXLEN = 100000

local function num(v)
  return tonumber(v) or 0
end

local function stat(field)
  return num(redis.call('HGET', K_STATS, field))
end

local function section_ids()
  local ids = {}
  for id in string.gmatch(redis.call('HGET', K_META, 'sections') or '', '[^,]+') do
    ids[#ids + 1] = id
  end
  return ids
end

local SECTIONS = section_ids()
local SECTION_INDEX = {}
for i, id in ipairs(SECTIONS) do
  SECTION_INDEX[id] = i
end

-- Seat maps. A call reads a section's map once and keeps what it marks aside, so a
-- hold costs O(seats), not a copy of the whole map; flush_maps writes the marks back
-- once. seat_maps[i] of a section this call touched:
--   bytes     the map as read
--   marks     position -> byte of every seat marked in this call: the current byte
--   freed     true once a mark in this call freed a seat
local seat_maps = {}

local function seat_map(i)
  local sm = seat_maps[i]
  if sm == nil then
    sm = {bytes = redis.call('GET', KEYS[MAPS_AT + i]) or '', marks = {}, freed = false}
    seat_maps[i] = sm
  end
  return sm
end

-- The current byte of position p in section i.
local function seat_at(i, p)
  local sm = seat_map(i)
  return sm.marks[p] or string.sub(sm.bytes, p, p)
end

-- Set every position of a list to the one-byte state ch.
local function mark_seats(i, positions, ch)
  local sm = seat_map(i)
  for _, p in ipairs(positions) do
    sm.marks[p] = ch
  end
  if ch == '0' then
    sm.freed = true
  end
end

-- Runs of adjacent marked positions, in map order: {first position, their bytes}.
local function marked_runs(sm)
  local list = {}
  for p, _ in pairs(sm.marks) do
    list[#list + 1] = p
  end
  table.sort(list)
  local runs, k = {}, 1
  while k <= #list do
    local first, bytes = list[k], {sm.marks[list[k]]}
    while list[k + 1] == list[k] + 1 do
      k = k + 1
      bytes[#bytes + 1] = sm.marks[list[k]]
    end
    runs[#runs + 1] = {first, table.concat(bytes)}
    k = k + 1
  end
  return runs
end

-- The whole map with every mark applied.
local function current_bytes(sm, runs)
  local parts, prev = {}, 1
  for _, run in ipairs(runs) do
    parts[#parts + 1] = string.sub(sm.bytes, prev, run[1] - 1)
    parts[#parts + 1] = run[2]
    prev = run[1] + #run[2]
  end
  parts[#parts + 1] = string.sub(sm.bytes, prev)
  return table.concat(parts)
end

-- Section i's map for searching, and its marks: the seats free now are the "0"s of the
-- map that have no mark. That holds while a call only takes seats, as admit_next
-- does; a search after freeing seats is refused.
local function searchable_map(i)
  local sm = seat_map(i)
  if sm.freed then
    error('seat map searched after seats were freed in the same call')
  end
  return sm.bytes, sm.marks
end

-- One SETRANGE per run of marked seats, or one SET of the rebuilt map when the runs
-- are many: measured on this Redis, a SETRANGE costs ~2 us, a rebuild ~25 us plus
-- ~0.4 us a run and the copy, so SET is cheaper past a few dozen runs.
local SETRANGE_MAX_RUNS = 16

local function flush_maps()
  for i, sm in pairs(seat_maps) do
    local runs = marked_runs(sm)
    if #runs > SETRANGE_MAX_RUNS then
      redis.call('SET', KEYS[MAPS_AT + i], current_bytes(sm, runs))
    else
      for _, run in ipairs(runs) do
        redis.call('SETRANGE', KEYS[MAPS_AT + i], run[1] - 1, run[2])
      end
    end
  end
end

-- Move n seats of section id from one counter family to another (free/held/sold).
local function move_count(section, n, from, to)
  redis.call('HINCRBY', K_STATS, from, -n)
  redis.call('HINCRBY', K_STATS, from .. ':' .. section, -n)
  redis.call('HINCRBY', K_STATS, to, n)
  redis.call('HINCRBY', K_STATS, to .. ':' .. section, n)
end

local function get_ticket(seq)
  local raw = redis.call('HGET', K_TICKETS, seq)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

local function put_ticket(seq, rec)
  redis.call('HSET', K_TICKETS, seq, cjson.encode(rec))
end

-- Seats the verified person holds or bought in this event (max_per_person's count).
local function person_seats(person)
  return num(redis.call('HGET', K_CLIENTS, '#n:' .. person))
end

-- Add n (negative: take away) to the count of the person a ticket belongs to, if any.
-- Every script that holds, sells back or frees a person's seats calls it in the same
-- call, so the count moves atomically with the seats.
local function count_person(rec, n)
  if rec.pn and n ~= 0 then
    redis.call('HINCRBY', K_CLIENTS, '#n:' .. rec.pn, n)
  end
end

-- Give a held or paying ticket's seats back to the free pool (and its person's count).
local function release_seats(rec)
  local i = SECTION_INDEX[rec.hs]
  mark_seats(i, rec.seats, '0')
  move_count(rec.hs, #rec.seats, 'held', 'free')
  count_person(rec, -#rec.seats)
end

local function notify(kind, items, extra)
  local fields = {'XADD', K_NOTIFY, 'MAXLEN', '~', NOTIFY_MAXLEN, '*',
    'k', kind, 'srv', stat('serving'), 'd', cjson.encode(items)}
  if extra then
    for k, v in pairs(extra) do
      fields[#fields + 1] = k
      fields[#fields + 1] = v
    end
  end
  return redis.call(unpack(fields))
end

-- Release up to limit holds due at now (paying ones are kept until their payment window
-- ends), notify their clients, and write the seat maps back. Afterwards the call may
-- search the maps again: the cache is emptied, so the next read sees the freed seats.
-- Returns the holds released and whether more are due.
-- Each released ticket records rt, the release time (ms), for audits.
local function release_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now, 'LIMIT', 0, limit)
  local items = {}
  for _, seq in ipairs(due) do
    local rec = get_ticket(seq)
    if rec and rec.st == 'paying' and now < rec.pu then
      redis.call('ZADD', K_EXPIRY, rec.pu, seq)
    else
      if rec and (rec.st == 'held' or rec.st == 'paying') then
        release_seats(rec)
        rec.st, rec.rt = 'expired', now
        put_ticket(seq, rec)
        items[#items + 1] = {tonumber(seq), 'expired'}
      end
      redis.call('ZREM', K_EXPIRY, seq)
    end
  end
  if #items > 0 then
    flush_maps()
    seat_maps = {}
    redis.call('HINCRBY', K_STATS, 'expired', #items)
    notify('expire', items, nil)
  end
  local more = #due >= limit
    and #redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now, 'LIMIT', 0, 1) > 0
  return #items, more
end

-- The line opens once opens_at has passed. Tickets taken before (the pre-queue:
-- seqs 1..n, as nothing else can have joined yet) get places 1..n in a uniformly
-- random order, drawn from the caller's seeds: Redis 6.2 gives scripts a fixed
-- math.random seed, so the generator is our own (L'Ecuyer's combined LCG, exact
-- in doubles: every product stays below 2^53). Later joins get place = seq.
-- Atomic and idempotent: "opened" is set in the same call that shuffles.
local function line_opened()
  return redis.call('HGET', K_META, 'opened') == '1'
end

local function open_line(now, seed1, seed2)
  if now < num(redis.call('HGET', K_META, 'opens_at_ms')) then
    return
  end
  local state = redis.call('HGET', K_META, 'state')
  if state == 'scheduled' then
    redis.call('HSET', K_META, 'state', 'open')
  end
  if state == 'closed' or line_opened() then
    return
  end
  local m1, m2, span = 2147483563, 2147483399, 2147483562
  local s1 = (num(seed1) % (m1 - 1)) + 1
  local s2 = (num(seed2) % (m2 - 1)) + 1
  local function below(k) -- uniform integer in [0, k)
    local limit = span - (span % k)
    while true do
      s1 = (40014 * s1) % m1
      s2 = (40692 * s2) % m2
      local z = s1 - s2
      if z < 1 then
        z = z + span
      end
      if z - 1 < limit then
        return (z - 1) % k
      end
    end
  end
  local n = stat('seq')
  local order = {}
  for i = 1, n do
    order[i] = i
  end
  for i = n, 2, -1 do
    local j = below(i) + 1
    order[i], order[j] = order[j], order[i]
  end
  for place = 1, n do
    local seq = order[place]
    local rec = get_ticket(seq)
    rec.pl = place
    local tp = rec.tp
    rec.tp = nil
    put_ticket(seq, rec)
    if tp then
      redis.call('XADD', K_QUEUE, place .. '-0', 'c', rec.c, 't', seq, 'tp', tp)
    else
      redis.call('XADD', K_QUEUE, place .. '-0', 'c', rec.c, 't', seq)
    end
  end
  redis.call('HSET', K_META, 'opened', '1')
end

-- A ticket's place in line: 0 while it waits in the pre-queue.
local function place_of(seq, rec)
  if rec.pl then
    return rec.pl
  end
  if line_opened() then
    return tonumber(seq)
  end
  return 0
end
