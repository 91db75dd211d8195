"""Cancellations per second: bookings cancelled and refunded, end to end, through the REST API.

``python -m bench.cancel_rate --url http://127.0.0.1:8000 [--bookings N] [--concurrency C]``
(the admin key from ``BOOKING_ADMIN_KEY``) creates an event of N places, buys N bookings of
one place each through the waiting room and the payment route, then cancels every one of
them as the admin, C at a time, and prints cancellations/s (first request to last answer)
with the latency percentiles. Each cancellation is the whole path: the pending record,
the refund, the finishing transaction and the seats freed in Redis. It ends by checking
the event's audit (every seat free again, PostgreSQL = Redis) and exits 1 if it fails.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta

import anyio

from api.client import BookingClient, WaitingRoom
from plumbing.runtime import run

__all__ = ["main"]


async def _buy(client: BookingClient, url: str, n: int, concurrency: int) -> list[str]:
    """``n`` bookings of one place each, ``concurrency`` buyers at a time: their ids."""
    booked: list[str] = []
    limit = anyio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limit, WaitingRoom.connect(url) as room:
            await room.join(f"cx-bench-{i}-{secrets.token_hex(4)}", 1)
            async for _ in room.until_prompt():
                pass
            prompt = room.prompt
            assert prompt is not None, await room.outcome()
            booking = await client.pay(
                prompt.hold_id, prompt.hold_token, "tok_visa", secrets.token_hex(8)
            )
            booked.append(booking.id)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return booked


async def _measure(args: argparse.Namespace) -> int:
    admin_key = os.environ.get("BOOKING_ADMIN_KEY", "")
    if not admin_key:
        print("set BOOKING_ADMIN_KEY", file=sys.stderr)
        return 2
    async with BookingClient(args.url, admin_key=admin_key, max_connections=64) as client:
        event = await client.create_event(
            {
                "name": "Cancellation bench",
                "opens_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                "sections": [{"id": "GA", "price_cents": 2_000, "capacity": args.bookings}],
                "max_per_order": 1,
                "hold_seconds": 600,
                "max_active_holds": args.bookings,
            }
        )
        started = time.perf_counter()
        booked = await _buy(client, event.waitroom_url, args.bookings, args.concurrency)
        print(f"{len(booked)} bookings made in {time.perf_counter() - started:.1f} s")

        latencies: list[float] = []
        limit = anyio.Semaphore(args.concurrency)

        async def cancel(booking_id: str) -> None:
            async with limit:
                t0 = time.perf_counter()
                answer = await client.cancel(booking_id, "bench-" + booking_id)
                latencies.append(time.perf_counter() - t0)
                assert answer.status == "refunded", answer

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for booking_id in booked:
                tg.start_soon(cancel, booking_id)
        elapsed = time.perf_counter() - started
        latencies.sort()

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

        print(
            f"{len(latencies)} cancellations in {elapsed:.2f} s: "
            f"{len(latencies) / elapsed:.0f} cancellations/s, {args.concurrency} at a time; "
            f"latency p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms"
        )
        audit = await client.audit(event.id, settled=True)
        free = sum(s.free for s in (await client.event(event.id)).sections)
        if not audit.ok or free != args.bookings:
            print(f"INVARIANTS BROKEN: {audit.problems}, {free} free", file=sys.stderr)
            return 1
        print(f"audit ok: {free} of {args.bookings} places free again")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Measure cancellations/s against a running deployment; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.cancel_rate", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--bookings", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runtime", default="trio", choices=["trio", "asyncio"])
    args = parser.parse_args(argv)
    return run(lambda: _measure(args), args.runtime) or 0


if __name__ == "__main__":
    sys.exit(main())
