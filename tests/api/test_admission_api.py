"""PATCH /v1/events/{id}/admission: admission caps changed live by an admin."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import FUTURE, assert_error, create_event, get_event
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio


async def test_admission_caps_change_live_and_show_on_the_event(http: httpx.AsyncClient) -> None:
    """Each cap changes alone; the event view shows the caps in force."""
    event_id = (await create_event(http, opens_at=FUTURE, max_active_holds=50))["id"]
    view = await get_event(http, event_id)
    assert (view["max_active_holds"], view["admissions_per_minute"]) == (50, 0)
    url = f"/v1/events/{event_id}/admission"
    resp = await http.patch(url, json={"admissions_per_minute": 300}, headers=admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": event_id, "max_active_holds": 50, "admissions_per_minute": 300}
    resp = await http.patch(url, json={"max_active_holds": 5}, headers=admin_headers())
    assert resp.json() == {"id": event_id, "max_active_holds": 5, "admissions_per_minute": 300}
    view = await get_event(http, event_id)
    assert (view["max_active_holds"], view["admissions_per_minute"]) == (5, 300)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"max_active_holds": 0},
        {"admissions_per_minute": -1},
        {"max_active_holds": "many"},
        {"rate": 10},
        [],
    ],
)
async def test_bad_admission_body_is_400_and_changes_nothing(
    http: httpx.AsyncClient, body: object
) -> None:
    """A body naming no cap, a cap out of range or an unknown field is 400 invalid_request."""
    event_id = (await create_event(http, opens_at=FUTURE, max_active_holds=50))["id"]
    resp = await http.patch(f"/v1/events/{event_id}/admission", json=body, headers=admin_headers())
    assert_error(resp, 400, "invalid_request")
    view = await get_event(http, event_id)
    assert (view["max_active_holds"], view["admissions_per_minute"]) == (50, 0)


async def test_admission_change_needs_the_admin_key_and_a_known_event(
    http: httpx.AsyncClient,
) -> None:
    """Without the admin key it is 401; for an unknown event 404."""
    event_id = (await create_event(http, opens_at=FUTURE))["id"]
    body = {"max_active_holds": 3}
    resp = await http.patch(f"/v1/events/{event_id}/admission", json=body)
    assert_error(resp, 401, "unauthorized")
    resp = await http.patch(
        f"/v1/events/{event_id}/admission", json=body, headers={"Authorization": "Bearer nope"}
    )
    assert_error(resp, 401, "unauthorized")
    resp = await http.patch("/v1/events/nosuch/admission", json=body, headers=admin_headers())
    assert_error(resp, 404, "not_found")
