"""PostgreSQL: the system of record for events, bookings and payments.

Bookings are group-committed: one statement (one round trip, one transaction)
writes the payments, bookings, tickets and log entries of a whole batch.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import resources
from typing import Any, TypeVar

import asyncpg
import msgspec

from storage.bridge import Bridge
from storage.errors import StorageError, StorageUnavailable
from storage.log_events import Actor
from storage.metrics import BATCH_SIZE, ROUND_TRIPS
from storage.pg_eventlog import EventLogStore
from storage.pg_readmodels import ReadModelStore
from storage.pg_records import (
    BookingConflict,
    BookingRow,
    CancellationRow,
    CheckinCountsRow,
    CheckinRow,
    CommitResult,
    EventCancellationRow,
    EventRow,
    LiveBooking,
    MailJob,
    NewBooking,
    NewCancellation,
    ReturnedSeatRow,
    SagaClaim,
    SagaRow,
    SeatRow,
    StaffKeyRow,
    TicketRow,
)
from storage.startup import retry_until_reachable

__all__ = ["PgStore", "open_pg_store"]

#: Errors that mean PostgreSQL could not be reached (or is shutting down, crashed, or
#: starting up: CannotConnectNowError is an OperatorInterventionError).
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
)

T = TypeVar("T")

#: The columns of an ``EventRow``.
_EVENT_COLUMNS = (
    "id, name, opens_at, max_per_order, hold_seconds, max_active_holds, "
    "sections::text AS sections, currency, coalesce(identity::text, '') AS identity, "
    "max_per_person, challenge_difficulty, buyer_refunds, refund_until"
)
_MIGRATION_LOCK = 0x626F6F6B  # advisory lock id held while migrating ("book")

_COMMIT_BOOKINGS = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                         $6::int[], $7::text[], $8::text[], $15::bigint[], $16::text[])
        AS t(booking_id, event_id, hold_id, ticket_seq, client_id, amount_cents, idem_key,
             gateway_ref, token_expires_s, email)
), pay AS (
    INSERT INTO payments (idempotency_key, hold_id, booking_id, amount_cents, gateway_ref)
    SELECT idem_key, hold_id, booking_id, amount_cents, gateway_ref FROM input
    WHERE NOT EXISTS (  -- its charge is being given back: no booking any more
        SELECT 1 FROM payment_sagas s
        WHERE s.idempotency_key = input.idem_key AND s.step IN ('compensating', 'refunded'))
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING booking_id, created_at
), saga AS (
    UPDATE payment_sagas s
    SET step = 'recorded', booking_id = i.booking_id, gateway_ref = i.gateway_ref,
        updated_at = now()
    FROM input i JOIN pay USING (booking_id)
    WHERE s.idempotency_key = i.idem_key
), bk AS (
    INSERT INTO bookings (id, event_id, hold_id, ticket_seq, client_id, amount_cents,
                          token_expires_s)
    SELECT i.booking_id, i.event_id, i.hold_id, i.ticket_seq, i.client_id, i.amount_cents,
           i.token_expires_s
    FROM input i JOIN pay USING (booking_id)
    RETURNING id, event_id, hold_id, amount_cents
), tk AS (
    INSERT INTO tickets (code, booking_id, event_id, section, position, seat_row, seat_number)
    SELECT s.code, s.booking_id, bk.event_id, s.section, s.position, s.seat_row, s.seat_number
    FROM unnest($9::text[], $10::text[], $11::text[], $12::int[], $13::text[], $14::int[])
        AS s(code, booking_id, section, position, seat_row, seat_number)
    JOIN bk ON bk.id = s.booking_id
    RETURNING code, booking_id, event_id, section, position
), sold AS (  -- each ticket's section and price, for the entry (read models count them)
    SELECT tk.booking_id, jsonb_agg(jsonb_build_object(
               'code', tk.code, 'section', tk.section, 'price_cents', st.price_cents)
               ORDER BY tk.section, tk.position) AS tickets
    FROM tk JOIN seats st
      ON st.event_id = tk.event_id AND st.section = tk.section AND st.position = tk.position
    GROUP BY tk.booking_id
), mail AS (
    INSERT INTO mail_outbox (booking_id, event_id, recipient)
    SELECT bk.id, bk.event_id, i.email FROM bk JOIN input i ON i.booking_id = bk.id
    WHERE i.email IS NOT NULL
), log AS (
    INSERT INTO event_log (event_id, kind, version, payload)
    SELECT bk.event_id, 'booking_confirmed', 2,
           jsonb_build_object('booking_id', bk.id, 'hold_id', bk.hold_id,
                              'amount_cents', bk.amount_cents,
                              'mail_queued', i.email IS NOT NULL,
                              'tickets', coalesce(sold.tickets, '[]'::jsonb))
    FROM bk JOIN input i ON i.booking_id = bk.id LEFT JOIN sold ON sold.booking_id = bk.id
    ORDER BY bk.event_id  -- log heads locked in one order (0007_event_log.sql)
)
SELECT booking_id, created_at FROM pay
"""

_CLAIM_PAYMENTS = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])
        AS t(idem_key, event_id, hold_id, amount_cents, currency)
), claimed AS (
    INSERT INTO payment_sagas AS s (idempotency_key, event_id, hold_id, amount_cents, currency, step)
    SELECT idem_key, event_id, hold_id, amount_cents, currency, 'claimed' FROM input
    ON CONFLICT (idempotency_key) DO UPDATE SET step = 'claimed', updated_at = now()
        WHERE s.step = 'declined'
    RETURNING s.idempotency_key, s.event_id, s.hold_id
)
INSERT INTO event_log (event_id, kind, payload)
SELECT event_id, 'payment_claimed',
       jsonb_build_object('idempotency_key', idempotency_key, 'hold_id', hold_id)
