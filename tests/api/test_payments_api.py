"""Paying for holds over WS + REST: success, idempotency, declines, credentials, expiry."""

from __future__ import annotations

from datetime import datetime

import anyio
import httpx
import pytest

from api.client import ApiError, BookingClient, WaitingRoom
from api.http.schemas import BookingView
from api.wiring import Services, open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.helpers import (
    FUTURE,
    assert_error,
    count_bookings,
    event_body,
    gateway_ledger,
    new_key,
    outcome_of,
    pay,
    prompted,
    queued_in,
    sign,
)
from tests.conftest import admin_client, admin_headers, make_settings

pytestmark = pytest.mark.anyio


async def _hold(
    room: WaitingRoom, client_id: str, quantity: int = 2, section: str = "A"
) -> tuple[p.Queued, p.Prompt]:
    """Join and wait for the prompt: the client then holds seats."""
    queued = await queued_in(room, client_id, quantity, section)
    return queued, await prompted(room)


def _seats(booking: BookingView) -> list[tuple[str, str, int]]:
    return [(t.section, t.row, t.number) for t in booking.tickets]


def _prompt_seats(prompt: p.Prompt) -> list[tuple[str, str, int]]:
    return [(s.section, s.row, s.number) for s in prompt.seats]


async def _availability(
    client: BookingClient, event_id: str, section: str = "A"
) -> tuple[int, ...]:
    view = await client.event(event_id)
    s = next(s for s in view.sections if s.id == section)
    return s.free, s.held, s.sold, view.active_holds


async def test_full_payment_path(services: Services, client: BookingClient) -> None:
    """Join, get a prompt, pay tok_visa: 200 booking of the prompt's seats, readable, confirmed on WS."""
    event = await client.create_event(event_body())
    event_id = event.id
    async with WaitingRoom.connect(event.waitroom_url) as room:
        queued, prompt = await _hold(room, "buyer-1", 2, "A")
        assert prompt.hold_id == f"{event_id}.{queued.ticket}"
        assert prompt.amount_cents == 5_000
        assert _prompt_seats(prompt) == [("A", "R1", 1), ("A", "R1", 2)]
        assert await _availability(client, event_id) == (6, 2, 0, 1)

        key = new_key("full-path")
        booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
        assert booking.id.startswith("bk")
        assert booking.event_id == event_id
        assert booking.hold_id == prompt.hold_id
        assert booking.status == "confirmed"
        assert booking.amount_cents == 5_000
        assert datetime.fromisoformat(booking.created_at).tzinfo is not None
        assert _seats(booking) == _prompt_seats(prompt)
        codes = [t.code for t in booking.tickets]
        assert len(set(codes)) == 2 and all(codes)

        assert await outcome_of(room) == p.Confirmed(booking_id=booking.id)

    read = await client.booking(booking.id, hold_token=prompt.hold_token)
    assert read.id == booking.id
    assert read.hold_id == prompt.hold_id
    assert _seats(read) == _prompt_seats(prompt)
    assert sorted(t.code for t in read.tickets) == sorted(codes)

    assert await _availability(client, event_id) == (6, 0, 2, 0)
    assert await count_bookings(services, event_id) == 1
    audit = await client.audit(event_id, settled=True)
    assert audit.ok is True, audit


