"""POST/GET /v1/events and admission control, against the running system."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.client import BookingClient, WaitingRoom
from api.http.schemas import SectionAvailability, StateView
from api.wiring import Roles, Services, open_services
from storage.embedded import EmbeddedServers
from tests.api.helpers import (
    FUTURE,
    assert_error,
    count_events,
    event_body,
    prompted,
    queued_in,
)
from tests.conftest import ADMIN_KEY, admin_headers, make_settings

pytestmark = pytest.mark.anyio


async def test_create_event_answers_201_with_id_and_waitroom_url(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Creating an event answers 201 with its id and the WebSocket URL of its waiting room."""
    resp = await http.post("/v1/events", json=event_body(), headers=admin_headers())
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"id", "waitroom_url"}
    assert isinstance(body["id"], str) and body["id"]
    assert body["waitroom_url"] == (
        f"ws://127.0.0.1:{services.ws_port}/v1/events/{body['id']}/waitroom"
    )


async def test_two_events_get_distinct_ids(client: BookingClient) -> None:
    """Each created event gets its own id."""
    first = await client.create_event(event_body())
    second = await client.create_event(event_body())
    assert first.id != second.id


async def test_get_event_shows_spec_state_and_availability(client: BookingClient) -> None:
    """GET /v1/events/{id} echoes the spec and shows per-section availability and an empty line."""
    created = await client.create_event(
        event_body(name="Arena night", opens_at=FUTURE, max_per_order=3, hold_seconds=90)
    )
    view = await client.event(created.id)
    assert view.id == created.id
    assert view.name == "Arena night"
    assert view.state == "scheduled"  # opens in the future
    assert view.opens_at == "2099-01-01T00:00:00+00:00"
    assert (view.max_per_order, view.hold_seconds, view.max_active_holds) == (3, 90, 500)
    assert view.queue_length == 0
    assert view.active_holds == 0
    assert view.waitroom_url == created.waitroom_url
    assert view.sections == [
        SectionAvailability(id="A", price_cents=2_500, capacity=8, free=8, held=0, sold=0),
        SectionAvailability(id="GA", price_cents=1_000, capacity=10, free=10, held=0, sold=0),
    ]


async def test_get_event_counts_the_waiting_line(client: BookingClient) -> None:
    """queue_length counts clients who joined and were not yet admitted."""
    created = await client.create_event(event_body(opens_at=FUTURE))
    url = created.waitroom_url
    async with WaitingRoom.connect(url) as a, WaitingRoom.connect(url) as b:
        first = await queued_in(a, "client-a", 2)
        second = await queued_in(b, "client-b", 1, "GA")
        assert (first.ticket, second.ticket) == (1, 2)
        view = await client.event(created.id)
    assert view.queue_length == 2
    assert view.active_holds == 0
    assert all(s.free == s.capacity for s in view.sections)