FROM claimed
ORDER BY event_id  -- log heads locked in one order (0007_event_log.sql)
"""

_MOVE_SAGA = """
WITH moved AS (
    UPDATE payment_sagas
    SET step = $2, gateway_ref = coalesce($4, gateway_ref), refund_ref = coalesce($5, refund_ref),
        updated_at = now()
    WHERE idempotency_key = $1 AND step = ANY($3::text[])
    RETURNING idempotency_key, event_id, hold_id, gateway_ref, refund_ref, amount_cents
), logged AS (
    INSERT INTO event_log (event_id, kind, payload)
    SELECT event_id, 'payment_' || $2,
           jsonb_build_object('idempotency_key', idempotency_key, 'hold_id', hold_id,
                              'gateway_ref', gateway_ref, 'refund_ref', refund_ref,
                              'amount_cents', amount_cents)
    FROM moved
)
SELECT count(*) > 0 FROM moved
"""

_SAGA_COLUMNS = (
    "idempotency_key, event_id, hold_id, amount_cents, currency, step, gateway_ref, "
    "booking_id, updated_at"
)

_STALLED_SAGAS = f"""
SELECT {_SAGA_COLUMNS} FROM payment_sagas
WHERE (step = 'claimed' AND updated_at < $1) OR step = 'compensating'
ORDER BY updated_at
LIMIT $2
"""

_BOOKING = """
SELECT b.id, b.event_id, b.hold_id, b.ticket_seq, b.amount_cents, b.status, b.created_at,
       b.token_expires_s, coalesce(json_agg(json_build_object(
           'code', t.code, 'section', t.section, 'position', t.position,
           'seat_row', t.seat_row, 'seat_number', t.seat_number, 'live', t.live)
           ORDER BY t.section, t.position) FILTER (WHERE t.code IS NOT NULL), '[]') AS tickets
FROM bookings b LEFT JOIN tickets t ON t.booking_id = b.id
WHERE b.id = $1
GROUP BY b.id
"""


#: Confirmation mails due, leased for a while: another worker skips them until the lease
#: ends (a worker that dies mid-send leaves its mails to the next pass after the lease).
_CLAIM_MAIL = """
UPDATE mail_outbox m SET attempts = m.attempts + 1,
                         next_attempt_at = now() + make_interval(secs => $2)
WHERE m.booking_id IN (
    SELECT booking_id FROM mail_outbox
    WHERE sent_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING m.booking_id, m.recipient, m.attempts - 1 AS attempts
"""

_MAIL_SENT = """
WITH sent AS (
    UPDATE mail_outbox SET sent_at = now(), last_error = NULL
    WHERE booking_id = $1 AND sent_at IS NULL
    RETURNING booking_id, event_id, attempts
)
INSERT INTO event_log (event_id, kind, payload)
SELECT event_id, 'confirmation_mailed',
       jsonb_build_object('booking_id', booking_id, 'attempts', attempts)
FROM sent
"""

_LIVE_BOOKINGS = """
SELECT b.id AS booking_id, b.event_id, b.hold_id, b.ticket_seq, b.client_id, b.amount_cents,
       p.idempotency_key, t.section, array_agg(t.position ORDER BY t.position) AS positions
FROM bookings b
JOIN payments p ON p.booking_id = b.id
JOIN tickets t ON t.booking_id = b.id AND t.live
WHERE b.status = 'confirmed' AND b.event_id = ANY($1::text[])
  AND ($2::timestamptz IS NULL OR b.created_at >= $2)
  AND ($3::timestamptz IS NULL OR b.created_at < $3)
GROUP BY b.id, p.idempotency_key, t.section
ORDER BY b.event_id, b.ticket_seq
"""

_RECORD_CONFLICTS = """
INSERT INTO event_log (event_id, kind, payload)
SELECT c.event_id, 'reconcile_conflict',
       jsonb_build_object('booking_id', c.booking_id, 'hold_id', c.hold_id,
                          'reason', c.reason, 'refund_needed', true)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS c(event_id, booking_id, hold_id, reason)
WHERE NOT EXISTS (
    SELECT 1 FROM event_log l
    WHERE l.event_id = c.event_id AND l.kind = 'reconcile_conflict'
      AND l.payload->>'booking_id' = c.booking_id
)
ORDER BY c.event_id  -- log heads locked in one order (0007_event_log.sql)
RETURNING id
"""

_CANCELLATION_COLUMNS = (
    "id, booking_id, event_id, idempotency_key, whole, codes, amount_cents, charge_ref, "
    "by_admin, status, refund_ref, booking_status, attempts, created_at, done_at"
)

_BOOKING_TICKET_PRICES = """
SELECT t.code, t.live, t.checked_in_at IS NOT NULL AS used, s.price_cents
FROM tickets t JOIN seats s
  ON s.event_id = t.event_id AND s.section = t.section AND s.position = t.position
WHERE t.booking_id = $1
"""

_CANCEL_BOOKING_IF_EMPTY = """
UPDATE bookings SET status = 'cancelled', cancelled_at = now()
WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM tickets WHERE booking_id = $1 AND live)
RETURNING status
"""

_RETURNED_SEATS = """
SELECT c.event_id, c.booking_id, b.ticket_seq, t.section,
       array_agg(t.position ORDER BY t.position) AS positions
FROM cancellations c
JOIN bookings b ON b.id = c.booking_id
JOIN tickets t ON t.booking_id = c.booking_id AND t.code = ANY(c.codes)
WHERE c.status = 'done'
  AND ($1::text[] IS NULL OR c.event_id = ANY($1::text[]))
  AND ($2::text[] IS NULL OR c.id = ANY($2::text[]))
  AND ($3::timestamptz IS NULL OR c.done_at >= $3)
  AND ($4::timestamptz IS NULL OR c.done_at < $4)
GROUP BY c.id, c.event_id, c.booking_id, b.ticket_seq, t.section
ORDER BY c.event_id, b.ticket_seq
"""

#: Bookings of event $1 with a live ticket not used at the door and no cancellation under
#: key $2 (a booking whose tickets were all checked in is not cancelled).
_UNCANCELLED = """
b.event_id = $1 AND b.status = 'confirmed'
AND EXISTS (SELECT 1 FROM tickets t WHERE t.booking_id = b.id AND t.live
            AND t.checked_in_at IS NULL)
