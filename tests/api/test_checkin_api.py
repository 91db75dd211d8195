"""Check-in at the door over the running system: staff keys, one entry per ticket, the races.

Tickets are bought through the real interfaces (waiting room, then payment); a cancelled
ticket is made by setting ``tickets.live = false`` with SQL on the real database, as
cancelling a booking does.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import anyio
import httpx
import pytest

from api.client import AlreadyCheckedIn, ApiError, BookingClient, WaitingRoom
from api.http.schemas import BookingView, CheckinView
from api.wiring import Services
from tests.api.helpers import assert_error, event_body, new_key, pg_value, prompted, queued_in
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio


async def buy(client: BookingClient, waitroom_url: str, quantity: int = 2) -> BookingView:
    """One booking of ``quantity`` seats, bought through the waiting room and a payment."""
    async with WaitingRoom.connect(waitroom_url) as room:
        await queued_in(room, new_key("buyer"), quantity)
        prompt = await prompted(room)
        return await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())


async def _checkin_log(services: Services, code: str) -> int:
    """How many check-in entries the event log has for the ticket ``code``."""
    return int(
        await pg_value(
            services,
            "SELECT count(*) FROM event_log "
            "WHERE kind = 'ticket_checked_in' AND payload->>'code' = $1",
            code,
        )
    )


async def test_a_ticket_is_let_in_once_then_told_when_and_where(
    services: Services, client: BookingClient
) -> None:
    """The first scan answers the seat and records the gate; a second scan (another gate) is
    409 with the first scan's time and gate; one log entry; the counts and metrics follow."""
    event = await client.create_event(event_body())
    booking = await buy(client, event.waitroom_url, 2)
    staff = await client.create_staff_key(event.id, "North door")
    first, second = booking.tickets
    assert (await client.checkins(event.id)).checked_in == 0

    done = await client.checkin(staff.key, first.code, "North")
    assert (done.code, done.event_id, done.gate) == (first.code, event.id, "North")
    assert (done.section, done.row, done.number) == (first.section, first.row, first.number)
    with pytest.raises(AlreadyCheckedIn) as again:
        await client.checkin(staff.key, first.code, "South")
    before = again.value.before
    assert (again.value.status, before.error, before.gate) == (409, "already_checked_in", "North")
    assert before.checked_in_at == done.checked_in_at
    assert (before.section, before.row, before.number) == (first.section, first.row, first.number)
    assert "North" in before.message

    gate = await pg_value(
        services, "SELECT checked_in_gate FROM tickets WHERE code = $1", first.code
    )
    assert gate == "North"
    assert await _checkin_log(services, first.code) == 1
    counts = await client.checkins(event.id)
    assert (counts.live_tickets, counts.checked_in, counts.gates) == (2, 1, {"North": 1})
    await client.checkin(staff.key, second.code, "South")
    counts = await client.checkins(event.id)
    assert (counts.checked_in, counts.gates) == (2, {"North": 1, "South": 1})
    metrics = await client.metrics()
    assert f'booking_checkins_total{{event="{event.id}",result="admitted"}} 2.0' in metrics
    assert f'booking_checkins_total{{event="{event.id}",result="already_in"}} 1.0' in metrics


async def test_unknown_and_cancelled_tickets_are_refused(
    services: Services, client: BookingClient
) -> None:
    """An unknown code is 404 and a cancelled ticket 410, both counted, neither let in.

    The ticket is cancelled by setting ``tickets.live = false`` with SQL on the real
    database (what cancelling its booking does)."""
    event = await client.create_event(event_body())
    booking = await buy(client, event.waitroom_url, 1)
    code = booking.tickets[0].code
    staff = await client.create_staff_key(event.id, "Door")
    with pytest.raises(ApiError) as unknown:
        await client.checkin(staff.key, code + "x", "Door")
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")

    await pg_value(services, "UPDATE tickets SET live = false WHERE code = $1 RETURNING 1", code)
    with pytest.raises(ApiError) as cancelled:
        await client.checkin(staff.key, code, "Door")
    assert (cancelled.value.status, cancelled.value.code) == (410, "ticket_cancelled")
    in_at = await pg_value(services, "SELECT checked_in_at FROM tickets WHERE code = $1", code)
    assert in_at is None and await _checkin_log(services, code) == 0
    counts = await client.checkins(event.id)
    assert (counts.live_tickets, counts.checked_in) == (0, 0)
    metrics = await client.metrics()
    assert f'booking_checkins_total{{event="{event.id}",result="unknown"}} 1.0' in metrics
    assert f'booking_checkins_total{{event="{event.id}",result="cancelled"}} 1.0' in metrics


