-- abort_payment.lua: give a hold back after its payment failed (declined, timed
-- out): it stays payable until its original deadline, then the sweep releases it.
--
-- KEYS: the event layout of _prelude.lua.
-- ARGV[1] now_ms  current time, ms since epoch (unused; kept for a uniform call)
-- ARGV[2..]       pairs: ticket seq, idempotency key of the failed payment
-- Returns JSON [r] in request order: "held" (payable again), or "ignored" (the
-- hold is not being paid with that key: nothing to undo).

local out = {}
for a = 2, #ARGV, 2 do
  local seq, key = ARGV[a], ARGV[a + 1]
  local rec = get_ticket(seq)
  if rec and rec.st == 'paying' and rec.k == key then
    rec.st, rec.k, rec.pu = 'held', nil, nil
    put_ticket(seq, rec)
    redis.call('ZADD', K_EXPIRY, rec.exp, seq)
    out[#out + 1] = 'held'
  else
    out[#out + 1] = 'ignored'
  end
end
return cjson.encode(out)
