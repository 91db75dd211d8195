-- begin_payment.lua: claim holds for payment so the expiry sweep keeps them while
-- the payment runs. Retrying with the same idempotency key is safe.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms            current time, ms since epoch
-- ARGV[2] pay_window_ms     how long a started payment keeps its hold, ms
-- ARGV[3..]                 pairs: ticket seq, idempotency key
-- Returns JSON [{r, ...}] in request order, r one of:
--   "ok"          claimed: {section, seats, amt, c (client id), exp, pu}
--   "paid"        already confirmed: {k (its key), bk (its booking)}
--   "in_progress" a payment for this hold is running: {k}
--   "expired"     the hold ran out
--   "unknown"     no hold for this ticket

local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for a = 3, #ARGV, 2 do
  local seq, key = ARGV[a], ARGV[a + 1]
  local rec = get_ticket(seq)
  if rec == nil or rec.seats == nil then
    out[#out + 1] = {r = 'unknown'}
  elseif rec.st == 'confirmed' then
    out[#out + 1] = {r = 'paid', k = rec.k, bk = rec.bk}
  elseif rec.st == 'paying' then
    out[#out + 1] = {r = 'in_progress', k = rec.k}
  elseif rec.st == 'held' and now < rec.exp then
    rec.st, rec.k, rec.pu = 'paying', key, now + window
    put_ticket(seq, rec)
    redis.call('ZADD', K_EXPIRY, rec.pu, seq)
    out[#out + 1] = {r = 'ok', section = rec.hs, seats = rec.seats, amt = rec.amt, c = rec.c,
      exp = rec.exp, pu = rec.pu}
  else
    out[#out + 1] = {r = 'expired'}
  end
end
return cjson.encode(out)
