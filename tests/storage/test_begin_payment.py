"""begin_payment.lua: claiming holds for payment."""

from __future__ import annotations

import pytest

from storage.records import BeginPaymentResult, BeginResult, ExpireSummary
from storage.redis_store import RedisStore
from tests.storage.helpers import HOLD_MS, T0, WINDOW_MS, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

EXP = T0 + HOLD_MS
SECTIONS = (("A", 1_500, "000|000|"),)


@pytest.mark.anyio
async def test_ok_claims_the_hold(redis_store: RedisStore, event_id: str) -> None:
    """A live hold becomes paying with the key and a payment window; seats stay held."""
    ev = await new_event(redis_store, event_id, SECTIONS)
    await ev.join("alice", 2)
    await ev.admit()
    before_notes = await ev.notes()

    now = T0 + 1_000
    res = await ev.begin(1, "key-1", now=now, window=30_000)
    assert res == BeginPaymentResult(
        result=BeginResult.OK,
        section="A",
        seats=[1, 2],
        amount_cents=3_000,
        client_id="alice",
        expires_ms=EXP,
        paying_until_ms=now + 30_000,
    )
    t = await ev.ticket(1)
    assert (t.status, t.idempotency_key, t.paying_until_ms, t.expires_ms, t.seats) == (
        "paying",
        "key-1",
        now + 30_000,
        EXP,
        [1, 2],
    )
    assert await ev.maps() == {"A": "hh0|000|"}
    stats = await ev.stats()
    assert (stats["held"], stats["free"], stats["sold"]) == (2, 4, 0)
    assert await ev.notes() == before_notes


@pytest.mark.anyio
async def test_retry_reports_in_progress_and_keeps_the_first_claim(
    redis_store: RedisStore, event_id: str
) -> None:
    """Repeating begin (any key) answers in_progress with the running key and changes nothing."""
    ev = await new_event(redis_store, event_id, SECTIONS)
    await ev.join("alice", 1)
    await ev.admit()
    assert (await ev.begin(1, "key-1", now=T0 + 1)).result == "ok"
    before = await ev.state()

    same = await ev.begin(1, "key-1", now=T0 + 2)
    other = await ev.begin(1, "key-2", now=T0 + 3, window=10 * WINDOW_MS)
    assert same == BeginPaymentResult(result=BeginResult.IN_PROGRESS, idempotency_key="key-1")
    assert other == BeginPaymentResult(result=BeginResult.IN_PROGRESS, idempotency_key="key-1")
    assert await ev.state() == before
    assert (await ev.ticket(1)).paying_until_ms == T0 + 1 + WINDOW_MS


@pytest.mark.anyio
async def test_paid_after_confirmation(redis_store: RedisStore, event_id: str) -> None:
    """Once confirmed, begin answers paid with the key and booking that paid it."""
    ev = await new_event(redis_store, event_id, SECTIONS)
    await ev.join("alice", 1)
    await ev.admit()
    await ev.begin(1, "key-1")
    await ev.confirm(1, "key-1", "bk-1")
    before = await ev.state()
    res = await ev.begin(1, "key-2", now=T0 + 5)
    assert res == BeginPaymentResult(
        result=BeginResult.PAID, idempotency_key="key-1", booking_id="bk-1"
    )
    assert await ev.state() == before


@pytest.mark.anyio
async def test_expired_when_hold_ran_out(redis_store: RedisStore, event_id: str) -> None:
    """At or after exp, begin answers expired, before and after the sweep; nothing is claimed."""
    ev = await new_event(redis_store, event_id, SECTIONS)
    await ev.join("alice", 1)
    await ev.admit()
    before = await ev.state()
    assert await ev.begin(1, "key-1", now=EXP) == BeginPaymentResult(result=BeginResult.EXPIRED)
    t = await ev.ticket(1)
    assert (t.status, t.idempotency_key, t.paying_until_ms) == ("held", None, None)
    assert await ev.state() == before

    assert await ev.expire(EXP) == ExpireSummary(released=1, next_ms=-1)
    assert await ev.begin(1, "key-1", now=EXP + 1) == BeginPaymentResult(result=BeginResult.EXPIRED)
    assert (await ev.ticket(1)).status == "expired"


@pytest.mark.anyio
async def test_last_millisecond_of_a_hold_is_payable(
    redis_store: RedisStore, event_id: str
) -> None:
    """begin at exp - 1 still claims the hold."""
    ev = await new_event(redis_store, event_id, SECTIONS)
    await ev.join("alice", 1)
    await ev.admit()
    assert (await ev.begin(1, "key-1", now=EXP - 1)).result == "ok"


@pytest.mark.anyio
async def test_unknown_without_a_hold(redis_store: RedisStore, event_id: str) -> None:
    """No ticket, a queued ticket and a sold-out ticket have no hold: unknown, nothing changes."""
    ev = await new_event(redis_store, event_id, (("A", 100, "0|"),))
    await ev.join_many([("c1", 1, ""), ("c2", 5, ""), ("c3", 1, "")])
    await ev.admit(max_count=2)
    assert (await ev.ticket(2)).status == "sold_out"
    assert (await ev.ticket(3)).status == "queued"
    before = await ev.state()
    out = await ev.begin_many([(99, "x"), (2, "y"), (3, "z")])
    assert out == [BeginPaymentResult(result=BeginResult.UNKNOWN)] * 3
    assert await ev.state() == before


@pytest.mark.anyio
async def test_batch_answers_in_request_order(redis_store: RedisStore, event_id: str) -> None:
    """One call claims several holds and answers each in request order."""
    ev = await new_event(redis_store, event_id, SECTIONS)
    await ev.join_many([("c1", 1, ""), ("c2", 2, ""), ("c3", 1, "")])
    await ev.admit()
    out = await ev.begin_many(
        [(3, "k3"), (42, "k42"), (1, "k1"), (3, "k3")], now=T0 + 7, window=1_000
    )
    assert [r.result for r in out] == ["ok", "unknown", "ok", "in_progress"]
    assert (out[0].client_id, out[0].seats, out[0].paying_until_ms) == ("c3", [5], T0 + 1_007)
    assert (out[2].client_id, out[2].seats) == ("c1", [1])
    assert out[3].idempotency_key == "k3"
    assert [(await ev.ticket(s)).status for s in (1, 2, 3)] == ["paying", "held", "paying"]