async def test_same_idempotency_key_replays_the_booking(
    services: Services, client: BookingClient
) -> None:
    """Paying again with the same Idempotency-Key answers 200 with the same booking, no second one."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        key = new_key("replay")
        first = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
        second = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
    assert second.id == first.id
    assert _seats(second) == _seats(first)
    assert await count_bookings(services, event.id) == 1
    assert await _availability(client, event.id) == (6, 0, 2, 0)


async def test_a_replayed_payment_answers_the_same_bytes(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A payment replayed with its Idempotency-Key answers a body byte for byte the first one
    (the instant it was made included), and charges once."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1", 3)
        key = new_key("bytes")
        first = await pay(http, prompt.hold_id, prompt.hold_token, key)
        assert first.status_code == 200, first.text
        for _ in range(2):
            again = await pay(http, prompt.hold_id, prompt.hold_token, key)
            assert again.status_code == 200
            assert again.content == first.content
    assert await count_bookings(services, event.id) == 1


async def test_a_charge_whose_answer_failed_is_found_and_booked(
    services: Services, client: BookingClient, sandbox_gateway: str
) -> None:
    """The gateway charges tok_fail_after_charge, then answers 500: the payment asks the
    gateway what became of it (retrieve), finds the charge and books it; charged once."""
    before = await gateway_ledger(sandbox_gateway)
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        key = new_key("after-charge")
        booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_fail_after_charge", key)
        assert await outcome_of(room) == p.Confirmed(booking_id=booking.id)
        again = await client.pay(prompt.hold_id, prompt.hold_token, "tok_fail_after_charge", key)
    assert again.id == booking.id
    after = await gateway_ledger(sandbox_gateway)
    assert after["charges"] - before["charges"] == 1
    assert after["charged_cents"] - before["charged_cents"] == booking.amount_cents == 5_000
    assert await count_bookings(services, event.id) == 1


async def test_a_gateway_timeout_charges_nothing_and_leaves_the_hold_payable(
    servers: EmbeddedServers, sandbox_gateway: str
) -> None:
    """tok_timeout: the gateway never answers; the payment ends 504 at the gateway timeout,
    the payment is voided so nothing is charged later, and the hold can be paid again with
    another key."""
    settings = make_settings(
        servers.redis_url, servers.database_url, gateway_timeout_s=1.0, payment_window_s=30.0
    )
    before = await gateway_ledger(sandbox_gateway)
    async with open_services(settings) as running, admin_client(running) as client:
        event = await client.create_event(event_body())
        async with WaitingRoom.connect(event.waitroom_url) as room:
            _, prompt = await _hold(room, "buyer-1")
            with pytest.raises(ApiError) as refused:
                await client.pay(prompt.hold_id, prompt.hold_token, "tok_timeout", new_key("t"))
            assert (refused.value.status, refused.value.code) == (504, "payment_timeout")
            assert await gateway_ledger(sandbox_gateway) == before
            booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("v"))
            assert await outcome_of(room) == p.Confirmed(booking_id=booking.id)
    after = await gateway_ledger(sandbox_gateway)
    assert after["charges"] - before["charges"] == 1


async def test_a_charge_answered_after_the_timeout_is_found_and_booked(
    servers: EmbeddedServers, sandbox_gateway: str
) -> None:
    """tok_slow: the gateway charges at once but answers only after the gateway timeout; the
    payment asks (retrieve), finds the charge and books it: 200, one charge, one booking."""
    settings = make_settings(
        servers.redis_url, servers.database_url, gateway_timeout_s=1.0, payment_window_s=30.0
    )
    before = await gateway_ledger(sandbox_gateway)
    async with open_services(settings) as running, admin_client(running) as client:
        event = await client.create_event(event_body())
        async with WaitingRoom.connect(event.waitroom_url) as room:
            _, prompt = await _hold(room, "buyer-1")
            booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_slow", new_key("s"))
            assert await outcome_of(room) == p.Confirmed(booking_id=booking.id)
        assert await count_bookings(running, event.id) == 1
    after = await gateway_ledger(sandbox_gateway)
    assert after["charges"] - before["charges"] == 1
    assert after["charged_cents"] - before["charged_cents"] == booking.amount_cents


async def test_other_key_after_payment_is_already_paid(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A different Idempotency-Key on a paid hold answers 409 already_paid and books nothing."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("1"))
        again = await pay(http, prompt.hold_id, prompt.hold_token, new_key("2"))
    assert_error(again, 409, "already_paid")
    assert await count_bookings(services, event.id) == 1
    assert await _availability(client, event.id) == (6, 0, 2, 0)


async def test_idempotency_key_reused_on_another_hold_does_not_leak_its_booking(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """An Idempotency-Key already used for hold A, sent for hold B, never answers with A's booking."""
    event = await client.create_event(event_body())
    key = new_key("shared")
    async with (
        WaitingRoom.connect(event.waitroom_url) as room_a,
        WaitingRoom.connect(event.waitroom_url) as room_b,
    ):
        _, hold_a = await _hold(room_a, "buyer-a", 2, "A")
        _, hold_b = await _hold(room_b, "buyer-b", 1, "GA")
        paid_a = await client.pay(hold_a.hold_id, hold_a.hold_token, "tok_visa", key)
        reused = await pay(http, hold_b.hold_id, hold_b.hold_token, key)
    if reused.status_code == 200:
        # Acceptable only as hold B's own booking of hold B's seats.
        assert reused.json()["hold_id"] == hold_b.hold_id, reused.json()
        assert reused.json()["id"] != paid_a.id, reused.json()
        assert [(t["section"], t["row"], t["number"]) for t in reused.json()["tickets"]] == (
            _prompt_seats(hold_b)
        )
    else:
        assert 400 <= reused.status_code < 500
        assert_error(reused, reused.status_code)
    audit = await client.audit(event.id, settled=True)
    assert audit.ok is True, audit


