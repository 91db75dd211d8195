"""set_event_state.lua: pausing, resuming and closing admission."""

from __future__ import annotations

import pytest

from storage.records import EventState, StateChange
from storage.redis_store import RedisStore
from tests.storage.helpers import T0, Event, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

OPENS = T0 + 10_000


async def sold_out_event(redis_store: RedisStore, event_id: str) -> Event:
    """An event whose only seat is sold and whose state is sold_out."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0|")], opens_at_ms=T0)
    await ev.join("c1")
    await ev.admit()
    await ev.pay(1)
    assert (await ev.admit()).state == "sold_out"
    return ev


@pytest.mark.anyio
async def test_pause_open_event_then_resume_opens_it(
    redis_store: RedisStore, event_id: str
) -> None:
    """Pausing an open event stops admission; resuming after opens_at makes it open again."""
    ev = await new_event(redis_store, event_id, opens_at_ms=OPENS)
    await ev.join_many([("c1", 1, ""), ("c2", 1, "")])
    assert (await ev.admit(now=OPENS, max_count=1)).state == "open"

    assert await ev.set_state("pause", now=OPENS + 1) == StateChange(
        ok=True, state=EventState.PAUSED
    )
    assert (await ev.meta())["state"] == "paused"
    summary = await ev.admit(now=OPENS + 2)
    assert (summary.reason, summary.admitted) == ("not_open", 0)
    # Both joined before opens_at: the second place went to either ticket.
    second = 1 if (await ev.ticket(1)).drawn_place == 2 else 2
    assert (await ev.ticket(second)).status == "queued"

    assert await ev.set_state("resume", now=OPENS + 3) == StateChange(
        ok=True, state=EventState.OPEN
    )
    assert (await ev.admit(now=OPENS + 4)).admitted == 1
    assert (await ev.ticket(second)).status == "held"


@pytest.mark.anyio
async def test_resume_before_opens_at_goes_back_to_scheduled(
    redis_store: RedisStore, event_id: str
) -> None:
    """A paused event resumed before opens_at is scheduled and opens on time."""
    ev = await new_event(redis_store, event_id, opens_at_ms=OPENS)
    await ev.join("c1")
    assert await ev.set_state("pause", now=T0) == StateChange(ok=True, state=EventState.PAUSED)
    assert (await ev.admit(now=OPENS)).reason == "not_open"
    assert await ev.set_state("resume", now=OPENS - 1) == StateChange(
        ok=True, state=EventState.SCHEDULED
    )
    assert (await ev.admit(now=OPENS - 1)).reason == "not_open"
    summary = await ev.admit(now=OPENS)
    assert (summary.state, summary.admitted) == ("open", 1)


@pytest.mark.anyio
async def test_resume_at_opens_at_opens(redis_store: RedisStore, event_id: str) -> None:
    """Resuming exactly at opens_at goes straight to open."""
    ev = await new_event(redis_store, event_id, opens_at_ms=OPENS)
    await ev.set_state("pause", now=T0)
    assert await ev.set_state("resume", now=OPENS) == StateChange(ok=True, state=EventState.OPEN)


@pytest.mark.anyio
async def test_actions_that_do_not_apply_change_nothing(
    redis_store: RedisStore, event_id: str
) -> None:
    """Resume when not paused and pause when paused answer ok false with the current state."""
    ev = await new_event(redis_store, event_id, opens_at_ms=OPENS)
    before = await ev.state()
    assert await ev.set_state("resume", now=OPENS) == StateChange(
        ok=False, state=EventState.SCHEDULED
    )
    assert await ev.set_state("bogus") == StateChange(ok=False, state=EventState.SCHEDULED)
    assert await ev.state() == before

    await ev.set_state("pause")
    before = await ev.state()
    assert await ev.set_state("pause") == StateChange(ok=False, state=EventState.PAUSED)
    assert await ev.state() == before


@pytest.mark.anyio
async def test_sold_out_cannot_be_paused_or_resumed(redis_store: RedisStore, event_id: str) -> None:
    """Pause applies only to open or scheduled events; a sold-out event keeps its state."""
    ev = await sold_out_event(redis_store, event_id)
    before = await ev.state()
    assert await ev.set_state("pause") == StateChange(ok=False, state=EventState.SOLD_OUT)
    assert await ev.set_state("resume") == StateChange(ok=False, state=EventState.SOLD_OUT)
    assert await ev.state() == before


@pytest.mark.parametrize("start", ["scheduled", "open", "paused", "sold_out"])
@pytest.mark.anyio
async def test_close_from_any_state_once(
    redis_store: RedisStore, event_id: str, start: str
) -> None:
    """Close works from every state but closed; closing again, pausing or resuming is refused."""
    if start == "sold_out":
        ev = await sold_out_event(redis_store, event_id)
    else:
        ev = await new_event(redis_store, event_id, opens_at_ms=OPENS)
        if start == "open":
            await ev.admit(now=OPENS)
        if start == "paused":
            await ev.set_state("pause")
    assert (await ev.meta())["state"] == start

    assert await ev.set_state("close", now=OPENS) == StateChange(ok=True, state=EventState.CLOSED)
    before = await ev.state()
    for action in ("close", "pause", "resume"):
        assert await ev.set_state(action, now=OPENS) == StateChange(
            ok=False, state=EventState.CLOSED
        )
    assert await ev.state() == before


@pytest.mark.anyio
async def test_closing_tells_the_line_a_final_sold_out(
    redis_store: RedisStore, event_id: str
) -> None:
    """Closing a sold-out event writes one notify entry whose sold_out_after is the serving
    counter: the clients who kept their places are told nothing is left; their records
    stay queued (a closed sale reads them as sold out) and joins are refused."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0|")], opens_at_ms=T0)
    await ev.join_many([("c1", 1, ""), ("c2", 1, ""), ("c3", 1, "")])
    await ev.admit()
    await ev.pay(1)
    assert (await ev.admit()).state == "sold_out"
    assert (await ev.join("c4", 1)).seq == 0  # sold out: no new place
    before = await ev.notes()
    assert await ev.set_state("close") == StateChange(ok=True, state=EventState.CLOSED)
    notes = await ev.notes()
    assert len(notes) == len(before) + 1
    assert (notes[-1].kind, notes[-1].outcomes, notes[-1].sold_out_after) == ("close", [], 1)
    assert (await ev.admit()).reason == "not_open"
    assert [(await ev.ticket(s)).status for s in (2, 3)] == ["queued"] * 2


@pytest.mark.anyio
async def test_state_changes_leave_holds_and_payments_alone(
    redis_store: RedisStore, event_id: str
) -> None:
    """Pausing and closing touch only the state: open holds can still be paid and still expire."""
    ev = await new_event(redis_store, event_id, opens_at_ms=T0)
    await ev.join_many([("c1", 2, ""), ("c2", 1, "")])
    await ev.admit()
    before = await ev.state()
    await ev.set_state("pause")
    after = await ev.state()
    assert after["meta"] == {**before["meta"], "state": "paused"}
    assert (after["stats"], after["maps"], after["tickets"]) == (
        before["stats"],
        before["maps"],
        before["tickets"],
    )

    await ev.set_state("close")
    await ev.pay(1)
    assert (await ev.ticket(1)).status == "confirmed"
    assert (await ev.expire(T0 + 10**6)).released == 1
    stats = await ev.stats()
    assert (stats["sold"], stats["free"], stats["held"]) == (2, 6, 0)
