"""The Python client against the running system: a whole buy, and each error as its typed exception."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import msgspec
import pytest

from api.client import AlreadyCheckedIn, ApiError, BookingClient, WaitingRoom, WaitroomError
from api.http.schemas import BookingView
from api.wiring import Services
from realtime import protocol as p
from tests.api.helpers import event_body, new_key

pytestmark = pytest.mark.anyio

WAIT_S = 20  # generous: a busy machine slows the system, never changes what it says


def _stored(booking: BookingView) -> BookingView:
    """The booking without its ``created_at``: the first answer's time is the server's
    clock, a later read's is PostgreSQL's, a few milliseconds apart."""
    return msgspec.structs.replace(booking, created_at="")


async def test_a_full_buy(client: BookingClient) -> None:
    """Create, join, prompt, pay, confirmed, read the booking (as its holder and as admin)."""
    assert await client.ready()
    created = await client.create_event(event_body())
    with anyio.fail_after(WAIT_S):
        async with WaitingRoom.connect(created.waitroom_url) as room:
            queued = await room.join("buyer-1", quantity=2, section="A")
            assert isinstance(queued, p.Queued) and queued.ticket == 1
            # Seats were free at once: at most told it is at the head before the prompt.
            assert {u.position async for u in room.until_prompt()} <= {0}
            prompt = room.prompt
            assert prompt is not None and prompt.hold_id == f"{created.id}.{queued.ticket}"
            key = new_key("client")
            booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
            outcome = await room.outcome()
    assert outcome == p.Confirmed(booking_id=booking.id)
    assert (booking.event_id, booking.hold_id, booking.status) == (
        created.id,
        prompt.hold_id,
        "confirmed",
    )
    assert booking.amount_cents == prompt.amount_cents == 5_000
    seats = [(t.section, t.row, t.number) for t in booking.tickets]
    assert seats == [(s.section, s.row, s.number) for s in prompt.seats]
    replay = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
    assert replay == booking  # the same answer: its time and booking token are the record's
    assert _stored(await client.booking(booking.id, hold_token=prompt.hold_token)) == _stored(
        booking
    )
    assert _stored(await client.booking(booking.id)) == _stored(booking)  # the admin key

    view = await client.event(created.id)
    assert (view.id, view.state, view.active_holds, view.admitted) == (created.id, "open", 0, 1)
    section = next(s for s in view.sections if s.id == "A")
    assert (section.free, section.held, section.sold) == (6, 0, 2)
    audit = await client.audit(created.id, settled=True)
    assert audit.ok and audit.sold == audit.sold_in_postgres == 2
    assert "booking_" in await client.metrics()


async def test_tickets_through_the_client(client: BookingClient) -> None:
    """Pay with an address; read the booking with its booking token; the event's ticket key,
    a ticket's QR code and the PDF; a forged token is refused with ApiError 401."""
    created = await client.create_event(event_body())
    with anyio.fail_after(WAIT_S):
        async with WaitingRoom.connect(created.waitroom_url) as room:
            await room.join("buyer-t", quantity=2, section="A")
            async for _ in room.until_prompt():
                pass
            prompt = room.prompt
            assert prompt is not None
            booking = await client.pay(
                prompt.hold_id, prompt.hold_token, "tok_visa", new_key(), email="t@example.com"
            )
    assert booking.currency == "EUR" and booking.booking_token
    read = await client.booking(booking.id, hold_token=booking.booking_token)
    assert read == booking
    key = await client.ticket_key(created.id)
    assert (key.event_id, key.algorithm, len(key.public_key)) == (created.id, "Ed25519", 43)
    svg = await client.ticket_qr(booking.id, booking.tickets[0].code, token=booking.booking_token)
    assert svg.startswith("<svg")
    assert (await client.tickets_pdf(booking.id)).startswith(b"%PDF-")  # the admin key
    with pytest.raises(ApiError) as refused:
        await client.booking(booking.id, hold_token=prompt.hold_token.replace(".", "x", 1))
    assert refused.value.status == 401


