"""The waiting line: joining (batched), presence, places, its status and its outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plumbing.batcher import Batcher
from plumbing.clock import Clock
from storage.records import (
    Confirmed,
    EventState,
    EventStatus,
    Expired,
    JoinResult,
    Left,
    NotifyBatch,
    Outcome,
    Prompted,
    SoldOut,
    TicketStatus,
)
from storage.redis_store import BucketLimit, JoinRequest, Presence, RedisStore, TokenRequest

__all__ = ["PERSON_LIMIT", "RATE_LIMITED", "JoinLimits", "UnknownTicket", "WaitingLine"]

#: The status of a join refused by the rate limit (nothing was written to the line).
RATE_LIMITED = "rate_limited"
#: The status of a join refused because the person's seats would pass ``max_per_person``.
PERSON_LIMIT = "person_limit"


@dataclass(frozen=True, slots=True)
class JoinLimits:
    """Token buckets in front of joining an event: one per client id, one per IP address."""

    per_client: BucketLimit
    per_ip: BucketLimit


class UnknownTicket(LookupError):
    """No such ticket in the event's line."""


class WaitingLine:
    """Places clients in line; one script call per batch of concurrent joins."""

    def __init__(self, redis: RedisStore, clock: Clock, limits: JoinLimits | None = None) -> None:
        self._redis = redis  # the line lives in Redis
        self._clock = clock  # join times
        self._limits = limits  # rate limits of joins (None: unlimited)
        self.joins: Batcher[tuple[JoinRequest, str], JoinResult] = Batcher(
            self._join_batch, name="join_queue"
        )
        self.presence: Batcher[Presence, str] = Batcher(self._presence_batch, name="presence")

    async def _join_batch(self, batch: list[tuple[JoinRequest, str]]) -> list[JoinResult]:
        # The rate limits' round trip and the join's cross into the drivers' loop once
        # (the time is read here, on the app's loop: a mock clock drives it in tests).
        return await self._redis.together(self._take_tokens_and_join, batch, self._clock.now_ms())

    async def _take_tokens_and_join(
        self, batch: list[tuple[JoinRequest, str]], now: int
    ) -> list[JoinResult]:
        allowed = [True] * len(batch)
        if self._limits is not None:
            # One round trip decides the whole batch; refused joins never reach the line.
            allowed = await self._redis.take_tokens(
                [
                    TokenRequest(r.event_id, (("client", r.client_id), ("ip", ip or "-")))
                    for r, ip in batch
                ],
                [self._limits.per_client, self._limits.per_ip],
                now,
            )
        admitted = [r for (r, _), ok in zip(batch, allowed, strict=True) if ok]
        joined = iter(await self._redis.join(admitted, now) if admitted else [])
        return [next(joined) if ok else JoinResult(0, RATE_LIMITED) for ok in allowed]

    async def join(
        self,
        event_id: str,
        client_id: str,
        quantity: int,
        section: str,
        *,
        ip: str = "",
        traceparent: str = "",
        person: str = "",
    ) -> JoinResult:
        """A place in line for ``client_id`` (the same place again if it has one).

        ``status`` is ``rate_limited`` (seq 0) when the client id or ``ip`` joined too often.
        ``traceparent`` (a traced join's span) travels with the ticket to its admission.
        ``person``: the verified person joining (its one client id is ``client_id``); once
        its ticket has ended it may join again for another order, and ``status`` is
        ``person_limit`` (seq 0) when that would pass the event's ``max_per_person``.
        """
        request = JoinRequest(event_id, client_id, quantity, section, traceparent, person)
        return await self.joins.submit((request, ip))

    async def _presence_batch(self, marks: list[Presence]) -> list[str]:
        return await self._redis.mark_presence(marks, self._clock.now_ms())

    async def mark_presence(self, event_id: str, seq: int, *, gone: bool) -> str:
        """Note that a waiting client lost (``gone``) or regained its connection."""
        return await self.presence.submit(Presence(event_id, seq, gone))

    async def place(self, event_id: str, seq: int) -> int:
        """Ticket ``seq``'s place in line (0 while in the pre-queue or unknown)."""
        return (await self.places(event_id, [seq])).get(seq, 0)

    async def places(self, event_id: str, seqs: Sequence[int]) -> dict[int, int]:
        """The place in line of each ticket (0 while in the pre-queue), one round trip."""
        return await self._redis.places(event_id, seqs)

    async def status(self, event_id: str) -> EventStatus | None:
        """The event's state, caps and counters (None: no such event)."""
        return await self._redis.status(event_id)

    async def outcome(self, event_id: str, seq: int) -> Outcome | None:
        """What has become of ticket ``seq`` (None: it still waits); UnknownTicket if none.

        The same outcomes the notify stream carries, so a client that comes back is
        told what it would have been told had it stayed.
        """
        record = await self._redis.ticket(event_id, seq)
        if record is None:
            raise UnknownTicket(f"no ticket {seq} in {event_id}")
        if record.status.holds_seats:
            assert record.held_section is not None, "a hold names its section"
            return Prompted(
                seq, record.held_section, list(record.seats), record.amount_cents, record.expires_ms
            )
        match record.status:
            case TicketStatus.CONFIRMED:
                return Confirmed(seq, record.booking_id or "")
            case TicketStatus.EXPIRED:
                return Expired(seq)
            case TicketStatus.LEFT:
                return Left(seq)
            case TicketStatus.SOLD_OUT:
                return SoldOut(seq)
        status = await self._redis.status(event_id)
        # Sold out for now, a ticket keeps its place (seats may come back); a closed sale
        # has nothing left for anyone still waiting.
        if status is not None and status.state == EventState.CLOSED:
            return SoldOut(seq)
        return None

    async def last_outcome_id(self, event_id: str) -> str:
        """The id of the newest entry of the event's outcome stream ("0-0" when none)."""
        return await self._redis.last_notify_id(event_id)

    async def read_outcomes(self, event_id: str, after_id: str, block_ms: int) -> list[NotifyBatch]:
        """Outcome batches after ``after_id``, waiting up to ``block_ms`` (> 0) for the first."""
        return await self._redis.read_notify(event_id, after_id, block_ms)

    def now_ms(self) -> int:
        """The line's clock (the one join times and hold deadlines are read on), ms."""
        return self._clock.now_ms()

    async def report_delivery(
        self, event_id: str, server: str, pending: int, routed_id: str, ttl_ms: int
    ) -> None:
        """Tell admission what this server has yet to deliver: ``pending`` prompts queued
        and not yet written, every outcome up to ``routed_id`` routed; the report counts
        for ``ttl_ms``."""
        await self._redis.report_backlog(event_id, server, pending, routed_id, ttl_ms)
