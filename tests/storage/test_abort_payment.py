"""abort_payment.lua: giving a hold back after its payment failed."""

from __future__ import annotations

import pytest

from storage.records import ExpireSummary
from storage.redis_store import RedisStore
from tests.storage.helpers import HOLD_MS, T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

EXP = T0 + HOLD_MS


@pytest.mark.anyio
async def test_abort_makes_the_hold_payable_again(redis_store: RedisStore, event_id: str) -> None:
    """Aborting with the running key returns "held": key and window cleared, seats still held."""
    ev = await new_event(redis_store, event_id)
    await ev.join("alice", 2)
    await ev.admit()
    assert (await ev.begin(1, "key-1", now=T0 + 10)).result == "ok"
    notes_before = await ev.notes()

    assert await ev.abort(1, "key-1", now=T0 + 20) == "held"
    t = await ev.ticket(1)
    assert (t.status, t.idempotency_key, t.paying_until_ms, t.expires_ms, t.seats) == (
        "held",
        None,
        None,
        EXP,
        [1, 2],
    )
    assert await ev.maps() == {"A": "hh00|0000|"}
    stats = await ev.stats()
    assert (stats["held"], stats["free"], stats["expired"]) == (2, 6, 0)
    assert await ev.notes() == notes_before

    again = await ev.begin(1, "key-2", now=T0 + 30, window=1_000)
    assert (again.result, again.paying_until_ms) == ("ok", T0 + 1_030)
    assert (await ev.ticket(1)).idempotency_key == "key-2"


@pytest.mark.anyio
async def test_abort_twice_is_ignored_the_second_time(
    redis_store: RedisStore, event_id: str
) -> None:
    """A repeated abort finds nothing to undo and changes nothing."""
    ev = await new_event(redis_store, event_id)
    await ev.join("alice", 1)
    await ev.admit()
    await ev.begin(1, "key-1")
    assert await ev.abort(1, "key-1") == "held"
    before = await ev.state()
    assert await ev.abort(1, "key-1") == "ignored"
    assert await ev.state() == before


@pytest.mark.anyio
async def test_abort_with_another_key_is_ignored(redis_store: RedisStore, event_id: str) -> None:
    """Only the payment that claimed the hold can give it back."""
    ev = await new_event(redis_store, event_id)
    await ev.join("alice", 1)
    await ev.admit()
    await ev.begin(1, "key-1")
    before = await ev.state()
    assert await ev.abort(1, "key-2") == "ignored"
    assert await ev.state() == before
    t = await ev.ticket(1)
    assert (t.status, t.idempotency_key) == ("paying", "key-1")


@pytest.mark.anyio
async def test_abort_without_running_payment_is_ignored(
    redis_store: RedisStore, event_id: str
) -> None:
    """Unknown, queued, held, confirmed and expired tickets are left alone."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("held", 1, ""), ("paid", 1, ""), ("gone", 1, "")])
    await ev.admit()
    await ev.join("queued", 1)
    await ev.pay(2)
    await ev.begin(3, "k3", now=EXP - 2, window=1)
    await ev.expire(EXP - 1)
    assert (await ev.ticket(3)).status == "expired"
    before = await ev.state()
    out = await ev.abort_many([(99, "k"), (4, "k4"), (1, "k1"), (2, "k2"), (3, "k3")])
    assert out == ["ignored"] * 5
    assert await ev.state() == before


@pytest.mark.anyio
async def test_aborted_hold_expires_at_its_original_time(
    redis_store: RedisStore, event_id: str
) -> None:
    """After an abort the sweep releases the hold at exp, not at the payment window's end."""
    ev = await new_event(redis_store, event_id)
    await ev.join("alice", 2)
    await ev.admit()
    assert (
        await ev.begin(1, "key-1", now=T0 + 10, window=2 * HOLD_MS)
    ).paying_until_ms == T0 + 10 + 2 * HOLD_MS
    assert await ev.abort(1, "key-1", now=T0 + 20) == "held"

    assert await ev.expire(EXP - 1) == ExpireSummary(released=0, next_ms=EXP)
    assert (await ev.ticket(1)).status == "held"
    assert await ev.expire(EXP) == ExpireSummary(released=1, next_ms=-1)
    assert (await ev.ticket(1)).status == "expired"
    assert await ev.maps() == {"A": "0000|0000|"}


@pytest.mark.anyio
async def test_abort_after_exp_lets_the_next_sweep_release(
    redis_store: RedisStore, event_id: str
) -> None:
    """A payment failing after exp leaves a hold that is already due and no longer payable."""
    ev = await new_event(redis_store, event_id)
    await ev.join("alice", 1)
    await ev.admit()
    await ev.begin(1, "key-1", now=EXP - 5)
    assert await ev.abort(1, "key-1", now=EXP + 5) == "held"
    assert (await ev.begin(1, "key-2", now=EXP + 6)).result == "expired"
    assert await ev.expire(EXP + 6) == ExpireSummary(released=1, next_ms=-1)
    assert (await ev.ticket(1)).status == "expired"
