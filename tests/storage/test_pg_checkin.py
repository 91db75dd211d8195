"""PgStore's check-in against the real PostgreSQL: the key, the event, one entry per ticket."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest

from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers
from storage.pg_records import CheckinRow, EventRow, NewBooking, SeatRow, TicketRow
from storage.pg_store import PgStore, open_pg_store

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pg(servers: EmbeddedServers) -> AsyncIterator[PgStore]:
    """A PgStore on the session's PostgreSQL, migrated (with a pool large enough to race)."""
    assert servers.database_url is not None
    async with open_bridge() as bridge, open_pg_store(servers.database_url, bridge) as store:
        await store.migrate()
        yield store


async def _event_with_tickets(pg: PgStore, seats: int) -> tuple[str, list[str]]:
    """A new event of ``seats`` general-admission places, all booked: its id and the codes."""
    event_id = "ev" + secrets.token_hex(5)
    await pg.insert_event(
        EventRow(event_id, "Door", datetime(2020, 1, 1, tzinfo=UTC), 4, 60, 10, "[]"),
        [SeatRow("GA", n, "", n + 1, 1_000) for n in range(seats)],
    )
    codes = [secrets.token_urlsafe(12) for _ in range(seats)]
    booking = NewBooking(
        booking_id="bk" + secrets.token_hex(8),
        event_id=event_id,
        hold_id=f"{event_id}.1",
        ticket_seq=1,
        client_id="door",
        amount_cents=1_000 * seats,
        idempotency_key=secrets.token_hex(8),
        gateway_ref="sandbox",
        tickets=[TicketRow(c, "GA", n, "", n + 1) for n, c in enumerate(codes)],
        token_expires_s=4_000_000_000,
    )
    [result] = await pg.commit_bookings([booking])
    assert result.error is None, result
    return event_id, codes


async def _staff_key(pg: PgStore, event_id: str) -> bytes:
    key_hash = hashlib.sha256(secrets.token_bytes(32)).digest()
    await pg.insert_staff_key("sk" + secrets.token_hex(6), event_id, "Door", key_hash)
    return key_hash


async def test_of_many_scans_at_once_one_lets_the_ticket_in(pg: PgStore) -> None:
    """24 concurrent check-ins of one ticket (the pool's 8 connections all busy): exactly one
    is admitted; every other reads the winner's time and gate; one log entry."""
    event_id, [code] = await _event_with_tickets(pg, 1)
    key_hash = await _staff_key(pg, event_id)
    rows: list[CheckinRow] = []

    async def scan(n: int) -> None:
        scanned = await pg.check_in(key_hash, code, f"gate-{n}")
        assert scanned is not None and scanned[0] == event_id and scanned[1] is not None
        rows.append(scanned[1])

    async with anyio.create_task_group() as tg:
        for n in range(24):
            tg.start_soon(scan, n)
    winners = [r for r in rows if r.admitted]
    assert len(winners) == 1, [r.gate for r in winners]
    assert {(r.gate, r.checked_in_at) for r in rows} == {
        (winners[0].gate, winners[0].checked_in_at)
    }
    counts = await pg.checkin_counts(event_id)
    assert (counts.live, counts.checked_in, counts.gates) == (1, 1, {winners[0].gate: 1})


async def test_the_key_decides_the_event_and_a_revoked_key_nothing(pg: PgStore) -> None:
    """A key unknown or revoked: None. A ticket of another event or no ticket: the key's
    event, no row. Revoking twice changes it once; through another event, not at all."""
    event_id, codes = await _event_with_tickets(pg, 2)
    other_id, [foreign] = await _event_with_tickets(pg, 1)
    key_hash = await _staff_key(pg, event_id)
    assert await pg.check_in(hashlib.sha256(b"nobody").digest(), codes[0], "g") is None
    assert await pg.check_in(key_hash, foreign, "g") == (event_id, None)
    assert await pg.check_in(key_hash, "no-such-code", "g") == (event_id, None)

    [key] = await pg.staff_keys(event_id)
    revoked = await pg.revoke_staff_key(event_id, key.id)
    assert revoked is not None and revoked.revoked_at is not None
    again = await pg.revoke_staff_key(event_id, key.id)  # no second change, no second log entry
    assert again is not None and again.revoked_at == revoked.revoked_at
    assert await pg.revoke_staff_key(other_id, key.id) is None
    assert await pg.check_in(key_hash, codes[0], "g") is None
    assert await pg.staff_keys(event_id) == []
    counts = await pg.checkin_counts(event_id)
    assert (counts.live, counts.checked_in) == (2, 0)
