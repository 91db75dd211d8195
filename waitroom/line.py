"""Joining the line (batched) and telling a ticket's current state."""

from __future__ import annotations

from dataclasses import dataclass

from plumbing.batcher import Batcher
from plumbing.clock import Clock
from storage.records import JoinResult, TicketRecord
from storage.redis_store import BucketLimit, JoinRequest, Presence, RedisStore, TokenRequest

__all__ = ["RATE_LIMITED", "JoinLimits", "TicketState", "WaitingLine"]

#: The status of a join refused by the rate limit (nothing was written to the line).
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class JoinLimits:
    """Token buckets in front of joining an event: one per client id, one per IP address."""

    per_client: BucketLimit
    per_ip: BucketLimit


@dataclass(frozen=True, slots=True)
class TicketState:
    """A ticket's record, the event's state and the serving counter, read together."""

    record: TicketRecord | None
    event_state: str
    serving: int


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
        now = self._clock.now_ms()
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
        self, event_id: str, client_id: str, quantity: int, section: str, *, ip: str = ""
    ) -> JoinResult:
        """A place in line for ``client_id`` (the same place again if it has one).

        ``st`` is ``rate_limited`` (seq 0) when the client id or ``ip`` joined too often.
        """
        return await self.joins.submit((JoinRequest(event_id, client_id, quantity, section), ip))

    async def _presence_batch(self, marks: list[Presence]) -> list[str]:
        return await self._redis.mark_presence(marks, self._clock.now_ms())

    async def mark_presence(self, event_id: str, seq: int, *, gone: bool) -> str:
        """Note that a waiting client lost (``gone``) or regained its connection."""
        return await self.presence.submit(Presence(event_id, seq, gone))

    async def place(self, event_id: str, seq: int) -> int:
        """Ticket ``seq``'s place in line (0 while in the pre-queue or unknown)."""
        return (await self._redis.places(event_id, [seq])).get(seq, 0)

    async def state(self, event_id: str, seq: int) -> TicketState:
        """The current state of ticket ``seq``."""
        record = await self._redis.ticket(event_id, seq)
        snapshot = await self._redis.snapshot(event_id)
        if snapshot is None:
            return TicketState(record, "unknown", 0)
        return TicketState(record, snapshot.state, snapshot.stats.get("serving", 0))
