"""PATCH /v1/events/{id}/admission: admission caps changed live by an admin."""

from __future__ import annotations

import httpx
import pytest

from api.client import BookingClient
from api.http.schemas import AdmissionView
from tests.api.helpers import FUTURE, assert_error, event_body
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio


async def _caps(client: BookingClient, event_id: str) -> tuple[int, int]:
    """The caps the event view shows: max_active_holds, admissions_per_minute."""
    view = await client.event(event_id)
    return view.max_active_holds, view.admissions_per_minute


async def test_admission_caps_change_live_and_show_on_the_event(client: BookingClient) -> None:
    """Each cap changes alone; the event view shows the caps in force."""
    event_id = (await client.create_event(event_body(opens_at=FUTURE, max_active_holds=50))).id
    assert await _caps(client, event_id) == (50, 0)
    caps = await client.set_admission(event_id, admissions_per_minute=300)
    assert caps == AdmissionView(id=event_id, max_active_holds=50, admissions_per_minute=300)
    caps = await client.set_admission(event_id, max_active_holds=5)
    assert caps == AdmissionView(id=event_id, max_active_holds=5, admissions_per_minute=300)
    assert await _caps(client, event_id) == (5, 300)


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
    client: BookingClient, http: httpx.AsyncClient, body: object
) -> None:
    """A body naming no cap, a cap out of range or an unknown field is 400 invalid_request."""
    event_id = (await client.create_event(event_body(opens_at=FUTURE, max_active_holds=50))).id
    resp = await http.patch(f"/v1/events/{event_id}/admission", json=body, headers=admin_headers())
    assert_error(resp, 400, "invalid_request")
    assert await _caps(client, event_id) == (50, 0)


async def test_admission_change_needs_the_admin_key_and_a_known_event(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """Without the admin key it is 401; for an unknown event 404."""
    event_id = (await client.create_event(event_body(opens_at=FUTURE))).id
    body = {"max_active_holds": 3}
    resp = await http.patch(f"/v1/events/{event_id}/admission", json=body)
    assert_error(resp, 401, "unauthorized")
    resp = await http.patch(
        f"/v1/events/{event_id}/admission", json=body, headers={"Authorization": "Bearer nope"}
    )
    assert_error(resp, 401, "unauthorized")
    resp = await http.patch("/v1/events/nosuch/admission", json=body, headers=admin_headers())
    assert_error(resp, 404, "not_found")