async def test_positions_on_the_way_and_a_resumed_place(client: BookingClient) -> None:
    """One hold at a time: the third buyer sees its position move while it waits, resumes its
    place on a new connection, and is prompted once the second buyer pays."""
    created = await client.create_event(event_body(max_active_holds=1))
    caps = await client.set_admission(created.id, admissions_per_minute=0)
    assert (caps.max_active_holds, caps.admissions_per_minute) == (1, 0)
    url = created.waitroom_url
    with anyio.fail_after(WAIT_S):
        async with WaitingRoom.connect(url) as first, WaitingRoom.connect(url) as second:
            assert isinstance(await first.join("buyer-1"), p.Queued)
            # At the head: a position round may tell it so before admission prompts it.
            assert {u.position async for u in first.until_prompt()} <= {0}
            assert isinstance(await second.join("buyer-2"), p.Queued)
            async with WaitingRoom.connect(url) as third:
                queued = await third.join("buyer-3")
                assert isinstance(queued, p.Queued) and queued.position == 2
            async with WaitingRoom.connect(url) as third:
                resumed = await third.resume(queued.token)
                assert (resumed.ticket, resumed.position) == (queued.ticket, 2)
                assert first.prompt is not None
                await client.pay(
                    first.prompt.hold_id, first.prompt.hold_token, "tok_visa", new_key()
                )
                positions = []
                async for update in third.until_prompt():
                    positions.append(update.position)
                    if second.prompt is None:  # the line moved: the second buyer holds seats
                        async for _ in second.until_prompt():
                            pass
                        assert second.prompt is not None
                        await client.pay(
                            second.prompt.hold_id, second.prompt.hold_token, "tok_visa", new_key()
                        )
                assert positions and positions[0] == 1
                assert third.prompt is not None
                assert third.prompt.hold_id == f"{created.id}.{queued.ticket}"
            assert isinstance(await second.outcome(), p.Confirmed)


async def test_waiting_can_stop_at_an_update_and_go_on_later(client: BookingClient) -> None:
    """A buyer that stops at its first position update (closing the stream of updates) and
    waits again later is still prompted once the seats ahead of it are paid for."""
    created = await client.create_event(event_body(max_active_holds=1))
    url = created.waitroom_url
    with anyio.fail_after(WAIT_S):
        async with WaitingRoom.connect(url) as first, WaitingRoom.connect(url) as second:
            assert isinstance(await first.join("buyer-1"), p.Queued)
            # At the head: a position round may tell it so before admission prompts it.
            assert {u.position async for u in first.until_prompt()} <= {0}
            assert isinstance(await second.join("buyer-2"), p.Queued)
            async with aclosing(second.until_prompt()) as updates:
                update = await anext(updates)
            assert update.position == 1 and second.prompt is None
            assert first.prompt is not None
            await client.pay(first.prompt.hold_id, first.prompt.hold_token, "tok_visa", new_key())
            later = [u.position async for u in second.until_prompt()]
            assert all(position <= 1 for position in later), later
            assert second.prompt is not None
            assert second.prompt.hold_id == f"{created.id}.2"


async def test_an_unauthorised_call_is_a_401(services: Services, client: BookingClient) -> None:
    """No admin key, or a wrong one: ApiError 401 unauthorized."""
    created = await client.create_event(event_body())
    async with BookingClient(services.http_url) as anonymous:
        with pytest.raises(ApiError) as refused:
            await anonymous.create_event(event_body())
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        assert refused.value.message
    async with BookingClient(services.http_url, admin_key="not-the-key") as wrong:
        with pytest.raises(ApiError) as refused:
            await wrong.pause(created.id)
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert (await client.event(created.id)).state != "paused"


async def test_an_unknown_event_or_booking_is_a_404(client: BookingClient) -> None:
    """An event or booking that does not exist: ApiError 404 not_found."""
    with pytest.raises(ApiError) as missing:
        await client.event("evnosuchevent")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as missing:
        await client.booking("bknosuchbooking")
    assert (missing.value.status, missing.value.code) == (404, "not_found")


