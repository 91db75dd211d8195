"""Microseconds the HTTP observation layer adds to a request, without and with tracing.

Calls an ASGI app that answers at once, directly (no server, no sockets), bare and
wrapped in ``api.http.observe.Observed``; prints the added cost per request.

    PYTHONPATH=. .venv/bin/python scripts/bench_observe.py [--tracing]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import timeit
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from api.http.observe import Observed
from plumbing import tracing


async def _ok(request: Any) -> Response:
    return Response(b"{}", media_type="application/json")


def _app() -> Starlette:
    return Starlette(routes=[Route("/v1/holds/{hold_id}/payment", _ok, methods=["POST"])])


_SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/holds/h123/payment",
    "raw_path": b"/v1/holds/h123/payment",
    "root_path": "",
    "query_string": b"",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer x"),
        (b"idempotency-key", b"k1"),
    ],
    "client": ("127.0.0.1", 5000),
    "server": ("127.0.0.1", 8000),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"{}", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


async def _per_request_us(app: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await app(dict(_SCOPE), _receive, _send)
    return (time.perf_counter() - started) / n * 1e6


async def main(n: int, rounds: int) -> None:
    bare, wrapped = _app(), Observed(_app())
    await _per_request_us(bare, 2000)  # warm up
    await _per_request_us(wrapped, 2000)
    pairs = [
        (await _per_request_us(bare, n), await _per_request_us(wrapped, n)) for _ in range(rounds)
    ]
    base = statistics.median(b for b, _ in pairs)
    added = statistics.median(w - b for b, w in pairs)
    print(
        f"tracing {'on' if tracing.ENABLED else 'off'}: bare app {base:.1f} µs/request, "
        f"observed +{added:.1f} µs/request (median of {rounds} rounds of {n})"
    )
    step = min(timeit.repeat(_one_step, number=100_000, repeat=5)) / 100_000 * 1e9
    print(f"one payment step (with tracing.step(...)): {step:.0f} ns")
    loaded = sorted({m.split(".")[0] for m in sys.modules if m.startswith("opentelemetry")})
    print(f"OpenTelemetry modules loaded: {loaded or 'none'}")


def _one_step() -> None:
    with tracing.step("charge"):
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tracing", action="store_true", help="with spans (in-memory exporter)")
    args = parser.parse_args()
    if args.tracing:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        tracing.configure(None, "bench", exporter=InMemorySpanExporter())
    asyncio.run(main(args.requests, args.rounds))
    sys.exit(0)
