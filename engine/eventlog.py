"""The event log: its typed entries, the relay that publishes them, the admission summaries.

Every durable change writes its entry in the transaction that makes it (the
PostgreSQL store's statements), numbered per event in commit order. The relay
(:func:`run_relay`: in every worker, or alone as ``booking relay``; any number may
run) claims each event's unpublished entries in order, its cursor locked so no two
relays interleave one event, appends them to the event's Redis stream
(``ev:{E}:log``) and marks them published, queueing one delivery per webhook of
the event in the same transaction. The webhook sender (:func:`run_webhook_sender`)
POSTs each webhook's queue in order, signed (one entry per POST, or for a batched
webhook up to ``webhook_batch`` entries per POST, delivered or failed as one); a
failing endpoint waits (backoff doubling per attempt) and, after the last attempt, is
dead with its queue intact until the admin redelivers. Publishing is at least once: a relay killed between
the stream's append and its commit publishes the batch again, and consumers tell
duplicates by (event_id, seq).

Payments never wait for any of it: they only insert rows; the relay and senders
run in other tasks (and other processes), on their own connections.

The waiting room's facts that live only in Redis (joins, holds, expiries) are not
logged one by one (a sale makes thousands a second, and the log would cost a
PostgreSQL write each): :func:`run_admission_summaries` writes each live event's
counters once a minute as an ``admission_summary`` entry.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import anyio.abc

from engine.metrics import (
    LOG_ENTRIES_RELAYED,
    RELAY_LAG,
    WEBHOOK_DELIVERIES,
)
from plumbing.clock import Clock
from storage.errors import StorageError
from storage.log_events import (
    ENTRY_TYPES,
    Actor,
    LogEntry,
    SaleStatePayload,
    decode_entry,
    events_markdown,
)
from storage.pg_eventlog import WebhookBatch
from storage.pg_store import PgStore
from storage.records import EventState
from storage.redis_store import RedisStore
from storage.webhook_client import SIGNATURE_HEADER, WebhookClient, batch_body, sign, verify

__all__ = [
    "ENTRY_TYPES",
    "SIGNATURE_HEADER",
    "Actor",
    "LogEntry",
    "RelayPolicy",
    "decode_entry",
    "events_markdown",
    "relay_once",
    "run_admission_summaries",
    "run_relay",
    "run_webhook_sender",
    "sign",
    "verify",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelayPolicy:
    """How the relay and the webhook sender work."""

    #: Events claimed per relay batch, and entries per event.
    batch_events: int = 50
    batch_entries: int = 500
    #: Each event's Redis stream is trimmed to about this many entries.
    stream_maxlen: int = 100_000
    #: Wait between polls when nothing was found, s.
    idle_s: float = 0.2
    #: Webhooks sent to at once (each holds a PostgreSQL connection while it sends).
    senders: int = 2
    #: Entries sent to one webhook per claim, in order.
    webhook_batch: int = 50
    #: A POST not answered in full in this long (connecting included) failed, s.
    webhook_timeout_s: float = 10.0
    #: The first retry's wait, doubled per attempt up to the max, s.
    webhook_backoff_s: float = 1.0
    webhook_backoff_max_s: float = 300.0
    #: Attempts before a delivery (and its webhook) is dead.
    webhook_max_attempts: int = 8


async def relay_once(pg: PgStore, redis: RedisStore, policy: RelayPolicy) -> int:
    """Publish one batch; how many entries it published."""
    async with pg.log.relay_batch(policy.batch_events, policy.batch_entries) as batch:
        await redis.publish_log(
            [(e.event_id, e.seq, e.body) for e in batch.entries], policy.stream_maxlen
        )
    if batch.entries:
        LOG_ENTRIES_RELAYED.inc(len(batch.entries))
    return len(batch.entries)


async def run_relay(
    pg: PgStore,
    redis: RedisStore,
    policy: RelayPolicy = RelayPolicy(),
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Publish the log for as long as it runs: the stream relay, the webhook senders, and
    the relay's lag as a gauge."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_publish_forever, pg, redis, policy)
        tg.start_soon(_measure_lag, pg, policy)
        for _ in range(policy.senders):
            tg.start_soon(run_webhook_sender, pg, policy)
        task_status.started()


async def _publish_forever(pg: PgStore, redis: RedisStore, policy: RelayPolicy) -> None:
    while True:
        try:
            published = await relay_once(pg, redis, policy)
        except StorageError as exc:
            logger.warning("relay: %s", exc)
            published = 0
        if published == 0:
            await anyio.sleep(policy.idle_s)


async def _measure_lag(pg: PgStore, policy: RelayPolicy) -> None:
    while True:
        with contextlib.suppress(StorageError):
            RELAY_LAG.set(await pg.log.relay_lag_s())
        await anyio.sleep(max(policy.idle_s, 1.0))


async def deliver_once(pg: PgStore, client: WebhookClient, policy: RelayPolicy) -> int | None:
    """Send one webhook's due entries in order, stopping at the first failure; how many
    were delivered, or None when no webhook had anything due."""
    async with pg.log.webhook_batch(
        policy.webhook_batch,
        backoff_s=policy.webhook_backoff_s,
        backoff_max_s=policy.webhook_backoff_max_s,
        max_attempts=policy.webhook_max_attempts,
    ) as batch:
        if batch is None:
            return None
        if batch.batched:
            return await _deliver_batched(batch, client, policy)
        for delivery in batch.deliveries:
            error = await client.send(
                batch.url,
                batch.secret,
                delivery.body,
                webhook_id=batch.webhook_id,
                event_id=batch.event_id,
                seq=delivery.seq,
            )
            if error is None:
                batch.delivered.append(delivery.seq)
                WEBHOOK_DELIVERIES.labels("delivered").inc()
                continue
            last = delivery.attempts + 1 >= policy.webhook_max_attempts
            WEBHOOK_DELIVERIES.labels("dead" if last else "failed").inc()
            logger.info(
                "webhook %s: entry %s of %s not delivered (attempt %d): %s",
                batch.webhook_id,
                delivery.seq,
                batch.event_id,
                delivery.attempts + 1,
                error,
            )
            batch.failed = ([delivery.seq], error)
            break
        return len(batch.delivered)


async def _deliver_batched(batch: WebhookBatch, client: WebhookClient, policy: RelayPolicy) -> int:
    """A batched webhook's due entries in one POST: all delivered, or all failed one
    attempt (dead, with the webhook, once the oldest has had its last)."""
    deliveries = batch.deliveries
    if not deliveries:
        return 0
    first, last = deliveries[0].seq, deliveries[-1].seq
    error = await client.send(
        batch.url,
        batch.secret,
        batch_body([d.body for d in deliveries]),
        webhook_id=batch.webhook_id,
        event_id=batch.event_id,
        seq=first,
        last_seq=last,
    )
    if error is None:
        batch.delivered.extend(d.seq for d in deliveries)
        WEBHOOK_DELIVERIES.labels("delivered").inc(len(deliveries))
        return len(deliveries)
    attempt = max(d.attempts for d in deliveries) + 1
    WEBHOOK_DELIVERIES.labels("dead" if attempt >= policy.webhook_max_attempts else "failed").inc(
        len(deliveries)
    )
    logger.info(
        "webhook %s: entries %s-%s of %s not delivered (attempt %d): %s",
        batch.webhook_id,
        first,
        last,
        batch.event_id,
        attempt,
        error,
    )
    batch.failed = ([d.seq for d in deliveries], error)
    return 0


async def run_webhook_sender(pg: PgStore, policy: RelayPolicy) -> None:
    """Send webhooks' queues for as long as it runs (one webhook at a time)."""
    client = WebhookClient(policy.webhook_timeout_s)
    try:
        while True:
            try:
                sent = await deliver_once(pg, client, policy)
            except StorageError as exc:
                logger.warning("webhook sender: %s", exc)
                sent = None
            if sent is None:
                await anyio.sleep(policy.idle_s)
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()


