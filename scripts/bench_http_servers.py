"""What an HTTP server and the app's own layers cost a payment request, per server.

Serves the API's middleware stack (``Observed`` around the Starlette app with its error
handlers and ``CloseEarlyAnswers``) with one route shaped like ``POST
/v1/holds/{id}/payment``: the headers the real route reads (``Authorization``,
``Idempotency-Key``, ``X-Forwarded-For`` for the client address), its JSON body decoded
into ``PaymentBody`` through ``_body`` and a ``BookingView`` of three tickets encoded back.
No engine: what is measured is everything a payment costs a server besides the engine and
storage. Each server runs in a process of its own; a client process on uvloop keeps
``--connections`` keep-alive connections busy for ``--seconds``; the server's CPU per
request (user + system, from ``/proc``, its children included) is the figure to compare on
a shared machine, requests/s the one that moves with the load.

    PYTHONPATH=. .venv/bin/python scripts/bench_http_servers.py [--servers hypercorn-trio,...]

Servers: ``hypercorn-trio``, ``hypercorn-asyncio`` (uvloop), and, when installed,
``uvicorn`` (httptools, uvloop) and ``granian`` (its ASGI interface, one worker).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http.app import HttpState, _bearer, _body, _starlette, client_ip
from api.http.observe import Observed
from api.http.responses import json_response
from api.http.schemas import BookingView, PaymentBody, TicketView
from bench.cpu import tree_seconds

SERVERS = ("hypercorn-trio", "hypercorn-asyncio", "uvicorn", "granian")

_BODY = b'{"card_token":"tok_visa","email":"buyer@example.com"}'
_REQUEST = (
    b"POST /v1/holds/ev1.42/payment HTTP/1.1\r\n"
    b"host: 127.0.0.1\r\n"
    b"user-agent: booking-bench\r\n"
    b"authorization: Bearer hold.eyJldmVudCI6ImV2MSIsInNlcSI6NDJ9.c2lnbmF0dXJl\r\n"
    b"idempotency-key: 0123456789abcdef\r\n"
    b"content-type: application/json\r\n"
    b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


async def _pay(request: Request) -> Response:
    """The payment route's HTTP work, without the engine call."""
    client_ip(request)
    hold = request.path_params["hold_id"]
    _bearer(request)
    key = request.headers.get("idempotency-key", "")
    body = await _body(request, PaymentBody)
    tickets = [TicketView(f"T{i}.{key}", "A", "1", i) for i in range(3)]
    return json_response(
        BookingView(
            "b1", "ev1", hold, "confirmed", 3000, "2026-11-30T00:00:00+00:00", tickets,
            booking_token=f"booking.{body.card_token}", booking_token_expires_s=1,
        )
    )  # fmt: skip


def app() -> Any:
    """The app every server serves (``granian`` imports it by name)."""
    state = HttpState(
        engine=None,  # type: ignore[arg-type]  # the route makes no engine call
        admin_key="admin",
        max_body_bytes=16_384,
        waitroom_url=lambda event, host: "",
    )
    return Observed(
        _starlette([Route("/v1/holds/{hold_id}/payment", _pay, methods=["POST"])], state)
    )


def _serve(server: str, port: int) -> None:
    if server == "hypercorn-trio":
        from api.http.server import serve_http

        anyio.run(lambda: serve_http(app(), "127.0.0.1", port), backend="trio")
    elif server == "hypercorn-asyncio":
        from api.http.server import serve_http

        anyio.run(
            lambda: serve_http(app(), "127.0.0.1", port),
            backend="asyncio",
            backend_options={"use_uvloop": True},
        )
    elif server == "uvicorn":
        import uvicorn  # type: ignore[import-not-found]

        uvicorn.run(
            app(), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
            access_log=False, log_level="warning", lifespan="on",
        )  # fmt: skip
    elif server == "granian":
        from granian import Granian  # type: ignore[import-not-found]

        Granian(
            "scripts.bench_http_servers:app", address="127.0.0.1", port=port,
            interface="asgi", workers=1, loop="uvloop", log_enabled=False, factory=True,
        ).serve()  # fmt: skip
    else:
        raise SystemExit(f"unknown server {server!r}")


async def _client(port: int, connections: int, seconds: float) -> int:
    """Requests answered 200 by ``connections`` keep-alive connections in ``seconds``."""
    done = 0
    end = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < end:
            writer.write(_REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"answered {head[:200]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            done += 1
        writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _measure(server: str, connections: int, seconds: float) -> tuple[float, float]:
    """(requests/s, server CPU µs per request) of one server."""
    import uvloop

    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", server, "--port", str(port)])
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        uvloop.run(_client(port, connections, 1.0))  # warm up
        cpu = tree_seconds(proc.pid)
        started = time.perf_counter()
        done = uvloop.run(_client(port, connections, seconds))
        elapsed = time.perf_counter() - started
        cpu = tree_seconds(proc.pid) - cpu
    finally:
        proc.terminate()
        proc.wait()
    return done / elapsed, cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port)
        return
    print(f"{'server':20s} {'requests/s':>11s} {'server CPU µs/request':>22s}")
    for server in args.servers.split(","):
        rate, cpu_us = _measure(server, args.connections, args.seconds)
        print(f"{server:20s} {rate:11.0f} {cpu_us:22.0f}", flush=True)


if __name__ == "__main__":
    main()
