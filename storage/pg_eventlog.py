"""The event log in PostgreSQL: appending entries, the relay's claims, webhooks' queues.

Entries are numbered per event by the ``event_log_number`` trigger (migration
``0007_event_log.sql``), so every writer (these methods and the statements of
``pg_store.py`` that log in the transaction of their change) gets the same order.

A relay batch and a webhook's sends each hold one transaction open: the rows
locked (``FOR UPDATE SKIP LOCKED``) are an event's cursor or a webhook's row, so
two relays never interleave one event and two senders never one endpoint, and a
relay killed mid-batch leaves its locks to PostgreSQL, which rolls back: the
batch is claimed again (published twice, never lost).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import msgspec

from storage.log_events import Actor, entry_json
from storage.pg_transaction import Call, held_transaction

__all__ = [
    "Delivery",
    "EventLogStore",
    "RelayBatch",
    "RelayedEntry",
    "WebhookBatch",
    "WebhookRow",
]

T = TypeVar("T")


class RelayedEntry(msgspec.Struct, frozen=True):
    """One entry claimed for publishing: its number and its JSON."""

    event_id: str
    seq: int
    body: bytes


class WebhookRow(msgspec.Struct, frozen=True):
    """A registered webhook (its secret only when just registered)."""

    id: str
    event_id: str
    url: str
    state: str
    created_at: datetime
    #: Sent up to a sender's batch of entries per POST (``{"entries": [...]}``).
    batch: bool = False
    pending: int = 0
    dead: int = 0
    delivered: int = 0
    secret: str | None = None


class Delivery(msgspec.Struct, frozen=True):
    """One entry to send to a webhook, in seq order."""

    seq: int
    attempts: int
    body: bytes


@dataclass
class RelayBatch:
    """Entries claimed for publishing, in (event, seq) order; held until the block ends."""

    entries: list[RelayedEntry]


@dataclass
class WebhookBatch:
    """A webhook's next deliveries, its row locked until the block ends.

    The sender records each outcome in order: ``delivered`` for each sent, then at most
    one ``failed``: the seqs of the POST that failed (one entry, or a batched webhook's
    whole batch), each counted one attempt; the rest wait behind them, in order.
    """

    webhook_id: str
    event_id: str
    url: str
    secret: str
    #: A batched webhook: its deliveries are sent in one POST.
    batched: bool
    deliveries: list[Delivery]
    delivered: list[int] = field(default_factory=list)
    failed: tuple[list[int], str] | None = None


_ENTRY_COLUMNS = (
    "l.event_id, l.seq, l.kind, l.version, l.created_at, l.actor::text, l.payload::text"
)

_APPEND = """
INSERT INTO event_log (event_id, kind, payload, actor)
SELECT e, k, p::jsonb, a::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
    AS t(e, k, p, a)
