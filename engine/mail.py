"""Confirmation mails: composed from the booking, sent by a worker's loop, never by a payment.

A payment with an address writes a row of the ``mail_outbox`` table in the same
transaction as its booking. :func:`run_mail_sender` (a worker's loop) claims the
rows due, leasing each for a while so two workers never send the same mail at
once, composes the mail (seats, amount, the codes, the PDF attached, the booking
token's link) and hands it to the :class:`Mailer`. A mail the server did not
take is due again after ``retry_s``, doubling per attempt up to an hour: an SMTP
server that is down delays mails, never payments. Delivery is at least once (a
worker dying between the send and its record sends it again after the lease).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

import anyio
import anyio.abc

from engine.bookings import Booking, Bookings
from engine.errors import NotFound
from engine.events import EventSpec
from engine.metrics import MAILS
from engine.tickets import Tickets, format_amount, seat_text
from storage.errors import StorageError
from storage.pg_records import MailJob
from storage.pg_store import PgStore
from storage.smtp import MailUnavailable

__all__ = ["Mailer", "compose_confirmation", "retry_delay_s", "run_mail_sender"]

logger = logging.getLogger(__name__)

#: Longest wait between two attempts at one mail, s.
MAX_RETRY_S = 3600.0
#: How long a claimed mail is left to its worker before another may try it, s.
LEASE_S = 120.0
#: Mails claimed per pass.
BATCH = 20


class Mailer(Protocol):
    """Hands a message to a mail server (``storage.smtp.SmtpMailer``)."""

    async def send(self, message: EmailMessage) -> None:
        """Send ``message``; MailUnavailable if the server did not take it."""
        ...


def retry_delay_s(attempts: int, retry_s: float) -> float:
    """The wait before the next try of a mail tried ``attempts`` times (1 after the first)."""
    return min(retry_s * float(2 ** max(attempts - 1, 0)), MAX_RETRY_S)


def compose_confirmation(
    booking: Booking,
    spec: EventSpec,
    pdf: bytes,
    *,
    sender: str,
    recipient: str,
    page_url: str | None,
) -> EmailMessage:
    """The confirmation mail of ``booking``: seats, amount, codes, the PDF attached."""
    message = EmailMessage()
    message["Subject"] = f"Your tickets: {spec.name}"
    message["From"] = sender
    message["To"] = recipient
    message["Message-ID"] = make_msgid(idstring=booking.id, domain=sender.rsplit("@", 1)[-1])
    lines = [
        f"Your booking {booking.id} for {spec.name} is confirmed.",
        "",
        f"Paid: {format_amount(booking.amount_cents, spec.currency)}",
        "",
        "Your tickets (each code lets one person in once; the PDF attached has their QR codes):",
    ]
    for n, ticket in enumerate(booking.tickets, start=1):
        lines += [f"  {n}. {seat_text(ticket)}", f"     {ticket.code}"]
    if page_url:
        lines += ["", f"Your tickets online: {page_url}"]
    message.set_content("\n".join(lines) + "\n")
    message.add_attachment(
        pdf, maintype="application", subtype="pdf", filename=f"tickets-{booking.id}.pdf"
    )
    return message


async def run_mail_sender(
    pg: PgStore,
    bookings: Bookings,
    tickets: Tickets,
    mailer: Mailer,
    *,
    sender: str,
    page_url: Callable[[Booking], str] | None = None,
    interval_s: float = 1.0,
    retry_s: float = 5.0,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Send the confirmation mails due, pass after pass, until cancelled."""
    task_status.started()
    while True:
        try:
            jobs = await pg.claim_mail(BATCH, LEASE_S)
        except StorageError as exc:
            logger.warning("mail outbox unreadable, trying again: %s", exc)
            jobs = []
        for job in jobs:
            await _send_one(pg, bookings, tickets, mailer, job, sender, page_url, retry_s)
        if len(jobs) < BATCH:
            await anyio.sleep(interval_s)


async def _send_one(
    pg: PgStore,
    bookings: Bookings,
    tickets: Tickets,
    mailer: Mailer,
    job: MailJob,
    sender: str,
    page_url: Callable[[Booking], str] | None,
    retry_s: float,
) -> None:
    attempts = job.attempts + 1
    try:
        booking = await bookings.get(job.booking_id)
        spec, pdf = await tickets.event(booking), await tickets.pdf(booking)
        message = compose_confirmation(
            booking,
            spec,
            pdf,
            sender=sender,
            recipient=job.recipient,
            page_url=page_url(booking) if page_url else None,
        )
        await mailer.send(message)
    except Exception as exc:  # whatever kept it from going, the mail stays due
        if not isinstance(exc, MailUnavailable | StorageError | NotFound):
            logger.exception("confirmation mail of %s could not be made", job.booking_id)
        MAILS.labels("retried").inc()
        delay = retry_delay_s(attempts, retry_s)
        logger.warning(
            "confirmation mail of %s not sent (attempt %d), again in %.0f s: %s",
            job.booking_id,
            attempts,
            delay,
            exc,
            extra={"booking": job.booking_id},
        )
        with contextlib.suppress(StorageError):  # else the lease runs out: claimed again
            await pg.mail_failed(job.booking_id, str(exc), delay)
        return
    MAILS.labels("sent").inc()
    try:
        await pg.mail_sent(job.booking_id)
    except StorageError:
        logger.warning("mail of %s sent but not recorded: it may go twice", job.booking_id)
