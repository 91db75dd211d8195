"""Tickets in the buyer's hands: the booking token, signed codes, QR codes and the PDF."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import zxingcpp
from PIL import Image
from pypdf import PdfReader

from api.client import ApiError, BookingClient, WaitingRoom
from api.wiring import Services, open_services
from engine.ticket_codes import InvalidTicketCode, TicketCodes, verify_ticket_code
from plumbing.clock import WallClock
from storage.embedded import EmbeddedServers
from tests.api.helpers import assert_error, event_body, new_key, pay, prompted, queued_in
from tests.conftest import admin_client, make_settings

pytestmark = pytest.mark.anyio

HOLD_S = 120


class ShiftedClock:
    """Wall time plus an offset the test moves forward (no waiting)."""

    def __init__(self) -> None:
        self.offset_ms = 0  # how far ahead of the wall clock, ms
        self._wall = WallClock()  # the real time underneath

    def now_ms(self) -> int:
        """The wall time, moved ahead by the offset."""
        return self._wall.now_ms() + self.offset_ms

    def advance(self, seconds: float) -> None:
        """Move the time forward by ``seconds``."""
        self.offset_ms += int(seconds * 1000)


@pytest.fixture
def clock() -> ShiftedClock:
    """The system's clock, moved by the test."""
    return ShiftedClock()


@pytest.fixture
async def timed_services(servers: EmbeddedServers, clock: ShiftedClock) -> AsyncIterator[Services]:
    """The whole system on the test's clock, booking tokens valid for a day."""
    settings = make_settings(servers.redis_url, servers.database_url, booking_token_ttl_s=86_400)
    async with open_services(settings, clock=clock) as running:
        yield running


async def _buy(client: BookingClient, quantity: int = 2, **pay_args: str) -> tuple[str, str, str]:
    """Create an event, hold ``quantity`` seats of A and pay: (booking id, hold token,
    booking token)."""
    event = await client.create_event(event_body(hold_seconds=HOLD_S))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await queued_in(room, "buyer", quantity, "A")
        prompt = await prompted(room)
        booking = await client.pay(
            prompt.hold_id, prompt.hold_token, "tok_visa", new_key("tickets"), **pay_args
        )
    assert booking.booking_token.startswith("b.")
    return booking.id, prompt.hold_token, booking.booking_token


async def test_booking_token_reads_the_booking_long_after_the_hold_token_ran_out(
    timed_services: Services, clock: ShiftedClock
) -> None:
    """Past the hold token's end the hold token reads nothing (401) and the booking token
    still reads the booking and its PDF; past the booking token's own end it is 401 too."""
    async with admin_client(timed_services) as client:
        booking_id, hold_token, booking_token = await _buy(client)
        assert (await client.booking(booking_id, hold_token=hold_token)).id == booking_id

        clock.advance(HOLD_S + 3_600)  # the hold and its payment window are long over
        with pytest.raises(ApiError) as refused:
            await client.booking(booking_id, hold_token=hold_token)
        assert refused.value.status == 401
        read = await client.booking(booking_id, hold_token=booking_token)
        assert read.id == booking_id and len(read.tickets) == 2
        assert read.booking_token == booking_token  # every read hands out the same token
        assert (await client.tickets_pdf(booking_id, token=booking_token)).startswith(b"%PDF")

        clock.advance(86_400)  # past the booking token's own end
        with pytest.raises(ApiError) as expired:
            await client.booking(booking_id, hold_token=booking_token)
        assert expired.value.status == 401