async def test_a_state_change_not_allowed_is_a_409(client: BookingClient) -> None:
    """Pausing a paused event, or resuming an open one: ApiError 409 invalid_state."""
    created = await client.create_event(event_body())
    assert (await client.pause(created.id)).state == "paused"
    with pytest.raises(ApiError) as conflict:
        await client.pause(created.id)
    assert (conflict.value.status, conflict.value.code) == (409, "invalid_state")
    assert (await client.event(created.id)).state == "paused"
    assert (await client.resume(created.id)).state == "open"  # opens_at is in the past
    with pytest.raises(ApiError) as conflict:
        await client.resume(created.id)
    assert (conflict.value.status, conflict.value.code) == (409, "invalid_state")
    assert "open" in conflict.value.message


async def test_bad_input_is_a_400(client: BookingClient) -> None:
    """An invalid event spec or admission cap: ApiError 400 invalid_request, nothing changed."""
    with pytest.raises(ApiError) as invalid:
        await client.create_event(event_body(max_per_order=0))
    assert (invalid.value.status, invalid.value.code) == (400, "invalid_request")
    assert "max_per_order" in invalid.value.message
    created = await client.create_event(event_body(max_active_holds=7))
    with pytest.raises(ApiError) as invalid:
        await client.set_admission(created.id, max_active_holds=0)
    assert (invalid.value.status, invalid.value.code) == (400, "invalid_request")
    assert (await client.event(created.id)).max_active_holds == 7


async def test_a_declined_card_is_a_402_and_a_refused_join_a_waitroom_error(
    client: BookingClient,
) -> None:
    """tok_declined: ApiError 402 payment_declined, the hold stays payable; a join for more
    seats than an order allows: WaitroomError invalid_quantity."""
    created = await client.create_event(event_body())
    with anyio.fail_after(WAIT_S):
        async with WaitingRoom.connect(created.waitroom_url) as room:
            with pytest.raises(WaitroomError) as refused:
                await room.join("greedy", quantity=5)
            assert refused.value.code == "invalid_quantity" and refused.value.message
            assert isinstance(await room.join("buyer-1"), p.Queued)
            async for _ in room.until_prompt():
                pass
            prompt = room.prompt
            assert prompt is not None
            with pytest.raises(ApiError) as declined:
                await client.pay(prompt.hold_id, prompt.hold_token, "tok_declined", new_key())
            assert (declined.value.status, declined.value.code) == (402, "payment_declined")
            booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())
            assert await room.outcome() == p.Confirmed(booking_id=booking.id)


async def test_list_release_and_close(client: BookingClient) -> None:
    """The event is listed; a holder gives its seats back (told ``expired``, a second release
    is a 409); closing ends the sale, and closing again is a 409."""
    created = await client.create_event(event_body())
    listed = await client.events(limit=100)
    assert created.id in [e.id for e in listed.events]
    with anyio.fail_after(WAIT_S):
        async with WaitingRoom.connect(created.waitroom_url) as room:
            await room.join("buyer-1", quantity=2)
            async for _ in room.until_prompt():
                pass
            prompt = room.prompt
            assert prompt is not None
            released = await client.release(prompt.hold_id, prompt.hold_token)
            assert released.hold_id == prompt.hold_id
            assert isinstance(await room.outcome(), p.Expired)
    with pytest.raises(ApiError) as again:
        await client.release(prompt.hold_id, prompt.hold_token)
    assert again.value.status == 409
    view = await client.event(created.id)
    assert (view.active_holds, sum(s.held for s in view.sections)) == (0, 0)
    closed = await client.close(created.id)
    assert closed.state == (await client.event(created.id)).state != "open"
    with pytest.raises(ApiError) as conflict:
        await client.close(created.id)
    assert (conflict.value.status, conflict.value.code) == (409, "invalid_state")


