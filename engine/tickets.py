"""The buyer's tickets as things to show and print: QR codes and the PDF ticket.

Rendering is pure (no I/O): a ticket's QR code encodes its signed code
(``engine/ticket_codes.py``); the PDF has one page per ticket with the event, the
seat, the booking and the QR code drawn as vector squares, so it prints sharp at
any size. Making a PDF is CPU work (milliseconds per page), done in a worker
thread so the event loop keeps serving.
"""

from __future__ import annotations

import functools
import io
from datetime import UTC

import anyio.to_thread
import segno
from fpdf import FPDF

from engine.bookings import Booking, Ticket
from engine.catalog import EventCatalog
from engine.events import EventSpec
from engine.ticket_codes import TicketCodes

__all__ = ["Tickets", "format_amount", "qr_svg", "render_pdf", "seat_text"]

#: QR error correction: M survives a crease or a smudge across ~15% of the code.
_QR_ERROR = "m"


@functools.lru_cache(maxsize=4096)
def _qr(code: str) -> segno.QRCode:
    # Encoding and choosing a mask cost ~20 ms a code; a code never changes, so its QR
    # code is made once per process (the page, the PDF and the mail each show it).
    return segno.make(code, error=_QR_ERROR, micro=False)


def qr_svg(code: str) -> str:
    """The QR code of ``code`` as a standalone SVG element (no XML declaration), to inline."""
    out = io.BytesIO()
    _qr(code).save(out, kind="svg", xmldecl=False, svgns=True, scale=4, title="Ticket QR code")
    return out.getvalue().decode()


def seat_text(ticket: Ticket) -> str:
    """A seat as people name it: ``A · row R1 · seat 2`` (``GA · place 7`` unseated)."""
    if ticket.row:
        return f"{ticket.section} · row {ticket.row} · seat {ticket.number}"
    return f"{ticket.section} · place {ticket.number}"


def format_amount(amount_cents: int, currency: str) -> str:
    """``45.00 EUR``: an amount in its currency's minor units, shown plainly."""
    return f"{amount_cents // 100}.{amount_cents % 100:02d} {currency}"


def _latin1(text: str) -> str:
    # The PDF's built-in fonts cover Latin-1; other characters show as "?".
    return text.replace("·", "-").encode("latin-1", "replace").decode("latin-1")


def render_pdf(booking: Booking, spec: EventSpec) -> bytes:
    """The booking's printable tickets: one A4 page per live ticket, with its QR code.

    Cancelled tickets are left out (a printed code of one would only be refused at the
    door); a booking with none left gets one page that says so, with no code on it.
    """
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_title(_latin1(f"Tickets: {spec.name}"))
    pdf.set_creator("booking engine")
    pdf.set_auto_page_break(auto=False)
    when = spec.opens_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    live = [t for t in booking.tickets if t.live]
    if not live:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 22)
        pdf.multi_cell(0, 10, _latin1(spec.name), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 12)
        pdf.multi_cell(
            0,
            8,
            f"Booking {booking.id} was cancelled: it has no valid ticket.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    for n, ticket in enumerate(live, start=1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 22)
        pdf.multi_cell(0, 10, _latin1(spec.name), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 12)
        pdf.cell(0, 8, f"Sale opened {when}", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 10, _latin1(seat_text(ticket)), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 12)
        pdf.cell(
            0,
            8,
            f"Ticket {n} of {len(live)} - booking {booking.id}",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        _draw_qr(pdf, ticket.code, x=pdf.l_margin, y=pdf.get_y() + 6, size=90)
        pdf.set_y(pdf.get_y() + 102)
        pdf.set_font("Courier", "", 7)
        pdf.multi_cell(0, 3.5, ticket.code, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(
            0,
            5,
            "Show this code at the door. It is signed: the door checks it offline, "
            "and it lets one person in once.",
        )
    return bytes(pdf.output())


def _draw_qr(pdf: FPDF, code: str, *, x: float, y: float, size: float) -> None:
    """The QR code of ``code`` as filled squares, ``size`` mm wide at (x, y)."""
    rows = [list(row) for row in _qr(code).matrix_iter(scale=1, border=4)]
    module = size / len(rows)
    pdf.set_fill_color(0, 0, 0)
    for r, row in enumerate(rows):
        c = 0
        while c < len(row):  # one rectangle per run of dark modules
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            pdf.rect(x + start * module, y + r * module, (c - start) * module, module, style="F")


class Tickets:
    """The buyer's tickets: the key that verifies them, their QR codes, their PDF."""

    def __init__(self, codes: TicketCodes, catalog: EventCatalog) -> None:
        self._codes = codes  # the public key
        self._catalog = catalog  # the event's name, date and currency

    @property
    def public_key(self) -> str:
        """The Ed25519 public key that verifies every ticket code (raw, base64url)."""
        return self._codes.public_key

    async def currency(self, booking: Booking) -> str:
        """The currency of the booking's amount (its event's)."""
        return (await self.event(booking)).currency

    async def event(self, booking: Booking) -> EventSpec:
        """The spec of the booking's event (its name, date and currency)."""
        return await self._catalog.get(booking.event_id)

    async def qr_svg(self, code: str) -> str:
        """The QR code of ``code`` as SVG, made in a worker thread."""
        return await anyio.to_thread.run_sync(qr_svg, code)

    async def pdf(self, booking: Booking) -> bytes:
        """The booking's PDF tickets, one page per live ticket (see :func:`render_pdf`)."""
        spec = await self._catalog.get(booking.event_id)
        return await anyio.to_thread.run_sync(render_pdf, booking, spec)
