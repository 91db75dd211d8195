"""CPU cost of the buyer's tickets: signing and verifying codes, QR codes, PDF pages.

No server: the engine's pure functions, timed in this process. A QR code is made once
per code and process (cached), so QR and PDF times are given cold (a code seen for the
first time) and warm.

    PYTHONPATH=. .venv/bin/python scripts/bench_tickets.py
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from engine.bookings import Booking, BookingStatus, Ticket
from engine.events import EventSpec, RowSpec, SectionSpec
from engine.ticket_codes import TicketCodes, verify_ticket_code
from engine.tickets import qr_svg, render_pdf

CODES = TicketCodes(bytes(32))
SPEC = EventSpec(
    name="Evening concert",
    opens_at=datetime(2030, 6, 1, tzinfo=UTC),
    sections=[SectionSpec(id="stalls", price_cents=4_500, rows=[RowSpec("A", 20)])],
)


def _per_call_us(calls: int, started: float) -> float:
    return (time.perf_counter() - started) / calls * 1e6


def _booking(codes: list[str]) -> Booking:
    tickets = [Ticket(code, "stalls", "A", n + 1) for n, code in enumerate(codes)]
    return Booking(
        "bk0123456789abcdef", "tabc", "tabc.1", BookingStatus.CONFIRMED,
        4_500 * len(codes), datetime.now(UTC), tickets, 0,
    )  # fmt: skip


def main() -> None:
    """Print each cost."""
    n = 5_000
    started = time.perf_counter()
    codes = [CODES.issue("tabc123def456", "bk0123456789abcdef", "stalls", i) for i in range(n)]
    sign_us = _per_call_us(n, started)
    started = time.perf_counter()
    for code in codes:
        verify_ticket_code(code, CODES.public_key)
    verify_us = _per_call_us(n, started)
    print(f"code: {len(codes[0])} characters, sign {sign_us:.0f} µs, verify {verify_us:.0f} µs")
    started = time.perf_counter()
    for code in codes[:200]:
        qr_svg(code)
    cold = _per_call_us(200, started) / 1000
    started = time.perf_counter()
    for code in codes[:200]:
        qr_svg(code)
    print(f"QR SVG: cold {cold:.1f} ms, warm {_per_call_us(200, started) / 1000:.2f} ms")
    for count in (1, 4, 20):
        fresh = codes[1_000 + 100 * count : 1_000 + 100 * count + count]
        started = time.perf_counter()
        pdf = render_pdf(_booking(fresh), SPEC)
        cold = _per_call_us(1, started) / 1000
        started = time.perf_counter()
        for _ in range(10):
            render_pdf(_booking(fresh), SPEC)
        warm = _per_call_us(10, started) / 1000
        print(
            f"PDF of {count:2d} tickets: cold {cold:.0f} ms, warm {warm:.0f} ms, {len(pdf)} bytes"
        )


if __name__ == "__main__":
    main()