async def test_cancel_a_booking_and_an_event(client: BookingClient) -> None:
    """cancel (as the holder, some tickets, then the rest; a replay answers the same; a refusal
    is an ApiError), then cancel_event and event_cancellation on another event."""
    created = await client.create_event(event_body())
    with anyio.fail_after(WAIT_S):
        async with WaitingRoom.connect(created.waitroom_url) as room:
            await room.join("canceller-1", quantity=2, section="A")
            async with aclosing(room.until_prompt()) as updates:
                async for _ in updates:
                    pass
            prompt = room.prompt
            assert prompt is not None
            booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())
    first, second = (t.code for t in booking.tickets)
    key = new_key("cancel")
    part = await client.cancel(booking.id, key, tickets=[first], hold_token=prompt.hold_token)
    assert (part.status, part.tickets, part.booking_status) == ("refunded", [first], "confirmed")
    again = await client.cancel(booking.id, key, tickets=[first], hold_token=prompt.hold_token)
    assert again == part
    with pytest.raises(ApiError) as refused:
        await client.cancel(booking.id, new_key(), tickets=[first])
    assert (refused.value.status, refused.value.code) == (409, "already_cancelled")
    rest = await client.cancel(booking.id, new_key())  # the admin, every live ticket
    assert (rest.tickets, rest.booking_status) == ([second], "cancelled")

    other = await client.create_event(event_body())
    with pytest.raises(ApiError) as none:
        await client.event_cancellation(other.id)
    assert none.value.status == 404
    started = await client.cancel_event(other.id)
    assert (started.event_id, started.bookings, started.refunded) == (other.id, 0, 0)
    assert (await client.event(other.id)).state == "closed"
    assert (await client.event_cancellation(other.id)).event_id == other.id


async def test_the_door_through_the_client(client: BookingClient) -> None:
    """Staff keys made, listed and revoked; a check-in answers the seat, a second scan raises
    ``AlreadyCheckedIn`` with the first scan's gate and time; a revoked key is a 401; the
    counts; a bad gate is a 422."""
    created = await client.create_event(event_body())
    with anyio.fail_after(WAIT_S):
        async with WaitingRoom.connect(created.waitroom_url) as room:
            await room.join("door-1", quantity=1)
            async for _ in room.until_prompt():
                pass
            assert room.prompt is not None
            booking = await client.pay(
                room.prompt.hold_id, room.prompt.hold_token, "tok_visa", new_key()
            )
    staff = await client.create_staff_key(created.id, "Main door")
    assert [k.label for k in (await client.staff_keys(created.id)).keys] == ["Main door"]
    ticket = booking.tickets[0]
    done = await client.checkin(staff.key, ticket.code, "Main")
    assert (done.section, done.row, done.number, done.gate) == (
        ticket.section,
        ticket.row,
        ticket.number,
        "Main",
    )
    with pytest.raises(AlreadyCheckedIn) as again:
        await client.checkin(staff.key, ticket.code, "Side")
    assert (again.value.before.gate, again.value.before.checked_in_at) == (
        "Main",
        done.checked_in_at,
    )
    counts = await client.checkins(created.id)
    assert (counts.live_tickets, counts.checked_in) == (1, 1)
    with pytest.raises(ApiError) as bad:
        await client.checkin(staff.key, ticket.code, "")
    assert (bad.value.status, bad.value.code) == (422, "unprocessable")
    await client.revoke_staff_key(created.id, staff.id)
    with pytest.raises(ApiError) as revoked:
        await client.checkin(staff.key, ticket.code, "Main")
    assert revoked.value.status == 401


async def test_webhooks_through_the_client(client: BookingClient) -> None:
    """A webhook registered (its secret in that answer only), listed without it, redelivered
    (no change while it is not dead), removed; an unknown one is a 404, a bad URL a 400."""
    created = await client.create_event(event_body())
    hook = await client.create_webhook(created.id, "https://integrator.example/hook")
    assert hook.secret.startswith("whsec_") and hook.state == "active"
    [listed] = (await client.webhooks(created.id)).webhooks
    assert (listed.id, listed.url, listed.state) == (hook.id, hook.url, "active")
    assert not hasattr(listed, "secret")
    assert (await client.redeliver_webhook(created.id, hook.id)).state == "active"
    assert (await client.remove_webhook(created.id, hook.id)).state == "removed"
    assert (await client.webhooks(created.id)).webhooks == []
    with pytest.raises(ApiError) as unknown:
        await client.remove_webhook(created.id, hook.id)
    assert unknown.value.status == 404
    with pytest.raises(ApiError) as bad:
        await client.create_webhook(created.id, "ftp://integrator.example/hook")
    assert (bad.value.status, bad.value.code) == (400, "invalid_request")
