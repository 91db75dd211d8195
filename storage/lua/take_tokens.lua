-- take_tokens.lua: token buckets in front of joins and of the edge's routes. Each request
-- takes one token from every one of its buckets, or from none of them when any is empty. Loaded
-- without _prelude.lua: its keys are buckets, not an event's layout.
--
-- KEYS: bucket hashes {tk = tokens, ts = last refill ms}, `per` consecutive keys per
--       request (e.g. its client id's bucket, then its IP's); all under one hash tag (an
--       event's, or an edge route's)
-- ARGV[1] now_ms  current time, ms since epoch
-- ARGV[2] per     buckets per request
-- ARGV[3..]       per bucket position j = 1..per: rate (tokens per second), burst
--                 (tokens when full), in that order
-- Returns JSON [1 | 0] in request order: 1 taken (go ahead), 0 refused (rate limited).
-- Not idempotent by design: every attempt, retried or not, spends a token. A bucket
-- never holds fewer than 0 or more than burst tokens; an idle bucket expires once full.

local now, per = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate, burst = {}, {}
for j = 1, per do
  rate[j], burst[j] = tonumber(ARGV[1 + 2 * j]), tonumber(ARGV[2 + 2 * j])
end

-- Each bucket is read once, refilled to `now`, and written back once.
local buckets, order = {}, {}
local function bucket(key, j)
  local b = buckets[key]
  if b == nil then
    local state = redis.call('HMGET', key, 'tk', 'ts')
    local tokens, ts = tonumber(state[1]), tonumber(state[2])
    if tokens == nil or ts == nil then
      tokens, ts = burst[j], now
    end
    local elapsed = math.max(now - ts, 0)
    tokens = math.min(burst[j], tokens + elapsed * rate[j] / 1000)
    b = {tokens = tokens, j = j}
    buckets[key] = b
    order[#order + 1] = key
  end
  return b
end

local out = {}
for first = 1, #KEYS, per do
  local ok = true
  for j = 1, per do
    if bucket(KEYS[first + j - 1], j).tokens < 1 then
      ok = false
    end
  end
  if ok then
    for j = 1, per do
      local b = buckets[KEYS[first + j - 1]]
      b.tokens = b.tokens - 1
    end
  end
  out[#out + 1] = ok and 1 or 0
end

for _, key in ipairs(order) do
  local b = buckets[key]
  redis.call('HSET', key, 'tk', tostring(b.tokens), 'ts', now)
  local refill_ms = math.ceil((burst[b.j] - b.tokens) * 1000 / rate[b.j])
  redis.call('PEXPIRE', key, refill_ms + 1000)
end
return cjson.encode(out)
