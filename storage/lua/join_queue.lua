-- join_queue.lua: put clients in the waiting line, one place per client id.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms   current time, ms since epoch
-- ARGV[2..]        triples: client_id, quantity, section ("" = any)
-- Returns JSON [{seq, st, serving}] in request order. A client id that already
-- has a place gets that place back (idempotent); joins after the event sold out
-- or closed get st "sold_out" / "closed" and seq 0.

local now = tonumber(ARGV[1])
local state = redis.call('HGET', K_META, 'state')
local out = {}
for a = 2, #ARGV, 3 do
  local client, qty, section = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local existing = redis.call('HGET', K_CLIENTS, client)
  if existing then
    local rec = get_ticket(existing)
    out[#out + 1] = {seq = tonumber(existing), st = rec.st}
  elseif state == 'sold_out' or state == 'closed' then
    out[#out + 1] = {seq = 0, st = state}
  else
    local seq = redis.call('HINCRBY', K_STATS, 'seq', 1)
    redis.call('XADD', K_QUEUE, seq .. '-0', 'c', client)
    put_ticket(seq, {st = 'queued', q = qty, s = section, c = client, j = now})
    redis.call('HSET', K_CLIENTS, client, seq)
    out[#out + 1] = {seq = seq, st = 'queued'}
  end
end
local serving = stat('serving')
for _, r in ipairs(out) do
  r.serving = serving
end
return cjson.encode(out)
