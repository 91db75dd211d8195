"""POST /v1/bookings/{id}/cancel: the buyer or an admin cancels a booking (or some tickets),
is refunded, and the seats go back to the line."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest

from api.client import ApiError, BookingClient, WaitingRoom
from api.http.schemas import BookingView
from api.wiring import Services
from realtime import protocol as p
from tests.api.helpers import assert_error, event_body, new_key, outcome_of, prompted, queued_in
from tests.conftest import admin_headers
from waitroom.records import EventState

pytestmark = pytest.mark.anyio


async def buy(
    client: BookingClient, url: str, quantity: int, section: str = "A"
) -> tuple[BookingView, str]:
    """One buyer joins, is prompted and pays: the booking and its hold token."""
    async with WaitingRoom.connect(url) as room:
        await queued_in(room, "buyer-" + uuid.uuid4().hex[:8], quantity, section)
        held = await prompted(room)
        booking = await client.pay(held.hold_id, held.hold_token, "tok_visa", new_key())
        assert isinstance(await outcome_of(room), p.Confirmed)
    return booking, held.hold_token


async def seats(client: BookingClient, event_id: str, section: str = "A") -> tuple[int, int, int]:
    """(free, held, sold) of a section, after checking every invariant of the event holds."""
    audit = await client.audit(event_id, settled=True)
    assert audit.ok, audit.problems
    counts = next(s for s in (await client.event(event_id)).sections if s.id == section)
    return counts.free, counts.held, counts.sold


async def test_the_buyer_cancels_the_whole_booking(client: BookingClient) -> None:
    """With the hold's token: 200 refunded (the tickets' prices), the booking cancelled with
    no live ticket, the seats free again."""
    event = await client.create_event(event_body())
    booking, token = await buy(client, event.waitroom_url, 2)
    assert await seats(client, event.id) == (6, 0, 2)
    done = await client.cancel(booking.id, new_key("cx"), hold_token=token)
    assert (done.status, done.amount_cents, done.booking_status) == ("refunded", 5_000, "cancelled")
    assert done.booking_id == booking.id and done.refund_reference
    assert sorted(done.tickets) == sorted(t.code for t in booking.tickets)
    after = await client.booking(booking.id, hold_token=token)
    assert after.status == "cancelled" and not any(t.live for t in after.tickets)
    assert await seats(client, event.id) == (8, 0, 0)


async def test_a_partial_cancellation_and_the_refusals_that_follow(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """An admin cancels one of three tickets: the booking stays confirmed with two; the same
    ticket again (another key) is 409 already_cancelled, a foreign code 409
    ticket_not_in_booking; the rest, then anything more, cancels the booking / is 409."""
    event = await client.create_event(event_body())
    booking, _ = await buy(client, event.waitroom_url, 3)
    one = booking.tickets[1].code
    part = await client.cancel(booking.id, new_key(), tickets=[one])
    assert (part.tickets, part.amount_cents, part.booking_status) == ([one], 2_500, "confirmed")
    live = [t.code for t in (await client.booking(booking.id)).tickets if t.live]
    assert len(live) == 2 and one not in live
    assert await seats(client, event.id) == (6, 0, 2)

    path = f"/v1/bookings/{booking.id}/cancel"

    async def post(body: object) -> httpx.Response:
        headers = {**admin_headers(), "Idempotency-Key": new_key()}
        return await http.post(path, json=body, headers=headers)

    assert_error(await post({"tickets": [one]}), 409, "already_cancelled")
    assert_error(await post({"tickets": ["nope"]}), 409, "ticket_not_in_booking")
    rest = await client.cancel(booking.id, new_key())
    assert sorted(rest.tickets) == sorted(live) and rest.booking_status == "cancelled"
    assert_error(await post({}), 409, "already_cancelled")
    assert await seats(client, event.id) == (8, 0, 0)


async def test_a_replay_answers_the_same_bytes_and_refunds_once(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """The same Idempotency-Key again: the same status and byte-identical body, no second
    refund (the seats are not freed twice); with other tickets, 409 idempotency_key_reused."""
    event = await client.create_event(event_body())
    booking, token = await buy(client, event.waitroom_url, 2)
    path = f"/v1/bookings/{booking.id}/cancel"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": new_key()}
    first = await http.post(path, headers=headers)  # no body: the whole booking
    assert first.status_code == 200, first.text
    second = await http.post(path, headers=headers)
    assert (second.status_code, second.content) == (200, first.content)
    other = await http.post(path, json={"tickets": [booking.tickets[0].code]}, headers=headers)
    assert_error(other, 409, "idempotency_key_reused")
    assert await seats(client, event.id) == (8, 0, 0)


async def test_credentials_keys_and_bodies_are_checked_before_anything_changes(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """404 unknown booking; 401 without or with a forged token; 403 another hold's token;
    400 no Idempotency-Key or a body that is not one; 422 an empty or repeated ticket list.
    The booking is untouched after all of them."""
    event = await client.create_event(event_body())
    booking, token = await buy(client, event.waitroom_url, 2)
    _, other_token = await buy(client, event.waitroom_url, 1)
    path = f"/v1/bookings/{booking.id}/cancel"
    key = {"Idempotency-Key": new_key()}
    mine = {"Authorization": f"Bearer {token}", **key}
    code = booking.tickets[0].code
    assert_error(await http.post("/v1/bookings/bknope/cancel", headers=mine), 404, "not_found")
    assert_error(await http.post(path, headers=key), 401, "unauthorized")
    forged = {"Authorization": "Bearer forged", **key}
    assert_error(await http.post(path, headers=forged), 401, "unauthorized")
    theirs = {"Authorization": f"Bearer {other_token}", **key}
    assert_error(await http.post(path, headers=theirs), 403, "forbidden")
    no_key = {"Authorization": f"Bearer {token}"}
    assert_error(await http.post(path, headers=no_key), 400, "invalid_request")
    for bad in (b"[", b'{"tickets": "all"}', b'{"tickets": [1]}', b'{"extra": 1}'):
        assert_error(await http.post(path, content=bad, headers=mine), 400, "invalid_request")
    for body in ({"tickets": []}, {"tickets": [code, code]}):
        assert_error(await http.post(path, json=body, headers=mine), 422, "unprocessable")
    after = await client.booking(booking.id)
    assert after.status == "confirmed" and all(t.live for t in after.tickets)
    assert await seats(client, event.id) == (5, 0, 3)


async def test_the_refund_policy_is_shown_and_binds_buyers(client: BookingClient) -> None:
    """buyer_refunds false: GET /v1/events/{id} says so, the buyer is 409 refund_not_allowed,
    the admin cancels. A deadline passed refuses the buyer the same way."""
    closed = await client.create_event(event_body(buyer_refunds=False))
    view = await client.event(closed.id)
    assert (view.buyer_refunds, view.refund_until) == (False, None)
    booking, token = await buy(client, closed.waitroom_url, 1)
    with pytest.raises(ApiError) as refused:
        await client.cancel(booking.id, new_key(), hold_token=token)
    assert (refused.value.status, refused.value.code) == (409, "refund_not_allowed")
    assert (await client.cancel(booking.id, new_key())).status == "refunded"

    until = datetime.now(UTC) - timedelta(minutes=5)
    late = await client.create_event(event_body(refund_until=until.isoformat()))
    view = await client.event(late.id)
    assert view.buyer_refunds and view.refund_until == until.isoformat()
    booking, token = await buy(client, late.waitroom_url, 1)
    with pytest.raises(ApiError) as refused:
        await client.cancel(booking.id, new_key(), hold_token=token)
    assert (refused.value.status, refused.value.code) == (409, "refund_not_allowed")


async def test_cancelled_seats_go_to_a_buyer_still_waiting(client: BookingClient) -> None:
    """Three places: A buys two, C holds the last; B, wanting one, waits behind the open hold.
    A cancels: B is prompted at once for a returned place and buys it."""
    event = await client.create_event(
        event_body(sections=[{"id": "GA", "price_cents": 1_000, "capacity": 3}])
    )
    url = event.waitroom_url
    booking, token = await buy(client, url, 2, "GA")
    async with WaitingRoom.connect(url) as c, WaitingRoom.connect(url) as b:
        await queued_in(c, "holder-c", 1, "GA")
        await prompted(c)
        await queued_in(b, "waiting-b", 1, "GA")
        await client.cancel(booking.id, new_key(), hold_token=token)
        offer = await prompted(b)
        [seat] = offer.seats
        assert seat.number in {t.number for t in booking.tickets}
        await client.pay(offer.hold_id, offer.hold_token, "tok_visa", new_key())
        assert isinstance(await outcome_of(b), p.Confirmed)
    assert await seats(client, event.id, "GA") == (1, 1, 1)  # C still holds its place


async def test_a_sold_out_event_opens_again_when_seats_come_back(
    services: Services, client: BookingClient
) -> None:
    """Two places, both bought: the next buyer is told sold_out and the event is sold out;
    a cancellation opens it again (the waiting room's channel too: new joiners wait as in an
    open sale) and a new buyer gets the seats."""
    event = await client.create_event(
        event_body(sections=[{"id": "GA", "price_cents": 1_000, "capacity": 2}])
    )
    booking, _ = await buy(client, event.waitroom_url, 2, "GA")
    async with WaitingRoom.connect(event.waitroom_url) as late:
        await late.join("too-late", 1, "GA")
        assert isinstance(await outcome_of(late), p.SoldOut)
    assert (await client.event(event.id)).state == "sold_out"
    channel = await services.hub.channel(event.id)
    assert channel.state == EventState.SOLD_OUT
    await client.cancel(booking.id, new_key())
    assert (await client.event(event.id)).state == "open"
    with anyio.fail_after(20):
        while channel.state != EventState.OPEN:  # noqa: ASYNC110 (read by the hub's ticker)
            await anyio.sleep(0.1)
    again, _ = await buy(client, event.waitroom_url, 2, "GA")
    assert again.status == "confirmed"
    assert await seats(client, event.id, "GA") == (0, 0, 2)


async def test_an_admin_cancels_the_whole_event(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """POST /v1/events/{id}/cancel (admin only): 202, the sale closed; the worker refunds every
    booking, the progress reaching "refunded 2 of 2" and done; asking again changes nothing.
    The progress of an event not being cancelled is 404; without the key 401."""
    event = await client.create_event(event_body())
    first, _ = await buy(client, event.waitroom_url, 2)
    second, _ = await buy(client, event.waitroom_url, 1)
    path = f"/v1/events/{event.id}"
    assert_error(await http.get(f"{path}/cancellation", headers=admin_headers()), 404)
    assert_error(await http.post(f"{path}/cancel"), 401, "unauthorized")
    assert_error(await http.post("/v1/events/evnope/cancel", headers=admin_headers()), 404)

    started = await client.cancel_event(event.id)
    assert started.status in ("running", "done") and started.bookings == 2
    assert (await client.event(event.id)).state == "closed"
    with anyio.fail_after(30):
        while (progress := await client.event_cancellation(event.id)).status != "done":  # noqa: ASYNC110
            await anyio.sleep(0.2)
    assert (progress.bookings, progress.refunded, progress.pending) == (2, 2, 0)
    assert progress.refunded_cents == 3 * 2_500
    for booking in (first, second):
        assert (await client.booking(booking.id)).status == "cancelled"
    assert await seats(client, event.id) == (8, 0, 0)
    assert await client.cancel_event(event.id) == progress