ORDER BY e  -- head rows locked in one order: two multi-event writers never deadlock
"""

# The event's head row, locked by a statement of its own before a write that depends on
# what the log holds: the next statement's snapshot (read committed) then sees what a
# writer that held the lock before committed. (In one statement, the snapshot is taken
# before the lock is waited for.) Two workers seeing the same thing at once write it once.
_LOCK_HEAD = "SELECT 1 FROM event_log_heads WHERE event_id = $1 FOR UPDATE"

# Entries that happen once per event (a state a worker sees in Redis).
_APPEND_ONCE = """
INSERT INTO event_log (event_id, kind, payload)
SELECT $1, $2, $3::jsonb
WHERE NOT EXISTS (SELECT 1 FROM event_log WHERE event_id = $1 AND kind = $2)
RETURNING seq
"""

# A minute's admission counters: the difference from the last summary, written once per
# minute and only when something changed (two workers summarising at once write once).
_SUMMARISE = """
WITH last AS (
    SELECT payload FROM event_log
    WHERE event_id = $1 AND kind = 'admission_summary'
    ORDER BY seq DESC LIMIT 1
), prev AS (
    SELECT coalesce((SELECT (payload->>'minute')::timestamptz FROM last), '-infinity') AS minute,
           coalesce((SELECT (payload->>'joined_total')::bigint FROM last), 0) AS joined,
           coalesce((SELECT (payload->>'admitted_total')::bigint FROM last), 0) AS admitted,
           coalesce((SELECT (payload->>'expired_total')::bigint FROM last), 0) AS expired,
           coalesce((SELECT (payload->>'confirmed_total')::bigint FROM last), 0) AS confirmed
)
INSERT INTO event_log (event_id, kind, payload)
SELECT $1, 'admission_summary', jsonb_build_object(
    'minute', to_char($2::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'joined', $3 - prev.joined, 'admitted', $4 - prev.admitted,
    'expired', $5 - prev.expired, 'confirmed', $6 - prev.confirmed,
    'joined_total', $3::bigint, 'admitted_total', $4::bigint,
    'expired_total', $5::bigint, 'confirmed_total', $6::bigint)
FROM prev
WHERE $2 > prev.minute
  AND ($3 <> prev.joined OR $4 <> prev.admitted OR $5 <> prev.expired OR $6 <> prev.confirmed)
RETURNING seq
"""

_CLAIM_RELAY = f"""
WITH c AS (
    SELECT c.event_id, c.published_seq FROM event_log_cursors c
    JOIN event_log_heads h USING (event_id)
    WHERE h.last_seq > c.published_seq
    LIMIT $1
    FOR UPDATE OF c SKIP LOCKED
)
SELECT {_ENTRY_COLUMNS}
FROM c CROSS JOIN LATERAL (
    SELECT * FROM event_log l
    WHERE l.event_id = c.event_id AND l.seq > c.published_seq
    ORDER BY l.seq LIMIT $2
) l
ORDER BY l.event_id, l.seq
"""

# Published: the cursors move on, the entries are stamped, and each webhook of the event
# gets its deliveries queued, all in the claim's transaction.
_MARK_RELAYED = """
WITH done AS (
    SELECT * FROM unnest($1::text[], $2::bigint[]) AS d(event_id, upto)
), cur AS (
    UPDATE event_log_cursors c SET published_seq = d.upto
    FROM done d WHERE c.event_id = d.event_id
    RETURNING c.event_id
), stamped AS (
    UPDATE event_log l SET published_at = now()
    FROM done d
    WHERE l.event_id = d.event_id AND l.seq <= d.upto AND l.published_at IS NULL
    RETURNING l.event_id, l.seq
)
INSERT INTO webhook_deliveries (webhook_id, event_id, seq)
SELECT w.id, s.event_id, s.seq FROM stamped s
JOIN webhooks w ON w.event_id = s.event_id AND w.state <> 'removed' AND s.seq >= w.from_seq
ON CONFLICT DO NOTHING
"""

_RELAY_LAG = """
SELECT coalesce(extract(epoch FROM now() - min(l.created_at)), 0)::float8
FROM event_log_cursors c
JOIN event_log l ON l.event_id = c.event_id AND l.seq = c.published_seq + 1
"""

_WEBHOOK_COLUMNS = """
w.id, w.event_id, w.url, w.state, w.created_at, w.batch,
(SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'pending')
    AS pending,
(SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'dead')
    AS dead,
(SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'delivered')
    AS delivered
"""

# The webhook's row locked FOR NO KEY UPDATE, held while its entries are POSTed: the relay
# queueing deliveries meanwhile takes the row's KEY SHARE lock (the deliveries' foreign
# key), which FOR UPDATE would make wait for the whole batch, however slow the receiver.
_CLAIM_WEBHOOK = """
SELECT w.id, w.event_id, w.url, w.secret, w.batch FROM webhooks w
WHERE w.state = 'active' AND (
    SELECT d.next_attempt_at FROM webhook_deliveries d
    WHERE d.webhook_id = w.id AND d.state = 'pending' ORDER BY d.seq LIMIT 1
) <= now()
LIMIT 1
FOR NO KEY UPDATE OF w SKIP LOCKED
"""

_WEBHOOK_DUE = f"""
SELECT d.seq, d.attempts, {_ENTRY_COLUMNS}
FROM webhook_deliveries d JOIN event_log l ON l.event_id = d.event_id AND l.seq = d.seq
WHERE d.webhook_id = $1 AND d.state = 'pending'
ORDER BY d.seq LIMIT $2
"""

_DELIVERED = """
UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now(), attempts = attempts + 1,
                              last_error = NULL
WHERE webhook_id = $1 AND seq = ANY($2::bigint[]) AND state = 'pending'
"""

# A failure (one entry's POST, or a batched webhook's whole batch): each tried again after
# the backoff, or dead (with its webhook) after the last try.
_FAILED = """
WITH d AS (
    UPDATE webhook_deliveries
    SET attempts = attempts + 1, last_error = $3,
        next_attempt_at = now() + make_interval(
            secs => least($5::float8, $4::float8 * power(2, attempts))),
        state = CASE WHEN attempts + 1 >= $6 THEN 'dead' ELSE 'pending' END
    WHERE webhook_id = $1 AND seq = ANY($2::bigint[]) AND state = 'pending'
    RETURNING state
)
UPDATE webhooks SET state = 'dead'
WHERE id = $1 AND state = 'active' AND EXISTS (SELECT 1 FROM d WHERE d.state = 'dead')
RETURNING id
"""


def _entry(row: Any) -> bytes:
    return entry_json(
        row["kind"],
        row["version"],
        row["event_id"],
        row["seq"],
        row["created_at"],
        row["actor"],
        row["payload"],
    )


def _json(value: msgspec.Struct | None) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


class EventLogStore:
    """Typed access to ``event_log``, its cursors and the webhooks' queues."""

    def __init__(self, pool: asyncpg.Pool, call: Call) -> None:
        self._pool = pool  # asyncpg pool, used only on the drivers' loop
        self._call = call  # PgStore._call: counted, errors mapped to StorageError

    async def append(
        self, entries: Sequence[tuple[str, str, msgspec.Struct, Actor | None]]
    ) -> None:
        """Append (event id, type, payload, actor) entries in one transaction."""
        cols: list[list[str | None]] = [[], [], [], []]
        for event_id, kind, payload, actor in entries:
            cols[0].append(event_id)
            cols[1].append(kind)
            cols[2].append(_json(payload))
            cols[3].append(_json(actor))

        async def insert() -> Any:
            return await self._pool.execute(_APPEND, *cols)

        await self._call("log_append", insert)

    async def append_once(self, event_id: str, kind: str, payload: msgspec.Struct) -> bool:
        """Append an entry unless the event's log has one of ``kind``; whether it did."""

        async def insert() -> Any:
            async with self._pool.acquire() as conn, conn.transaction():
                if await conn.fetchval(_LOCK_HEAD, event_id) is None:
                    return None  # nothing logged for the event yet: not created here
                return await conn.fetchval(_APPEND_ONCE, event_id, kind, _json(payload))

        return await self._call("log_append_once", insert) is not None

    async def summarise_admission(
        self,
        event_id: str,
        minute: datetime,
        joined: int,
        admitted: int,
        expired: int,
        confirmed: int,
    ) -> bool:
        """Log the admission counters' change since the last summary (once per minute, and
        only when they changed); whether an entry was written."""

        async def insert() -> Any:
            async with self._pool.acquire() as conn, conn.transaction():
                if await conn.fetchval(_LOCK_HEAD, event_id) is None:
                    return None
                return await conn.fetchval(
                    _SUMMARISE, event_id, minute, joined, admitted, expired, confirmed
                )

        return await self._call("log_summarise", insert) is not None

    async def entries(self, event_id: str, after_seq: int = 0, limit: int = 1000) -> list[bytes]:
        """An event's entries after ``after_seq``, as JSON, in order."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                f"SELECT {_ENTRY_COLUMNS} FROM event_log l "
                "WHERE l.event_id = $1 AND l.seq > $2 ORDER BY l.seq LIMIT $3",
                event_id,
                after_seq,
                limit,
            )

        return [_entry(r) for r in await self._call("log_entries", fetch)]

    @asynccontextmanager
    async def relay_batch(self, max_events: int, max_entries: int) -> AsyncIterator[RelayBatch]:
        """Claim unpublished entries of up to ``max_events`` events (``max_entries`` each),
        their cursors locked; when the block ends normally they are marked published and
        queued to each webhook of their event, else left for the next claim."""
        async with held_transaction(self._pool, self._call, "relay_claim") as conn:

            async def claim() -> Any:
                return await conn.fetch(_CLAIM_RELAY, max_events, max_entries)

            rows = await self._call("relay_claim", claim)
            batch = RelayBatch([RelayedEntry(r["event_id"], r["seq"], _entry(r)) for r in rows])
            yield batch
            if batch.entries:
                upto: dict[str, int] = {}
                for e in batch.entries:
                    upto[e.event_id] = max(upto.get(e.event_id, 0), e.seq)

                async def mark() -> Any:
                    return await conn.execute(_MARK_RELAYED, list(upto), list(upto.values()))

                await self._call("relay_mark", mark)

    async def relay_lag_s(self) -> float:
        """How long the oldest unpublished entry has waited, s (0 when none waits)."""

        async def fetch() -> Any:
            return await self._pool.fetchval(_RELAY_LAG)

        return float(await self._call("relay_lag", fetch))

    # -- webhooks ------------------------------------------------------------------

    async def add_webhook(
        self,
        webhook_id: str,
        event_id: str,
        url: str,
        secret: str,
        actor: Actor | None,
        *,
        batch: bool = False,
    ) -> WebhookRow:
        """Register a webhook (and log it, without its secret); ``batch``: sent its
        entries in batches."""

        async def insert() -> Any:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO webhooks (id, event_id, url, secret, batch) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    webhook_id,
                    event_id,
                    url,
                    secret,
                    batch,
                )
                seq = await conn.fetchval(
                    _APPEND + " RETURNING seq",
                    [event_id],
                    ["webhook_registered"],
                    [msgspec.json.encode({"webhook_id": webhook_id, "url": url}).decode()],
                    [_json(actor)],
                )
                await conn.execute(
                    "UPDATE webhooks SET from_seq = $2 WHERE id = $1", webhook_id, seq
                )
                return await conn.fetchrow(
                    f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = $1", webhook_id
                )

        row = await self._call("add_webhook", insert)
        return WebhookRow(**dict(row), secret=secret)

    async def webhooks(self, event_id: str) -> list[WebhookRow]:
        """An event's webhooks not removed, oldest first (without their secrets)."""

        async def fetch() -> Any:
            return await self._pool.fetch(
                f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks w "
                "WHERE w.event_id = $1 AND w.state <> 'removed' ORDER BY w.created_at, w.id",
                event_id,
            )

        return [WebhookRow(**dict(r)) for r in await self._call("webhooks", fetch)]

    async def _webhook_action(
        self, op: str, event_id: str, webhook_id: str, sql: str, kind: str, actor: Actor | None
    ) -> WebhookRow | None:
        async def act() -> Any:
            async with self._pool.acquire() as conn, conn.transaction():
                # The webhook's row lock: a sender holding it finishes its batch first.
                url = await conn.fetchval(
                    "SELECT url FROM webhooks WHERE id = $1 AND event_id = $2 "
                    "AND state <> 'removed' FOR NO KEY UPDATE",
                    webhook_id,
                    event_id,
                )
                if url is None:
                    return None
                await conn.execute(sql, webhook_id)
                await conn.execute(
                    _APPEND,
                    [event_id],
                    [kind],
                    [msgspec.json.encode({"webhook_id": webhook_id, "url": url}).decode()],
                    [_json(actor)],
                )
                return await conn.fetchrow(
                    f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = $1", webhook_id
                )

        row = await self._call(op, act)
        return None if row is None else WebhookRow(**dict(row))

    async def remove_webhook(
        self, event_id: str, webhook_id: str, actor: Actor | None
    ) -> WebhookRow | None:
        """Remove a webhook (its undelivered entries are dropped); None if there is none."""
        sql = (
            "WITH w AS (UPDATE webhooks SET state = 'removed', removed_at = now() "
            "WHERE id = $1 RETURNING id) "
            "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND state <> 'delivered'"
        )
        return await self._webhook_action(
            "remove_webhook", event_id, webhook_id, sql, "webhook_removed", actor
        )

    async def redeliver_webhook(
        self, event_id: str, webhook_id: str, actor: Actor | None
    ) -> WebhookRow | None:
        """Send a webhook's dead entries again, in order, its attempts counted afresh;
        None if there is no such webhook."""
        sql = (
            "WITH d AS (UPDATE webhook_deliveries SET state = 'pending', attempts = 0, "
            "next_attempt_at = now() WHERE webhook_id = $1 AND state = 'dead') "
            "UPDATE webhooks SET state = 'active' WHERE id = $1 AND state = 'dead'"
        )
        return await self._webhook_action(
            "redeliver_webhook", event_id, webhook_id, sql, "webhook_redelivered", actor
        )

    @asynccontextmanager
    async def webhook_batch(
        self, max_deliveries: int, *, backoff_s: float, backoff_max_s: float, max_attempts: int
    ) -> AsyncIterator[WebhookBatch | None]:
        """The next webhook with a delivery due, its row locked, and its first
        ``max_deliveries`` pending entries in order (None: nothing is due). The outcomes
        the sender records in the batch are written when the block ends: a failure is
        tried again after ``backoff_s`` doubled per attempt (at most ``backoff_max_s``),
        and is dead, with its webhook, after ``max_attempts``."""
        async with held_transaction(self._pool, self._call, "webhook_claim") as conn:

            async def claim() -> Any:
                hook = await conn.fetchrow(_CLAIM_WEBHOOK)
                if hook is None:
                    return None, []
                return hook, await conn.fetch(_WEBHOOK_DUE, hook["id"], max_deliveries)

            hook, rows = await self._call("webhook_claim", claim)
            if hook is None:
                yield None
                return
            batch = WebhookBatch(
                webhook_id=hook["id"],
                event_id=hook["event_id"],
                url=hook["url"],
                secret=hook["secret"],
                batched=hook["batch"],
                deliveries=[Delivery(r["seq"], r["attempts"], _entry(r)) for r in rows],
            )
            yield batch

            async def record() -> Any:
                if batch.delivered:
                    await conn.execute(_DELIVERED, batch.webhook_id, batch.delivered)
                if batch.failed is not None:
                    seqs, error = batch.failed
                    return await conn.fetchval(
                        _FAILED,
                        batch.webhook_id,
                        seqs,
                        error[:500],
                        backoff_s,
                        backoff_max_s,
                        max_attempts,
                    )
                return None

            await self._call("webhook_record", record)
