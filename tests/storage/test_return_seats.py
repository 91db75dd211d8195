"""return_seats.lua: the seats of cancelled tickets back on sale, once, and a sold-out event open
again."""

from __future__ import annotations

import pytest

from storage.redis_store import RedisStore, ReturnedSeats
from tests.storage.helpers import T0, Event, new_event

pytestmark = [pytest.mark.anyio, pytest.mark.once]


async def _return(ev: Event, *groups: tuple[int, str, str, tuple[int, ...]]) -> list[str]:
    returned = [ReturnedSeats(ev.id, seq, bk, section, seats) for seq, bk, section, seats in groups]
    result = await ev.store.return_seats(returned, T0 + 100)
    await ev.check()  # free + held + sold = capacity, maps = counters = tickets
    return result


async def test_cancelled_seats_are_free_again_once(redis_store: RedisStore, event_id: str) -> None:
    """Part of a booking, then the rest: each time the seats go sold -> free with the counters,
    the ticket keeps the others (and names the cancelled ones); a repeat changes nothing."""
    ev = await new_event(redis_store, event_id)
    await ev.join("alice", 3)
    await ev.admit()
    await ev.pay(1)
    assert await ev.maps() == {"A": "sss0|0000|"}

    assert await _return(ev, (1, "bk1", "A", (2,))) == ["returned"]
    assert await ev.maps() == {"A": "s0s0|0000|"}
    t = await ev.ticket(1)
    assert (t.status, t.seats, t.cancelled) == ("confirmed", [1, 3], [2])
    stats = await ev.stats()
    assert (stats["free"], stats["sold"], stats["returned"]) == (6, 2, 1)
    before = await ev.state()
    assert await _return(ev, (1, "bk1", "A", (2,))) == ["done"]
    assert await ev.state() == before

    assert await _return(ev, (1, "bk1", "A", (1, 3))) == ["returned"]
    assert await ev.maps() == {"A": "0000|0000|"}
    t = await ev.ticket(1)
    assert (t.status, t.seats, sorted(t.cancelled)) == ("confirmed", [], [1, 2, 3])
    notes = await ev.notes()
    assert [n.kind for n in notes[-2:]] == ["return", "return"]  # each wakes admission


async def test_seats_of_another_booking_or_ticket_are_left_alone(
    redis_store: RedisStore, event_id: str
) -> None:
    """Another booking id, a ticket not confirmed, an unknown section: a conflict each, and
    nothing changes; a seat cancelled and sold again to another ticket stays sold."""
    ev = await new_event(redis_store, event_id, max_active=3)
    await ev.join_many([("alice", 2, ""), ("bob", 1, "")])
    await ev.admit()
    await ev.pay(1)
    before = await ev.state()
    results = await _return(
        ev, (1, "bk-other", "A", (1,)), (2, "bk2", "A", (3,)), (1, "bk1", "Z", (1,))
    )
    assert results == ["conflict:booking", "conflict:booking", "conflict:section"]
    assert await ev.state() == before

    assert await _return(ev, (1, "bk1", "A", (1, 2))) == ["returned"]
    await ev.join("carol", 2, now=T0 + 200)
    await ev.admit(now=T0 + 200)
    await ev.pay(3, now=T0 + 200)
    assert (await ev.ticket(3)).seats == [1, 2]
    assert await _return(ev, (1, "bk1", "A", (1, 2))) == ["done"]  # carol's now
    assert (await ev.maps())["A"][:2] == "ss"


async def test_a_sold_out_event_opens_again(redis_store: RedisStore, event_id: str) -> None:
    """Every seat sold, a client told sold out: returned seats open the event (new joins
    taken, the next one admitted to them); the client told sold out stays so."""
    ev = await new_event(redis_store, event_id, [("A", 1_000, "00|")])
    await ev.join("alice", 2)
    await ev.admit()
    await ev.pay(1)
    await ev.join("bob", 1)
    await ev.admit()
    assert (await ev.meta())["state"] == "sold_out"
    assert (await ev.ticket(2)).status == "sold_out"
    assert (await ev.join("late", 1)).seq == 0  # refused while sold out

    assert await _return(ev, (1, "bk1", "A", (1, 2))) == ["returned"]
    assert (await ev.meta())["state"] == "open"
    assert (await ev.ticket(2)).status == "sold_out"
    joined = await ev.join("carol", 2, now=T0 + 300)
    assert joined.seq == 3
    assert (await ev.admit(now=T0 + 300)).admitted == 1
    assert (await ev.ticket(3)).seats == [1, 2]
    await ev.check()


async def test_clients_told_sold_out_before_admission_reached_them_stay_so(
    redis_store: RedisStore, event_id: str
) -> None:
    """The event sold out with clients still queued (told "sold out" by the notify entry, not
    yet marked by admission): reopening marks them sold out and moves serving past them, so
    the returned seats go to new joins, not to clients who were told to leave."""
    ev = await new_event(redis_store, event_id, [("A", 1_000, "00|")])
    await ev.join("alice", 2)
    await ev.admit()
    await ev.pay(1)
    await ev.join("bob", 1)
    await ev.join("dave", 1)
    await ev.admit(max_count=1)  # bob decided: sold out; the event sells out, dave still queued
    assert (await ev.meta())["state"] == "sold_out"
    assert (await ev.ticket(3)).status == "queued"

    assert await _return(ev, (1, "bk1", "A", (1,))) == ["returned"]
    assert (await ev.meta())["state"] == "open"
    assert (await ev.ticket(3)).status == "sold_out"
    assert (await ev.stats())["serving"] == 3
