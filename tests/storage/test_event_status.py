"""RedisStore.status: the typed reading of an event's meta and stats hashes."""

from __future__ import annotations

import pytest

from storage.records import EventState, SectionCounts
from storage.redis_store import RedisStore
from tests.storage.helpers import HOLD_MS, T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.anyio, pytest.mark.cluster]

SECTIONS = (("A", 1_500, "000|00|"), ("B", 900, "0000|"))


async def test_status_of_an_unknown_event_is_none(redis_store: RedisStore, event_id: str) -> None:
    """No event, no status."""
    assert await redis_store.status(event_id) is None


async def test_status_follows_the_scripts(redis_store: RedisStore, event_id: str) -> None:
    """Config, caps, line and seats per section read back as the scripts left them."""
    ev = await new_event(redis_store, event_id, SECTIONS, opens_at_ms=T0 + 1_000, max_active=2)
    before = await redis_store.status(event_id)
    assert before is not None
    assert (before.state, before.opened, before.opens_at_ms) == (
        EventState.SCHEDULED,
        False,
        T0 + 1_000,
    )
    assert (before.hold_ms, before.max_active, before.rate_per_min) == (HOLD_MS, 2, 0)
    assert before.seats == SectionCounts(capacity=9, free=9)
    assert before.sections == {"A": SectionCounts(5, 5), "B": SectionCounts(4, 4)}

    for client in ("c1", "c2", "c3"):
        await ev.join(client, 2, "B" if client == "c1" else "", now=T0 + 1_000)
    await ev.admit(T0 + 1_000)  # opens the line; the cap of 2 open holds stops the third
    await ev.pay(1, now=T0 + 1_000)
    await redis_store.set_admission(event_id, T0 + 1_000, None, 600)

    after = await redis_store.status(event_id)
    assert after is not None
    assert (after.state, after.opened, after.rate_per_min) == (EventState.OPEN, True, 600)
    assert (after.issued, after.serving, after.waiting) == (3, 2, 1)
    assert (after.admitted, after.confirmed, after.expired, after.active_holds) == (2, 1, 0, 1)
    assert after.seats == SectionCounts(capacity=9, free=5, held=2, sold=2)
    assert after.sections["B"] == SectionCounts(capacity=4, free=2, held=0, sold=2)
    assert after.sections["A"] == SectionCounts(capacity=5, free=3, held=2, sold=0)
    assert not after.seats_may_return


async def test_seats_may_return_while_nothing_is_free_but_holds_are_open(
    redis_store: RedisStore, event_id: str
) -> None:
    """With every seat held, waiting clients are told seats may come back."""
    ev = await new_event(redis_store, event_id, (("A", 100, "00|"),))
    await ev.join("c1", 2)
    await ev.join("c2", 1)
    await ev.admit()
    status = await redis_store.status(event_id)
    assert status is not None
    assert (status.seats.free, status.seats.held, status.waiting) == (0, 2, 1)
    assert status.seats_may_return
