"""The engine's sales: an event's status with the line's arithmetic, and the operator's controls."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.wiring import Services
from engine.errors import InvalidRequest, InvalidState, NotFound
from engine.events import EventSpec, RowSpec, SectionSpec
from storage.records import EventState

pytestmark = pytest.mark.anyio

SPEC = EventSpec(
    name="Sales",
    opens_at=datetime(2099, 1, 1, tzinfo=UTC),  # stays scheduled: nobody is admitted
    sections=[
        SectionSpec(id="a", price_cents=1_500, rows=[RowSpec("A", 4), RowSpec("B", 2)]),
        SectionSpec(id="ga", price_cents=900, capacity=10),
    ],
    max_active_holds=7,
)


async def test_status_counts_the_line_and_the_seats(services: Services) -> None:
    """A new event: scheduled, its caps, nobody in line, every seat free, per section."""
    sales = services.engine.sales
    event_id = await sales.create(SPEC)
    for client in ("c1", "c2", "c3"):
        joined = await services.line.join(event_id, client, 2, "")
        assert joined.seq > 0
    status = await sales.status(event_id)
    assert (status.state, status.max_active_holds, status.admissions_per_minute) == (
        EventState.SCHEDULED,
        7,
        0,
    )
    assert (status.queue_length, status.active_holds, status.admitted) == (3, 0, 0)
    assert [(s.id, s.price_cents, s.capacity, s.free, s.held, s.sold) for s in status.sections] == [
        ("a", 1_500, 6, 6, 0, 0),
        ("ga", 900, 10, 10, 0, 0),
    ]


async def test_controls_follow_the_event_state(services: Services) -> None:
    """Pause, resume and close change the state when it allows, else InvalidState (409)."""
    sales = services.engine.sales
    event_id = await sales.create(SPEC)
    with pytest.raises(InvalidState, match="cannot resume an event that is scheduled"):
        await sales.resume(event_id)
    assert await sales.pause(event_id) == EventState.PAUSED
    assert await sales.resume(event_id) == EventState.SCHEDULED  # not open before opens_at
    assert await sales.close(event_id) == EventState.CLOSED
    with pytest.raises(InvalidState):
        await sales.pause(event_id)
    with pytest.raises(InvalidState):
        await sales.close(event_id)
    assert (await sales.status(event_id)).state == EventState.CLOSED


async def test_caps_change_and_unknown_events_are_not_found(services: Services) -> None:
    """Caps change live (one at a time, not neither); an unknown event is NotFound."""
    sales = services.engine.sales
    event_id = await sales.create(SPEC)
    caps = await sales.set_admission(event_id, max_active_holds=3, admissions_per_minute=None)
    assert (caps.max_active, caps.rate_per_min) == (3, 0)
    caps = await sales.set_admission(event_id, max_active_holds=None, admissions_per_minute=60)
    assert (caps.max_active, caps.rate_per_min) == (3, 60)
    with pytest.raises(InvalidRequest):
        await sales.set_admission(event_id, max_active_holds=None, admissions_per_minute=None)
    status = await sales.status(event_id)
    assert (status.max_active_holds, status.admissions_per_minute) == (3, 60)
    for call in (sales.status, sales.pause, sales.resume, sales.close):
        with pytest.raises(NotFound):
            await call("nosuchevent")
    await sales.check_ready()  # both stores answer
