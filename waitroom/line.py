"""Joining the line (batched) and telling a ticket's current state."""

from __future__ import annotations

from dataclasses import dataclass

from engine.clock import Clock
from storage.batcher import Batcher
from storage.records import JoinResult, TicketRecord
from storage.redis_store import JoinRequest, Presence, RedisStore

__all__ = ["TicketState", "WaitingLine"]


@dataclass(frozen=True, slots=True)
class TicketState:
    """A ticket's record, the event's state and the serving counter, read together."""

    record: TicketRecord | None
    event_state: str
    serving: int


class WaitingLine:
    """Places clients in line; one script call per batch of concurrent joins."""

    def __init__(self, redis: RedisStore, clock: Clock) -> None:
        self._redis = redis  # the line lives in Redis
        self._clock = clock  # join times
        self.joins: Batcher[JoinRequest, JoinResult] = Batcher(self._join_batch, name="join_queue")
        self.presence: Batcher[Presence, str] = Batcher(self._presence_batch, name="presence")

    async def _join_batch(self, requests: list[JoinRequest]) -> list[JoinResult]:
        return await self._redis.join(requests, self._clock.now_ms())

    async def _presence_batch(self, marks: list[Presence]) -> list[str]:
        return await self._redis.mark_presence(marks, self._clock.now_ms())

    async def mark_presence(self, event_id: str, seq: int, *, gone: bool) -> str:
        """Note that a waiting client lost (``gone``) or regained its connection."""
        return await self.presence.submit(Presence(event_id, seq, gone))

    async def join(self, event_id: str, client_id: str, quantity: int, section: str) -> JoinResult:
        """A place in line for ``client_id`` (the same place again if it has one)."""
        return await self.joins.submit(JoinRequest(event_id, client_id, quantity, section))

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
