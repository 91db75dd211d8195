"""The Python client's CPU per payment: what each simulated buyer's payment costs a bench process.

``python -m bench.client_cost [--runtime trio|asyncio] [--payments N]`` pays N holds
through ``api.client.BookingClient`` (32 at a time) against a stub server in another
process that answers every request with a fixed booking, and prints the client
process's CPU time per payment. The stub does no work, so this is the client's cost
alone: HTTP framing, the pool, msgspec encoding and decoding.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from functools import partial

import anyio

from api.client import BookingClient
from plumbing.runtime import run

__all__ = ["main"]

_BOOKING = (
    b'{"id":"bk0123456789abcdef","event_id":"ev0123456789","hold_id":"ev0123456789.1",'
    b'"status":"confirmed","amount_cents":5000,"created_at":"2026-11-30T08:43:30.540221+00:00",'
    b'"tickets":[{"code":"abcdefghijklmnop","section":"A","row":"R1","number":1}]}'
)
_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BOOKING),
    _BOOKING,
)
CONCURRENCY = 32


def _answer_forever(conn: socket.socket) -> None:
    buffer = b""
    while data := conn.recv(65536):
        buffer += data
        while b"\r\n\r\n" in buffer:
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                break
            buffer = rest[length:]
            conn.sendall(_ANSWER)


def _serve(listener: socket.socket) -> None:
    """The stub: a thread per connection, a fixed booking per request."""
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_answer_forever, args=(conn,), daemon=True).start()


async def _measure(url: str, payments: int) -> tuple[float, float]:
    """CPU seconds and wall seconds for ``payments`` payments (after a warm-up)."""
    async with BookingClient(url, max_connections=CONCURRENCY, timeout_s=None) as client:

        async def pay(n: int) -> None:
            for i in range(n):
                booking = await client.pay("ev0123456789.1", "t" * 120, "tok_visa", f"key-{i}")
                assert booking.id

        for count in (20, payments // CONCURRENCY):
            started, cpu = time.perf_counter(), time.process_time()
            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENCY):
                    tg.start_soon(pay, count)
        return time.process_time() - cpu, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Measure and print the client's CPU per payment."""
    parser = argparse.ArgumentParser(prog="python -m bench.client_cost", description=__doc__)
    parser.add_argument("--runtime", choices=["trio", "asyncio"], default="trio")
    parser.add_argument("--payments", type=int, default=40_000)
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fd is not None:  # the stub server's process
        _serve(socket.socket(fileno=args.serve_fd))
        return 0
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    command = [sys.executable, "-m", "bench.client_cost", "--serve-fd", str(fd)]
    stub = subprocess.Popen(command, pass_fds=[fd])
    listener.close()
    try:
        payments = args.payments // CONCURRENCY * CONCURRENCY
        measured = run(partial(_measure, f"http://127.0.0.1:{port}", payments), args.runtime)
    finally:
        stub.kill()
        stub.wait()
    if measured is None:  # interrupted
        return 1
    cpu, wall = measured
    print(
        f"{args.runtime}: {cpu / payments * 1e6:.1f} µs of client CPU per payment "
        f"({payments} payments, {CONCURRENCY} at a time, {payments / wall:,.0f}/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