async def test_opened_event_holds_seats_for_the_first_client(client: BookingClient) -> None:
    """Once open, the worker admits a joined client: its seats show as held and it has a hold."""
    created = await client.create_event(event_body())
    async with WaitingRoom.connect(created.waitroom_url) as room:
        await queued_in(room, "client-a", 2, "A")
        prompt = await prompted(room)
        view = await client.event(created.id)
    assert len(prompt.seats) == 2
    assert view.state == "open"
    assert view.queue_length == 0
    assert view.active_holds == 1
    a = next(s for s in view.sections if s.id == "A")
    assert (a.free, a.held, a.sold) == (6, 2, 0)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": "Bearer"},
        {"Authorization": "test-admin-key-0123456789"},
    ],
    ids=["missing", "wrong-key", "basic", "empty-bearer", "no-scheme"],
)
async def test_create_event_requires_the_admin_key(
    services: Services, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """POST /v1/events without the admin bearer key answers 401 and creates nothing."""
    before = await count_events(services)
    resp = await http.post("/v1/events", json=event_body(), headers=headers)
    assert_error(resp, 401, "unauthorized")
    assert resp.headers.get("www-authenticate") == "Bearer"
    assert await count_events(services) == before


def _without(key: str) -> dict[str, Any]:
    body = event_body()
    del body[key]
    return body


def _section(**fields: Any) -> dict[str, Any]:
    return event_body(sections=[{"id": "S", "price_cents": 100, **fields}])


INVALID_BODIES: dict[str, dict[str, Any]] = {
    "unknown-field": event_body(colour="red"),
    "unknown-section-field": _section(capacity=5, colour="red"),
    "missing-name": _without("name"),
    "missing-opens-at": _without("opens_at"),
    "missing-sections": _without("sections"),
    "empty-name": event_body(name=""),
    "no-sections": event_body(sections=[]),
    "rows-and-capacity": _section(capacity=5, rows=[{"label": "R1", "seats": 2}]),
    "neither-rows-nor-capacity": _section(),
    "duplicate-section-ids": event_body(
        sections=[
            {"id": "S", "price_cents": 100, "capacity": 5},
            {"id": "S", "price_cents": 200, "capacity": 5},
        ]
    ),
    "duplicate-row-labels": _section(
        rows=[{"label": "R1", "seats": 2}, {"label": "R1", "seats": 3}]
    ),
    "naive-opens-at": event_body(opens_at="2026-12-01T10:00:00"),
    "garbage-opens-at": event_body(opens_at="next tuesday"),
    "negative-price": _section(price_cents=-1, capacity=5),
    "huge-price": _section(price_cents=10_000_001, capacity=5),
    "bad-section-id": _section(id="-bad id", capacity=5),
    "zero-seat-row": _section(rows=[{"label": "R1", "seats": 0}]),
    "max-per-order-zero": event_body(max_per_order=0),
    "max-per-order-string": event_body(max_per_order="4"),
    "hold-seconds-too-long": event_body(hold_seconds=3_601),
    # Strings and times the schema lets through but the system cannot store.
    "nul-in-name": event_body(name="Concert\u0000night"),
    "nul-in-section-name": _section(capacity=5, name="Stalls\u0000"),
    "nul-in-row-label": _section(rows=[{"label": "R\u00001", "seats": 2}]),
    "opens-at-before-year-1-in-utc": event_body(opens_at="0001-01-01T00:00:00+01:00"),
    "opens-at-after-year-9999-in-utc": event_body(opens_at="9999-12-31T23:59:59-01:00"),
    "too-many-seats": event_body(
        sections=[{"id": f"S{i}", "price_cents": 1, "capacity": 100_000} for i in range(3)]
    ),
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_invalid_event_body_is_refused_and_creates_nothing(
    services: Services, http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """An invalid event body answers 400 {"error","message"} and no event is created."""
    before = await count_events(services)
    resp = await http.post("/v1/events", json=body, headers=admin_headers())
    assert_error(resp, 400, "invalid_request")
    assert await count_events(services) == before


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[1, 2, 3]",
        b'{"name": "x",',
        b"\xff\xfe\x00garbage",
        b'{"name": "\xff\xfe", "opens_at": "2020-01-01T00:00:00Z", "sections": []}',
    ],
    ids=["empty", "text", "array", "truncated", "binary", "invalid-utf8-in-string"],
)
async def test_malformed_json_is_refused(
    services: Services, http: httpx.AsyncClient, content: bytes
) -> None:
    """A body that is not a JSON object answers 400 and creates nothing."""
    before = await count_events(services)
    resp = await http.post(
        "/v1/events",
        content=content,
        headers={**admin_headers(), "Content-Type": "application/json"},
    )
    assert_error(resp, 400, "invalid_request")
    assert await count_events(services) == before


async def test_oversize_body_is_refused(services: Services, http: httpx.AsyncClient) -> None:
    """A body over 16 KiB (declared by Content-Length) answers 400 and creates nothing."""
    body = event_body(name="x" * 150, sections=[])
    body["sections"] = [
        {"id": f"S{i}", "price_cents": 1, "capacity": 1, "name": "n" * 80} for i in range(50)
    ]
    body["padding"] = "p" * 17_000
    before = await count_events(services)
    resp = await http.post("/v1/events", json=body, headers=admin_headers())
    body_error = assert_error(resp, 400, "invalid_request")
    assert "larger than 16384" in body_error["message"]
    assert await count_events(services) == before


async def test_oversize_chunked_body_is_refused(
    services: Services, http: httpx.AsyncClient
) -> None:
    """A chunked body (no Content-Length) that grows past 16 KiB answers 400 and creates nothing."""

    async def chunks() -> Any:
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 1_024
        yield b'"}'

    before = await count_events(services)
    resp = await http.post(
        "/v1/events",
        content=chunks(),
        headers={**admin_headers(), "Content-Type": "application/json"},
    )
    body = assert_error(resp, 400, "invalid_request")
    assert "larger than 16384" in body["message"]
    assert await count_events(services) == before


async def test_unknown_event_is_404_json(http: httpx.AsyncClient) -> None:
    """GET, pause and resume of an unknown event answer 404 not_found in JSON."""
    assert_error(await http.get("/v1/events/evdoesnotexist"), 404, "not_found")
    for action in ("pause", "resume"):
        resp = await http.post(f"/v1/events/evdoesnotexist/{action}", headers=admin_headers())
        assert_error(resp, 404, "not_found")


@pytest.mark.parametrize("event_id", ["a%00b", "%00"], ids=["nul-inside", "nul-only"])
async def test_unknown_event_with_nul_in_id_is_404_json(
    http: httpx.AsyncClient, event_id: str
) -> None:
    """An event id containing NUL (percent-encoded) is just an unknown event: 404, not 500."""
    assert_error(await http.get(f"/v1/events/{event_id}"), 404, "not_found")
    resp = await http.post(f"/v1/events/{event_id}/pause", headers=admin_headers())
    assert_error(resp, 404, "not_found")
    resp = await http.get(f"/v1/bookings/{event_id}", headers=admin_headers())
    assert_error(resp, 404, "not_found")


async def test_unknown_route_is_404_json(http: httpx.AsyncClient) -> None:
    """A path no route serves answers 404 not_found in JSON."""
    assert_error(await http.get("/v1/nothing/here"), 404, "not_found")


async def test_pause_and_resume(client: BookingClient, http: httpx.AsyncClient) -> None:
    """Pause answers 200 paused, resume 200 open; resuming an open event is 409 invalid_state."""
    event_id = (await client.create_event(event_body())).id
    assert await client.pause(event_id) == StateView(id=event_id, state="paused")
    assert (await client.event(event_id)).state == "paused"

    # opens_at is in the past
    assert await client.resume(event_id) == StateView(id=event_id, state="open")
    assert (await client.event(event_id)).state == "open"

    resp = await http.post(f"/v1/events/{event_id}/resume", headers=admin_headers())
    body = assert_error(resp, 409, "invalid_state")
    assert "open" in body["message"]
    assert (await client.event(event_id)).state == "open"


async def test_pause_twice_is_409(client: BookingClient, http: httpx.AsyncClient) -> None:
    """Pausing a paused event answers 409 invalid_state and leaves it paused."""
    event_id = (await client.create_event(event_body(opens_at=FUTURE))).id
    assert (await client.pause(event_id)).state == "paused"
    url = f"/v1/events/{event_id}/pause"
    assert_error(await http.post(url, headers=admin_headers()), 409, "invalid_state")
    assert (await client.event(event_id)).state == "paused"


async def test_resume_before_opening_time_is_scheduled(client: BookingClient) -> None:
    """Resuming a paused event whose opening time is ahead puts it back to scheduled."""
    event_id = (await client.create_event(event_body(opens_at=FUTURE))).id
    await client.pause(event_id)
    assert (await client.resume(event_id)).state == "scheduled"


async def test_pause_and_resume_require_the_admin_key(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """Pause/resume without (or with a wrong) admin key answer 401 and change nothing."""
    event_id = (await client.create_event(event_body(opens_at=FUTURE))).id
    for action in ("pause", "resume"):
        assert_error(await http.post(f"/v1/events/{event_id}/{action}"), 401, "unauthorized")
        resp = await http.post(
            f"/v1/events/{event_id}/{action}", headers={"Authorization": "Bearer nope"}
        )
        assert_error(resp, 401, "unauthorized")
    assert (await client.event(event_id)).state == "scheduled"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/v1/events"),
        ("PUT", "/v1/events"),
        ("DELETE", "/v1/events/{id}"),
        ("POST", "/v1/events/{id}"),
        ("GET", "/v1/events/{id}/pause"),
        ("GET", "/v1/events/{id}/close"),
        ("GET", "/v1/holds/{id}.1/payment"),
        ("DELETE", "/v1/bookings/bk1"),
    ],
)
async def test_wrong_method_is_405_json(
    client: BookingClient, http: httpx.AsyncClient, method: str, path: str
) -> None:
    """A known path with a method it does not serve answers 405 in JSON and changes nothing."""
    event_id = (await client.create_event(event_body(opens_at=FUTURE))).id
    resp = await http.request(method, path.format(id=event_id), headers=admin_headers(), json={})
    body = assert_error(resp, 405)
    assert body["message"]
    assert (await client.event(event_id)).state == "scheduled"