async def test_booking_token_reads_only_its_own_booking(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """One booking's token is 403 on another booking (its read, PDF and QR code), and a
    forged one is 401."""
    first, _, first_token = await _buy(client)
    second, _, _ = await _buy(client, quantity=1)
    auth = {"Authorization": f"Bearer {first_token}"}
    assert_error(await http.get(f"/v1/bookings/{second}", headers=auth), 403, "forbidden")
    assert_error(
        await http.get(f"/v1/bookings/{second}/tickets.pdf", headers=auth), 403, "forbidden"
    )
    code = (await client.booking(second)).tickets[0].code
    assert_error(
        await http.get(f"/v1/bookings/{second}/tickets/{code}/qr.svg", headers=auth),
        403,
        "forbidden",
    )
    forged = first_token[:-4] + ("AAAA" if not first_token.endswith("AAAA") else "BBBB")
    resp = await http.get(f"/v1/bookings/{first}", headers={"Authorization": f"Bearer {forged}"})
    assert_error(resp, 401, "unauthorized")


async def test_replayed_payment_answers_the_same_bytes(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """The same Idempotency-Key answers byte for byte what the first payment did, token included."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await queued_in(room, "buyer", 2, "A")
        prompt = await prompted(room)
        key = new_key("replay")
        first = await pay(http, prompt.hold_id, prompt.hold_token, key)
        again = await pay(http, prompt.hold_id, prompt.hold_token, key)
    assert first.status_code == again.status_code == 200, first.text
    assert first.content == again.content
    assert first.json()["booking_token"]


async def test_ticket_codes_verify_with_the_published_key_and_tampered_ones_do_not(
    services: Services, client: BookingClient
) -> None:
    """Every code verifies offline with the key of GET /v1/events/{id}/ticket-key and says
    its event, booking and seat; a changed character, or another key, fails."""
    booking_id, _, _ = await _buy(client, quantity=3)
    booking = await client.booking(booking_id)
    key = await client.ticket_key(booking.event_id)
    assert key.algorithm == "Ed25519" and key.event_id == booking.event_id
    for ticket in booking.tickets:
        claims = verify_ticket_code(ticket.code, key.public_key)
        assert (claims.event_id, claims.booking_id, claims.section) == (
            booking.event_id,
            booking_id,
            ticket.section,
        )
    code = booking.tickets[0].code
    seat_changed = code.replace(f".{booking_id}.A.", f".{booking_id}.B.")
    assert seat_changed != code
    flipped = code[:-2] + ("A" if code[-2] != "A" else "B") + code[-1]
    for tampered in (seat_changed, flipped, code + "x", code[:-1], "T1.a.b.c.1.xyz", ""):
        with pytest.raises(InvalidTicketCode):
            verify_ticket_code(tampered, key.public_key)
    other_key = TicketCodes(b"\x07" * 32).public_key
    with pytest.raises(InvalidTicketCode):
        verify_ticket_code(code, other_key)


async def test_ticket_key_of_an_unknown_event_is_404(http: httpx.AsyncClient) -> None:
    """No event, no key: 404 not_found."""
    assert_error(await http.get("/v1/events/nosuchevent/ticket-key"), 404, "not_found")


def _svg_modules(svg: str) -> Image.Image:
    """The QR code an SVG of the server draws, rasterised from its path (one pixel a module,
    scaled up, with a white border)."""
    path = re.search(r' d="([^"]+)"', svg)
    assert path is not None, svg[:200]
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for command, a, b in re.findall(r"([MmHh])(-?[\d.]+)(?: (-?[\d.]+))?", path.group(1)):
        if command == "M":
            x, y = float(a), float(b)
        elif command == "m":
            x, y = x + float(a), y + float(b)
        else:  # h: a run of dark modules on row y
            run = float(a)
            dark.update((int(x + i), int(y)) for i in range(int(run)))
            x += run
    size = max(max(px, py) for px, py in dark) + 5
    image = Image.new("L", (size, size), 255)
    for px, py in dark:
        image.putpixel((px, py), 0)
    return image.resize((size * 8, size * 8), Image.Resampling.NEAREST)


async def test_qr_codes_decode_to_the_ticket_codes_and_the_pdf_has_a_page_per_ticket(
    services: Services, client: BookingClient
) -> None:
    """Each ticket's QR code (the SVG served) decodes to its code; the PDF parses and has one
    page per ticket, each naming its seat and carrying its code."""
    booking_id, _, booking_token = await _buy(client, quantity=3)
    booking = await client.booking(booking_id, hold_token=booking_token)
    for ticket in booking.tickets:
        svg = await client.ticket_qr(booking_id, ticket.code, token=booking_token)
        assert svg.startswith("<svg")
        decoded = [r.text for r in zxingcpp.read_barcodes(_svg_modules(svg))]
        assert decoded == [ticket.code]

    pdf = PdfReader(io.BytesIO(await client.tickets_pdf(booking_id, token=booking_token)))
    assert len(pdf.pages) == len(booking.tickets) == 3
    for page, ticket in zip(pdf.pages, booking.tickets, strict=True):
        text = page.extract_text()
        assert f"row {ticket.row} - seat {ticket.number}" in text
        assert ticket.code in text.replace("\n", "")


async def test_qr_of_a_code_not_in_the_booking_is_404(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A code of another booking (or none at all) under this booking: 404 not_found."""
    first, _, token = await _buy(client)
    second, _, _ = await _buy(client, quantity=1)
    other_code = (await client.booking(second)).tickets[0].code
    auth = {"Authorization": f"Bearer {token}"}
    for code in (other_code, "nothing"):
        resp = await http.get(f"/v1/bookings/{first}/tickets/{code}/qr.svg", headers=auth)
        assert_error(resp, 404, "not_found")
