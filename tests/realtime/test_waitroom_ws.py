"""The waiting-room WebSocket: joining, resuming, and the errors it answers, on the real system."""

from __future__ import annotations

import anyio
import pytest
from websockets.exceptions import ConnectionClosed

from api.client import BookingClient, WaitingRoom, WaitroomError
from api.client.ws import WsConnection
from api.wiring import Services
from realtime import protocol as p
from tests.api.helpers import (
    FUTURE,
    STEP_S,
    event_body,
    expect_error,
    new_key,
    outcome_of,
    prompted,
    queued_in,
    recv,
    refused,
    sign,
    ws_connect,
)
from waitroom.tokens import TokenKind

pytestmark = pytest.mark.anyio


async def _assert_closes(ws: WsConnection) -> None:
    """The server ends the connection (no further message arrives)."""
    with pytest.raises(ConnectionClosed):
        message = await recv(ws, wait_s=5)
        pytest.fail(f"expected the connection to close, got {message!r}")


@pytest.mark.parametrize(
    "path", ["/nope", "/v1/events", "/v1/events/some-event/lobby", "/v1/events/a.b/waitroom"]
)
async def test_unknown_path_is_error_not_found(services: Services, path: str) -> None:
    """A connection to a path other than /v1/events/{id}/waitroom gets error not_found, then closes."""
    async with ws_connect(f"ws://127.0.0.1:{services.ws_port}{path}") as ws:
        try:
            await expect_error(ws, "not_found", wait_s=5)
        except ConnectionClosed as exc:
            pytest.fail(f"the server closed the connection without an error message: {exc}")
        await _assert_closes(ws)


async def test_unknown_event_is_error_not_found(services: Services) -> None:
    """A connection to the waiting room of an unknown event gets error not_found, then closes."""
    url = f"ws://127.0.0.1:{services.ws_port}/v1/events/evnosuchevent/waitroom"
    async with ws_connect(url) as ws:
        error = await expect_error(ws, "not_found", wait_s=5)
        assert "evnosuchevent" in error.message
        await _assert_closes(ws)


async def test_invalid_json_is_error_invalid_message_and_socket_stays_usable(
    client: BookingClient,
) -> None:
    """Malformed frames get error invalid_message; the same socket can still join afterwards."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        for frame in ["{not json", "", "null", "[]", '{"type": "join"}', '{"type": "dance"}']:
            await room.ws.send(frame)
            await expect_error(room.ws, "invalid_message")
        await room.ws.send(b"\x00\xff binary junk")
        await expect_error(room.ws, "binary_frame")  # the protocol is text frames
        queued = await queued_in(room, "client-1")
        assert queued.ticket == 1
    assert (await client.event(event.id)).queue_length == 1


async def test_invalid_utf8_inside_a_json_string_is_refused(
    client: BookingClient,
) -> None:
    """A frame whose JSON string holds invalid UTF-8 can only be binary: it gets binary_frame
    (a text frame must be UTF-8); the socket stays usable."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await room.ws.send(b'{"type": "join", "quantity": 1, "client_id": "c\xff"}')
        await expect_error(room.ws, "binary_frame")
        queued = await queued_in(room, "client-1")
        assert queued.ticket == 1


async def test_unknown_field_is_error_invalid_message(client: BookingClient) -> None:
    """A join carrying an unknown field is refused with invalid_message and takes no place."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    async with ws_connect(event.waitroom_url) as ws:
        await ws.send('{"type": "join", "quantity": 1, "client_id": "c1", "vip": true}')
        await expect_error(ws, "invalid_message")
    assert (await client.event(event.id)).queue_length == 0


async def test_quantity_above_max_per_order_is_invalid_quantity(client: BookingClient) -> None:
    """Joining for more seats than max_per_order gets invalid_quantity; max_per_order itself is fine."""
    event = await client.create_event(event_body(opens_at=FUTURE, max_per_order=4))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        error = await refused(room, p.Join(quantity=5, client_id="client-1"), "invalid_quantity")
        assert "4" in error.message
        assert (await client.event(event.id)).queue_length == 0
        queued = await queued_in(room, "client-1", quantity=4)
        assert queued.ticket == 1


async def test_unknown_section_is_invalid_section(client: BookingClient) -> None:
    """Joining for a section the event does not have gets invalid_section and takes no place."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        join = p.Join(quantity=1, client_id="client-1", section="Balcony")
        error = await refused(room, join, "invalid_section")
        assert "Balcony" in error.message
        assert (await client.event(event.id)).queue_length == 0
        queued = await queued_in(room, "client-1", section="GA")
        assert queued.ticket == 1


