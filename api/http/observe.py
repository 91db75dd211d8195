"""Request ids, request metrics and the request's span, around the whole HTTP app.

Pure ASGI (no ``BaseHTTPMiddleware``: it costs a task and a memory stream per
request, and a payment is on the hot path): it reads the request's headers,
adds ``X-Request-Id`` (and, when tracing, ``traceresponse``) to the answer's,
counts the request by its route *template* and times it. Wrapped outside
Starlette's own error handling, so a 500 answer carries the request id too and
is counted as one.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from prometheus_client import Counter, Histogram

from plumbing import tracing
from plumbing.log_context import REQUEST_ID

__all__ = ["REQUESTS", "REQUEST_SECONDS", "UNMATCHED", "Observed"]

REQUESTS = Counter(
    "booking_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "booking_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

#: The route label of a path no route matches (a bounded label, whatever is asked).
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: A request id a client may choose: short, and safe to echo into headers and logs.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

Scope = dict[str, Any]
Message = dict[str, Any]


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"x-request-id":
            if _SANE_ID.fullmatch(value):
                return value
            break
    return os.urandom(16).hex().encode()  # unique, not secret: the cheaper call


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return ""


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class Observed:
    """``app`` with request ids, request metrics and (when tracing) a span per request."""

    __slots__ = ("_app", "_counters", "_timers")

    def __init__(self, app: Any) -> None:
        self._app = app
        self._counters: dict[tuple[str, str, int], Any] = {}  # label children, looked up once
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        extra = [(b"x-request-id", request_id)]
        status = 500  # unless an answer starts

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        token = REQUEST_ID.set(request_id.decode())
        try:
            if tracing.ENABLED:
                await self._traced(scope, receive, answer, extra, lambda: status)
            else:
                await self._app(scope, receive, answer)
        finally:
            REQUEST_ID.reset(token)
            self._count(scope, status, time.perf_counter() - started)

    async def _traced(
        self, scope: Scope, receive: Any, answer: Any, extra: list[tuple[bytes, bytes]], status: Any
    ) -> None:
        parent = _header(scope["headers"], b"traceparent")
        with tracing.span(f"{scope['method']} {scope['path']}", parent, server=True) as span:
            extra.append((b"traceresponse", span.traceparent.encode()))
            try:
                await self._app(scope, receive, answer)
            finally:
                span.rename(f"{scope['method']} {_route(scope)}")
                span.set("http.request.method", scope["method"])
                span.set("http.route", _route(scope))
                span.set("http.response.status_code", status())
                if status() >= 500:
                    span.fail(f"status {status()}")

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        route = _route(scope)
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = REQUESTS.labels(method, route, str(status))
            self._counters[method, route, status] = counter
        counter.inc()
        timer = self._timers.get((method, route))
        if timer is None:
            timer = REQUEST_SECONDS.labels(method, route)
            self._timers[method, route] = timer
        timer.observe(seconds)
