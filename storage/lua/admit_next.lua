-- admit_next.lua: decide the next clients in line, in join order: hold seats for
-- each, or tell them the event (or their section) is sold out.
--
-- One call reads up to max_count queue entries, holds their seats, advances the
-- serving counter and publishes one notify entry: reading, holding and
-- acknowledging are one atomic step, so a worker that dies between calls leaves
-- nothing half-done and nothing to reclaim.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms     current time, ms since epoch
-- ARGV[2] max_count  most queue entries to decide in this call
-- Returns JSON {state, admitted, sold_out, skipped, serving, seq, active, free,
-- held, sold, reason, notify_id}; notify_id is the newest notify entry (a worker
-- that must wait blocks on entries after it: expiries and payments free room);
-- reason says why the call stopped: "empty" (nobody
-- waiting), "capped" (max_active holds open), "waiting_for_seats" (the head of
-- the line needs seats that open holds may give back), "not_open", or "budget".
-- Seats: best row first; together in one row when possible, otherwise the first
-- free seats in best-row order. Section "" tries every section, best first.

local now, max_count = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HGET', K_META, 'state')
if state == 'scheduled' and now >= num(redis.call('HGET', K_META, 'opens_at_ms')) then
  state = 'open'
  redis.call('HSET', K_META, 'state', state)
end

-- The newest notify entry: a blocked worker waits for entries after it.
local function last_notify_id()
  local last = redis.call('XREVRANGE', K_NOTIFY, '+', '-', 'COUNT', 1)
  if #last == 0 then
    return '0-0'
  end
  return last[1][1]
end

local function summary(admitted, sold_out, skipped, reason)
  return cjson.encode({state = state, admitted = admitted, sold_out = sold_out,
    skipped = skipped, serving = stat('serving'), seq = stat('seq'),
    active = redis.call('ZCARD', K_EXPIRY), free = stat('free'), held = stat('held'),
    sold = stat('sold'), reason = reason, notify_id = last_notify_id()})
end

if state ~= 'open' and state ~= 'sold_out' then
  return summary(0, 0, 0, 'not_open')
end

-- Nothing left and nothing can come back: everyone still waiting is told at once.
local function close_if_sold_out(serving)
  if state == 'open' and stat('free') == 0 and stat('held') == 0 then
    state = 'sold_out'
    redis.call('HSET', K_META, 'state', state)
    notify('admit', {}, {sold_out_after = serving})
  end
end

local serving = stat('serving')
if serving >= stat('seq') then
  close_if_sold_out(serving)
  return summary(0, 0, 0, 'empty')
end
local budget = max_count
if state == 'open' then
  local room = num(redis.call('HGET', K_META, 'max_active')) - redis.call('ZCARD', K_EXPIRY)
  if room <= 0 then
    return summary(0, 0, 0, 'capped')
  end
  budget = math.min(budget, room)
end

local function candidates(section)
  if section == '' then
    return SECTIONS
  end
  return {section}
end

-- Positions of q free seats in section i, or nil.
local function find_together(i, q)
  local at = string.find(seat_map(i), string.rep('0', q), 1, true)
  if not at then
    return nil
  end
  local seats = {}
  for p = at, at + q - 1 do
    seats[#seats + 1] = p
  end
  return seats
end

local function find_any(i, q)
  local map, seats, from = seat_map(i), {}, 1
  while #seats < q do
    local p = string.find(map, '0', from, true)
    seats[#seats + 1] = p
    from = p + 1
  end
  return seats
end

local function choose(section, q)
  local secs = candidates(section)
  for _, finder in ipairs({find_together, find_any}) do
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
local entries = redis.call('XRANGE', K_QUEUE, (serving + 1) .. '-0', '+', 'COUNT', budget)
local items, admitted, sold_out, skipped, reason = {}, 0, 0, 0, 'budget'
for _, entry in ipairs(entries) do
  local seq = tonumber(string.match(entry[1], '^(%d+)'))
  local rec = get_ticket(seq)
  if rec.st ~= 'queued' then
    skipped = skipped + 1
  elseif state == 'sold_out' then
    rec.st = 'sold_out'
    put_ticket(seq, rec)
    sold_out = sold_out + 1
  else
    local section, seats = choose(rec.s, rec.q)
    if seats then
      local i = SECTION_INDEX[section]
      table.sort(seats)
      mark_seats(i, seats, 'h')
      move_count(section, rec.q, 'free', 'held')
      rec.st, rec.hs, rec.seats = 'held', section, seats
      rec.amt = rec.q * num(redis.call('HGET', K_META, 'price:' .. section))
      rec.exp = now + hold_ms
      put_ticket(seq, rec)
      redis.call('ZADD', K_EXPIRY, rec.exp, seq)
      admitted = admitted + 1
      items[#items + 1] = {seq, 'prompt', section, seats, rec.amt, rec.exp}
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
  serving = seq
end
if #entries < budget and reason == 'budget' then
  reason = 'empty'
end

flush_maps()
redis.call('HSET', K_STATS, 'serving', serving)
redis.call('HINCRBY', K_STATS, 'admitted', admitted)
redis.call('HINCRBY', K_STATS, 'sold_out', sold_out)
if #items > 0 then
  notify('admit', items, nil)
end
close_if_sold_out(serving)
return summary(admitted, sold_out, skipped, reason)
