"""Check-ins per second: every ticket of a finished sale let in at the door, through the client.

``python -m bench.door --url URL --admin-key KEY [--tickets N] [--gates G] [--concurrency C]``
against a running deployment (``booking serve`` and ``booking worker``): creates an event
of N general-admission places, sells them all (buyers through the waiting room, four
places a booking, every one paying), makes a staff key per gate, then checks every
ticket in from G gates, C scans in flight, through ``BookingClient.checkin``. It prints
check-ins per second over the door's span, each scan's latency (p50, p99), and checks
what must hold: every ticket in exactly once (a second scan of each is 409 with the
first scan's gate), the event's counts equal to the tickets sold.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from functools import partial
from typing import Any

import anyio

from api.client import AlreadyCheckedIn, BookingClient, WaitingRoom
from plumbing.runtime import RUNTIMES, run

__all__ = ["DoorReport", "main", "run_door"]

#: Places per booking (the event's max_per_order).
PER_ORDER = 4


class DoorReport:
    """What the door measured and the problems it found."""

    def __init__(self, tickets: int, seconds: float, latencies: list[float]) -> None:
        self.tickets = tickets  # checked in
        self.seconds = seconds  # first scan sent -> last answer
        self.latencies = sorted(latencies)  # each scan's, s
        self.problems: list[str] = []

    def percentile(self, q: float) -> float:
        """A latency percentile, ms."""
        if not self.latencies:
            return 0.0
        return 1000 * self.latencies[min(len(self.latencies) - 1, int(q * len(self.latencies)))]

    def summary(self) -> str:
        """One line: rate, latency, and whether every check held."""
        rate = self.tickets / self.seconds if self.seconds else 0.0
        verdict = "all checks held" if not self.problems else "; ".join(self.problems)
        return (
            f"{self.tickets:,} tickets checked in in {self.seconds:.2f} s: {rate:,.0f} check-ins/s; "
            f"scan p50 {self.percentile(0.5):.1f} ms, p99 {self.percentile(0.99):.1f} ms; "
            f"{verdict}"
        )


async def _sell_all(client: BookingClient, waitroom_url: str, tickets: int) -> list[str]:
    """Buy every place, PER_ORDER a booking (64 buyers at a time): the codes sold."""
    codes: list[str] = []
    orders = [PER_ORDER] * (tickets // PER_ORDER) + (
        [tickets % PER_ORDER] * (tickets % PER_ORDER > 0)
    )
    limiter = anyio.CapacityLimiter(64)

    async def buyer(n: int, quantity: int) -> None:
        async with limiter, WaitingRoom.connect(waitroom_url) as room:
            await room.join(f"door-{n}", quantity)  # a place, or sold out (no prompt, below)
            async for _ in room.until_prompt():
                pass
            if room.prompt is None:
                raise RuntimeError(f"buyer {n} got no seats: {await room.outcome()!r}")
            prompt = room.prompt
            key = secrets.token_hex(8)
            booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
            codes.extend(t.code for t in booking.tickets)

    async with anyio.create_task_group() as tg:
        for n, quantity in enumerate(orders):
            tg.start_soon(buyer, n, quantity)
    return codes


async def run_door(
    url: str, admin_key: str, *, tickets: int, gates: int, concurrency: int
) -> DoorReport:
    """Sell ``tickets`` places, then check each in from ``gates`` gates; the report."""
    async with BookingClient(url, admin_key=admin_key, max_connections=concurrency + 64) as client:
        event = await client.create_event(
            {
                "name": "Door bench",
                "opens_at": "2020-01-01T00:00:00Z",
                "max_per_order": PER_ORDER,
                "hold_seconds": 300,
                "max_active_holds": 100_000,
                "sections": [{"id": "GA", "price_cents": 1_000, "capacity": tickets}],
            }
        )
        await client.set_admission(event.id, admissions_per_minute=0)
        print(f"selling {tickets:,} places of {event.id} ...", file=sys.stderr)
        codes = await _sell_all(client, event.waitroom_url, tickets)
        keys = [(await client.create_staff_key(event.id, f"Gate {g}")).key for g in range(gates)]
        print(f"sold {len(codes):,}; checking them in from {gates} gates ...", file=sys.stderr)

        admitted: dict[str, str] = {}  # code -> the gate that let it in
        latencies: list[float] = []
        pending = iter(enumerate(codes))

        async def gate_staff() -> None:
            for n, code in pending:
                started = time.perf_counter()
                done = await client.checkin(keys[n % gates], code, f"Gate {n % gates}")
                admitted[code] = done.gate
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(gate_staff)
        report = DoorReport(len(admitted), time.perf_counter() - started, latencies)

        if sorted(admitted) != sorted(codes):
            report.problems.append(f"{len(codes) - len(admitted)} tickets not let in")
        for code in codes[:: max(1, len(codes) // 200)]:  # a second scan of 200 of them
            try:
                await client.checkin(keys[0], code, "Again")
                report.problems.append(f"ticket {code} let in twice")
            except AlreadyCheckedIn as exc:
                if exc.before.gate != admitted[code]:
                    report.problems.append(f"ticket {code}: first gate {exc.before.gate!r}")
        counts = await client.checkins(event.id)
        if (counts.checked_in, counts.live_tickets) != (len(codes), len(codes)):
            report.problems.append(
                f"counts {counts.checked_in} in of {counts.live_tickets}, sold {len(codes)}"
            )
        await client.close(event.id)
        return report


def main(argv: list[str] | None = None) -> int:
    """Run the door bench against a deployment and print its summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.door", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the HTTP API")
    parser.add_argument("--admin-key", required=True, help="the deployment's admin key")
    parser.add_argument("--tickets", type=int, default=2_000, help="places sold, then let in")
    parser.add_argument("--gates", type=int, default=8, help="gates (a staff key each)")
    parser.add_argument("--concurrency", type=int, default=32, help="scans in flight")
    parser.add_argument("--runtime", choices=RUNTIMES, default="trio")
    args = parser.parse_args(argv)
    door: Any = partial(
        run_door,
        args.url,
        args.admin_key,
        tickets=args.tickets,
        gates=args.gates,
        concurrency=args.concurrency,
    )
    report = run(door, args.runtime)
    if report is None:  # interrupted
        return 130
    print(report.summary())
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
