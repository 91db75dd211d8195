"""release_hold.lua: a holder giving its seats back before the deadline."""

from __future__ import annotations

import pytest

from storage.redis_store import RedisStore
from tests.storage.helpers import HOLD_MS, T0, Event, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

EXP = T0 + HOLD_MS


async def _release(ev: Event, seq: int, now: int = T0 + 10) -> str:
    result = await ev.store.release_hold(ev.id, seq, now)
    await ev.check()  # free + held + sold = capacity, stats agree with the tickets
    return result


@pytest.mark.anyio
async def test_release_gives_the_seats_to_the_next_in_line(
    redis_store: RedisStore, event_id: str
) -> None:
    """A released hold frees its seats at once, ends as expired (stamped with the release
    time), tells its client "expired", leaves the sweep nothing to do, and the next client
    in line is admitted to the same seats."""
    ev = await new_event(redis_store, event_id, max_active=1)
    await ev.join("alice", 2)
    await ev.join("bob", 2)
    await ev.admit()
    assert await ev.maps() == {"A": "hh00|0000|"}
    notes_before = len(await ev.notes())

    assert await _release(ev, 1, now=T0 + 500) == "released"
    t = await ev.ticket(1)
    assert (t.status, t.released_ms) == ("expired", T0 + 500)
    assert await ev.maps() == {"A": "0000|0000|"}
    stats = await ev.stats()
    assert (stats["held"], stats["free"], stats["expired"]) == (0, 8, 1)
    notes = await ev.notes()
    assert len(notes) == notes_before + 1
    assert [type(o).__name__ for o in notes[-1].outcomes] == ["Expired"]
    assert notes[-1].outcomes[0].seq == 1
    assert (await ev.expire(EXP + 1)).released == 0  # nothing left for the sweep

    await ev.admit(now=T0 + 600)
    assert (await ev.ticket(2)).status == "held"
    assert await ev.maps() == {"A": "hh00|0000|"}


@pytest.mark.anyio
async def test_a_hold_being_paid_is_not_released(redis_store: RedisStore, event_id: str) -> None:
    """While a payment runs the hold stays: "paying", and nothing changes."""
    ev = await new_event(redis_store, event_id)
    await ev.join("alice", 1)
    await ev.admit()
    assert (await ev.begin(1, "key-1", now=T0 + 10)).result == "ok"
    before = await ev.state()
    assert await _release(ev, 1) == "paying"
    assert await ev.state() == before


@pytest.mark.anyio
async def test_only_an_open_hold_is_released(redis_store: RedisStore, event_id: str) -> None:
    """Unknown, queued, paid, expired and already released tickets: "not_held", no change."""
    ev = await new_event(redis_store, event_id, max_active=3)
    await ev.join_many([("paid", 1, ""), ("gone", 1, ""), ("twice", 1, "")])
    await ev.admit()
    await ev.join("queued", 1)
    await ev.pay(1)
    await ev.expire(EXP + 1, limit=1)  # the oldest open hold: ticket 2
    assert (await ev.ticket(2)).status == "expired"
    assert await _release(ev, 3) == "released"
    before = await ev.state()
    for seq in (99, 4, 1, 2, 3):
        assert await _release(ev, seq) == "not_held", seq
    assert await ev.state() == before
