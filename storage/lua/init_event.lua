-- init_event.lua: create an event's inventory; does nothing if the event exists.
--
-- KEYS: the event layout of _prelude.lua (seat map keys in section order).
-- ARGV[1] now_ms   current time, ms since epoch (unused; kept for a uniform call)
-- ARGV[2] config   JSON {opens_at_ms, hold_ms, max_active, max_per_order,
--                  max_per_person (0 or absent: no limit),
--                  sections: [{id, price_cents, map}]}; map as in _prelude.lua
-- Returns 1 when created, 0 when the event already existed (idempotent).

if redis.call('EXISTS', K_META) == 1 then
  return 0
end
local cfg = cjson.decode(ARGV[2])
local ids, capacity = {}, 0
for i, sec in ipairs(cfg.sections) do
  local _, seats = string.gsub(sec.map, '0', '0')
  ids[#ids + 1] = sec.id
  capacity = capacity + seats
  redis.call('SET', KEYS[MAPS_AT + i], sec.map)
  redis.call('HSET', K_META, 'price:' .. sec.id, sec.price_cents)
  redis.call('HSET', K_STATS, 'capacity:' .. sec.id, seats, 'free:' .. sec.id, seats,
    'held:' .. sec.id, 0, 'sold:' .. sec.id, 0)
end
redis.call('HSET', K_META, 'state', 'scheduled', 'opens_at_ms', cfg.opens_at_ms,
  'hold_ms', cfg.hold_ms, 'max_active', cfg.max_active, 'max_per_order', cfg.max_per_order,
  'max_per_person', cfg.max_per_person or 0, 'sections', table.concat(ids, ','))
redis.call('HSET', K_STATS, 'seq', 0, 'serving', 0, 'capacity', capacity, 'free', capacity,
  'held', 0, 'sold', 0, 'admitted', 0, 'expired', 0, 'confirmed', 0, 'sold_out', 0)
return 1
