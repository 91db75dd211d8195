"""Every HTTP answer carries a request id, and every request is counted by its route template."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from api.wiring import Services
from tests.api.helpers import event_body
from tests.conftest import admin_client, admin_headers

pytestmark = pytest.mark.anyio

_GENERATED = re.compile(r"[0-9a-f]{32}")


async def test_request_ids_are_generated_or_echoed(http: httpx.AsyncClient) -> None:
    """A sane X-Request-Id is echoed; a missing, overlong or unsafe one is replaced by a fresh id."""
    first, second = await http.get("/healthz"), await http.get("/healthz")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(_GENERATED.fullmatch(i) for i in ids) and ids[0] != ids[1]

    echoed = await http.get("/healthz", headers={"X-Request-Id": "lb-7f3a.2:9_x"})
    assert echoed.headers["x-request-id"] == "lb-7f3a.2:9_x"
    for bad in ("x" * 129, "a b", "<script>", "id\u00e9".encode()):
        answer = await http.get("/healthz", headers={"X-Request-Id": bad})
        assert _GENERATED.fullmatch(answer.headers["x-request-id"]), bad


async def test_error_answers_carry_request_ids(http: httpx.AsyncClient) -> None:
    """Errors of every kind (unknown path, wrong method, refused payment, bad body) carry one too."""
    answers = [
        await http.get("/no/such/path"),
        await http.delete("/v1/events"),
        await http.post("/v1/holds/h1/payment", json={}),
        await http.post("/v1/events", content=b"{", headers=admin_headers()),
    ]
    assert [a.status_code for a in answers] == [404, 405, 401, 400]
    assert all(_GENERATED.fullmatch(a.headers["x-request-id"]) for a in answers)


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    # Only the named metric's lines are parsed: late in a run the process's registry holds
    # the series of every event the earlier tests made, and parsing it all takes minutes.
    lines = "\n".join(line for line in text.splitlines() if line.startswith(name + "{"))
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(lines + "\n")
        for s in f.samples
        if s.name == name
    }


async def test_requests_are_counted_by_route_template(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Counts and durations use the route template, never the raw path; unknown paths are "unmatched"."""
    async with admin_client(services) as client:
        created = await client.create_event(event_body())
    before = (await http.get("/metrics")).text
    await http.get(f"/v1/events/{created.id}")
    await http.get("/v1/events/no-such-event")
    for hold in ("h1", "h2", "h3"):
        await http.post(f"/v1/holds/{hold}/payment", json={})
    await http.get("/secret/admin.php")
    await http.get("/another/random/path")
    await http.request("BREW", "/v1/events")
    after = (await http.get("/metrics")).text

    counts = "booking_http_requests_total"
    grown = {
        labels: value - _samples(before, counts).get(labels, 0.0)
        for labels, value in _samples(after, counts).items()
    }

    def grew(method: str, route: str, status: str) -> float:
        return grown.get((("method", method), ("route", route), ("status", status)), 0.0)

    assert grew("GET", "/v1/events/{event_id}", "200") == 1
    assert grew("GET", "/v1/events/{event_id}", "404") == 1
    assert grew("POST", "/v1/holds/{hold_id}/payment", "401") == 3
    assert grew("GET", "unmatched", "404") == 2
    assert grew("OTHER", "/v1/events", "405") == 1
    routes = {dict(labels)["route"] for labels in _samples(after, counts)}
    assert routes <= {r.path for r in services_routes()} | {"unmatched"}, routes

    durations = _samples(after, "booking_http_request_duration_seconds_count")
    payment = (("method", "POST"), ("route", "/v1/holds/{hold_id}/payment"))
    earlier = _samples(before, "booking_http_request_duration_seconds_count").get(payment, 0.0)
    assert durations[payment] - earlier == 3


def services_routes() -> list[Any]:
    """The routes of the HTTP app (their templates are the only route labels)."""
    from api.http.app import ROUTES

    return list(ROUTES)


async def test_a_crashing_handler_answers_500_with_a_request_id() -> None:
    """A handler that raises still answers 500 with X-Request-Id (the layer is outside
    Starlette's error handling) and is counted as a 500 of its route."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from api.http.app import _HANDLERS
    from api.http.observe import Observed

    async def crash(request: Request) -> Response:
        raise RuntimeError("a bug")

    # The production error handlers, around a route that fails.
    app = Observed(Starlette(routes=[Route("/crash/{n}", crash)], exception_handlers=_HANDLERS))
    labels = {"method": "GET", "route": "/crash/{n}", "status": "500"}

    def counted() -> float:
        return REGISTRY.get_sample_value("booking_http_requests_total", labels) or 0.0

    before = counted()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/crash/1", headers={"X-Request-Id": "req-500"})
    assert answer.status_code == 500 and answer.json()["error"] == "internal_error"
    assert answer.headers["x-request-id"] == "req-500"
    assert counted() - before == 1