async def test_second_join_on_same_socket_is_already_joined(client: BookingClient) -> None:
    """A second join (or a resume) on a socket that has a place gets already_joined; no new place."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        queued = await queued_in(room, "client-1")
        await refused(room, p.Join(quantity=1, client_id="client-2"), "already_joined")
        await refused(room, p.Resume(token=queued.token), "already_joined")
        assert (await client.event(event.id)).queue_length == 1


async def test_resume_with_bad_token_is_invalid_token(client: BookingClient) -> None:
    """Resuming with a forged, expired, wrong-kind or other-event token gets invalid_token."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    other = await client.create_event(event_body(opens_at=FUTURE))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        bad_tokens = {
            "garbage": "garbage",
            "forged": sign(event.id, 1, kind=TokenKind.QUEUE, secret="forger-secret-0123456789"),
            "expired": sign(event.id, 1, kind=TokenKind.QUEUE, ttl_s=-10),
            "hold-kind": sign(event.id, 1, kind=TokenKind.HOLD),
            "other-event": sign(other.id, 1, kind=TokenKind.QUEUE),
        }
        for name, token in bad_tokens.items():
            with anyio.fail_after(STEP_S), pytest.raises(WaitroomError) as refused:
                await room.resume(token)
            assert refused.value.code == "invalid_token", name
            assert refused.value.message, name
        queued = await queued_in(room, "client-1")  # the socket still works
        assert queued.ticket == 1
    assert (await client.event(event.id)).queue_length == 1


async def test_resume_while_waiting_keeps_the_place(client: BookingClient) -> None:
    """Resuming on a new connection answers queued with the same ticket and adds no place."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await queued_in(room, "client-0")
    async with WaitingRoom.connect(event.waitroom_url) as room:
        original = await queued_in(room, "client-1")
    async with WaitingRoom.connect(event.waitroom_url) as room:
        with anyio.fail_after(STEP_S):
            again = await room.resume(original.token)
    assert again.ticket == original.ticket == 2
    assert again.position == original.position
    assert again.token  # a fresh token to resume with next time
    assert (await client.event(event.id)).queue_length == 2


async def test_resume_delivers_the_prompt_missed_while_away(client: BookingClient) -> None:
    """A client admitted while disconnected resumes: queued (same ticket), then its prompt."""
    event = await client.create_event(event_body())
    assert (await client.pause(event.id)).state == "paused"
    async with WaitingRoom.connect(event.waitroom_url) as room:
        original = await queued_in(room, "away-client", 2, "A")
    # Disconnected. Reopen admission and wait until a later client is admitted: admission
    # goes in join order, so the away client's seats are held by then.
    assert (await client.resume(event.id)).state == "open"
    async with WaitingRoom.connect(event.waitroom_url) as room:
        later = await queued_in(room, "later-client", 1, "GA")
        assert later.ticket == original.ticket + 1
        await prompted(room)

    async with WaitingRoom.connect(event.waitroom_url) as room:
        with anyio.fail_after(STEP_S):
            queued = await room.resume(original.token)
        assert queued.ticket == original.ticket
        prompt = await prompted(room)
        assert prompt.hold_id == f"{event.id}.{original.ticket}"
        assert [(s.section, s.row, s.number) for s in prompt.seats] == [
            ("A", "R1", 1),
            ("A", "R1", 2),
        ]
        assert prompt.amount_cents == 5_000
        paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("resumed"))
        assert paid.status == "confirmed"
        assert await outcome_of(room) == p.Confirmed(booking_id=paid.id)


async def test_same_client_id_gets_the_same_ticket(client: BookingClient) -> None:
    """The same client_id joining on two connections gets the same ticket; the line grows by one."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    url = event.waitroom_url
    async with WaitingRoom.connect(url) as a, WaitingRoom.connect(url) as b:
        first = await queued_in(a, "same-client", 2)
        second = await queued_in(b, "same-client", 2)
    assert second.ticket == first.ticket == 1
    assert (await client.event(event.id)).queue_length == 1


async def test_prompt_then_confirmed_after_payment(client: BookingClient) -> None:
    """A joined client of an open event is prompted with held seats and told confirmed once paid."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        queued = await queued_in(room, "client-1", 3, "GA")
        assert queued.token
        prompt = await prompted(room)
        assert [(s.section, s.row, s.number) for s in prompt.seats] == [
            ("GA", "", 1),
            ("GA", "", 2),
            ("GA", "", 3),
        ]
        assert prompt.amount_cents == 3_000
        assert prompt.expires_ms > 0
        paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("ws"))
        assert paid.status == "confirmed"
        assert await outcome_of(room) == p.Confirmed(booking_id=paid.id)
