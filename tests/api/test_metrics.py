"""/metrics exposes what operators watch during a sale, and it moves with the sale."""

from __future__ import annotations

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.wiring import Services
from bench.sale import SalePlan, run_sale
from engine.health import probe_stores
from storage.bridge import open_bridge
from storage.pg_store import open_pg_store
from tests.conftest import ADMIN_KEY

REQUIRED = {
    "booking_queue_length": "queue length",
    "booking_admissions": "admissions",
    "booking_active_holds": "active holds",
    "booking_bookings": "bookings",
    "booking_payment_seconds": "payment latency",
    "booking_ws_connections": "WebSocket connections",
    "booking_storage_round_trips": "storage round trips",
    "booking_bridge_crossings": "bridge crossings",
    "booking_revenue_cents": "revenue",
    "booking_store_up": "store readiness",
}


def _values(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


@pytest.mark.anyio
async def test_metrics_cover_the_sale(services: Services, http: httpx.AsyncClient) -> None:
    """Every required metric is exposed, and admissions, bookings and payments count a small sale."""
    before = _values((await http.get("/metrics")).text)
    families = {f.name for f in text_string_to_metric_families((await http.get("/metrics")).text)}
    missing = [label for name, label in REQUIRED.items() if name not in families]
    assert missing == []

    event = {
        "name": "Metrics",
        "opens_at": "2020-01-01T00:00:00Z",
        "hold_seconds": 5,
        "max_active_holds": 10,
        "sections": [{"id": "a", "price_cents": 100, "rows": [{"label": "A", "seats": 10}]}],
    }
    plan = SalePlan(clients=8, pay_ratio=1.0, decline_ratio=0.0, max_quantity=1, arrival_s=0.1)
    report = await run_sale(services.http_url, ADMIN_KEY, event, plan, progress=None)
    assert report.problems == []
    after = _values((await http.get("/metrics")).text)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert await _gauge(http, "booking_admissions_total", report.event_id) == 8
    assert await _gauge(http, "booking_bookings_total", report.event_id) == 8
    # Eight one-seat bookings at 100 cents, counted once each when made durable.
    assert await _gauge(http, "booking_revenue_cents_total", report.event_id) == 800
    assert grew("booking_payment_seconds_count") == 8
    assert grew("booking_storage_round_trips_total") > 0
    # The worker's discovery round (every second) sets both gauges from one read; the
    # bound is generous for a busy machine.
    with anyio.fail_after(10):
        while await _line_and_holds(http, report.event_id) != (0, 0):  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def _gauge(http: httpx.AsyncClient, name: str, event_id: str) -> float:
    """The value of ``name`` for one event."""
    text = (await http.get("/metrics")).text
    [value] = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and s.labels.get("event") == event_id
    ]
    return value


async def _line_and_holds(http: httpx.AsyncClient, event_id: str) -> tuple[float, float]:
    """The queue length and active holds gauges of one event."""
    return (
        await _gauge(http, "booking_queue_length", event_id),
        await _gauge(http, "booking_active_holds", event_id),
    )


@pytest.mark.anyio
async def test_store_up_follows_the_stores(services: Services, http: httpx.AsyncClient) -> None:
    """The probe sets booking_store_up to 1 for a store that answers and 0 for one that does not."""
    values = _values((await http.get("/metrics")).text)
    assert values["booking_store_up"] == 2  # both stores, 1 each
    assert services.settings.database_url
    async with open_bridge() as bridge:
        async with open_pg_store(services.settings.database_url, bridge) as gone:
            pass  # its pool is closed: PostgreSQL no longer answers through it
        answered = await probe_stores(services.redis, gone, timeout_s=2)
    assert answered == {"redis": True, "postgres": False}
    families = text_string_to_metric_families((await http.get("/metrics")).text)
    up = {
        s.labels["store"]: s.value
        for f in families
        for s in f.samples
        if s.name == "booking_store_up"
    }
    assert up == {"redis": 1, "postgres": 0}
    await probe_stores(services.redis, services.pg)
