-- admit_next.lua: decide the next clients in line, in join order: hold seats for
-- each, or tell them the event (or their section) is sold out.
--
-- One call reads up to max_count queue entries, holds their seats, advances the
-- serving counter and publishes one notify entry: reading, holding and
-- acknowledging are one atomic step, so a worker that dies between calls leaves
-- nothing half-done and nothing to reclaim. The first call at or after opens_at
-- shuffles the pre-queue into the line (open_line in _prelude.lua).
--
-- Admission control: at most meta.max_active holds open, and at most
-- meta.rate_per_min admissions per minute (absent or 0: no rate cap), enforced
-- by a token bucket in stats (tb_mt milli-tokens, refilled at the rate up to one
-- second's worth, at least one token; tb_ms the last refill, ms). Only
-- admissions take a token.
--
-- A ticket of a verified person (field pn) holds seats only while that person's
-- seats held or bought stay within meta.max_per_person (0 or absent: no limit);
-- join_queue refuses a join over the limit already, and a person has one live
-- ticket at a time, so this is the atomic backstop: such a ticket is told sold_out.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms     current time, ms since epoch
-- ARGV[2] max_count  most queue entries to decide in this call
-- ARGV[3] seed1      random integer in [0, 2^31) for the opening shuffle
-- ARGV[4] seed2      random integer in [0, 2^31) for the opening shuffle
-- ARGV[5] grace_ms   (optional) a queued client whose connection was lost at least
--                    this long ago (ticket field gone) is skipped as "left"; left
--                    clients take no hold and count against no cap or budget
-- ARGV[6] pace       (optional) most prompts the realtime servers may have left to
--                    deliver: admissions stop while the servers' reported backlogs
--                    (KEYS[8], report_backlog.lua), plus this event's admissions some
--                    reporting server has not read yet, reach it; absent, "" or 0: no
--                    pacing. With no server reporting (none alive), nothing is paced.
-- Returns JSON {state, admitted, sold_out, skipped, serving, seq, active, free,
-- held, sold, reason, notify_id, next_ms, left, released, backlog[, traces]}; traces, only when a
-- traced join was admitted, lists [seq, traceparent] of each (the prompt's notify
-- item carries the traceparent too, as its 7th element); notify_id is the newest notify entry
-- (a worker that must wait blocks on entries after it: expiries and payments
-- free room); reason says why the call stopped: "empty" (nobody waiting),
-- "capped" (max_active holds open), "rate" (the admission rate is used up until
-- next_ms), "waiting_for_seats" (the head of the line needs seats that open
-- holds may give back), "sold_out" (nothing free, no hold open: the line keeps
-- its places until cancelled seats come back or the sale is closed), "not_open",
-- "budget", "expiring" (more holds are due than the call released: call again), or
-- "paced" (the servers' delivery backlog reached ARGV[6]: call again once they have
-- written some). backlog is that backlog as this call found it (0 unpaced).
-- Holds due at now_ms are released first, as expire_holds does (released: how many;
-- their clients get an "expire" notify entry).
-- Seats: best row first; together in one row when possible, otherwise spread
-- over the fewest rows. Section "" tries every section, best first.

local now, max_count, grace_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
local pace = tonumber(ARGV[6]) or 0
open_line(now, ARGV[3], ARGV[4])
local state = redis.call('HGET', K_META, 'state')
local max_per_person = num(redis.call('HGET', K_META, 'max_per_person'))

-- The newest notify entry: a blocked worker waits for entries after it.
local function last_notify_id()
  local last = redis.call('XREVRANGE', K_NOTIFY, '+', '-', 'COUNT', 1)
  if #last == 0 then
    return '0-0'
  end
  return last[1][1]
end

local next_ms, left, released, backlog = 0, 0, 0, 0
local traces = {}

local function summary(admitted, sold_out, skipped, reason)
  local out = {state = state, admitted = admitted, sold_out = sold_out,
    skipped = skipped, serving = stat('serving'), seq = stat('seq'),
    active = redis.call('ZCARD', K_EXPIRY), free = stat('free'), held = stat('held'),
    sold = stat('sold'), reason = reason, notify_id = last_notify_id(), next_ms = next_ms,
    left = left, released = released, backlog = backlog}
  if #traces > 0 then
    out.traces = traces
  end
  return cjson.encode(out)
end

if state ~= 'open' and state ~= 'sold_out' then
  return summary(0, 0, 0, 'not_open')
end

-- Holds that are due go back first, so a release never waits behind admissions: with
-- tens of thousands of holds falling due together, admitting between the sweep's calls
-- made the last of them late. While more are due than one call releases, the call
-- admits nobody (reason "expiring") and the caller calls again at once.
local more_due
released, more_due = release_due(now, max_count)
if more_due then
  return summary(0, 0, 0, 'expiring')
end

-- Nothing free and no hold open: the event is sold out for now. Everyone still waiting
-- keeps its place and is told so at once (one notify entry, field sold_out_wait: the
-- places after it); cancelled seats coming back (return_seats.lua) open the sale again
-- and admission goes on from the line's head. The final "sold out" comes when the sale
-- is closed (set_event_state.lua).
local function close_if_sold_out(serving)
  if state == 'open' and stat('free') == 0 and stat('held') == 0 then
    state = 'sold_out'
    redis.call('HSET', K_META, 'state', state)
    notify('admit', {}, {sold_out_wait = serving})
    return true
  end
  return false
end

local serving = stat('serving')
if serving >= stat('seq') then
  close_if_sold_out(serving)
  return summary(0, 0, 0, 'empty')
end
-- Sold out (now, or since an earlier call): the line waits for seats to come back.
if state == 'sold_out' or close_if_sold_out(serving) then
  return summary(0, 0, 0, 'sold_out')
end
local budget = max_count
do
  local room = num(redis.call('HGET', K_META, 'max_active')) - redis.call('ZCARD', K_EXPIRY)
  if room <= 0 then
    return summary(0, 0, 0, 'capped')
  end
  budget = math.min(budget, room)
end

-- Pacing by delivery. Each realtime server with clients of this event reports, every
-- fraction of a second, the prompts it has routed but not yet written and the newest
-- notify entry it has routed (report_backlog.lua). Undelivered now: the reports' sum,
-- plus the prompts of admissions after the oldest entry a server has routed (the
-- backlog hash's field "#log", a JSON list of [notify id, admitted] per admitting
-- call, kept from that entry on; server ids never start with "#"). An admission one
-- server has routed and another has not counts twice: the bound errs on the side of
-- fewer prompts in flight. A report past its lifetime (on
-- Redis's clock) is a server that stopped: it is dropped and counts no more.
local pace_log, pace_room = nil, nil
local function id_after(a, b) -- notify id a is newer than b
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  return am > bm or (am == bm and tonumber(as) > tonumber(bs))
end
if pace > 0 then
  local t = redis.call('TIME')
  local rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local reports = redis.call('HGETALL', K_BACKLOG)
  local oldest = nil
  for r = 1, #reports, 2 do
    if reports[r] ~= '#log' then -- the admissions' list, read below
      local pending, seen, expires = string.match(reports[r + 1], '^(%d+) (%S+) (%d+)$')
      if pending == nil or tonumber(expires) < rnow then
        redis.call('HDEL', K_BACKLOG, reports[r])
      else
        backlog = backlog + tonumber(pending)
        if oldest == nil or id_after(oldest, seen) then
          oldest = seen
        end
      end
    end
  end
  pace_log = {}
  if oldest ~= nil then
    local raw = redis.call('HGET', K_BACKLOG, '#log')
    for _, e in ipairs(raw and cjson.decode(raw) or {}) do
      if id_after(e[1], oldest) then
        pace_log[#pace_log + 1] = e
        backlog = backlog + e[2]
      end
    end
    if backlog >= pace then
      redis.call('HSET', K_BACKLOG, '#log', cjson.encode(pace_log))
      return summary(0, 0, 0, 'paced')
    end
    pace_room = pace - backlog
    budget = math.min(budget, pace_room)
  else
    pace_log = nil -- nobody reports: nobody to pace by
  end
end

-- The rate cap: refill the bucket, then admit at most the whole tokens in it.
local rate = num(redis.call('HGET', K_META, 'rate_per_min'))
local tokens_mt = nil
if rate > 0 then
  local cap_mt = math.max(1000, math.floor(rate * 1000 / 60))
  local last_ms = redis.call('HGET', K_STATS, 'tb_ms')
  if last_ms then
    tokens_mt = stat('tb_mt') + math.floor(math.max(now - tonumber(last_ms), 0) * rate / 60)
  else
    tokens_mt = cap_mt
  end
  tokens_mt = math.min(tokens_mt, cap_mt)
  redis.call('HSET', K_STATS, 'tb_mt', tokens_mt, 'tb_ms', math.max(now, num(last_ms)))
  if tokens_mt < 1000 then
    next_ms = now + math.ceil((1000 - tokens_mt) * 60 / rate)
    return summary(0, 0, 0, 'rate')
  end
  budget = math.min(budget, math.floor(tokens_mt / 1000))
end

local function candidates(section)
  if section == '' then
    return SECTIONS
  end
  return {section}
end

-- together_from[i][q]: where the last search for q seats together in section i
-- stopped; no q free seats together start before it. A call only takes seats, so
-- that stays true for the rest of the call.
local together_from = {}

-- Positions of q free seats together in section i, the first run in map order, or nil.
-- string.find skips full rows in C from where the last search for q stopped; a run in
-- the map as read that holds made in this call broke is stepped over. Rows end with
-- "|", so a run never spans two rows.
local function find_together(i, q)
  local map, marks = searchable_map(i)
  together_from[i] = together_from[i] or {}
  local searched = together_from[i]
  local run, from = string.rep('0', q), searched[q] or 1
  while true do
    local at = string.find(map, run, from, true)
    if at == nil then
      searched[q] = #map + 1
      return nil
    end
    local taken = nil
    for p = at + q - 1, at, -1 do
      if marks[p] ~= nil then
        taken = p
        break
      end
    end
    if taken == nil then
      searched[q] = at
      local seats = {}
      for p = at, at + q - 1 do
        seats[#seats + 1] = p
      end
      return seats
    end
    from = taken + 1
  end
end

-- Rows of the sections where this call fell back to find_fewest_rows: for row r, its
-- first and last positions and free seats, and by_free[n], the rows with n free seats
-- in row order. Built with one pass over the map the first time a call needs it, then
-- kept current by hold_seats, so each fallback looks at the counts and the few rows
-- it takes rather than at every seat.
local row_indexes = {}

-- The row of position p.
local function row_at(idx, p)
  local lo, hi = 1, #idx.first
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if idx.first[mid] <= p then
      lo = mid
    else
      hi = mid - 1
    end
  end
  return lo
end

-- Where row r goes in by_free list (row numbers, ascending).
local function slot_of(list, r)
  local lo, hi = 1, #list + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if list[mid] < r then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return lo
end

-- Set row r's free count to n, moving it to its by_free list.
local function set_row_free(idx, r, n)
  local old = idx.free[r]
  if old > 0 then
    table.remove(idx.by_free[old], slot_of(idx.by_free[old], r))
  end
  if n > 0 then
    idx.by_free[n] = idx.by_free[n] or {}
    table.insert(idx.by_free[n], slot_of(idx.by_free[n], r), r)
  end
  idx.free[r] = n
end

local function row_index(i)
  if row_indexes[i] then
    return row_indexes[i]
  end
  local map, marks = searchable_map(i)
  local idx = {first = {}, last = {}, free = {}, by_free = {}, widest = 0}
  local counts, start = {}, 1
  while start <= #map do
    local bar = string.find(map, '|', start, true) or (#map + 1)
    local r = #idx.first + 1
    local _, free = string.gsub(string.sub(map, start, bar - 1), '0', '')
    idx.first[r], idx.last[r], idx.free[r], counts[r] = start, bar - 1, 0, free
    idx.widest = math.max(idx.widest, bar - start)
    start = bar + 1
  end
  -- Seats held earlier in this call are still "0" in the map.
  for p, _ in pairs(marks) do
    if string.sub(map, p, p) == '0' then
      local r = row_at(idx, p)
      counts[r] = counts[r] - 1
    end
  end
  for r, n in ipairs(counts) do
    set_row_free(idx, r, n)
  end
  row_indexes[i] = idx
  return idx
end

-- Runs of free seats between positions first and last of section i (one row): the
-- longest first, then the earlier. Runs of the map as read, split where this call held.
local function free_runs(i, first, last)
  local map, marks = searchable_map(i)
  local runs, from = {}, first
  while true do
    local a, b = string.find(map, '0+', from)
    if a == nil or a > last then
      break
    end
    local start = nil
    for p = a, b + 1 do
      if p <= b and marks[p] == nil then
        start = start or p
      elseif start then
        runs[#runs + 1] = {start, p - 1}
        start = nil
      end
    end
    from = b + 1
  end
  table.sort(runs, function(x, y)
    if x[2] - x[1] ~= y[2] - y[1] then
      return x[2] - x[1] > y[2] - y[1]
    end
    return x[1] < y[1]
  end)
  return runs
end

-- Positions of q free seats spread over the fewest rows: rows with the most free
-- seats first (the better row on a tie); in each, its longest runs first.
local function find_fewest_rows(i, q)
  local idx, seats = row_index(i), {}
  for n = idx.widest, 1, -1 do
    for _, r in ipairs(idx.by_free[n] or {}) do
      for _, run in ipairs(free_runs(i, idx.first[r], idx.last[r])) do
        for p = run[1], run[2] do
          if #seats == q then
            return seats
          end
          seats[#seats + 1] = p
        end
      end
    end
  end
  if #seats == q then
    return seats
  end
  return nil
end

-- Hold seats in section i, keeping the fallback's row counts current.
local function hold_seats(i, seats)
  mark_seats(i, seats, 'h')
  local idx = row_indexes[i]
  if idx then
    for _, p in ipairs(seats) do
      local r = row_at(idx, p)
      set_row_free(idx, r, idx.free[r] - 1)
    end
  end
end

local function choose(section, q)
  local secs = candidates(section)
  for _, finder in ipairs({find_together, find_fewest_rows}) do
    for _, id in ipairs(secs) do
      local i = SECTION_INDEX[id]
      if i and stat('free:' .. id) >= q then
        local seats = finder(i, q)
        if seats then
          return id, seats
        end
      end
    end
  end
  return nil, nil
end

local function may_come_back(section, q)
  for _, id in ipairs(candidates(section)) do
    local held = stat('held:' .. id)
    if held > 0 and held + stat('free:' .. id) >= q then
      return true
    end
  end
  return false
end

local hold_ms = num(redis.call('HGET', K_META, 'hold_ms'))
-- Skipped and left entries use no budget: read some extra so they stall nobody.
local fetch = budget + 100
local entries = redis.call('XRANGE', K_QUEUE, (serving + 1) .. '-0', '+', 'COUNT', fetch)
-- Holds are numbered in the order they are made (rec.an), across calls and workers.
local admissions_before = stat('admitted')
local items, admitted, sold_out, skipped, reason = {}, 0, 0, 0, 'budget'
local full = false
for _, entry in ipairs(entries) do
  if admitted + sold_out >= budget then
    full = true
    break
  end
  local place = tonumber(string.match(entry[1], '^(%d+)'))
  local seq, tp = place, nil
  local fields = entry[2]
  for f = 3, #fields, 2 do -- fields[1] is always c
    if fields[f] == 't' then
      seq = tonumber(fields[f + 1])
    elseif fields[f] == 'tp' then
      tp = fields[f + 1]
    end
  end
  local rec = get_ticket(seq)
  if rec.st ~= 'queued' then
    skipped = skipped + 1
  elseif rec.gone and grace_ms and now - rec.gone >= grace_ms then
    rec.st, rec.gone = 'left', nil
    put_ticket(seq, rec)
    left = left + 1
    items[#items + 1] = {seq, 'left'}
  elseif rec.pn and max_per_person > 0 and person_seats(rec.pn) + rec.q > max_per_person then
    rec.st = 'sold_out' -- nothing is left for this person
    put_ticket(seq, rec)
    sold_out = sold_out + 1
    items[#items + 1] = {seq, 'sold_out'}
  else
    local section, seats = choose(rec.s, rec.q)
    if seats then
      local i = SECTION_INDEX[section]
      table.sort(seats)
      hold_seats(i, seats)
      move_count(section, rec.q, 'free', 'held')
      rec.st, rec.hs, rec.seats = 'held', section, seats
      count_person(rec, rec.q)
      rec.amt = rec.q * num(redis.call('HGET', K_META, 'price:' .. section))
      rec.exp = now + hold_ms
      rec.an = admissions_before + admitted + 1
      put_ticket(seq, rec)
      redis.call('ZADD', K_EXPIRY, rec.exp, seq)
      admitted = admitted + 1
      if tp then
        items[#items + 1] = {seq, 'prompt', section, seats, rec.amt, rec.exp, tp}
        traces[#traces + 1] = {seq, tp}
      else
        items[#items + 1] = {seq, 'prompt', section, seats, rec.amt, rec.exp}
      end
    elseif may_come_back(rec.s, rec.q) then
      reason = 'waiting_for_seats'
      break
    else
      rec.st = 'sold_out'
      put_ticket(seq, rec)
      sold_out = sold_out + 1
      items[#items + 1] = {seq, 'sold_out'}
    end
  end
  serving = place
end
if reason == 'budget' and not full and #entries < fetch then
  reason = 'empty'
end

flush_maps()
redis.call('HSET', K_STATS, 'serving', serving)
redis.call('HINCRBY', K_STATS, 'admitted', admitted)
if tokens_mt ~= nil and admitted > 0 then
  redis.call('HSET', K_STATS, 'tb_mt', tokens_mt - 1000 * admitted)
end
redis.call('HINCRBY', K_STATS, 'sold_out', sold_out)
if left > 0 then
  redis.call('HINCRBY', K_STATS, 'left', left)
end
local notified = nil
if #items > 0 then
  notified = notify('admit', items, nil)
end
if pace_log ~= nil then
  if admitted > 0 then
    pace_log[#pace_log + 1] = {notified, admitted}
  end
  redis.call('HSET', K_BACKLOG, '#log', cjson.encode(pace_log))
  if reason == 'budget' and full and admitted + sold_out >= pace_room then
    reason = 'paced' -- stopped by the bound, not by the call's own budget
  end
end
close_if_sold_out(serving)
return summary(admitted, sold_out, skipped, reason)