async def _scans_at_once(
    client: BookingClient, staff_key: str, code: str, count: int
) -> tuple[list[CheckinView], list[AlreadyCheckedIn]]:
    """``count`` scans of ``code`` from 8 gates, released together: those let in, those not."""
    admitted: list[CheckinView] = []
    refused: list[AlreadyCheckedIn] = []
    start = anyio.Event()

    async def scan(n: int) -> None:
        await start.wait()
        try:
            admitted.append(await client.checkin(staff_key, code, f"Gate {n % 8}"))
        except AlreadyCheckedIn as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(scan, n)
        await anyio.sleep(0.1)
        start.set()
    return admitted, refused


async def test_many_gates_scanning_one_ticket_at_once_let_it_in_once(
    services: Services, client: BookingClient
) -> None:
    """For each of 4 tickets, 40 scans at once from 8 gates: exactly one lets it in; the 39
    others are 409 naming that scan's gate and time; one log entry, the winner's gate stored."""
    event = await client.create_event(event_body())
    booking = await buy(client, event.waitroom_url, 4)
    staff = await client.create_staff_key(event.id, "Everyone")

    async def warm() -> None:  # 40 open connections, so the scans leave together
        await client.checkins(event.id)

    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(warm)

    for ticket in booking.tickets:
        admitted, refused = await _scans_at_once(client, staff.key, ticket.code, 40)
        assert len(admitted) == 1, [a.gate for a in admitted]
        assert len(refused) == 39
        winner = admitted[0]
        assert {(r.before.gate, r.before.checked_in_at) for r in refused} == {
            (winner.gate, winner.checked_in_at)
        }
        gate = await pg_value(
            services, "SELECT checked_in_gate FROM tickets WHERE code = $1", ticket.code
        )
        assert gate == winner.gate
        assert await _checkin_log(services, ticket.code) == 1
    assert (await client.checkins(event.id)).checked_in == 4


async def test_staff_keys_are_made_listed_revoked_and_stored_hashed(
    services: Services, client: BookingClient
) -> None:
    """The key is shown once and stored as its SHA-256 only; the list shows labels; a revoked
    key is refused at once; revoking again changes nothing; each change is logged."""
    event = await client.create_event(event_body())
    booking = await buy(client, event.waitroom_url, 2)
    north = await client.create_staff_key(event.id, "North door")
    south = await client.create_staff_key(event.id, "South door")
    assert north.key.startswith("sk_") and north.key != south.key
    listed = await client.staff_keys(event.id)
    assert [(k.id, k.label) for k in listed.keys] == [
        (north.id, "North door"),
        (south.id, "South door"),
    ]
    stored = await pg_value(services, "SELECT key_hash FROM staff_keys WHERE id = $1", north.id)
    assert bytes(stored) == hashlib.sha256(north.key.encode()).digest()
    leaked = await pg_value(
        services,
        "SELECT count(*) FROM staff_keys WHERE key_hash::text LIKE $1 OR label LIKE $1",
        f"%{north.key[3:]}%",
    )
    assert leaked == 0

    await client.checkin(north.key, booking.tickets[0].code, "North")
    revoked = await client.revoke_staff_key(event.id, north.id)
    assert revoked.id == north.id and revoked.revoked_at is not None
    datetime.fromisoformat(revoked.revoked_at)
    with pytest.raises(ApiError) as refused:
        await client.checkin(north.key, booking.tickets[1].code, "North")
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert [k.id for k in (await client.staff_keys(event.id)).keys] == [south.id]
    assert (await client.revoke_staff_key(event.id, north.id)).revoked_at == revoked.revoked_at
    await client.checkin(south.key, booking.tickets[1].code, "South")  # the other key still works

    for missing in ("sknosuchkey", "bad id!"):
        with pytest.raises(ApiError) as unknown:
            await client.revoke_staff_key(event.id, missing)
        assert unknown.value.status == 404
    other = await client.create_event(event_body())
    with pytest.raises(ApiError) as elsewhere:  # a key is revoked through its own event only
        await client.revoke_staff_key(other.id, south.id)
    assert elsewhere.value.status == 404
    kinds = await pg_value(
        services,
        "SELECT string_agg(kind, ',' ORDER BY id) FROM event_log "
        "WHERE event_id = $1 AND kind LIKE 'staff_key_%'",
        event.id,
    )
    assert kinds == "staff_key_created,staff_key_created,staff_key_revoked"


