"""The thin runners around the admission and expiry scripts, one pair per event.

Admission decides the head of the line as fast as checkout capacity allows
(``max_active_holds``) and the realtime servers deliver (``delivery_backlog``: prompts
not yet written to their clients' sockets); the sweep releases holds when their time
is up. Each
admission call releases the holds that are due first, and admits nobody while more
are due than it released: releases never wait behind admissions. Both are
safe to run in every worker process at once: each script call is atomic.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio

from engine.holds import hold_id
from engine.metrics import (
    ADMISSIONS,
    ADMISSIONS_PACED,
    DELIVERY_BACKLOG,
    HOLDS_EXPIRED,
    SOLD_OUT,
    SWEEP_LAG,
)
from plumbing import log_context, tracing
from plumbing.clock import Clock
from storage.errors import StorageUnavailable
from storage.records import AdmitSummary
from storage.redis_store import RedisStore

__all__ = ["AdmissionPolicy", "run_admission", "run_expiry_sweep"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """How the runners pace themselves."""

    #: Most clients decided by one script call.
    batch: int = 500
    #: Longest wait for new joins before looking again, seconds.
    idle_wait_s: float = 1.0
    #: Longest wait for an expiry or payment while checkout is full or the head
    #: of the line waits for seats, seconds (any notify entry ends it sooner).
    blocked_wait_s: float = 0.5
    #: Pause while the event is not open, seconds.
    closed_wait_s: float = 0.1
    #: Longest pause between sweeps while a hold is open, seconds (bounds how late a
    #: hold is released when a payment is given up and its hold falls due at once).
    #: With no hold open the sweep waits one hold duration: no hold made meanwhile
    #: can fall due sooner.
    sweep_interval_s: float = 0.25
    #: Most holds released by one sweep call.
    sweep_batch: int = 1000
    #: Pause after Redis was unreachable, seconds.
    retry_wait_s: float = 0.5
    #: How long a waiting client may be disconnected before its place is given up
    #: ("left" when its turn comes), seconds; None keeps every place.
    abandon_grace_s: float | None = 60.0
    #: Most prompts the realtime servers may have left to deliver (routed to their
    #: clients, or not yet read by every server) before admission waits for them to
    #: write some; None or 0: admit as fast as the caps allow. The last prompt of a
    #: full backlog reaches its client about bound / delivery rate after its hold began:
    #: ~0.15 s at the ~13,000 prompts/s four servers deliver at 50,000 clients, well
    #: inside a hold. The bound passes at most bound / (time for a prompt to be admitted,
    #: written and reported): with reports every 0.02 s and this wait, the servers' CPU,
    #: not the bound, sets the pace.
    delivery_backlog: int | None = 2000
    #: Pause while the delivery backlog is at its bound, seconds (the servers report
    #: every 0.02 s).
    paced_wait_s: float = 0.01


def _record(event_id: str, s: AdmitSummary) -> None:
    if s.released:
        HOLDS_EXPIRED.labels(event_id).inc(s.released)
    if s.admitted:
        ADMISSIONS.labels(event_id).inc(s.admitted)
    if s.sold_out:
        SOLD_OUT.labels(event_id).inc(s.sold_out)
    if s.reason == "paced":
        ADMISSIONS_PACED.labels(event_id).inc()
    DELIVERY_BACKLOG.labels(event_id).set(s.backlog)


def _trace_admissions(event_id: str, s: AdmitSummary, start_ns: int, end_ns: int) -> None:
    """One "admitted" span per traced join the call admitted, in that join's trace."""
    for seq, parent in s.traces:
        hold = hold_id(event_id, seq)
        attributes: tracing.Attributes = {
            "booking.event": event_id,
            "booking.ticket": seq,
            "booking.hold": hold,
        }
        span = tracing.record("admitted", parent, start_ns, end_ns, attributes)
        logger.debug(
            "admitted ticket %s: hold %s",
            seq,
            hold,
            extra={"trace_id": span.trace_id, "ticket": seq, "hold": hold},
        )