async def test_concurrent_payments_book_once(services: Services, client: BookingClient) -> None:
    """Two simultaneous payments of one hold with different keys: one 200, the other 409."""
    event = await client.create_event(event_body())
    results: dict[str, BookingView | ApiError] = {}
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")

        async def attempt(key: str) -> None:
            try:
                results[key] = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
            except ApiError as refused:
                results[key] = refused

        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt, new_key("a"))
            tg.start_soon(attempt, new_key("b"))
    booked = [r for r in results.values() if isinstance(r, BookingView)]
    refused = [r for r in results.values() if isinstance(r, ApiError)]
    assert (len(booked), len(refused)) == (1, 1), results
    assert booked[0].hold_id == prompt.hold_id
    assert refused[0].status == 409, refused[0]
    assert refused[0].code in ("already_paid", "payment_in_progress")
    assert await count_bookings(services, event.id) == 1


async def test_declined_card_keeps_the_hold_payable(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """tok_declined answers 402 and books nothing; the hold stays held and tok_visa then succeeds."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        declined = await pay(http, prompt.hold_id, prompt.hold_token, new_key("d1"), "tok_declined")
        assert_error(declined, 402, "payment_declined")
        unknown_card = await pay(
            http, prompt.hold_id, prompt.hold_token, new_key("d2"), "tok_bogus"
        )
        assert_error(unknown_card, 402, "payment_declined")
        assert await count_bookings(services, event.id) == 0
        assert await _availability(client, event.id) == (6, 2, 0, 1)

        ok = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("d3"))
        assert _seats(ok) == _prompt_seats(prompt)
        assert await outcome_of(room) == p.Confirmed(booking_id=ok.id)
    assert await count_bookings(services, event.id) == 1


@pytest.mark.parametrize(
    "key",
    [None, "k" * 129, "tab\there"],
    ids=["missing", "too-long", "not-printable"],
)
async def test_bad_idempotency_key_is_400(
    services: Services, client: BookingClient, http: httpx.AsyncClient, key: str | None
) -> None:
    """A missing or malformed Idempotency-Key answers 400 and leaves the hold untouched."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        resp = await pay(http, prompt.hold_id, prompt.hold_token, key)
        assert_error(resp, 400, "invalid_request")
        assert await _availability(client, event.id) == (6, 2, 0, 1)
        await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())
    assert await count_bookings(services, event.id) == 1


