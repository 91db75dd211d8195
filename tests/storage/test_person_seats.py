"""One live place per verified person and ``max_per_person`` over its orders, in the scripts."""

from __future__ import annotations

import pytest

from storage.redis_store import RedisStore, ReturnedSeats
from tests.storage.helpers import HOLD_MS, T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster, pytest.mark.anyio]

ALICE = "a" * 32


async def test_a_person_joining_again_gets_its_live_place_back(
    redis_store: RedisStore, event_id: str
) -> None:
    """While the person's ticket is live, a join (another device) returns the same place."""
    ev = await new_event(redis_store, event_id)
    first = await ev.join(f"id:{ALICE}", 2, person=ALICE)
    again = await ev.join(f"id:{ALICE}", 1, person=ALICE, now=T0 + 10)
    assert again.seq == first.seq == 1
    assert (await ev.ticket(1)).person == ALICE
    await ev.admit()
    held = await ev.join(f"id:{ALICE}", 1, person=ALICE, now=T0 + 20)
    assert (held.seq, held.status) == (1, "held")


async def test_max_per_person_counts_every_order_of_the_person(
    redis_store: RedisStore, event_id: str
) -> None:
    """A second order is taken once the first ended, within max_per_person over both."""
    ev = await new_event(redis_store, event_id, max_per_person=3)
    me = f"id:{ALICE}"
    assert (await ev.join(me, 2, person=ALICE)).seq == 1
    await ev.admit()
    await ev.pay(1)
    assert await redis_store.person_seats(event_id, ALICE) == 2
    refused = await ev.join(me, 2, person=ALICE, now=T0 + 1)
    assert (refused.seq, refused.status) == (0, "person_limit")
    second = await ev.join(me, 1, person=ALICE, now=T0 + 2)
    assert (second.seq, second.status) == (2, "queued")
    await ev.admit(T0 + 2)
    assert (await ev.ticket(2)).status == "held"
    assert await redis_store.person_seats(event_id, ALICE) == 3
    assert (await ev.join(me, 1, person=ALICE, now=T0 + 3)).seq == 2  # still live: same place


async def test_seats_given_back_leave_the_persons_count(
    redis_store: RedisStore, event_id: str
) -> None:
    """An expired or released hold takes its seats off the person's count."""
    ev = await new_event(redis_store, event_id, max_per_person=2)
    me = f"id:{ALICE}"
    await ev.join(me, 2, person=ALICE)
    await ev.admit()
    assert await redis_store.person_seats(event_id, ALICE) == 2
    await ev.expire(T0 + HOLD_MS)
    assert await redis_store.person_seats(event_id, ALICE) == 0
    again = await ev.join(me, 2, person=ALICE, now=T0 + HOLD_MS + 1)
    assert (again.seq, again.status) == (2, "queued")
    await ev.admit(T0 + HOLD_MS + 1)
    assert await redis_store.person_seats(event_id, ALICE) == 2
    assert await redis_store.release_hold(event_id, 2, T0 + HOLD_MS + 2) == "released"
    await ev.check()
    assert await redis_store.person_seats(event_id, ALICE) == 0


async def test_admission_refuses_seats_over_the_persons_limit(
    redis_store: RedisStore, event_id: str
) -> None:
    """Where seats are held, a ticket that would pass max_per_person is told sold_out."""
    ev = await new_event(redis_store, event_id, max_per_person=3)
    # Two live tickets of one person can only come from two client ids (not the edge's
    # path, which joins a person under one id): the join's check passes for both.
    await ev.join("one", 2, person=ALICE)
    await ev.join("two", 2, person=ALICE)
    summary = await ev.admit()
    assert (summary.admitted, summary.sold_out) == (1, 1)
    assert (await ev.ticket(2)).status == "sold_out"
    assert await redis_store.person_seats(event_id, ALICE) == 2


async def test_once_the_sale_is_over_a_person_gets_its_ended_ticket_back(
    redis_store: RedisStore, event_id: str
) -> None:
    """After the sale closed, a person's join answers its confirmed ticket, not a new one."""
    ev = await new_event(redis_store, event_id, max_per_person=4)
    await ev.join(f"id:{ALICE}", 1, person=ALICE)
    await ev.admit()
    await ev.pay(1)
    await ev.set_state("close")
    again = await ev.join(f"id:{ALICE}", 1, person=ALICE, now=T0 + 1)
    assert (again.seq, again.status) == (1, "confirmed")


async def test_joins_without_a_person_are_unchanged(redis_store: RedisStore, event_id: str) -> None:
    """A client id without a person keeps its ended ticket (no second order), as before."""
    ev = await new_event(redis_store, event_id, max_per_person=1)
    await ev.join("c1", 2)
    await ev.admit()
    await ev.pay(1)
    again = await ev.join("c1", 2, now=T0 + 1)
    assert (again.seq, again.status) == (1, "confirmed")


async def test_cancelled_seats_leave_the_persons_count(
    redis_store: RedisStore, event_id: str
) -> None:
    """Seats of a paid order given back by a cancellation no longer count to the person's
    limit: the person may order that many again."""
    ev = await new_event(redis_store, event_id, max_per_person=2)
    me = f"id:{ALICE}"
    await ev.join(me, 2, person=ALICE)
    await ev.admit()
    await ev.pay(1)
    assert await redis_store.person_seats(event_id, ALICE) == 2
    held = (await ev.ticket(1)).seats
    returned = ReturnedSeats(event_id, 1, "bk1", "A", [held[0]])
    assert await redis_store.return_seats([returned], T0 + 1) == ["returned"]
    assert await redis_store.person_seats(event_id, ALICE) == 1
    await ev.check()
    again = await ev.join(me, 1, person=ALICE, now=T0 + 2)
    assert (again.seq, again.status) == (2, "queued")