AND NOT EXISTS (SELECT 1 FROM cancellations x WHERE x.booking_id = b.id AND x.idempotency_key = $2)
"""

_EVENT_CANCELLATION = f"""
SELECT e.event_id, e.status, e.requested_at, e.done_at,
       count(c.id) FILTER (WHERE c.status = 'done') AS refunded,
       count(c.id) FILTER (WHERE c.status = 'pending') AS pending,
       count(c.id) FILTER (WHERE c.status = 'refused') AS refused,
       (SELECT count(*) FROM bookings b WHERE {_UNCANCELLED}) AS live,
       coalesce(sum(c.amount_cents) FILTER (WHERE c.status = 'done'), 0) AS refunded_cents
FROM event_cancellations e
LEFT JOIN cancellations c ON c.event_id = e.event_id AND c.idempotency_key = $2
WHERE e.event_id = $1
GROUP BY e.event_id
"""

_FINISH_EVENT_CANCELLATION = f"""
UPDATE event_cancellations SET status = 'done', done_at = now()
WHERE event_id = $1 AND status = 'running'
  AND NOT EXISTS (SELECT 1 FROM cancellations WHERE event_id = $1 AND status = 'pending')
  AND NOT EXISTS (SELECT 1 FROM bookings b WHERE {_UNCANCELLED})
RETURNING event_id
"""

_STAFF_KEY_COLUMNS = "id, event_id, label, created_at, revoked_at"

_INSERT_STAFF_KEY = f"""
WITH k AS (
    INSERT INTO staff_keys (id, event_id, label, key_hash) VALUES ($1, $2, $3, $4)
    RETURNING {_STAFF_KEY_COLUMNS}
), log AS (
    INSERT INTO event_log (event_id, kind, payload, actor)
    SELECT event_id, 'staff_key_created', jsonb_build_object('staff_key_id', id, 'label', label),
           $5::jsonb
    FROM k
)
SELECT {_STAFF_KEY_COLUMNS} FROM k
"""

_REVOKE_STAFF_KEY = f"""
WITH k AS (
    UPDATE staff_keys SET revoked_at = now()
    WHERE id = $1 AND event_id = $2 AND revoked_at IS NULL
    RETURNING {_STAFF_KEY_COLUMNS}
), log AS (
    INSERT INTO event_log (event_id, kind, payload, actor)
    SELECT event_id, 'staff_key_revoked', jsonb_build_object('staff_key_id', id, 'label', label),
           $3::jsonb
    FROM k
)
SELECT {_STAFF_KEY_COLUMNS} FROM k
"""

# The one statement that lets a ticket in: the key is checked, and the ticket set as in
# only if it is live, of the key's event, not in yet and not named by a pending cancellation
# (its refund under way: the ticket is about to stop being live). Two scans of one ticket at
# once both reach the UPDATE; the second waits for the first's row lock, then finds
# checked_in_at set and updates nothing. The log entry commits with the update.
#
# It runs after _LOCK_SCANNED_BOOKING in the same transaction: a cancellation is recorded
# with its booking's row locked FOR UPDATE, so the scan either waits for the recording to
# commit (and then sees it pending) or holds its share lock first (and the recording, once
# it has the row, sees the ticket in and refuses it). Without the lock both could pass.
_LOCK_SCANNED_BOOKING = """
SELECT 1 FROM bookings WHERE id = (SELECT booking_id FROM tickets WHERE code = $1) FOR SHARE
"""

_CHECK_IN = """
WITH k AS (
    SELECT id, event_id FROM staff_keys WHERE key_hash = $1 AND revoked_at IS NULL
), upd AS (
    UPDATE tickets t SET checked_in_at = now(), checked_in_gate = $3
    FROM k
    WHERE t.code = $2 AND t.event_id = k.event_id AND t.live AND t.checked_in_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM cancellations c WHERE c.booking_id = t.booking_id
                      AND c.status = 'pending' AND t.code = ANY(c.codes))
    RETURNING t.code, t.event_id, t.booking_id, t.section, t.seat_row, t.seat_number,
              t.checked_in_at, t.checked_in_gate, k.id AS key_id
), log AS (
    INSERT INTO event_log (event_id, kind, payload)
    SELECT event_id, 'ticket_checked_in',
           jsonb_build_object('code', code, 'booking_id', booking_id, 'gate', checked_in_gate,
                              'staff_key_id', key_id, 'checked_in_at', checked_in_at)
    FROM upd
)
SELECT k.event_id AS key_event, upd.code, upd.section, upd.seat_row, upd.seat_number,
       upd.checked_in_at, upd.checked_in_gate
FROM k LEFT JOIN upd ON true
"""

_SCANNED_TICKET = """
SELECT code, event_id, section, seat_row, seat_number, live, checked_in_at, checked_in_gate,
       EXISTS (SELECT 1 FROM cancellations c WHERE c.booking_id = t.booking_id
               AND c.status = 'pending' AND t.code = ANY(c.codes)) AS cancelling
FROM tickets t WHERE code = $1 AND event_id = $2
"""

_CHECKIN_COUNTS = """
SELECT checked_in_gate AS gate, count(*) FILTER (WHERE live) AS live,
       count(*) FILTER (WHERE live AND checked_in_at IS NOT NULL) AS checked_in
