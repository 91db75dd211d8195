"""A sale with cancellations and check-ins, counted by the bench itself, then the event's
report (built by the workers from the event log) compared to that count to the cent.

``python -m bench.ledger --url URL --admin-key KEY [--bookings N] [--concurrency C]
[--worker-metrics http://HOST:PORT]`` against a running deployment (``booking serve`` and ``booking
worker``): creates an event of two sections, buys N bookings of 1-3 places through the
waiting room and the payment route (C buyers at a time), cancels every fourth booking
whole and one ticket of every fourth other, as the admin, lets in every live ticket of
half the bookings at the door, and keeps its own ledger from the answers: bookings,
tickets, cents paid and refunded, cancellations, check-ins, per section too. It then waits
for the report to count the whole log and checks its totals and sections against the
ledger (exit 1 on any difference). It prints the wait, the event's id (for
``booking replay --event``) and, given the worker's metrics URL, the projector's delay
p99 (from ``booking_projection_delay_seconds``: the bucket bound it falls under).
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from api.client import BookingClient, WaitingRoom
from plumbing.runtime import RUNTIMES, run

__all__ = ["Ledger", "LedgerReport", "main", "projection_p99_s", "run_ledger"]

#: The event's sections: id, price.
SECTIONS = (("A", 2_500), ("GA", 1_000))

#: What the ledger counts, per section too where a section has it.
TOTALS = (
    "bookings",
    "tickets_sold",
    "revenue_cents",
    "cancellations",
    "bookings_cancelled",
    "tickets_cancelled",
    "refunded_cents",
    "checked_in",
)
SECTION_TOTALS = (
    "tickets_sold",
    "revenue_cents",
    "tickets_cancelled",
    "refunded_cents",
    "checked_in",
)


@dataclass
class Ledger:
    """The sale as the bench saw it, from the API's answers."""

    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOTALS, 0))
    sections: dict[str, dict[str, int]] = field(
        default_factory=lambda: {s: dict.fromkeys(SECTION_TOTALS, 0) for s, _ in SECTIONS}
    )

    def add(self, name: str, n: int, section: str | None = None) -> None:
        self.totals[name] += n
        if section is not None:
            self.sections[section][name] += n

    def log_counts(self) -> dict[str, int]:
        """The entries of each type the event's log must hold for this sale."""
        return {
            "booking_confirmed": self.totals["bookings"],
            "payment_claimed": self.totals["bookings"],
            "cancellation_requested": self.totals["cancellations"],
            "booking_cancelled": self.totals["cancellations"],
            "ticket_checked_in": self.totals["checked_in"],
        }


@dataclass
class LedgerReport:
    """What the run did and found."""

    event_id: str
    ledger: Ledger
    #: From the first purchase to the last check-in, s.
    seconds: float
    #: From the last check-in's answer to the report counting the whole log, s.
    report_wait_s: float
    #: The report (``EventReport``) once it counted the whole log.
    report: Any = None
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        t = self.ledger.totals
        verdict = "the report equals the ledger" if not self.problems else "; ".join(self.problems)
        return (
            f"event {self.event_id}: {t['bookings']:,} bookings, {t['tickets_sold']:,} tickets, "
            f"{t['revenue_cents']:,} cents paid; {t['cancellations']:,} cancellations "
            f"({t['tickets_cancelled']:,} tickets, {t['refunded_cents']:,} cents refunded); "
            f"{t['checked_in']:,} check-ins; in {self.seconds:.2f} s; the report counted "
            f"everything {self.report_wait_s:.2f} s after the last answer; {verdict}"
        )


def _price(section: str) -> int:
    return dict(SECTIONS)[section]


