"""Sales: an event's sale as operators and buyers see it, and the operator's controls.

Creating an event, its status (state, caps, line, holds, seats per section),
pause / resume / close, the admission caps, readiness and the audit of its
invariants. Every decision that changes inventory is a script in Redis; this
module names them and turns their answers into the domain's records and errors.
"""

from __future__ import annotations

import anyio
import msgspec

from engine.audit import Audit, audit_event
from engine.catalog import EventCatalog
from engine.errors import InvalidRequest, InvalidState, NotFound, NotReady
from engine.events import EventSpec
from plumbing.clock import Clock
from storage.errors import StorageError
from storage.log_events import Actor, AdmissionCapsPayload, SaleStatePayload
from storage.pg_store import PgStore
from storage.records import AdmissionCaps, EventState, EventStatus, SectionCounts
from storage.redis_store import RedisStore

__all__ = ["SaleStatus", "Sales", "SectionSale"]


class SectionSale(msgspec.Struct, frozen=True):
    """One section's price and seats by state."""

    id: str
    price_cents: int
    capacity: int
    free: int
    held: int
    sold: int


class SaleStatus(msgspec.Struct, frozen=True):
    """An event's sale now: its spec, state, caps in force, line and seats."""

    event_id: str
    spec: EventSpec
    state: EventState
    max_active_holds: int
    #: 0: no rate cap.
    admissions_per_minute: int
    #: Clients admitted so far (seats held for them).
    admitted: int
    #: Clients waiting, in line or in the pre-queue.
    queue_length: int
    active_holds: int
    sections: list[SectionSale]


class Sales:
    """The operator's view and controls of each event's sale."""

    def __init__(self, redis: RedisStore, pg: PgStore, catalog: EventCatalog, clock: Clock) -> None:
        self._redis = redis  # inventory, line and state
        self._pg = pg  # the record (audits, readiness)
        self._catalog = catalog  # event specs
        self._clock = clock  # state changes are stamped

    async def create(self, spec: EventSpec, actor: Actor | None = None) -> str:
        """Validate and record a new event; its id."""
        return await self._catalog.create(spec, actor=actor)

    async def status(self, event_id: str) -> SaleStatus:
        """The sale of ``event_id`` now; NotFound if there is no such event."""
        spec = await self._catalog.get(event_id)
        status = await self._redis.status(event_id)
        if status is None:
            raise NotFound(f"no event {event_id!r}")
        return _sale(event_id, spec, status)

    async def newest(self, limit: int) -> list[SaleStatus]:
        """The sales of the ``limit`` most recently created events, newest first.

        Aggregates only: one PostgreSQL read of the events, then one status read (the
        event's counters, never its line or its clients) per event, concurrently.
        """
        events = await self._catalog.newest(limit)
        statuses: dict[str, EventStatus | None] = {}

        async def read(event_id: str) -> None:
            statuses[event_id] = await self._redis.status(event_id)

        async with anyio.create_task_group() as tg:
            for event_id, _ in events:
                tg.start_soon(read, event_id)
        return [
            _sale(event_id, spec, status)
            for event_id, spec in events
            if (status := statuses.get(event_id)) is not None
        ]

    async def _change_state(self, event_id: str, action: str, actor: Actor | None) -> EventState:
        await self._catalog.get(event_id)
        result = await self._redis.set_event_state(event_id, action, self._clock.now_ms())
        if not result.ok:
            raise InvalidState(f"cannot {action} an event that is {result.state}")
        # Logged after Redis changed: the script decides whether the change is allowed, so
        # only changes that happened are logged (a crash in between loses the entry, never
        # logs a change that did not happen).
        kind = {"pause": "sale_paused", "resume": "sale_resumed", "close": "sale_closed"}[action]
        await self._pg.log.append(
            [(event_id, kind, SaleStatePayload(state=result.state.value), actor)]
        )
        return result.state

    async def pause(self, event_id: str, actor: Actor | None = None) -> EventState:
        """Stop admission (the line keeps its order); InvalidState unless it is open."""
        return await self._change_state(event_id, "pause", actor)

    async def resume(self, event_id: str, actor: Actor | None = None) -> EventState:
        """Restart admission after a pause; InvalidState unless it is paused."""
        return await self._change_state(event_id, "resume", actor)

    async def close(self, event_id: str, actor: Actor | None = None) -> EventState:
        """End the sale: no more joins or admissions."""
        return await self._change_state(event_id, "close", actor)

    async def set_admission(
        self,
        event_id: str,
        *,
        max_active_holds: int | None,
        admissions_per_minute: int | None,
        actor: Actor | None = None,
    ) -> AdmissionCaps:
        """Change the caps in force (None keeps one; at least one must be given)."""
        if max_active_holds is None and admissions_per_minute is None:
            raise InvalidRequest("send max_active_holds and/or admissions_per_minute")
        await self._catalog.get(event_id)
        caps = await self._redis.set_admission(
            event_id, self._clock.now_ms(), max_active_holds, admissions_per_minute
        )
        await self._pg.log.append(
            [
                (
                    event_id,
                    "admission_caps_changed",
                    AdmissionCapsPayload(
                        max_active_holds=caps.max_active,
                        admissions_per_minute=caps.rate_per_min,
                    ),
                    actor,
                )
            ]
        )
        return caps

    async def audit(self, event_id: str, *, settled: bool) -> Audit:
        """The event's invariants checked now (``settled``: PostgreSQL must equal Redis too)."""
        await self._catalog.get(event_id)
        return await audit_event(self._redis, self._pg, event_id, settled=settled)

    async def check_ready(self) -> None:
        """Pass when Redis and PostgreSQL both answer; else NotReady."""
        try:
            await self._redis.ping()
            await self._pg.ping()
        except StorageError as exc:
            raise NotReady(str(exc)) from None


def _sale(event_id: str, spec: EventSpec, status: EventStatus) -> SaleStatus:
    """The domain's view of an event's status."""
    sections = []
    for s in spec.sections:
        counts = status.sections.get(s.id, SectionCounts())
        sections.append(
            SectionSale(s.id, s.price_cents, counts.capacity, counts.free, counts.held, counts.sold)
        )
    return SaleStatus(
        event_id=event_id,
        spec=spec,
        state=status.state,
        max_active_holds=status.max_active or spec.max_active_holds,
        admissions_per_minute=status.rate_per_min,
        admitted=status.admitted,
        queue_length=status.waiting,
        active_holds=status.active_holds,
        sections=sections,
    )
