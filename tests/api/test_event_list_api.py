"""GET /v1/events (the list of events), POST /v1/events/{id}/close and each event's currency."""

from __future__ import annotations

import anyio
import httpx
import pytest

from api.client import BookingClient, WaitingRoom
from api.http.schemas import EventSummary, StateView
from realtime import protocol as p
from tests.api.helpers import FUTURE, STEP_S, assert_error, event_body, prompted, queued_in
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio


async def test_the_list_shows_the_newest_events_with_prices_and_seats(
    client: BookingClient,
) -> None:
    """Events come newest first with their state, price range, currency and seats by state
    (all sections together); the sale's counters are live."""
    first = await client.create_event(event_body(name="Older one", opens_at=FUTURE))
    second = await client.create_event(event_body(name="Newer one", currency="GBP"))
    async with WaitingRoom.connect(second.waitroom_url) as room:
        await queued_in(room, "lister", 2, "A")
        await prompted(room)
        events = (await client.events(limit=100)).events
    ids = [e.id for e in events]
    assert ids.index(second.id) < ids.index(first.id)
    newer = events[ids.index(second.id)]
    assert newer == EventSummary(
        id=second.id,
        name="Newer one",
        state="open",
        opens_at="2020-01-01T00:00:00+00:00",
        currency="GBP",
        min_price_cents=1_000,
        max_price_cents=2_500,
        capacity=18,
        free=16,
        held=2,
        sold=0,
        queue_length=0,
    )
    older = events[ids.index(first.id)]
    assert (older.state, older.currency, older.free) == ("scheduled", "EUR", 18)
    assert (await client.event(second.id)).currency == "GBP"


async def test_the_list_is_bounded_by_limit(client: BookingClient) -> None:
    """``limit`` caps the answer; the newest event comes first."""
    created = [await client.create_event(event_body(name=f"Bounded {n}")) for n in range(3)]
    events = (await client.events(limit=2)).events
    assert [e.id for e in events] == [created[2].id, created[1].id]


@pytest.mark.parametrize(
    "limit", ["0", "101", "-1", "x", "1.5", "", "\u0661", "99999999999999999999"]
)
async def test_a_bad_limit_is_400(http: httpx.AsyncClient, limit: str) -> None:
    """A limit that is not a whole number from 1 to 100 answers 400 invalid_request."""
    body = assert_error(await http.get("/v1/events", params={"limit": limit}), 400)
    assert body["error"] == "invalid_request"
    assert "limit" in body["message"]


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", "", 5, None])
async def test_a_bad_currency_is_refused(http: httpx.AsyncClient, currency: object) -> None:
    """The currency is a three-letter ISO 4217 code in capitals."""
    body = {
        "name": "Bad currency",
        "opens_at": FUTURE,
        "currency": currency,
        "sections": [{"id": "GA", "price_cents": 100, "capacity": 5}],
    }
    resp = await http.post("/v1/events", json=body, headers=admin_headers())
    assert_error(resp, 400, "invalid_request")


async def test_close_ends_the_sale(client: BookingClient, http: httpx.AsyncClient) -> None:
    """Close needs the admin key (401 changes nothing); then the event is closed, a join is
    told sold_out without a place, and closing again is 409 invalid_state."""
    event = await client.create_event(event_body())
    url = f"/v1/events/{event.id}/close"
    assert_error(await http.post(url), 401, "unauthorized")
    assert_error(await http.post(url, headers={"Authorization": "Bearer nope"}), 401)
    before = (await client.event(event.id)).state
    assert before in ("scheduled", "open")  # open from the first script call after opens_at
    assert await client.close(event.id) == StateView(id=event.id, state="closed")
    assert_error(await http.post(url, headers=admin_headers()), 409, "invalid_state")
    assert_error(await http.post(f"/v1/events/{event.id}/resume", headers=admin_headers()), 409)
    async with WaitingRoom.connect(event.waitroom_url) as room:
        with anyio.fail_after(STEP_S):
            assert isinstance(await room.join("late"), p.SoldOut)
    assert (await client.event(event.id)).queue_length == 0


async def test_close_of_an_unknown_event_is_404(http: httpx.AsyncClient) -> None:
    """Closing an event that does not exist answers 404 not_found."""
    assert_error(await http.post("/v1/events/evnope/close", headers=admin_headers()), 404)