FROM tickets WHERE event_id = $1
GROUP BY checked_in_gate
"""


def _actor_json(actor: Actor | None) -> str | None:
    return None if actor is None else msgspec.json.encode(actor).decode()


def _commit_args(batch: Sequence[NewBooking]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(16)]
    for b in batch:
        for col, value in zip(
            cols[:8],
            (
                b.booking_id,
                b.event_id,
                b.hold_id,
                b.ticket_seq,
                b.client_id,
                b.amount_cents,
                b.idempotency_key,
                b.gateway_ref,
            ),
            strict=True,
        ):
            col.append(value)
        for t in b.tickets:
            for col, value in zip(
                cols[8:14],
                (t.code, b.booking_id, t.section, t.position, t.seat_row, t.seat_number),
                strict=True,
            ):
                col.append(value)
        cols[14].append(b.token_expires_s)
        cols[15].append(b.email)
    return cols


class PgStore:
    """Typed access to the PostgreSQL schema."""

    def __init__(self, pool: asyncpg.Pool, bridge: Bridge) -> None:
        self._pool = pool  # asyncpg pool, used only on the drivers' loop
        self._bridge = bridge  # crosses into the drivers' loop
        #: The event log: appending, the relay's claims, webhooks.
        self.log = EventLogStore(pool, self._call)
        #: The read models projected from the log: the projector's cursors, reports.
        self.readmodels = ReadModelStore(pool, self._call)

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        ROUND_TRIPS.labels("postgres", op).inc()
        try:
            return await self._bridge.call(fn)
        except _UNREACHABLE as exc:  # nothing was committed by this call
            raise StorageUnavailable(f"PostgreSQL unreachable during {op}: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StorageError(f"PostgreSQL error during {op}: {exc}") from exc

    async def migrate(self) -> list[str]:
        """Apply pending migrations in order; return the names applied."""
        files = sorted(
            (
                f
                for f in (resources.files("storage") / "migrations").iterdir()
                if f.name.endswith(".sql")
            ),
            key=lambda f: f.name,
        )

        async def apply() -> list[str]:
            applied: list[str] = []
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
                try:
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                    done = {
                        r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")
                    }
                    for f in files:
                        if f.name in done:
                            continue
                        async with conn.transaction():
                            await conn.execute(f.read_text())
                            await conn.execute(
                                "INSERT INTO schema_migrations (name) VALUES ($1)", f.name
                            )
                        applied.append(f.name)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
            return applied

        return await self._call("migrate", apply)

    async def insert_event(
        self,
        event: EventRow,
        seats: Sequence[SeatRow],
        created: msgspec.Struct | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Record a new event and its seats in one transaction (with its ``event_created``
        log entry, ``created``, when given)."""

        async def insert() -> None:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO events (id, name, opens_at, max_per_order, hold_seconds, "
                    "max_active_holds, sections, currency, identity, max_per_person, "
                    "challenge_difficulty, buyer_refunds, refund_until) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10, $11, $12, $13)",
                    event.id,
                    event.name,
                    event.opens_at,
                    event.max_per_order,
                    event.hold_seconds,
                    event.max_active_holds,
                    event.sections,
                    event.currency,
                    event.identity or None,
                    event.max_per_person,
                    event.challenge_difficulty,
                    event.buyer_refunds,
                    event.refund_until,
                )
                await conn.copy_records_to_table(
                    "seats",
                    records=[(event.id, *msgspec.structs.astuple(s)) for s in seats],
                    columns=[
                        "event_id",
                        "section",
                        "position",
                        "seat_row",
                        "seat_number",
                        "price_cents",
                    ],
                )
                if created is not None:
                    await conn.execute(
                        "INSERT INTO event_log (event_id, kind, payload, actor) "
                        "VALUES ($1, 'event_created', $2::jsonb, $3::jsonb)",
                        event.id,
                        msgspec.json.encode(created).decode(),
                        _actor_json(actor),
                    )

        await self._call("insert_event", insert)

    async def event(self, event_id: str) -> EventRow | None:
        """One event, or None."""

        async def fetch() -> Any:
            return await self._pool.fetchrow(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = $1", event_id
            )

        row = await self._call("event", fetch)
        return None if row is None else EventRow(**dict(row))

    async def newest_events(self, limit: int) -> list[EventRow]:
        """The ``limit`` most recently created events, newest first."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY created_at DESC, id LIMIT $1",
                limit,
            )

        return [EventRow(**dict(row)) for row in await self._call("newest_events", fetch)]

    async def commit_bookings(self, batch: Sequence[NewBooking]) -> list[CommitResult]:
        """Record paid holds durably, as many as given in one transaction.

        A replayed idempotency key writes nothing and returns the booking first
        recorded for it. If the batch breaks a constraint (a seat already sold),
        each booking is retried alone so only the offending ones fail.
        """
        BATCH_SIZE.labels("commit_bookings").observe(len(batch))
        args = _commit_args(batch)

        async def commit() -> Any:
            return await self._pool.fetch(_COMMIT_BOOKINGS, *args)

        try:
            rows = await self._call("commit_bookings", commit)
        except StorageUnavailable:
            raise
        except StorageError as exc:
            if len(batch) == 1:
                return [CommitResult(booking_id=None, error=str(exc.__cause__ or exc))]
            results: list[CommitResult] = []
            for one in batch:
                results += await self.commit_bookings([one])
            return results
        inserted = {r["booking_id"]: r["created_at"] for r in rows}
        replayed = [b.idempotency_key for b in batch if b.booking_id not in inserted]
        existing: dict[str, str] = {}
        if replayed:

            async def lookup() -> Any:
                return await self._pool.fetch(
                    "SELECT idempotency_key, booking_id FROM payments WHERE idempotency_key = ANY($1)",
                    replayed,
                )

            existing = {
                r["idempotency_key"]: r["booking_id"] for r in await self._call("payments", lookup)
            }
        return [
            CommitResult(booking_id=b.booking_id, created_at=inserted[b.booking_id])
            if b.booking_id in inserted
            else CommitResult(booking_id=existing.get(b.idempotency_key), replayed=True)
            for b in batch
        ]

    async def booking(self, booking_id: str) -> BookingRow | None:
        """A booking with its tickets, or None."""

        async def fetch() -> Any:
            return await self._pool.fetchrow(_BOOKING, booking_id)

        row = await self._call("booking", fetch)
        if row is None:
            return None
        fields = dict(row)
        fields["tickets"] = [TicketRow(**t) for t in json.loads(fields["tickets"])]
        return BookingRow(**fields)

    async def claim_payments(self, batch: Sequence[SagaClaim]) -> list[None]:
        """Start the sagas of payments about to charge (again, after a decline), each logged
        in event_log in the same transaction; a saga already further on is left as it is."""
        BATCH_SIZE.labels("claim_payments").observe(len(batch))
        columns = [
            [c.idempotency_key for c in batch],
            [c.event_id for c in batch],
            [c.hold_id for c in batch],
            [c.amount_cents for c in batch],
            [c.currency for c in batch],
        ]

        async def claim() -> Any:
            return await self._pool.execute(_CLAIM_PAYMENTS, *columns)

        await self._call("claim_payments", claim)
        return [None] * len(batch)

    async def move_saga(
        self,
        idempotency_key: str,
        step: str,
        *,
        from_steps: Sequence[str],
        gateway_ref: str | None = None,
        refund_ref: str | None = None,
    ) -> bool:
        """Move a payment's saga to ``step`` if it is at one of ``from_steps`` (logged in
        event_log as ``payment_<step>`` in the same transaction); False if it was not."""

        async def move() -> Any:
            return await self._pool.fetchval(
                _MOVE_SAGA, idempotency_key, step, list(from_steps), gateway_ref, refund_ref
            )

        moved: bool = bool(await self._call("move_saga", move))
        return moved

    async def stalled_sagas(self, claimed_before: datetime, limit: int = 100) -> list[SagaRow]:
        """Payments stopped halfway: claimed before ``claimed_before`` and neither recorded
        nor ended since, or being compensated; the oldest first."""

        async def fetch() -> Any:
            return await self._pool.fetch(_STALLED_SAGAS, claimed_before, limit)

        return [SagaRow(**dict(r)) for r in await self._call("stalled_sagas", fetch)]

    async def saga(self, idempotency_key: str) -> SagaRow | None:
        """A payment's saga, or None."""

        async def fetch() -> Any:
            return await self._pool.fetchrow(
                f"SELECT {_SAGA_COLUMNS} FROM payment_sagas WHERE idempotency_key = $1",
                idempotency_key,
            )

        row = await self._call("saga", fetch)
        return None if row is None else SagaRow(**dict(row))

    async def booking_for_key(self, idempotency_key: str) -> str | None:
        """The booking recorded for an idempotency key, or None."""

        async def fetch() -> Any:
            return await self._pool.fetchval(
                "SELECT booking_id FROM payments WHERE idempotency_key = $1", idempotency_key
            )

        result: str | None = await self._call("booking_for_key", fetch)
        return result

    async def live_bookings(
        self,
        event_ids: Sequence[str],
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LiveBooking]:
        """Confirmed bookings of these events (created in [``since``, ``until``)) with their seats."""

        async def fetch() -> Any:
            return await self._pool.fetch(_LIVE_BOOKINGS, list(event_ids), since, until)

        return [LiveBooking(**dict(r)) for r in await self._call("live_bookings", fetch)]

    async def record_conflicts(self, conflicts: Sequence[BookingConflict]) -> int:
        """Log each conflict once in event_log (a refund to make); return how many were new."""
        if not conflicts:
            return 0
        cols = [
            [getattr(c, f) for c in conflicts]
            for f in ("event_id", "booking_id", "hold_id", "reason")
        ]

        async def insert() -> Any:
            return await self._pool.fetch(_RECORD_CONFLICTS, *cols)

        return len(await self._call("record_conflicts", insert))

    async def conflicts(self, event_id: str) -> list[dict[str, Any]]:
        """The reconciliation conflicts logged for an event (payloads, oldest first)."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                "SELECT payload::text FROM event_log "
                "WHERE event_id = $1 AND kind = 'reconcile_conflict' ORDER BY id",
                event_id,
            )

        return [json.loads(r["payload"]) for r in await self._call("conflicts", fetch)]

    async def sold_positions(self, event_id: str) -> list[tuple[str, int]]:
        """(section, position) of every live ticket of an event (for audits)."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                "SELECT section, position FROM tickets WHERE event_id = $1 AND live", event_id
            )

        return [(r["section"], r["position"]) for r in await self._call("sold_positions", fetch)]

    async def insert_staff_key(
        self, key_id: str, event_id: str, label: str, key_hash: bytes, actor: Actor | None = None
    ) -> StaffKeyRow:
        """Record a new staff key of an event (its hash) and log it (with who made it)."""

        async def insert() -> Any:
            return await self._pool.fetchrow(
                _INSERT_STAFF_KEY, key_id, event_id, label, key_hash, _actor_json(actor)
            )

        return StaffKeyRow(**dict(await self._call("insert_staff_key", insert)))

    async def staff_key_event(self, key_hash: bytes) -> str | None:
        """The event of the staff key in force with this hash (None: no such key)."""

        async def fetch() -> Any:
            return await self._pool.fetchval(
                "SELECT event_id FROM staff_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                key_hash,
            )

        result: str | None = await self._call("staff_key_event", fetch)
        return result

    async def staff_keys(self, event_id: str) -> list[StaffKeyRow]:
        """The staff keys of an event not revoked, oldest first."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                f"SELECT {_STAFF_KEY_COLUMNS} FROM staff_keys "
                "WHERE event_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
                event_id,
            )

        return [StaffKeyRow(**dict(r)) for r in await self._call("staff_keys", fetch)]

    async def revoke_staff_key(
        self, event_id: str, key_id: str, actor: Actor | None = None
    ) -> StaffKeyRow | None:
        """Revoke a staff key of an event (logged once, with who did it); the key, or None if
        there is none."""

        async def revoke() -> Any:
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow(_REVOKE_STAFF_KEY, key_id, event_id, _actor_json(actor))
                if row is None:  # unknown, or revoked already
                    row = await conn.fetchrow(
                        f"SELECT {_STAFF_KEY_COLUMNS} FROM staff_keys "
                        "WHERE id = $1 AND event_id = $2",
                        key_id,
                        event_id,
                    )
                return row

        row = await self._call("revoke_staff_key", revoke)
        return None if row is None else StaffKeyRow(**dict(row))

    async def check_in(
        self, key_hash: bytes, code: str, gate: str
    ) -> tuple[str, CheckinRow | None] | None:
        """Let the ticket ``code`` in at ``gate`` with the staff key of ``key_hash``.

        None: no such key (or revoked). Else the key's event and the ticket after the scan
        (``admitted`` when this scan let it in; ``cancelling`` when it was not because a
        pending cancellation names it), None when the event has no such ticket.
        """

        async def scan() -> Any:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_LOCK_SCANNED_BOOKING, code)
                row = await conn.fetchrow(_CHECK_IN, key_hash, code, gate)
                if row is None or row["code"] is not None:
                    return row, None
                # Not let in: read the ticket as it is now (the winner of a race committed).
                return row, await conn.fetchrow(_SCANNED_TICKET, code, row["key_event"])

        first, ticket = await self._call("check_in", scan)
        if first is None:
            return None
        event_id: str = first["key_event"]
        if first["code"] is not None:
            return event_id, CheckinRow(
                code=first["code"],
                event_id=event_id,
                section=first["section"],
                seat_row=first["seat_row"],
                seat_number=first["seat_number"],
                live=True,
                admitted=True,
                checked_in_at=first["checked_in_at"],
                gate=first["checked_in_gate"],
            )
        if ticket is None:
            return event_id, None
        return event_id, CheckinRow(
            code=ticket["code"],
            event_id=event_id,
            section=ticket["section"],
            seat_row=ticket["seat_row"],
            seat_number=ticket["seat_number"],
            live=ticket["live"],
            admitted=False,
            checked_in_at=ticket["checked_in_at"],
            gate=ticket["checked_in_gate"],
            cancelling=ticket["cancelling"],
        )

    async def checkin_counts(self, event_id: str) -> CheckinCountsRow:
        """An event's live tickets, how many are in, and how many came in at each gate."""

        async def fetch() -> Any:
            return await self._pool.fetch(_CHECKIN_COUNTS, event_id)

        rows = await self._call("checkin_counts", fetch)
        return CheckinCountsRow(
            live=sum(r["live"] for r in rows),
            checked_in=sum(r["checked_in"] for r in rows),
            gates={r["gate"]: r["checked_in"] for r in rows if r["gate"] and r["checked_in"]},
        )

    async def claim_mail(self, limit: int, lease_s: float) -> list[MailJob]:
        """Up to ``limit`` confirmation mails due now, each leased for ``lease_s`` (its
        attempt counted): until then no other claim returns them."""

        async def claim() -> Any:
            return await self._pool.fetch(_CLAIM_MAIL, limit, lease_s)

        return [MailJob(**dict(r)) for r in await self._call("claim_mail", claim)]

    async def mail_sent(self, booking_id: str) -> None:
        """Record a confirmation mail as sent (and log it, in the same transaction)."""

        async def mark() -> Any:
            return await self._pool.execute(_MAIL_SENT, booking_id)

        await self._call("mail_sent", mark)

    async def mail_failed(self, booking_id: str, error: str, retry_after_s: float) -> None:
        """Record a failed send: the mail is due again in ``retry_after_s``."""

        async def mark() -> Any:
            return await self._pool.execute(
                "UPDATE mail_outbox SET last_error = $2, "
                "next_attempt_at = now() + make_interval(secs => $3) "
                "WHERE booking_id = $1 AND sent_at IS NULL",
                booking_id,
                error[:500],
                retry_after_s,
            )

        await self._call("mail_failed", mark)

    async def ping(self) -> None:
        """Raise StorageUnavailable unless PostgreSQL answers."""

        async def ping() -> Any:
            return await self._pool.fetchval("SELECT 1")

        await self._call("ping", ping)

    # -- cancellations ------------------------------------------------------------------

    async def begin_cancellation(self, new: NewCancellation) -> CancellationRow | str:
        """Record a cancellation as pending, before any money moves; or find the one already
        recorded under the same booking and idempotency key.

        One transaction, with the booking's row locked, so two cancellations of the same
        tickets cannot both be recorded. A refusal is returned as its reason (nothing is
        written): ``missing`` (no booking), ``cancelled`` (no live ticket left),
        ``not_in_booking:<code>``, ``not_live:<code>`` (cancelled already),
        ``checked_in:<code>`` (used at the door: never cancelled; a whole-booking
        cancellation takes the live tickets not checked in) or ``pending:<code>``
        (another cancellation of it is under way).
        """

        async def begin() -> CancellationRow | str:
            async with self._pool.acquire() as conn, conn.transaction():
                booking = await conn.fetchrow(
                    "SELECT id, event_id, status FROM bookings WHERE id = $1 FOR UPDATE",
                    new.booking_id,
                )
                if booking is None:
                    return "missing"
                existing = await conn.fetchrow(
                    f"SELECT {_CANCELLATION_COLUMNS} FROM cancellations "
                    "WHERE booking_id = $1 AND idempotency_key = $2",
                    new.booking_id,
                    new.idempotency_key,
                )
                if existing is not None:
                    return CancellationRow(**dict(existing))
                tickets = {
                    r["code"]: (r["live"], r["price_cents"], r["used"])
                    for r in await conn.fetch(_BOOKING_TICKET_PRICES, new.booking_id)
                }
                pending = set(
                    await conn.fetchval(
                        "SELECT coalesce(array_agg(code), '{}') FROM cancellations, "
                        "unnest(codes) AS code WHERE booking_id = $1 AND status = 'pending'",
                        new.booking_id,
                    )
                )
                if new.codes is None:  # every live ticket not used at the door yet
                    codes = sorted(c for c, (live, _, used) in tickets.items() if live and not used)
                    if not codes:
                        live = [c for c, (is_live, _, _) in tickets.items() if is_live]
                        return f"checked_in:{live[0]}" if live else "cancelled"
                else:
                    codes = new.codes
                    for code in codes:
                        if code not in tickets:
                            return f"not_in_booking:{code}"
                        if not tickets[code][0]:
                            return f"not_live:{code}"
                        if tickets[code][2]:
                            return f"checked_in:{code}"
                for code in codes:
                    if code in pending:
                        return f"pending:{code}"
                charge_ref = await conn.fetchval(
                    "SELECT gateway_ref FROM payments WHERE booking_id = $1", new.booking_id
                )
                amount = sum(tickets[c][1] for c in codes)
                row = await conn.fetchrow(
                    "INSERT INTO cancellations (id, booking_id, event_id, idempotency_key, "
                    "whole, codes, amount_cents, charge_ref, by_admin, next_attempt_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + interval '5 seconds') "
                    f"RETURNING {_CANCELLATION_COLUMNS}",
                    new.id,
                    new.booking_id,
                    booking["event_id"],
                    new.idempotency_key,
                    new.codes is None,
                    codes,
                    amount,
                    charge_ref or "",
                    new.by_admin,
                )
                await conn.execute(
                    "INSERT INTO event_log (event_id, kind, payload, actor) VALUES ($1, "
                    "'cancellation_requested', jsonb_build_object('cancellation_id', $2::text, "
                    "'booking_id', $3::text, 'codes', $4::text[], 'amount_cents', $5::int, "
                    "'by_admin', $6::boolean), $7::jsonb)",
                    booking["event_id"],
                    new.id,
                    new.booking_id,
                    codes,
                    amount,
                    new.by_admin,
                    _actor_json(new.actor),
                )
                return CancellationRow(**dict(row))

        return await self._call("begin_cancellation", begin)

    async def finish_cancellation(
        self, cancellation_id: str, refund_ref: str
    ) -> tuple[CancellationRow, list[ReturnedSeatRow]]:
        """A refunded cancellation, done in one transaction: its tickets no longer live, the
        booking cancelled when none is left, the cancellation done, an event_log row.
        Finishing one that is no longer pending changes nothing. With the row, the seats
        this call's finishing returns (read in the same transaction; none when it was
        finished already)."""

        async def finish() -> Any:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE cancellations SET status = 'done', refund_ref = $2, done_at = now() "
                    "WHERE id = $1 AND status = 'pending' RETURNING booking_id, event_id, codes, "
                    "amount_cents",
                    cancellation_id,
                    refund_ref,
                )
                if row is not None:
                    await conn.execute(
                        "UPDATE tickets SET live = false WHERE booking_id = $1 AND code = ANY($2)",
                        row["booking_id"],
                        row["codes"],
                    )
                    status = (
                        await conn.fetchval(_CANCEL_BOOKING_IF_EMPTY, row["booking_id"])
                        or "confirmed"  # live tickets are left
                    )
                    await conn.execute(
                        "UPDATE cancellations SET booking_status = $2 WHERE id = $1",
                        cancellation_id,
                        status,
                    )
                    await conn.execute(
                        "INSERT INTO event_log (event_id, kind, payload) VALUES ($1, "
                        "'booking_cancelled', jsonb_build_object('cancellation_id', $2::text, "
                        "'booking_id', $3::text, 'codes', $4::text[], 'amount_cents', $5::int, "
                        "'refund_ref', $6::text, 'booking_status', $7::text))",
                        row["event_id"],
                        cancellation_id,
                        row["booking_id"],
                        row["codes"],
                        row["amount_cents"],
                        refund_ref,
                        status,
                    )
                done = await conn.fetchrow(
                    f"SELECT {_CANCELLATION_COLUMNS} FROM cancellations WHERE id = $1",
                    cancellation_id,
                )
                seats = []
                if row is not None:  # finished by this call: its seats to return
                    seats = await conn.fetch(_RETURNED_SEATS, None, [cancellation_id], None, None)
                return done, seats

        done, seats = await self._call("finish_cancellation", finish)
        return CancellationRow(**dict(done)), [ReturnedSeatRow(**dict(r)) for r in seats]

    async def refuse_cancellation(self, cancellation_id: str, reason: str) -> CancellationRow:
        """The gateway refused the refund for good: the cancellation ends refused (its
        tickets stay live), logged in event_log."""

        async def refuse() -> Any:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE cancellations SET status = 'refused', last_error = $2, "
                    "done_at = now() WHERE id = $1 AND status = 'pending' "
                    "RETURNING booking_id, event_id",
                    cancellation_id,
                    reason,
                )
                if row is not None:
                    await conn.execute(
                        "INSERT INTO event_log (event_id, kind, payload) VALUES ($1, "
                        "'refund_refused', jsonb_build_object('cancellation_id', $2::text, "
                        "'booking_id', $3::text, 'reason', $4::text))",
                        row["event_id"],
                        cancellation_id,
                        row["booking_id"],
                        reason,
                    )
                return await conn.fetchrow(
                    f"SELECT {_CANCELLATION_COLUMNS} FROM cancellations WHERE id = $1",
                    cancellation_id,
                )

        return CancellationRow(**dict(await self._call("refuse_cancellation", refuse)))

    async def postpone_cancellation(self, cancellation_id: str, error: str, wait_s: float) -> None:
        """A refund attempt failed (gateway unreachable): count it, try again in ``wait_s``."""

        async def postpone() -> Any:
            return await self._pool.execute(
                "UPDATE cancellations SET attempts = attempts + 1, last_error = $2, "
                "next_attempt_at = now() + make_interval(secs => $3) "
                "WHERE id = $1 AND status = 'pending'",
                cancellation_id,
                error,
                wait_s,
            )

        await self._call("postpone_cancellation", postpone)

    async def due_cancellations(self, limit: int) -> list[CancellationRow]:
        """Pending cancellations whose next attempt is due, the longest waiting first."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                f"SELECT {_CANCELLATION_COLUMNS} FROM cancellations "
                "WHERE status = 'pending' AND next_attempt_at <= now() "
                "ORDER BY next_attempt_at LIMIT $1",
                limit,
            )

        return [CancellationRow(**dict(r)) for r in await self._call("due_cancellations", fetch)]

    async def cancellation_for_key(
        self, booking_id: str, idempotency_key: str
    ) -> CancellationRow | None:
        """The cancellation recorded for a booking under an idempotency key, or None."""

        async def fetch() -> Any:
            return await self._pool.fetchrow(
                f"SELECT {_CANCELLATION_COLUMNS} FROM cancellations "
                "WHERE booking_id = $1 AND idempotency_key = $2",
                booking_id,
                idempotency_key,
            )

        row = await self._call("cancellation_for_key", fetch)
        return None if row is None else CancellationRow(**dict(row))

    async def cancellation(self, cancellation_id: str) -> CancellationRow | None:
        """One cancellation, or None."""

        async def fetch() -> Any:
            return await self._pool.fetchrow(
                f"SELECT {_CANCELLATION_COLUMNS} FROM cancellations WHERE id = $1",
                cancellation_id,
            )

        row = await self._call("cancellation", fetch)
        return None if row is None else CancellationRow(**dict(row))

    async def returned_seats(
        self,
        event_ids: Sequence[str] | None = None,
        cancellation_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[ReturnedSeatRow]:
        """Seats of done cancellations (of these events, or these cancellations; done in
        [``since``, ``until``)), per booking and section, for Redis to free."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                _RETURNED_SEATS,
                None if event_ids is None else list(event_ids),
                None if cancellation_ids is None else list(cancellation_ids),
                since,
                until,
            )

        return [ReturnedSeatRow(**dict(r)) for r in await self._call("returned_seats", fetch)]

    # -- a whole event's cancellation -----------------------------------------------------

    async def begin_event_cancellation(self, event_id: str, actor: Actor | None = None) -> bool:
        """Record that an event is being cancelled as a whole (logged in event_log, with the
        admin who asked); False if it was already."""

        async def begin() -> bool:
            async with self._pool.acquire() as conn, conn.transaction():
                inserted = await conn.fetchval(
                    "INSERT INTO event_cancellations (event_id) VALUES ($1) "
                    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    event_id,
                )
                if inserted is None:
                    return False
                await conn.execute(
                    "INSERT INTO event_log (event_id, kind, payload, actor) "
                    "VALUES ($1, 'event_cancel_requested', '{}'::jsonb, $2::jsonb)",
                    event_id,
                    _actor_json(actor),
                )
                return True

        result: bool = await self._call("begin_event_cancellation", begin)
        return result

    async def event_cancellation(self, event_id: str, key: str) -> EventCancellationRow | None:
        """An event's cancellation and its progress (cancellations under ``key``), or None."""

        async def fetch() -> Any:
            return await self._pool.fetchrow(_EVENT_CANCELLATION, event_id, key)

        row = await self._call("event_cancellation", fetch)
        return None if row is None else EventCancellationRow(**dict(row))

    async def running_event_cancellations(self) -> list[str]:
        """Events whose cancellation is not done yet."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                "SELECT event_id FROM event_cancellations WHERE status = 'running' "
                "ORDER BY requested_at"
            )

        return [r["event_id"] for r in await self._call("running_event_cancellations", fetch)]

    async def uncancelled_booking_ids(
        self, event_id: str, key: str, limit: int, skip: Sequence[str] = ()
    ) -> list[str]:
        """Confirmed bookings of an event with a live ticket not checked in and no
        cancellation under ``key`` yet (none of ``skip``), oldest first."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                f"SELECT b.id FROM bookings b WHERE {_UNCANCELLED} AND b.id <> ALL($4::text[]) "
                "ORDER BY b.created_at, b.id LIMIT $3",
                event_id,
                key,
                limit,
                list(skip),
            )

        return [r["id"] for r in await self._call("uncancelled_booking_ids", fetch)]

    async def finish_event_cancellation(self, event_id: str, key: str) -> bool:
        """Mark an event's cancellation done once every live booking has a cancellation under
        ``key`` and none of the event's cancellations is pending (logged in event_log);
        whether it is done now. A booking whose refund was refused stays live, reported."""

        async def finish() -> bool:
            async with self._pool.acquire() as conn, conn.transaction():
                done = await conn.fetchval(_FINISH_EVENT_CANCELLATION, event_id, key)
                if done is None:
                    return False
                await conn.execute(
                    "INSERT INTO event_log (event_id, kind, payload) SELECT $1, 'event_cancelled', "
                    "jsonb_build_object('refunded', count(*) FILTER (WHERE status = 'done'), "
                    "'refunded_cents', coalesce(sum(amount_cents) FILTER (WHERE status = 'done'), 0)) "
                    "FROM cancellations WHERE event_id = $1 AND idempotency_key = $2",
                    event_id,
                    key,
                )
                return True

        result: bool = await self._call("finish_event_cancellation", finish)
        return result


@asynccontextmanager
async def open_pg_store(
    url: str, bridge: Bridge, *, max_size: int = 8, wait_s: float = 0.0
) -> AsyncIterator[PgStore]:
    """Connect a pool to PostgreSQL at ``url`` and close it on exit.

    A PostgreSQL not reachable yet (or still starting up) is tried again for up to
    ``wait_s`` seconds.
    """

    async def create_pool() -> asyncpg.Pool:
        return await asyncpg.create_pool(url, min_size=1, max_size=max_size)

    async def connect() -> asyncpg.Pool:
        try:
            return await bridge.call(create_pool)
        except _UNREACHABLE as exc:
            raise StorageUnavailable(f"PostgreSQL unreachable at start-up: {exc}") from exc

    pool = await retry_until_reachable("PostgreSQL", connect, wait_s)
    try:
        yield PgStore(pool, bridge)
    finally:
        await bridge.call(pool.close)
