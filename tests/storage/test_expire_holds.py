"""expire_holds.lua: releasing holds whose time is up."""

from __future__ import annotations

import pytest

from storage.records import Expired, ExpireSummary
from storage.redis_store import RedisStore
from tests.storage.helpers import HOLD_MS, T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

EXP = T0 + HOLD_MS


@pytest.mark.anyio
async def test_nothing_released_before_the_hold_ends(
    redis_store: RedisStore, event_id: str
) -> None:
    """A sweep before exp releases nothing and reports when the hold is due."""
    ev = await new_event(redis_store, event_id)
    await ev.join("c1", 2)
    await ev.admit()
    before = await ev.state()
    assert await ev.expire(EXP - 1) == ExpireSummary(released=0, next_ms=EXP)
    assert await ev.state() == before


@pytest.mark.anyio
async def test_due_hold_is_released_and_announced(redis_store: RedisStore, event_id: str) -> None:
    """At exp the seats go back to free, the ticket expires and one notify entry says so."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("c1", 2, ""), ("c2", 1, "")])
    await ev.admit()
    assert await ev.expire(EXP) == ExpireSummary(released=2, next_ms=-1)

    assert await ev.maps() == {"A": "0000|0000|"}
    stats = await ev.stats()
    assert (stats["free"], stats["held"], stats["expired"], stats["free:A"]) == (8, 0, 2, 8)
    t1 = await ev.ticket(1)
    assert (t1.status, t1.seats, t1.held_section) == ("expired", [1, 2], "A")
    assert (await ev.ticket(2)).status == "expired"
    notes = await ev.notes()
    assert [n.kind for n in notes] == ["admit", "expire"]
    assert notes[1].outcomes == [Expired(1), Expired(2)]
    assert notes[1].serving == 2


@pytest.mark.anyio
async def test_expire_twice_releases_once(redis_store: RedisStore, event_id: str) -> None:
    """A second sweep (or a concurrent one) finds nothing left to release."""
    ev = await new_event(redis_store, event_id)
    await ev.join("c1", 3)
    await ev.admit()
    assert (await ev.expire(EXP)).released == 1
    before = await ev.state()
    assert await ev.expire(EXP) == ExpireSummary(released=0, next_ms=-1)
    assert await ev.expire(EXP + 10 * HOLD_MS) == ExpireSummary(released=0, next_ms=-1)
    assert await ev.state() == before
    assert before["stats"]["expired"] == 1
    assert before["stats"]["free"] == 8


@pytest.mark.anyio
async def test_limit_and_next_ms(redis_store: RedisStore, event_id: str) -> None:
    """At most `limit` holds go per call, earliest first; next_ms is the next one due."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("c1", 1, ""), ("c2", 1, ""), ("c3", 1, "")])
    await ev.admit(now=T0, max_count=1)
    await ev.admit(now=T0 + 10, max_count=1)
    await ev.admit(now=T0 + 20, max_count=1)
    assert await ev.expire(EXP + 20, limit=2) == ExpireSummary(released=2, next_ms=EXP + 20)
    assert [(await ev.ticket(s)).status for s in (1, 2, 3)] == ["expired", "expired", "held"]
    assert await ev.expire(EXP + 20, limit=2) == ExpireSummary(released=1, next_ms=-1)


@pytest.mark.anyio
async def test_paying_hold_kept_until_payment_window_ends(
    redis_store: RedisStore, event_id: str
) -> None:
    """A paying hold outlives its exp until pu, then the sweep releases it."""
    ev = await new_event(redis_store, event_id)
    await ev.join("c1", 2)
    await ev.admit()
    started = await ev.begin(1, "k1", now=EXP - 1_000, window=5_000)
    pu = EXP + 4_000
    assert (started.result, started.paying_until_ms) == ("ok", pu)

    before = await ev.state()
    assert await ev.expire(EXP) == ExpireSummary(released=0, next_ms=pu)
    assert await ev.expire(pu - 1) == ExpireSummary(released=0, next_ms=pu)
    assert await ev.state() == before
    assert (await ev.ticket(1)).status == "paying"

    assert await ev.expire(pu) == ExpireSummary(released=1, next_ms=-1)
    t = await ev.ticket(1)
    assert (t.status, t.idempotency_key) == ("expired", "k1")
    assert await ev.maps() == {"A": "0000|0000|"}
    assert (await ev.notes())[-1].outcomes == [Expired(1)]


@pytest.mark.anyio
async def test_confirmed_hold_is_never_released(redis_store: RedisStore, event_id: str) -> None:
    """Sold seats stay sold whatever the sweep time."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("c1", 2, ""), ("c2", 1, "")])
    await ev.admit()
    await ev.pay(1)
    assert await ev.expire(EXP + 100 * HOLD_MS) == ExpireSummary(released=1, next_ms=-1)
    assert (await ev.ticket(1)).status == "confirmed"
    assert (await ev.ticket(2)).status == "expired"
    assert await ev.maps() == {"A": "ss00|0000|"}
    stats = await ev.stats()
    assert (stats["sold"], stats["held"], stats["free"]) == (2, 0, 6)


@pytest.mark.anyio
async def test_released_seats_go_to_the_next_in_line(
    redis_store: RedisStore, event_id: str
) -> None:
    """After a release the waiting head of the line gets the freed seats."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00|")])
    await ev.join_many([("c1", 2, ""), ("c2", 2, "")])
    assert (await ev.admit()).reason == "waiting_for_seats"
    await ev.expire(EXP)
    summary = await ev.admit(now=EXP)
    assert (summary.admitted, summary.serving) == (1, 2)
    t2 = await ev.ticket(2)
    assert (t2.status, t2.seats, t2.expires_ms) == ("held", [1, 2], EXP + HOLD_MS)


@pytest.mark.anyio
async def test_admission_releases_due_holds_before_admitting(
    redis_store: RedisStore, event_id: str
) -> None:
    """admit_next releases the holds that are due first; while more are due than it
    released it admits nobody ("expiring"), so a release never waits behind admissions."""
    ev = await new_event(redis_store, event_id)  # 8 seats
    await ev.join_many([(f"c{i}", 2, "") for i in range(4)])
    assert (await ev.admit()).admitted == 4  # every seat held, due at EXP
    await ev.join("late", 2, now=EXP - 1)

    first = await ev.admit(EXP, 2)
    assert (first.released, first.admitted, first.reason) == (2, 0, "expiring")
    assert [(await ev.ticket(s)).status for s in (1, 2, 3, 4)] == ["expired"] * 2 + ["held"] * 2

    second = await ev.admit(EXP, 2)
    assert (second.released, second.admitted) == (2, 1)
    tickets = await redis_store.tickets(event_id)
    assert [tickets[s].released_ms for s in (1, 2, 3, 4)] == [EXP] * 4  # at their deadline
    assert tickets[5].status == "held"
    notes = await ev.notes()
    assert [n.kind for n in notes] == ["admit", "expire", "expire", "admit"]
    assert (await ev.stats())["expired"] == 4
    assert await ev.expire(EXP) == ExpireSummary(released=0, next_ms=EXP + HOLD_MS)
