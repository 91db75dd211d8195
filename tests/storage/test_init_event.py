"""init_event.lua: creating an event's inventory, once."""

from __future__ import annotations

import pytest

from storage.redis_store import RedisStore
from tests.storage.helpers import T0, Event, assert_conserved, config_json, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

SECTIONS = (("A", 1_500, "000|00|"), ("B", 900, "0000|"))


@pytest.mark.anyio
async def test_create_writes_meta_counters_and_maps(redis_store: RedisStore, event_id: str) -> None:
    """A new event is scheduled with its config in meta, all seats free, and its maps stored."""
    ev = Event(redis_store, event_id)
    cfg = config_json(
        SECTIONS, opens_at_ms=T0 + 5_000, hold_ms=30_000, max_active=7, max_per_order=4
    )
    assert await ev.create(cfg, ["A", "B"]) is True

    meta = await ev.meta()
    assert meta == {
        "state": "scheduled",
        "opens_at_ms": str(T0 + 5_000),
        "hold_ms": "30000",
        "max_active": "7",
        "max_per_order": "4",
        "max_per_person": "0",
        "sections": "A,B",
        "price:A": "1500",
        "price:B": "900",
    }
    assert await ev.stats() == {
        "seq": 0,
        "serving": 0,
        "capacity": 9,
        "free": 9,
        "held": 0,
        "sold": 0,
        "admitted": 0,
        "expired": 0,
        "confirmed": 0,
        "sold_out": 0,
        "capacity:A": 5,
        "free:A": 5,
        "held:A": 0,
        "sold:A": 0,
        "capacity:B": 4,
        "free:B": 4,
        "held:B": 0,
        "sold:B": 0,
    }
    assert await ev.maps() == {"A": "000|00|", "B": "0000|"}
    assert await redis_store.tickets(event_id) == {}
    assert await ev.notes() == []
    assert event_id in await redis_store.event_ids()


@pytest.mark.anyio
async def test_capacity_counts_seats_not_row_separators(
    redis_store: RedisStore, event_id: str
) -> None:
    """Only '0' bytes are seats: '|' row ends do not add capacity."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0|00|000|")])
    stats = await ev.stats()
    assert (stats["capacity"], stats["capacity:A"], stats["free:A"]) == (6, 6, 6)


@pytest.mark.anyio
async def test_second_create_returns_false_and_changes_nothing(
    redis_store: RedisStore, event_id: str
) -> None:
    """Creating an existing event again returns False and leaves its state untouched."""
    ev = await new_event(redis_store, event_id, SECTIONS)
    before = await ev.state()

    other = config_json([("A", 1, "0|"), ("B", 2, "0|")], opens_at_ms=T0 + 1, max_active=1)
    assert await ev.create(other, ["A", "B"]) is False
    assert await ev.state() == before


@pytest.mark.anyio
async def test_create_again_after_activity_keeps_live_state(
    redis_store: RedisStore, event_id: str
) -> None:
    """Re-running init_event on an event with holds and sales does not reset seats or counters."""
    ev = await new_event(redis_store, event_id, SECTIONS)
    a = await ev.join("c1", 2, "A")
    b = await ev.join("c2", 1, "B")
    assert (await ev.admit()).admitted == 2
    await ev.pay(b.seq)
    before = await ev.state()
    assert before["stats"]["held"] == 2
    assert before["stats"]["sold"] == 1

    assert await ev.create(config_json(SECTIONS), ["A", "B"]) is False
    assert await ev.state() == before
    assert (await ev.ticket(a.seq)).status == "held"
    await assert_conserved(redis_store, event_id)
