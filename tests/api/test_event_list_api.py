"""GET /v1/events (the list of events), POST /v1/events/{id}/close and each event's currency."""

from __future__ import annotations

import httpx
import pytest

from realtime import protocol as p
from tests.api.helpers import FUTURE, assert_error, create_event, expect, get_event, ws_connect
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio


async def test_the_list_shows_the_newest_events_with_prices_and_seats(
    http: httpx.AsyncClient,
) -> None:
    """Events come newest first with their state, price range, currency and seats by state
    (all sections together); the sale's counters are live."""
    first = await create_event(http, name="Older one", opens_at=FUTURE)
    second = await create_event(http, name="Newer one", currency="GBP")
    async with ws_connect(second["waitroom_url"]) as ws:
        await ws.send(p.encode(p.Join(quantity=2, client_id="lister", section="A")).decode())
        await expect(ws, p.Queued)
        await expect(ws, p.Prompt)
        resp = await http.get("/v1/events", params={"limit": "100"})
    assert resp.status_code == 200, resp.text
    events = resp.json()["events"]
    ids = [e["id"] for e in events]
    assert ids.index(second["id"]) < ids.index(first["id"])
    newer = events[ids.index(second["id"])]
    assert newer == {
        "id": second["id"],
        "name": "Newer one",
        "state": "open",
        "opens_at": "2020-01-01T00:00:00+00:00",
        "currency": "GBP",
        "min_price_cents": 1_000,
        "max_price_cents": 2_500,
        "capacity": 18,
        "free": 16,
        "held": 2,
        "sold": 0,
        "queue_length": 0,
    }
    older = events[ids.index(first["id"])]
    assert (older["state"], older["currency"], older["free"]) == ("scheduled", "EUR", 18)
    assert (await get_event(http, second["id"]))["currency"] == "GBP"


async def test_the_list_is_bounded_by_limit(http: httpx.AsyncClient) -> None:
    """``limit`` caps the answer; the newest event comes first."""
    created = [await create_event(http, name=f"Bounded {n}") for n in range(3)]
    events = (await http.get("/v1/events?limit=2")).json()["events"]
    assert [e["id"] for e in events] == [created[2]["id"], created[1]["id"]]


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


async def test_close_ends_the_sale(http: httpx.AsyncClient) -> None:
    """Close needs the admin key (401 changes nothing); then the event is closed, a join is
    told sold_out without a place, and closing again is 409 invalid_state."""
    event = await create_event(http)
    url = f"/v1/events/{event['id']}/close"
    assert_error(await http.post(url), 401, "unauthorized")
    assert_error(await http.post(url, headers={"Authorization": "Bearer nope"}), 401)
    before = (await get_event(http, event["id"]))["state"]
    assert before in ("scheduled", "open")  # open from the first script call after opens_at
    resp = await http.post(url, headers=admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": event["id"], "state": "closed"}
    assert_error(await http.post(url, headers=admin_headers()), 409, "invalid_state")
    assert_error(await http.post(f"/v1/events/{event['id']}/resume", headers=admin_headers()), 409)
    async with ws_connect(event["waitroom_url"]) as ws:
        await ws.send(p.encode(p.Join(quantity=1, client_id="late")).decode())
        await expect(ws, p.SoldOut)
    assert (await get_event(http, event["id"]))["queue_length"] == 0


async def test_close_of_an_unknown_event_is_404(http: httpx.AsyncClient) -> None:
    """Closing an event that does not exist answers 404 not_found."""
    assert_error(await http.post("/v1/events/evnope/close", headers=admin_headers()), 404)
