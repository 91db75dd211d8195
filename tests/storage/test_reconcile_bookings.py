"""reconcile_bookings.lua: Redis made to agree with the bookings in PostgreSQL."""

from __future__ import annotations

import pytest

from storage.records import Confirmed
from storage.redis_store import BookedSeats, RedisStore
from tests.storage.helpers import HOLD_MS, T0, WINDOW_MS, Event, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

EXP = T0 + HOLD_MS


def booked(ev: Event, seq: int, seats: tuple[int, ...], section: str = "A") -> BookedSeats:
    """The booking PostgreSQL would hold for ticket ``seq`` (key k<seq>, booking bk<seq>)."""
    return BookedSeats(ev.id, seq, f"k{seq}", f"bk{seq}", section, seats, f"c{seq}", 1_000)


async def reconcile(ev: Event, *items: BookedSeats, now: int = T0) -> list[str]:
    """Run reconcile_bookings once, then check conservation."""
    out = await ev.store.reconcile_bookings(list(items), now)
    await ev.check()
    return out


async def admitted(ev: Event, clients: int, qty: int = 2) -> None:
    """Join and admit ``clients`` clients c1.. of ``qty`` seats each."""
    await ev.join_many([(f"c{i}", qty, "") for i in range(1, clients + 1)])
    await ev.admit()


@pytest.mark.anyio
async def test_paying_hold_with_a_booking_is_sold(redis_store: RedisStore, event_id: str) -> None:
    """A crash after the commit leaves the hold paying: reconciliation sells it and tells the client."""
    ev = await new_event(redis_store, event_id)
    await admitted(ev, 1)
    assert (await ev.begin(1, "k1")).result == "ok"

    assert await reconcile(ev, booked(ev, 1, (1, 2))) == ["sold"]
    t = await ev.ticket(1)
    assert (t.status, t.booking_id, t.idempotency_key) == ("confirmed", "bk1", "k1")
    assert (await ev.maps())["A"] == "ss00|0000|"
    stats = await ev.stats()
    assert (stats["sold"], stats["held"], stats["confirmed"]) == (2, 0, 1)
    assert (await ev.notes())[-1].outcomes == [Confirmed(1, "bk1")]
    # No hold is left for the sweep to release.
    assert (await ev.expire(T0 + 10 * WINDOW_MS)).released == 0


@pytest.mark.anyio
async def test_held_hold_with_a_booking_is_sold(redis_store: RedisStore, event_id: str) -> None:
    """A hold that lost its paying state (Redis lost writes) is sold when its booking exists."""
    ev = await new_event(redis_store, event_id)
    await admitted(ev, 1)
    assert await reconcile(ev, booked(ev, 1, (1, 2))) == ["sold"]
    assert (await ev.ticket(1)).status == "confirmed"


@pytest.mark.anyio
async def test_released_seats_still_free_are_taken_back(
    redis_store: RedisStore, event_id: str
) -> None:
    """A booking whose hold the sweep released gets its seats back while nobody else has them."""
    ev = await new_event(redis_store, event_id)
    await admitted(ev, 1)
    assert (await ev.begin(1, "k1", now=EXP - 2, window=1)).result == "ok"
    assert (await ev.expire(EXP)).released == 1
    assert (await ev.ticket(1)).status == "expired"

    assert await reconcile(ev, booked(ev, 1, (1, 2)), now=EXP + 5) == ["retaken"]
    t = await ev.ticket(1)
    assert (t.status, t.booking_id, t.seats, t.released_ms) == ("confirmed", "bk1", [1, 2], None)
    stats = await ev.stats()
    assert (stats["sold"], stats["free"], stats["expired"], stats["confirmed"]) == (2, 6, 0, 1)


@pytest.mark.anyio
async def test_seats_taken_by_another_ticket_are_a_conflict(
    redis_store: RedisStore, event_id: str
) -> None:
    """When the released seats went to the next client, nothing changes and a conflict is named."""
    ev = await new_event(redis_store, event_id, [("A", 1_000, "00|")])
    await admitted(ev, 1)
    await ev.expire(EXP)
    await ev.join("c2", 2)
    await ev.admit(now=EXP)
    assert (await ev.maps())["A"] == "hh|"
    before = await ev.state()

    assert await reconcile(ev, booked(ev, 1, (1, 2)), now=EXP + 1) == ["conflict:seats"]
    assert await ev.state() == before


@pytest.mark.anyio
async def test_seats_sold_to_another_ticket_are_a_conflict(
    redis_store: RedisStore, event_id: str
) -> None:
    """Seats sold to another ticket are never sold twice."""
    ev = await new_event(redis_store, event_id, [("A", 1_000, "00|")])
    await admitted(ev, 1)
    await ev.expire(EXP)
    await ev.join("c2", 2)
    await ev.admit(now=EXP)
    await ev.pay(2, now=EXP)
    before = await ev.state()
    assert await reconcile(ev, booked(ev, 1, (1, 2))) == ["conflict:seats"]
    assert await ev.state() == before
    assert before["stats"]["sold"] == 2


@pytest.mark.anyio
async def test_repeating_changes_nothing(redis_store: RedisStore, event_id: str) -> None:
    """A second pass over the same bookings answers confirmed and leaves Redis as it was."""
    ev = await new_event(redis_store, event_id)
    await admitted(ev, 3, qty=1)
    await ev.begin(1, "k1")
    await ev.pay(3)
    await ev.expire(EXP)
    items = [booked(ev, 1, (1,)), booked(ev, 2, (2,)), booked(ev, 3, (3,))]
    assert await reconcile(ev, *items, now=EXP) == ["sold", "retaken", "confirmed"]
    after_first = await ev.state()
    assert await reconcile(ev, *items, now=EXP + 1) == ["confirmed"] * 3
    assert await ev.state() == after_first
    assert after_first["stats"]["sold"] == 3


@pytest.mark.anyio
async def test_lost_ticket_record_is_restored(redis_store: RedisStore, event_id: str) -> None:
    """A ticket Redis lost entirely is recreated confirmed, and new joins do not reuse its seq."""
    ev = await new_event(redis_store, event_id)
    await admitted(ev, 1)
    assert await reconcile(ev, booked(ev, 2, (6, 7))) == ["retaken"]
    t = await ev.ticket(2)
    assert (t.status, t.client_id, t.seats, t.held_section) == ("confirmed", "c2", [6, 7], "A")
    assert (await ev.join("c3")).seq == 3


@pytest.mark.anyio
async def test_unknown_section_is_a_conflict(redis_store: RedisStore, event_id: str) -> None:
    """A booking naming a section Redis does not have is reported, not guessed at."""
    ev = await new_event(redis_store, event_id)
    await admitted(ev, 1)
    before = await ev.state()
    assert await reconcile(ev, booked(ev, 1, (1, 2), section="Z")) == ["conflict:section"]
    assert await ev.state() == before