async def run_admission(
    redis: RedisStore, event_id: str, clock: Clock, policy: AdmissionPolicy
) -> None:
    """Admit clients of ``event_id`` in join order until cancelled."""
    # The event's series exist from the start, so rates read 0 rather than nothing.
    ADMISSIONS.labels(event_id)
    SOLD_OUT.labels(event_id)
    HOLDS_EXPIRED.labels(event_id)
    ADMISSIONS_PACED.labels(event_id)
    log_context.bind(event=event_id)  # this task's lines are about this event
    while True:
        try:
            grace = policy.abandon_grace_s
            grace_ms = None if grace is None else int(grace * 1000)
            start_ns = time.time_ns()
            summary = await redis.admit(
                event_id, clock.now_ms(), policy.batch, grace_ms, pace=policy.delivery_backlog
            )
            _record(event_id, summary)
            if summary.traces and tracing.ENABLED:
                _trace_admissions(event_id, summary, start_ns, time.time_ns())
            await _wait_for_work(redis, event_id, summary, clock, policy)
        except StorageUnavailable:
            logger.warning("admission for %s: Redis unreachable, retrying", event_id)
            await anyio.sleep(policy.retry_wait_s)


async def _wait_for_work(
    redis: RedisStore, event_id: str, summary: AdmitSummary, clock: Clock, policy: AdmissionPolicy
) -> None:
    """Wait until the next admission call may decide something (not at all after a full batch)."""
    if summary.reason in ("budget", "expiring"):  # more to decide, or more holds due
        return
    if summary.reason == "empty":
        await redis.wait_for_line(event_id, summary.seq, int(policy.idle_wait_s * 1000))
    elif summary.reason == "not_open":
        await anyio.sleep(policy.closed_wait_s)
    elif summary.reason == "paced":  # the servers' next reports say what they delivered
        await anyio.sleep(policy.paced_wait_s)
    elif (
        summary.reason == "rate"
    ):  # the next token; a cap changed live is seen within blocked_wait_s
        wait_ms = min(max(summary.next_ms - clock.now_ms(), 1), int(policy.blocked_wait_s * 1000))
        await anyio.sleep(wait_ms / 1000)
    else:  # capped, waiting_for_seats, sold_out: an expiry, a payment or returned seats wake it
        await redis.wait_for_notify(event_id, summary.notify_id, int(policy.blocked_wait_s * 1000))


async def run_expiry_sweep(
    redis: RedisStore, event_id: str, clock: Clock, policy: AdmissionPolicy
) -> None:
    """Release the holds of ``event_id`` that are due, until cancelled.

    Each call's lateness, from when it was due to when it returned, goes to
    ``booking_sweep_lag_seconds``: a busy process or Redis shows there first.
    """
    HOLDS_EXPIRED.labels(event_id)  # the series exists before the first release
    log_context.bind(event=event_id)
    due_at = anyio.current_time()
    while True:
        now = clock.now_ms()
        try:
            swept = await redis.expire(event_id, now, policy.sweep_batch)
        except StorageUnavailable:
            logger.warning("expiry sweep for %s: Redis unreachable, retrying", event_id)
            await anyio.sleep(policy.retry_wait_s)
            due_at = anyio.current_time()
            continue
        SWEEP_LAG.observe(anyio.current_time() - due_at)
        if swept.released:
            HOLDS_EXPIRED.labels(event_id).inc(swept.released)
        if swept.released >= policy.sweep_batch:
            due_at = anyio.current_time()
            continue
        if swept.next_ms >= 0:
            wait = min(policy.sweep_interval_s, max(swept.next_ms - now, 0) / 1000)
        else:
            wait = max(swept.hold_ms / 1000, policy.sweep_interval_s)
        due_at = anyio.current_time() + wait
        await anyio.sleep(wait)