async def test_a_staff_key_opens_its_events_check_in_and_nothing_else(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A staff key is refused by every admin route and by the staff-key routes; a ticket of
    another event is unknown to it (404, not let in); the admin key cannot check in."""
    event = await client.create_event(event_body())
    other = await client.create_event(event_body())
    theirs = await buy(client, other.waitroom_url, 1)
    staff = await client.create_staff_key(event.id, "Door")
    bearer = {"Authorization": f"Bearer {staff.key}"}
    refused = [
        await http.post("/v1/events", json=event_body(), headers=bearer),
        await http.post(f"/v1/events/{event.id}/pause", headers=bearer),
        await http.post(f"/v1/events/{event.id}/close", headers=bearer),
        await http.patch(
            f"/v1/events/{event.id}/admission", json={"max_active_holds": 1}, headers=bearer
        ),
        await http.get(f"/v1/events/{event.id}/audit", headers=bearer),
        await http.get(f"/v1/events/{event.id}/staff-keys", headers=bearer),
        await http.post(
            f"/v1/events/{event.id}/staff-keys", json={"label": "mine"}, headers=bearer
        ),
        await http.delete(f"/v1/events/{event.id}/staff-keys/{staff.id}", headers=bearer),
        await http.get(f"/v1/bookings/{theirs.id}", headers=bearer),
    ]
    for resp in refused:
        assert_error(resp, 401)
    assert (await client.event(event.id)).state == "open"
    assert [k.id for k in (await client.staff_keys(event.id)).keys] == [staff.id]

    code = theirs.tickets[0].code
    with pytest.raises(ApiError) as foreign:
        await client.checkin(staff.key, code, "Door")
    assert (foreign.value.status, foreign.value.code) == (404, "not_found")
    assert await _checkin_log(services, code) == 0
    as_admin = await http.post(
        "/v1/checkin", json={"code": code, "gate": "Door"}, headers=admin_headers()
    )
    assert_error(as_admin, 401, "unauthorized")
    missing = await http.post("/v1/checkin", json={"code": code, "gate": "Door"})
    assert_error(missing, 401, "unauthorized")
    assert (await client.checkins(other.id)).checked_in == 0


async def test_the_door_counts_need_the_admin_key_or_a_staff_key_of_the_event(
    client: BookingClient, http: httpx.AsyncClient
) -> None:
    """``GET /v1/events/{id}/checkins`` answers the admin and the event's staff keys; no key
    or a key that is none (or revoked) is 401, another event's staff key 403, JSON errors;
    an unknown event stays 404 for the admin."""
    event = await client.create_event(event_body())
    other = await client.create_event(event_body())
    booking = await buy(client, event.waitroom_url, 1)
    staff = await client.create_staff_key(event.id, "Door")
    theirs = await client.create_staff_key(other.id, "Their door")
    await client.checkin(staff.key, booking.tickets[0].code, "Door")
    path = f"/v1/events/{event.id}/checkins"

    assert_error(await http.get(path), 401, "unauthorized")
    for token in ("sk_not-a-key", "not-even-a-staff-key", theirs.key.upper()):
        resp = await http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert_error(resp, 401, "unauthorized")
    resp = await http.get(path, headers={"Authorization": f"Bearer {theirs.key}"})
    assert_error(resp, 403)

    as_staff = await client.checkins(event.id, staff_key=staff.key)
    as_admin = await client.checkins(event.id)
    assert as_staff == as_admin
    assert (as_staff.live_tickets, as_staff.checked_in, as_staff.gates) == (1, 1, {"Door": 1})

    await client.revoke_staff_key(event.id, staff.id)
    resp = await http.get(path, headers={"Authorization": f"Bearer {staff.key}"})
    assert_error(resp, 401, "unauthorized")
    assert_error(await http.get("/v1/events/evnope00000000/checkins", headers=admin_headers()), 404)
