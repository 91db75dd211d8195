"""The door bench sells a sale out, then checks every ticket in through the client."""

from __future__ import annotations

import pytest

from api.wiring import Services
from bench.door import run_door
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.anyio


async def test_every_ticket_of_a_sale_is_checked_in_once(services: Services) -> None:
    """42 places (ten bookings of 4 and one of 2), 3 gates: every ticket let in once, a second
    scan refused with the first gate, the counts equal to the sale; a rate and latencies."""
    report = await run_door(services.http_url, ADMIN_KEY, tickets=42, gates=3, concurrency=6)
    assert report.problems == []
    assert report.tickets == 42 and len(report.latencies) == 42
    assert report.seconds > 0 and "42 tickets checked in" in report.summary()