async def test_bound_to_every_interface_the_waitroom_url_names_the_requested_host(
    servers: EmbeddedServers,
) -> None:
    """A server bound to 0.0.0.0 without BOOKING_PUBLIC_WS_URL tells each client the host it
    reached the API by, on the WebSocket port (never ws://0.0.0.0), and that URL connects."""
    settings = make_settings(servers.redis_url, servers.database_url, host="0.0.0.0")
    async with (
        open_services(settings, Roles(api=True, worker=False)) as running,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{running.http_port}", trust_env=False, timeout=30
        ) as http,
    ):
        async with BookingClient(str(http.base_url), admin_key=ADMIN_KEY) as client:
            created = await client.create_event(event_body())
        assert created.waitroom_url == (
            f"ws://127.0.0.1:{running.ws_port}/v1/events/{created.id}/waitroom"
        )
        view = await http.get(  # the Host header is what this test is about: a raw request
            f"/v1/events/{created.id}", headers={"Host": f"shop.example:{running.http_port}"}
        )
        assert view.json()["waitroom_url"] == (
            f"ws://shop.example:{running.ws_port}/v1/events/{created.id}/waitroom"
        )
        async with WaitingRoom.connect(created.waitroom_url) as room:
            await queued_in(room, "from-the-told-url")
