"""DELETE /v1/holds/{id}: the holder gives its seats back before the deadline."""

from __future__ import annotations

import httpx
import pytest

from api.client import ApiError, BookingClient, WaitingRoom
from api.http.schemas import ReleasedView
from realtime import protocol as p
from tests.api.helpers import assert_error, event_body, new_key, outcome_of, prompted, queued_in

pytestmark = pytest.mark.anyio


async def test_the_holder_releases_and_the_next_in_line_gets_the_seats(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """One hold at a time: A is prompted, B waits. Without A's token the release is refused
    (401, 403 with B's own token later) and changes nothing; with it, A is told ``expired``,
    B is prompted for the same seats, and releasing again is 409 hold_expired."""
    event = await client.create_event(event_body(max_active_holds=1))
    url = event.waitroom_url
    async with WaitingRoom.connect(url) as a, WaitingRoom.connect(url) as b:
        await queued_in(a, "rel-a", 2, "A")
        held = await prompted(a)
        await queued_in(b, "rel-b", 2, "A")
        path = f"/v1/holds/{held.hold_id}"
        assert_error(await http.delete(path), 401, "unauthorized")
        assert_error(await http.delete(path, headers={"Authorization": "Bearer forged"}), 401)
        before = next(s for s in (await client.event(event.id)).sections if s.id == "A")
        assert (before.held, before.free) == (2, 6)

        released = await client.release(held.hold_id, held.hold_token)
        assert released == ReleasedView(hold_id=held.hold_id, status="released")
        assert isinstance(await outcome_of(a), p.Expired)
        offered = await prompted(b)
        assert [(s.row, s.number) for s in offered.seats] == [(s.row, s.number) for s in held.seats]
        other = await http.delete(
            f"/v1/holds/{offered.hold_id}", headers={"Authorization": f"Bearer {held.hold_token}"}
        )
        assert_error(other, 403, "forbidden")
        again = await http.delete(path, headers={"Authorization": f"Bearer {held.hold_token}"})
        assert_error(again, 409, "hold_expired")
        with pytest.raises(ApiError) as late:
            await client.pay(held.hold_id, held.hold_token, "tok_visa", new_key())
        assert late.value.status == 409, late.value
    assert (await client.event(event.id)).admitted == 2


async def test_a_paid_hold_cannot_be_released(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """Once paid, the seats are sold: releasing is 409 and nothing changes."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await queued_in(room, "rel-paid", 1)
        held = await prompted(room)
        await client.pay(held.hold_id, held.hold_token, "tok_visa", new_key())
        resp = await http.delete(
            f"/v1/holds/{held.hold_id}", headers={"Authorization": f"Bearer {held.hold_token}"}
        )
        assert_error(resp, 409, "hold_expired")
    assert sum(s.sold for s in (await client.event(event.id)).sections) == 1
