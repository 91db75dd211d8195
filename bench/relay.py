"""The event log's relay measured: entries published per second and webhook deliveries per
second, from a backlog, over the public interfaces.

Against a running ``booking serve`` whose deployment runs no relay yet (no worker, or
workers with ``BOOKING_WORKER_RELAY=off``): creates ``--events`` events, registers one
webhook each pointing at a receiver in this process (loopback), writes ``--changes``
entries per event (pauses and resumes), then starts ``--relay-command`` (e.g. ``booking
relay``, several times for several relays) and times (a) the entries relayed: queued to
the webhooks, read from ``GET /v1/events/{id}/webhooks`` (pending + delivered), and (b)
the deliveries the receiver accepted, each (event, seq) counted once.

    python -m bench.relay --url http://127.0.0.1:8000 --admin-key KEY \\
        --relay-command "./booking relay" --relays 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field

import anyio
import anyio.abc

from api.client import BookingClient

__all__ = ["main"]


@dataclass
class _Received:
    keys: set[tuple[str, int]] = field(default_factory=set)
    posts: int = 0
    first_at: float = 0.0
    last_at: float = 0.0


async def _serve(received: _Received, stream: anyio.abc.SocketStream) -> None:
    async with stream:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                try:
                    chunk = await stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                rest += await stream.receive(65536)
            body, buffer = rest[:length], rest[length:]
            entry = json.loads(body)
            now = time.perf_counter()
            received.first_at = received.first_at or now
            received.last_at = now
            received.posts += 1
            received.keys.add((entry["event_id"], entry["seq"]))
            await stream.send(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")


async def run(args: argparse.Namespace) -> dict[str, float]:
    received = _Received()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with (
        anyio.create_task_group() as tg,
        BookingClient(args.url, admin_key=args.admin_key) as client,
    ):
        tg.start_soon(listener.serve, lambda s: _serve(received, s))
        spec = {
            "name": "Relay bench",
            "opens_at": "2099-01-01T00:00:00Z",
            "sections": [{"id": "GA", "price_cents": 1000, "capacity": 10}],
            "max_per_order": 1,
            "hold_seconds": 60,
        }
        events = [(await client.create_event(spec)).id for _ in range(args.events)]
        for event_id in events:
            await client.create_webhook(event_id, f"http://127.0.0.1:{port}/hook")

        async def changes(event_id: str) -> None:
            for i in range(args.changes):
                # A scheduled event is neither open nor paused: caps changes are entries too.
                await client.set_admission(event_id, max_active_holds=100 + i % 2)

        async with anyio.create_task_group() as writers:
            for event_id in events:
                writers.start_soon(changes, event_id)
        expected = args.events * (args.changes + 1)  # each change and the registration
        relays = [
            await anyio.open_process(
                shlex.split(args.relay_command),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(args.relays)
        ]
        started = time.perf_counter()
        relayed_at = 0.0
        try:
            with anyio.fail_after(args.max_seconds):
                while len(received.keys) < expected:
                    if not relayed_at:
                        queued = 0
                        for event_id in events:
                            for hook in (await client.webhooks(event_id)).webhooks:
                                queued += hook.pending + hook.delivered + hook.dead
                        if queued >= expected:
                            relayed_at = time.perf_counter()
                    await anyio.sleep(0.05)
        finally:
            for proc in relays:
                proc.terminate()
            for proc in relays:
                await proc.wait()
        done = time.perf_counter()
        tg.cancel_scope.cancel()
    relayed_s = (relayed_at or done) - started
    return {
        "entries": expected,
        "relays": args.relays,
        "relayed_per_s": round(expected / relayed_s, 1),
        "delivered_per_s": round(expected / (done - started), 1),
        "posts": received.posts,
        "seconds_to_relay": round(relayed_s, 2),
        "seconds_to_deliver": round(done - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--admin-key", required=True)
    parser.add_argument("--relay-command", required=True, help="how to start one relay")
    parser.add_argument("--relays", type=int, default=1)
    parser.add_argument("--events", type=int, default=8)
    parser.add_argument("--changes", type=int, default=500, help="entries written per event")
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args(argv)
    print(json.dumps(anyio.run(run, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