async def run_ledger(
    url: str, admin_key: str, *, bookings: int, concurrency: int, report_wait_s: float = 120
) -> LedgerReport:
    """Sell, cancel and check in as described above; the ledger and the report compared."""
    ledger = Ledger()
    async with BookingClient(url, admin_key=admin_key, max_connections=concurrency + 16) as client:
        event = await client.create_event(
            {
                "name": "Ledger bench",
                "opens_at": "2020-01-01T00:00:00Z",
                "max_per_order": 3,
                "hold_seconds": 300,
                "max_active_holds": 100_000,
                "sections": [
                    {"id": s, "price_cents": p, "capacity": 3 * bookings} for s, p in SECTIONS
                ],
            }
        )
        await client.set_admission(event.id, admissions_per_minute=0)
        bought: dict[int, Any] = {}  # BookingView
        limiter = anyio.CapacityLimiter(concurrency)

        async def buyer(n: int) -> None:
            section = SECTIONS[n % len(SECTIONS)][0]
            async with limiter, WaitingRoom.connect(event.waitroom_url) as room:
                await room.join(f"ledger-{n}-{secrets.token_hex(4)}", 1 + n % 3, section)
                async for _ in room.until_prompt():
                    pass
                if room.prompt is None:
                    raise RuntimeError(f"buyer {n} got no seats: {await room.outcome()!r}")
                prompt = room.prompt
                booking = await client.pay(
                    prompt.hold_id, prompt.hold_token, "tok_visa", secrets.token_hex(8)
                )
            bought[n] = booking
            ledger.add("bookings", 1)
            ledger.add("revenue_cents", booking.amount_cents)
            for t in booking.tickets:
                ledger.add("tickets_sold", 1, t.section)
                ledger.sections[t.section]["revenue_cents"] += _price(t.section)

        print(f"selling {bookings:,} bookings of {event.id} ...", file=sys.stderr)
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(bookings):
                tg.start_soon(buyer, n)

        live: dict[int, list[str]] = {n: [t.code for t in b.tickets] for n, b in bought.items()}
        sections = {t.code: t.section for b in bought.values() for t in b.tickets}

        async def cancel(n: int) -> None:
            booking = bought[n]
            whole = n % 4 == 0
            codes = None if whole else [booking.tickets[0].code]
            async with limiter:
                done = await client.cancel(booking.id, secrets.token_hex(8), tickets=codes)
            if done.status != "refunded":
                raise RuntimeError(f"cancellation of {booking.id}: {done.status}")
            ledger.add("cancellations", 1)
            ledger.add("refunded_cents", done.amount_cents)
            if done.booking_status == "cancelled":
                ledger.add("bookings_cancelled", 1)
            for code in done.tickets:
                ledger.add("tickets_cancelled", 1, sections[code])
                ledger.sections[sections[code]]["refunded_cents"] += _price(sections[code])
                live[n].remove(code)

        print("cancelling ...", file=sys.stderr)
        async with anyio.create_task_group() as tg:
            for n, booking in bought.items():
                if n % 4 == 0 or (n % 4 == 1 and len(booking.tickets) > 1):
                    tg.start_soon(cancel, n)

        key = await client.create_staff_key(event.id, "Ledger door")

        async def scan(code: str) -> None:
            async with limiter:
                await client.checkin(key.key, code, "Main")
            ledger.add("checked_in", 1, sections[code])

        print("letting them in ...", file=sys.stderr)
        async with anyio.create_task_group() as tg:
            for n, codes in live.items():
                if n % 2 == 1:
                    for code in codes:
                        tg.start_soon(scan, code)
        finished = time.perf_counter()
        result = LedgerReport(event.id, ledger, finished - started, 0.0)

        with anyio.move_on_after(report_wait_s):
            while True:
                report = await client.report(event.id)
                if report.as_of_seq == report.log_seq:
                    break
                await anyio.sleep(0.02)
        result.report_wait_s = time.perf_counter() - finished
        result.report = report
        if report.as_of_seq != report.log_seq:
            result.problems.append(f"the report counts {report.as_of_seq} of {report.log_seq}")
        for name in TOTALS:
            got = getattr(report.totals, name)
            if got != ledger.totals[name]:
                result.problems.append(f"{name}: report {got}, ledger {ledger.totals[name]}")
        for s in report.sections:
            for name in SECTION_TOTALS:
                got, want = getattr(s, name), ledger.sections[s.section][name]
                if got != want:
                    result.problems.append(f"{s.section}.{name}: report {got}, ledger {want}")
        if report.currency != "EUR":
            result.problems.append(f"currency {report.currency}")
        return result


def projection_p99_s(metrics: str) -> float | None:
    """The bound of the ``booking_projection_delay_seconds`` bucket holding the 99th
    percentile, from a /metrics text (None when it has no observations)."""
    buckets: list[tuple[float, float]] = []
    for m in re.finditer(
        r'^booking_projection_delay_seconds_bucket\{le="([^"]+)"\} (\S+)$', metrics, re.M
    ):
        buckets.append((float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(le for le, n in buckets if n >= 0.99 * total)


async def _main(args: argparse.Namespace) -> int:
    result = await run_ledger(
        args.url, args.admin_key, bookings=args.bookings, concurrency=args.concurrency
    )
    print(result.summary())
    if args.worker_metrics:
        async with BookingClient(args.worker_metrics) as worker:
            p99 = projection_p99_s(await worker.metrics())
        print(f"projection delay p99 <= {p99} s (booking_projection_delay_seconds)")
    print(f"replay it: booking replay --event {result.event_id}")
    return 1 if result.problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    parser.add_argument("--url", required=True, help="the deployment's HTTP URL")
    parser.add_argument("--admin-key", required=True)
    parser.add_argument("--bookings", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--worker-metrics", help="a worker's metrics address, http://HOST:PORT (its projector's)"
    )
    parser.add_argument("--runtime", choices=RUNTIMES, default="trio")
    args = parser.parse_args(argv)
    outcome: Any = run(lambda: _main(args), args.runtime)
    return int(outcome)


if __name__ == "__main__":
    sys.exit(main())
