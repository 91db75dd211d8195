"""Secrets stay secret: never in logs or reprs; admin-only routes refuse everyone else."""

from __future__ import annotations

import logging

import httpx
import pytest

from api.client import BookingClient, WaitingRoom
from api.settings import Settings
from realtime import protocol as p
from tests.api.helpers import (
    assert_error,
    event_body,
    new_key,
    outcome_of,
    pay,
    prompted,
    queued_in,
)
from tests.conftest import ADMIN_KEY, SECRET

pytestmark = pytest.mark.anyio


async def test_no_secret_or_token_reaches_the_logs(
    client: BookingClient, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A sale with bad and good credentials logs neither the secret, the admin key nor any token."""
    caplog.set_level(logging.DEBUG)
    event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        queued = await queued_in(room, "secretive", 1, "A")
        prompt = await prompted(room)
        assert_error(await pay(http, prompt.hold_id, prompt.hold_token + "x", new_key()), 401)
        bad_admin = {"Authorization": f"Bearer {ADMIN_KEY}x"}
        assert_error(await http.post("/v1/events", json={}, headers=bad_admin), 401)
        paid = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())
        assert await outcome_of(room) == p.Confirmed(booking_id=paid.id)
    secrets = [SECRET, ADMIN_KEY, queued.token, prompt.hold_token]
    # Every record of this codebase at any level, and of libraries from INFO up (the
    # websockets library's DEBUG frame dumps are off in every configured process).
    ours = ("api", "engine", "realtime", "storage", "waitroom", "booking")
    records = [
        r
        for r in caplog.get_records("setup") + caplog.get_records("call")
        if r.name.split(".")[0] in ours or r.levelno >= logging.INFO
    ]
    assert records, "nothing was logged: the test would prove nothing"
    for record in records:
        text = record.getMessage() + (record.exc_text or "") + str(record.args)
        for secret in secrets:
            assert secret not in text, f"{record.name} logged a secret: {text[:200]}"


def test_settings_repr_hides_the_secrets() -> None:
    """Printing the settings (as a crash report would) shows neither the secret nor the admin key."""
    text = repr(Settings(secret=SECRET, admin_key=ADMIN_KEY))
    assert SECRET not in text and ADMIN_KEY not in text


async def test_audit_is_admin_only(client: BookingClient, http: httpx.AsyncClient) -> None:
    """The audit answers 401 without the admin key, 200 with it."""
    event = await client.create_event(event_body())
    url = f"/v1/events/{event.id}/audit"
    assert_error(await http.get(url), 401, "unauthorized")
    assert_error(await http.get(url, headers={"Authorization": "Bearer nope"}), 401)
    assert (await client.audit(event.id)).ok
