"""Every change made through the API is in the event log, typed, with the admin who made it."""

from __future__ import annotations

from collections import Counter

import pytest

from api.client import BookingClient
from api.wiring import Services
from engine.eventlog import decode_entry, summarise_once
from storage.log_events import (
    AdmissionCapsChanged,
    AdmissionSummary,
    CancellationRequested,
    EventCancelRequested,
    EventCreated,
    SaleOpened,
)
from tests.api.helpers import event_body
from tests.api.test_checkin_api import buy

pytestmark = pytest.mark.anyio


async def test_every_change_is_logged_typed_in_order_with_its_admin(
    services: Services, client: BookingClient
) -> None:
    created = await client.create_event(event_body())
    event_id = created.id
    await client.pause(event_id)
    await client.resume(event_id)
    await client.set_admission(event_id, max_active_holds=7)
    key = await client.create_staff_key(event_id, "North gate")
    booking = await buy(client, created.waitroom_url, 2)
    await client.checkin(key.key, booking.tickets[0].code, "North")
    await client.revoke_staff_key(event_id, key.id)
    hook = await client.create_webhook(event_id, "http://127.0.0.1:9/hook")
    await client.remove_webhook(event_id, hook.id)
    assert await summarise_once(services.pg, services.redis, services.clock) >= 2
    await client.close(event_id)

    entries = [decode_entry(e) for e in await services.pg.log.entries(event_id)]
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    kinds = [type(e).__name__ for e in entries]
    assert kinds[:4] == ["EventCreated", "SalePaused", "SaleResumed", "AdmissionCapsChanged"]
    assert Counter(kinds) >= Counter(
        {
            "StaffKeyCreated": 1,
            "PaymentClaimed": 1,
            "BookingConfirmed": 1,
            "TicketCheckedIn": 1,
            "StaffKeyRevoked": 1,
            "WebhookRegistered": 1,
            "WebhookRemoved": 1,
            "SaleOpened": 1,
            "AdmissionSummary": 1,
        }
    )
    assert kinds[-1] == "SaleClosed"
    admin_made = {
        "EventCreated",
        "SalePaused",
        "SaleResumed",
        "AdmissionCapsChanged",
        "StaffKeyCreated",
        "StaffKeyRevoked",
        "WebhookRegistered",
        "WebhookRemoved",
        "SaleClosed",
    }
    for entry in entries:
        if type(entry).__name__ in admin_made:
            assert entry.actor is not None and entry.actor.who == "admin", entry
            assert entry.actor.request_id and entry.actor.client_ip == "127.0.0.1", entry
        else:
            assert entry.actor is None, entry
    first = entries[0]
    assert isinstance(first, EventCreated)
    assert [(s.id, s.capacity) for s in first.payload.sections] == [("A", 8), ("GA", 10)]
    caps = next(e for e in entries if isinstance(e, AdmissionCapsChanged))
    assert caps.payload.max_active_holds == 7
    summary = next(e for e in entries if isinstance(e, AdmissionSummary))
    assert (summary.payload.joined, summary.payload.admitted) == (1, 1)
    assert summary.payload.confirmed == 1
    assert sum(isinstance(e, SaleOpened) for e in entries) == 1
    # A second pass in the same minute: nothing more for this event.
    await summarise_once(services.pg, services.redis, services.clock)
    again = await services.pg.log.entries(event_id, entries[-1].seq)
    assert [type(decode_entry(e)).__name__ for e in again] == []


async def test_cancellations_are_logged_with_the_admin_who_asked(
    services: Services, client: BookingClient
) -> None:
    """A booking cancelled by the admin and a whole event cancelled carry the admin (request
    id, address); a buyer's own cancellation carries the buyer (request id, address)."""
    created = await client.create_event(event_body())
    event_id = created.id
    by_admin = await buy(client, created.waitroom_url, 1)
    by_buyer = await buy(client, created.waitroom_url, 1)
    await client.cancel(by_admin.id, "admin-cancel")
    await client.cancel(by_buyer.id, "buyer-cancel", hold_token=by_buyer.booking_token)
    await client.cancel_event(event_id)

    entries = [decode_entry(e) for e in await services.pg.log.entries(event_id)]
    asked = {e.payload.booking_id: e for e in entries if isinstance(e, CancellationRequested)}
    admin_asked = asked[by_admin.id]
    assert admin_asked.payload.by_admin
    assert admin_asked.actor is not None and admin_asked.actor.who == "admin"
    assert admin_asked.actor.request_id and admin_asked.actor.client_ip == "127.0.0.1"
    buyer_asked = asked[by_buyer.id]
    assert not buyer_asked.payload.by_admin
    assert buyer_asked.actor is not None and buyer_asked.actor.who == "buyer"
    assert buyer_asked.actor.request_id and buyer_asked.actor.client_ip == "127.0.0.1"
    assert buyer_asked.actor.request_id != admin_asked.actor.request_id
    event_cancel = next(e for e in entries if isinstance(e, EventCancelRequested))
    assert event_cancel.actor is not None and event_cancel.actor.who == "admin"
    assert event_cancel.actor.request_id


async def test_a_webhook_is_registered_batched_or_not_and_listed_so(
    services: Services, client: BookingClient
) -> None:
    """``batch`` is given back when registered and when listed; without it a webhook is
    sent one entry per POST, as before."""
    event_id = (await client.create_event(event_body())).id
    plain = await client.create_webhook(event_id, "http://127.0.0.1:9/plain")
    batched = await client.create_webhook(event_id, "http://127.0.0.1:9/batched", batch=True)
    assert (plain.batch, batched.batch) == (False, True)
    listed = {h.id: h.batch for h in (await client.webhooks(event_id)).webhooks}
    assert listed == {plain.id: False, batched.id: True}
    stored = await services.pg.log.webhooks(event_id)
    assert {h.id: h.batch for h in stored} == listed