async def summarise_once(pg: PgStore, redis: RedisStore, clock: Clock) -> int:
    """Log each event's admission counters for the minute just begun (and the states a
    worker sees in Redis: opened, sold out), where they changed; entries written."""
    now = datetime.fromtimestamp(clock.now_ms() / 1000, tz=UTC)
    minute = now.replace(second=0, microsecond=0)
    written = 0
    for event_id in await redis.event_ids():
        status = await redis.status(event_id)
        if status is None:
            continue
        if status.opened and await pg.log.append_once(
            event_id, "sale_opened", SaleStatePayload(state="open")
        ):
            written += 1
        if status.state == EventState.SOLD_OUT and await pg.log.append_once(
            event_id, "sale_sold_out", SaleStatePayload(state=status.state.value)
        ):
            written += 1
        if await pg.log.summarise_admission(
            event_id,
            minute,
            joined=status.issued,
            admitted=status.admitted,
            expired=status.expired,
            confirmed=status.confirmed,
        ):
            written += 1
    return written


async def run_admission_summaries(
    pg: PgStore,
    redis: RedisStore,
    clock: Clock,
    *,
    interval_s: float = 60.0,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Summarise the waiting room into the log every ``interval_s`` (the first after one
    interval: a worker restarting often writes no more than one that does not)."""
    task_status.started()
    while True:
        await anyio.sleep(interval_s)
        try:
            await summarise_once(pg, redis, clock)
        except StorageError as exc:
            logger.warning("admission summaries: %s", exc)
