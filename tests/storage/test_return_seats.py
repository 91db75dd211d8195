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


async def test_a_sold_out_event_opens_again_for_the_line_first(
    redis_store: RedisStore, event_id: str
) -> None:
    """Every seat sold with clients still waiting: they keep their places (queued, not told
    sold out); returned seats open the event, and admission gives them to the waiting
    clients in line order before anyone who joins after the return."""
    ev = await new_event(redis_store, event_id, [("A", 1_000, "00|")])
    await ev.join("alice", 2)
    await ev.admit()
    await ev.pay(1)
    await ev.join_many([("bob", 1, ""), ("dave", 1, ""), ("erin", 2, "")])
    assert (await ev.admit()).reason == "sold_out"
    assert (await ev.meta())["state"] == "sold_out"
    assert [(await ev.ticket(s)).status for s in (2, 3, 4)] == ["queued"] * 3
    assert (await ev.join("late", 1)).seq == 0  # refused while sold out

    assert await _return(ev, (1, "bk1", "A", (1, 2))) == ["returned"]
    assert (await ev.meta())["state"] == "open"
    assert (await ev.stats())["serving"] == 1  # nobody was passed over
    assert (await ev.notes())[-1].kind == "return"
    joined = await ev.join("carol", 2, now=T0 + 300)
    assert joined.seq == 5  # behind the line

    summary = await ev.admit(now=T0 + 300)
    assert (summary.admitted, summary.sold_out) == (2, 0)
    assert [(await ev.ticket(s)).seats for s in (2, 3)] == [[1], [2]]
    assert [(await ev.ticket(s)).status for s in (4, 5)] == ["queued"] * 2
    await ev.check()


async def test_the_line_waits_through_a_partial_return(
    redis_store: RedisStore, event_id: str
) -> None:
    """One seat back for a head that wants two: the head waits (no one behind it is served
    first), and the event sells out for now again once that seat is held and paid."""
    ev = await new_event(redis_store, event_id, [("A", 1_000, "00|")])
    await ev.join("alice", 2)
    await ev.admit()
    await ev.pay(1)
    await ev.join_many([("bob", 1, ""), ("dave", 1, "")])
    await ev.admit()
    assert await _return(ev, (1, "bk1", "A", (2,))) == ["returned"]
    summary = await ev.admit(now=T0 + 300)
    assert (summary.admitted, summary.serving) == (1, 2)
    assert (await ev.ticket(2)).seats == [2]
    await ev.pay(2, now=T0 + 300)
    summary = await ev.admit(now=T0 + 301)
    assert (summary.state, summary.reason) == ("sold_out", "sold_out")
    assert (await ev.notes())[-1].sold_out_wait == 2
    assert (await ev.ticket(3)).status == "queued"
    await ev.check()
