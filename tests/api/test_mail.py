"""Confirmation mails: written with the booking, sent by the worker through a real SMTP
server (the development one, its own process), retried while SMTP is down."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pypdf import PdfReader

from api.client import BookingClient, WaitingRoom
from api.http.schemas import BookingView
from api.wiring import Services, open_services
from storage.dev_smtp import DevSmtpServer
from storage.embedded import EmbeddedServers
from tests.api.helpers import (
    assert_error,
    event_body,
    new_key,
    pg_value,
    prompted,
    queued_in,
)
from tests.conftest import admin_client, make_settings

pytestmark = pytest.mark.anyio

#: Longest wait for a mail, s: generous, as a busy machine slows the loop, never changes it.
MAIL_WAIT_S = 30


@asynccontextmanager
async def _system(servers: EmbeddedServers, smtp_url: str) -> AsyncIterator[Services]:
    """The whole system sending mail through ``smtp_url``, retrying fast."""
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        smtp_url=smtp_url,
        mail_interval_s=0.05,
        mail_retry_s=0.2,
        mail_from="tickets@example.com",
    )
    async with open_services(settings) as running:
        yield running


async def _buy(client: BookingClient, email: str | None, quantity: int = 2) -> BookingView:
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await queued_in(room, "buyer", quantity, "A")
        prompt = await prompted(room)
        return await client.pay(
            prompt.hold_id, prompt.hold_token, "tok_visa", new_key("mail"), email=email
        )


async def _mail_to(server: DevSmtpServer, recipient: str) -> EmailMessage:
    """The one mail to ``recipient`` (waited for)."""
    with anyio.fail_after(MAIL_WAIT_S):
        while not (found := [m for m in server.messages() if m["To"] == recipient]):  # noqa: ASYNC110 (a maildir)
            await anyio.sleep(0.05)
    assert len(found) == 1, [m["Subject"] for m in found]
    return found[0]


async def _outbox(services: Services, booking_id: str) -> dict[str, Any] | None:
    row = await pg_value(
        services,
        "SELECT to_jsonb(m) FROM mail_outbox m WHERE booking_id = $1",
        booking_id,
    )
    if row is None:
        return None
    parsed: dict[str, Any] = json.loads(row)
    return parsed


def _check_mail(mail: EmailMessage, booking: BookingView, base_url: str) -> None:
    assert mail["From"] == "tickets@example.com"
    assert booking.id in mail["Subject"] or "Your tickets" in mail["Subject"]
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    for ticket in booking.tickets:
        assert ticket.code in text
    assert f"{base_url}/bookings/{booking.id}#token={booking.booking_token}" in text
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    pdf = PdfReader(io.BytesIO(attachment.get_content()))
    assert len(pdf.pages) == len(booking.tickets)


async def test_the_confirmation_mail_arrives_with_the_tickets(
    servers: EmbeddedServers, smtp_server: DevSmtpServer
) -> None:
    """A payment with an address: the mail reaches the SMTP server with every code, the
    tickets page's link and the PDF (a page per ticket); the outbox row is marked sent and
    the event log says so."""
    async with _system(servers, smtp_server.url) as services, admin_client(services) as client:
        booking = await _buy(client, "buyer.one@example.com", quantity=3)
        mail = await _mail_to(smtp_server, "buyer.one@example.com")
        _check_mail(mail, booking, services.http_url)
        with anyio.fail_after(MAIL_WAIT_S):
            while (row := await _outbox(services, booking.id)) is None or not row["sent_at"]:  # noqa: ASYNC110 (in PostgreSQL)
                await anyio.sleep(0.05)
        logged = await pg_value(
            services,
            "SELECT count(*) FROM event_log WHERE kind = 'confirmation_mailed' "
            "AND payload->>'booking_id' = $1",
            booking.id,
        )
        assert logged == 1


async def test_no_address_no_mail(services: Services, client: BookingClient) -> None:
    """A payment without an address writes no outbox row."""
    booking = await _buy(client, None)
    assert await _outbox(services, booking.id) is None


async def test_a_payment_with_smtp_down_succeeds_and_the_mail_goes_later(
    servers: EmbeddedServers, data_dir: Path
) -> None:
    """With the SMTP server down the payment answers 200 at once; the mail waits in the
    outbox (its failed attempts recorded) and goes when the server is back."""
    with socket.socket() as probe:  # a port nobody listens on, until the server starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = DevSmtpServer(data_dir, port=port)
    async with _system(servers, smtp.url) as services:
        async with admin_client(services) as client:
            booking = await _buy(client, "later@example.com")
        with anyio.fail_after(MAIL_WAIT_S):
            while (row := await _outbox(services, booking.id)) is None or row["attempts"] < 2:  # noqa: ASYNC110 (in PostgreSQL)
                await anyio.sleep(0.05)
        assert row["sent_at"] is None and "refused" in row["last_error"], row
        smtp.start()
        try:
            mail = await _mail_to(smtp, "later@example.com")
            _check_mail(mail, booking, services.http_url)
        finally:
            smtp.stop()


async def test_an_invalid_address_is_400_and_pays_nothing(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """An address that is not one (or carries a line break) is 400; the hold stays payable."""
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await queued_in(room, "buyer", 1, "A")
        prompt = await prompted(room)
        headers = {"Authorization": f"Bearer {prompt.hold_token}"}
        for email in ("nobody", "a@b", "a@b.co\nBcc: x@y.zz", "é@x.de", "a" * 250 + "@x.de", 5):
            headers["Idempotency-Key"] = new_key("bad-mail")
            resp = await http.post(
                f"/v1/holds/{prompt.hold_id}/payment",
                headers=headers,
                json={"card_token": "tok_visa", "email": email},
            )
            assert_error(resp, 400, "invalid_request")
        paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("ok"))
    assert paid.status == "confirmed"