async def test_missing_forged_or_garbage_token_is_401(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """Without a genuine hold token the payment answers 401 and nothing is paid."""
    event = await client.create_event(event_body())
    event_id = event.id
    async with WaitingRoom.connect(event.waitroom_url) as room:
        queued, prompt = await _hold(room, "buyer-1")
        seq = queued.ticket
        genuine = prompt.hold_token
        tampered = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
        bad_tokens = {
            "garbage": "garbage",
            "five-parts-unsigned": f"h.{event_id}.{seq}.9999999999.sig",
            "other-secret": sign(event_id, seq, secret="another-secret-0123456789abc"),
            "queue-token": queued.token,
            "tampered": tampered,
            "other-seq-same-signature": genuine.replace(f".{seq}.", f".{seq + 1}.", 1),
        }
        for name, token in bad_tokens.items():
            resp = await pay(http, prompt.hold_id, token, new_key(name))
            assert_error(resp, 401, "unauthorized")
            assert resp.headers.get("www-authenticate") == "Bearer", name
        no_header = await pay(http, prompt.hold_id, None, new_key("none"))
        assert_error(no_header, 401, "unauthorized")
        basic = await http.post(
            f"/v1/holds/{prompt.hold_id}/payment",
            headers={"Authorization": f"Basic {genuine}", "Idempotency-Key": new_key("basic")},
            json={"card_token": "tok_visa"},
        )
        assert_error(basic, 401, "unauthorized")
    assert await count_bookings(services, event_id) == 0
    assert await _availability(client, event_id) == (6, 2, 0, 1)


async def test_expired_hold_token_is_409_hold_expired(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A genuine hold token past its time pays nothing: 409 ``hold_expired`` for its own
    hold, 403 for another's; reading a booking with it is 401."""
    event = await client.create_event(event_body())
    event_id = event.id
    async with WaitingRoom.connect(event.waitroom_url) as room:
        queued, prompt = await _hold(room, "buyer-1")
        expired = sign(event_id, queued.ticket, ttl_s=-60)
        resp = await pay(http, prompt.hold_id, expired, new_key("expired"))
        assert_error(resp, 409, "hold_expired")
        other = sign(event_id, queued.ticket + 1, ttl_s=-60)
        assert_error(await pay(http, prompt.hold_id, other, new_key("other")), 403, "forbidden")
        assert await count_bookings(services, event_id) == 0
        assert await _availability(client, event_id) == (6, 2, 0, 1)
        paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("live"))
    read = await http.get(f"/v1/bookings/{paid.id}", headers={"Authorization": f"Bearer {expired}"})
    assert_error(read, 401, "unauthorized")


async def test_token_of_another_hold_is_403(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A genuine hold token used on another hold (pay or read its booking) answers 403."""
    event = await client.create_event(event_body())
    async with (
        WaitingRoom.connect(event.waitroom_url) as mine_room,
        WaitingRoom.connect(event.waitroom_url) as their_room,
    ):
        _, mine = await _hold(mine_room, "buyer-1")
        _, theirs = await _hold(their_room, "buyer-2")
        assert mine.hold_id != theirs.hold_id

        stolen = await pay(http, theirs.hold_id, mine.hold_token, new_key("steal"))
        assert_error(stolen, 403, "forbidden")
        assert await count_bookings(services, event.id) == 0

        paid = await client.pay(theirs.hold_id, theirs.hold_token, "tok_visa", new_key("theirs"))
    booking_url = f"/v1/bookings/{paid.id}"

    other = await http.get(booking_url, headers={"Authorization": f"Bearer {mine.hold_token}"})
    assert_error(other, 403, "forbidden")
    assert_error(await http.get(booking_url), 401, "unauthorized")
    garbage = await http.get(booking_url, headers={"Authorization": "Bearer garbage"})
    assert_error(garbage, 401, "unauthorized")
    assert (await client.booking(paid.id, hold_token=theirs.hold_token)).id == paid.id
    assert (await client.booking(paid.id)).id == paid.id  # the admin key


async def test_token_for_path_that_names_no_hold_is_404(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A genuine token sent to a path that cannot name a hold answers 404."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        for path_id in (f"{event.id}.x", f"{event.id}.-1", event.id, "nothing"):
            resp = await pay(http, path_id, prompt.hold_token, new_key("1"))
            assert_error(resp, 404, "not_found")
    assert await count_bookings(services, event.id) == 0


@pytest.mark.parametrize(
    "seq", ["\u00b2", "\u2460", "1\u00b2"], ids=["superscript-2", "circled-1", "1-superscript-2"]
)
async def test_hold_path_with_non_decimal_digit_seq_is_refused(
    services: Services, client: BookingClient, http: httpx.AsyncClient, seq: str
) -> None:
    """A hold path whose seq is a Unicode digit but not a number (e.g. '²') is 404, not 500."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        resp = await pay(http, f"{event.id}.{seq}", prompt.hold_token, new_key(), "tok_declined")
        assert_error(resp, 404, "not_found")
    assert await count_bookings(services, event.id) == 0


async def test_payment_body_with_invalid_utf8_is_400(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A payment body whose JSON string holds invalid UTF-8 answers 400 and pays nothing."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        resp = await http.post(
            f"/v1/holds/{prompt.hold_id}/payment",
            content=b'{"card_token": "tok_visa\xff"}',
            headers={
                "Authorization": f"Bearer {prompt.hold_token}",
                "Idempotency-Key": new_key(),
                "Content-Type": "application/json",
            },
        )
        assert_error(resp, 400, "invalid_request")
        assert await _availability(client, event.id) == (6, 2, 0, 1)
    assert await count_bookings(services, event.id) == 0


async def test_unknown_hold_is_404(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A genuine token for a hold that does not exist (no ticket, no seats yet, no event) is 404."""
    event = await client.create_event(event_body(opens_at=FUTURE))
    event_id = event.id
    async with WaitingRoom.connect(event.waitroom_url) as room:
        queued = await queued_in(room, "buyer-1")  # in line, never admitted: no hold yet
        cases = [(event_id, 999), (event_id, queued.ticket), ("evnosuchevent", 1)]
        for ev, seq in cases:
            resp = await pay(http, f"{ev}.{seq}", sign(ev, seq), new_key())
            assert_error(resp, 404, "not_found")
    assert (await client.event(event_id)).queue_length == 1
    assert await count_bookings(services, event_id) == 0


async def test_unknown_booking_is_404(http: httpx.AsyncClient) -> None:
    """GET of a booking that does not exist answers 404 not_found."""
    resp = await http.get("/v1/bookings/bk0000000000000000", headers=admin_headers())
    assert_error(resp, 404, "not_found")


async def test_expired_hold_is_409_hold_expired(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """After the hold runs out (WS says expired) paying answers 409 hold_expired; seats are free."""
    event = await client.create_event(event_body(hold_seconds=1))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        _, prompt = await _hold(room, "buyer-1")
        assert isinstance(await outcome_of(room), p.Expired)  # the worker's sweep, ~1 s
    resp = await pay(http, prompt.hold_id, prompt.hold_token, new_key("late"))
    assert_error(resp, 409, "hold_expired")
    assert await count_bookings(services, event.id) == 0
    assert await _availability(client, event.id) == (8, 0, 0, 0)
