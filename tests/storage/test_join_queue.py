"""join_queue.lua: one place in line per client id."""

from __future__ import annotations

import pytest

from storage.records import JoinResult, TicketRecord, TicketStatus
from storage.redis_store import RedisStore
from tests.storage.helpers import T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]


@pytest.mark.anyio
async def test_joins_get_consecutive_seqs_in_request_order(
    redis_store: RedisStore, event_id: str
) -> None:
    """One call gives each new client the next seq, in request order, and records its ticket."""
    ev = await new_event(redis_store, event_id)
    out = await ev.join_many([("c1", 2, "A"), ("c2", 1, ""), ("c3", 4, "A")], now=T0 - 10)
    assert out == [
        JoinResult(1, "queued", 0),
        JoinResult(2, "queued", 0),
        JoinResult(3, "queued", 0),
    ]
    queued = TicketStatus.QUEUED
    assert await redis_store.tickets(event_id) == {
        1: TicketRecord(
            queued, quantity=2, requested_section="A", client_id="c1", joined_ms=T0 - 10
        ),
        2: TicketRecord(
            queued, quantity=1, requested_section="", client_id="c2", joined_ms=T0 - 10
        ),
        3: TicketRecord(
            queued, quantity=4, requested_section="A", client_id="c3", joined_ms=T0 - 10
        ),
    }
    stats = await ev.stats()
    assert (stats["seq"], stats["serving"], stats["free"], stats["held"]) == (3, 0, 8, 0)
    assert await ev.maps() == {"A": "0000|0000|"}
    assert await ev.notes() == []


@pytest.mark.anyio
async def test_rejoin_returns_same_place_and_changes_nothing(
    redis_store: RedisStore, event_id: str
) -> None:
    """Joining again with the same client id returns its seq; the first request's ticket is kept."""
    ev = await new_event(redis_store, event_id)
    first = await ev.join("c1", 2, "A", now=T0)
    before = await ev.state()

    again = await ev.join("c1", 3, "", now=T0 + 500)
    assert again == first == JoinResult(1, "queued", 0, 1)
    assert await ev.state() == before
    assert (await ev.ticket(1)).quantity == 2


@pytest.mark.anyio
async def test_same_client_twice_in_one_call_gets_one_place(
    redis_store: RedisStore, event_id: str
) -> None:
    """A client repeated within one batch gets the same seq both times."""
    ev = await new_event(redis_store, event_id)
    out = await ev.join_many([("c1", 1, ""), ("c2", 1, ""), ("c1", 1, "")])
    assert [r.seq for r in out] == [1, 2, 1]
    assert (await ev.stats())["seq"] == 2


@pytest.mark.anyio
async def test_rejoin_reports_current_status_and_serving(
    redis_store: RedisStore, event_id: str
) -> None:
    """A returning client learns its ticket's current status and the serving counter."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("c1", 1, ""), ("c2", 1, ""), ("c3", 1, "")])
    assert (await ev.admit(max_count=2)).serving == 2
    assert await ev.join("c1") == JoinResult(1, "held", 2, 1)
    assert await ev.join("c3") == JoinResult(3, "queued", 2, 3)
    await ev.pay(2)
    assert await ev.join("c2") == JoinResult(2, "confirmed", 2, 2)
    new = await ev.join("c4")
    assert new == JoinResult(4, "queued", 2, 4)


@pytest.mark.anyio
async def test_join_before_open_and_while_paused_is_queued(
    redis_store: RedisStore, event_id: str
) -> None:
    """Scheduled and paused events still take places (in the pre-queue before opens_at)."""
    ev = await new_event(redis_store, event_id, opens_at_ms=T0 + 60_000)
    assert await ev.join("early", now=T0) == JoinResult(1, "queued", 0)
    assert (await ev.set_state("pause")).state == "paused"
    assert await ev.join("paused", now=T0) == JoinResult(2, "queued", 0)


@pytest.mark.anyio
async def test_join_after_sold_out_is_refused_without_a_ticket(
    redis_store: RedisStore, event_id: str
) -> None:
    """New clients of a sold-out event get seq 0 / sold_out; known clients keep their place."""
    ev = await new_event(redis_store, event_id, [("A", 500, "00|")])
    await ev.join("buyer", 2)
    await ev.admit()
    await ev.pay(1)
    summary = await ev.admit()
    assert summary.state == "sold_out"
    before = await ev.state()

    assert await ev.join("late", 1) == JoinResult(0, "sold_out", 1)
    assert await ev.join("late", 1) == JoinResult(0, "sold_out", 1)
    assert await ev.join("buyer", 2) == JoinResult(1, "confirmed", 1, 1)
    assert await ev.state() == before


@pytest.mark.anyio
async def test_join_after_close_is_refused(redis_store: RedisStore, event_id: str) -> None:
    """New clients of a closed event get seq 0 / closed and no ticket."""
    ev = await new_event(redis_store, event_id)
    await ev.join("c1")
    assert (await ev.set_state("close")).state == "closed"
    assert await ev.join("c2") == JoinResult(0, "closed", 0)
    assert await ev.join("c1") == JoinResult(1, "queued", 0, 1)
    stats = await ev.stats()
    assert stats["seq"] == 1
    assert set(await redis_store.tickets(event_id)) == {1}
