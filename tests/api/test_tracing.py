"""One booking, one trace: spans of serve and worker processes share the payment's trace id,
exported over OTLP/HTTP, and the JSON log lines of both name it.

``booking serve`` and ``booking worker`` run as real processes with JSON logs and
tracing on, exporting to a tiny OTLP/HTTP receiver in this test; a buyer joins over
the WebSocket, pays with the prompt's ``traceparent`` and is told ``confirmed``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from api.client import BookingClient, WaitingRoom
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.booking_process import ROOT, booking
from tests.api.helpers import event_body, new_key, outcome_of, prompted, queued_in
from tests.conftest import ADMIN_KEY, RUNTIME, SECRET

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


@dataclass
class Receiver:
    """What a tiny OTLP/HTTP collector received."""

    url: str
    spans: list[ExportedSpan] = field(default_factory=list)


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP trace receiver on a free loopback port (protobuf, as the SDK sends)."""
    received: list[ExportedSpan] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    for s in scope_spans.spans:
                        attributes = {
                            a.key: a.value.string_value or a.value.int_value for a in s.attributes
                        }
                        received.append(
                            ExportedSpan(
                                service,
                                s.name,
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex(),
                                attributes,
                            )
                        )
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()


async def test_one_payment_is_one_trace_across_serve_and_worker(
    servers: EmbeddedServers, tmp_path: Path
) -> None:
    """join → admitted → prompt delivered → payment → committed → confirmed delivered: one
    trace id over the serve and worker processes, in their spans and their JSON log lines."""
    assert servers.redis_url and servers.database_url
    with otlp_receiver() as receiver:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": servers.redis_url,
            "DATABASE_URL": servers.database_url,
            "BOOKING_SECRET": SECRET,
            "BOOKING_ADMIN_KEY": ADMIN_KEY,
            "BOOKING_RUNTIME": RUNTIME,
            "BOOKING_LOG_FORMAT": "json",
            "BOOKING_LOG_LEVEL": "debug",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        serve_argv = ["serve", "--http-port", "0", "--ws-port", "0"]
        worker_argv = ["worker", "--metrics-port", "0"]
        async with (
            booking(serve_argv, env, tmp_path / "serve.err", "HTTP API:") as (serve, http_line),
            booking(worker_argv, env, tmp_path / "worker.err", "worker running") as (worker, _),
        ):
            http_url = http_line.split()[-1]
            [ws_line] = [
                line["message"]
                for line in serve.logged()
                if line["message"].startswith("WebSocket:")
            ]
            async with (
                BookingClient(http_url, admin_key=ADMIN_KEY) as client,
                httpx.AsyncClient(base_url=http_url, trust_env=False, timeout=30) as http,
            ):
                created = await client.create_event(event_body())
                async with WaitingRoom.connect(created.waitroom_url) as room:
                    await queued_in(room, f"c-{uuid.uuid4().hex}")
                    prompt = await prompted(room, wait_s=30)
                    assert prompt.traceparent, "a traced server hands the trace to the client"
                    # the payment's headers are what this test is about: a raw request
                    answer = await http.post(
                        f"/v1/holds/{prompt.hold_id}/payment",
                        headers={
                            "Authorization": f"Bearer {prompt.hold_token}",
                            "Idempotency-Key": new_key(),
                            "traceparent": prompt.traceparent,
                            "X-Request-Id": "pay-req-1",
                        },
                        json={"card_token": "tok_visa"},
                    )
                    assert answer.status_code == 200, answer.text
                    confirmed = await outcome_of(room, wait_s=30)
            assert ws_line
        booking_id = answer.json()["id"]
        assert confirmed == p.Confirmed(booking_id=booking_id)
        trace_id = prompt.traceparent.split("-")[1]
        assert answer.headers["x-request-id"] == "pay-req-1"
        assert answer.headers["traceresponse"].split("-")[1] == trace_id

        # Both processes exported their spans when they stopped.
        in_trace = [s for s in receiver.spans if s.trace_id == trace_id]
        names = {(s.service, s.name) for s in in_trace}
        assert {
            ("booking-serve", "join"),
            ("booking-worker", "admitted"),
            ("booking-serve", "prompt delivered"),
            ("booking-serve", "POST /v1/holds/{hold_id}/payment"),
            ("booking-serve", "claim"),
            ("booking-serve", "charge"),
            ("booking-serve", "committed"),
            ("booking-serve", "confirm"),
            ("booking-serve", "confirmed delivered"),
        } <= names, names
        by_id = {s.span_id: s for s in in_trace}
        parent = {s.name: by_id[s.parent_id].name for s in in_trace if s.parent_id in by_id}
        assert parent["admitted"] == "join"
        assert parent["prompt delivered"] == "join"
        assert parent["POST /v1/holds/{hold_id}/payment"] == "prompt delivered"
        assert parent["committed"] == "POST /v1/holds/{hold_id}/payment"
        assert parent["confirmed delivered"] == "confirm"

        # Every stderr line of both processes is JSON with the required fields ...
        serve_lines, worker_lines = serve.logged(), worker.logged()
        for line in serve_lines + worker_lines:
            assert {"time", "level", "logger", "message"} <= line.keys(), line
            assert line["time"].endswith("Z"), line
        # ... and the booking's lines carry its trace id.
        [paid] = [
            line
            for line in serve_lines
            if line.get("booking") == booking_id and "request_id" in line
        ]
        assert paid["trace_id"] == trace_id and paid["request_id"] == "pay-req-1"
        assert paid["hold"] == prompt.hold_id and paid["event"] == created.id
        admitted = [line for line in worker_lines if line.get("hold") == prompt.hold_id]
        assert admitted and admitted[0]["trace_id"] == trace_id, worker_lines


@pytest.mark.once
def test_tracing_off_loads_no_opentelemetry() -> None:
    """With tracing off, the project's modules import nothing of OpenTelemetry (the spans'
    code paths test a flag and stop there): no tracing SDK, no exporter, nothing beyond
    what redis-py loads by itself (its optional metrics hook imports the OTel API)."""
    code = (
        "import sys, redis.asyncio\n"
        "def otel(): return {m for m in sys.modules if m.startswith('opentelemetry')}\n"
        "by_redis = otel()\n"
        "import api.cli, api.commands, api.wiring, realtime.server, engine.checkout\n"
        "from plumbing import tracing\n"
        "with tracing.step('charge'):\n"
        "    pass\n"
        "assert tracing.current_traceparent() == ''\n"
        "assert 'opentelemetry.sdk.trace' not in sys.modules\n"
        "print(sorted(otel() - by_redis))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True
    )
    assert out.stdout.decode().strip() == "[]", out
