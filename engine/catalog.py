"""Creating events (PostgreSQL first, then Redis) and looking up their specs."""

from __future__ import annotations

import secrets

import msgspec

from engine.errors import NotFound
from engine.events import (
    EventSpec,
    IdentitySpec,
    SectionSpec,
    seat_map,
    seat_positions,
    validate_event,
)
from engine.ids import is_valid_id
from storage.log_events import Actor, EventCreatedPayload, SectionCapacity
from storage.pg_records import EventRow, SeatRow
from storage.pg_store import PgStore
from storage.redis_store import RedisStore

__all__ = ["EventCatalog", "new_event_id"]


def new_event_id() -> str:
    """A fresh, unguessable event id."""
    return "ev" + secrets.token_hex(5)


class EventCatalog:
    """Event specs by id; specs never change once created, so they are cached."""

    def __init__(self, redis: RedisStore, pg: PgStore) -> None:
        self._redis = redis  # inventory and state
        self._pg = pg  # the record of events
        self._specs: dict[str, EventSpec] = {}  # event id -> spec, filled on first use

    async def create(
        self, spec: EventSpec, event_id: str | None = None, actor: Actor | None = None
    ) -> str:
        """Validate and record a new event (its ``event_created`` log entry in the same
        transaction); return its id."""
        validate_event(spec)
        event_id = event_id or new_event_id()
        seats = [
            SeatRow(s.id, position, label.row, label.number, s.price_cents)
            for s in spec.sections
            for position, label in seat_positions(s)
        ]
        await self._pg.insert_event(
            EventRow(
                id=event_id,
                name=spec.name,
                opens_at=spec.opens_at,
                max_per_order=spec.max_per_order,
                hold_seconds=spec.hold_seconds,
                max_active_holds=spec.max_active_holds,
                sections=msgspec.json.encode(spec.sections).decode(),
                currency=spec.currency,
                identity=""
                if spec.identity is None
                else msgspec.json.encode(spec.identity).decode(),
                max_per_person=spec.max_per_person,
                challenge_difficulty=spec.challenge_difficulty,
                buyer_refunds=spec.buyer_refunds,
                refund_until=spec.refund_until,
            ),
            seats,
            EventCreatedPayload(
                name=spec.name,
                opens_at=spec.opens_at,
                currency=spec.currency,
                max_per_order=spec.max_per_order,
                hold_seconds=spec.hold_seconds,
                max_active_holds=spec.max_active_holds,
                sections=[
                    SectionCapacity(
                        id=s.id,
                        capacity=sum(1 for _ in seat_positions(s)),
                        price_cents=s.price_cents,
                    )
                    for s in spec.sections
                ],
            ),
            actor,
        )
        config = {
            "opens_at_ms": int(spec.opens_at.timestamp() * 1000),
            "hold_ms": spec.hold_seconds * 1000,
            "max_active": spec.max_active_holds,
            "max_per_order": spec.max_per_order,
            "max_per_person": spec.max_per_person,
            "sections": [
                {"id": s.id, "price_cents": s.price_cents, "map": seat_map(s)}
                for s in spec.sections
            ],
        }
        await self._redis.create_event(
            event_id, msgspec.json.encode(config), [s.id for s in spec.sections]
        )
        self._specs[event_id] = spec
        return event_id

    async def get(self, event_id: str) -> EventSpec:
        """The spec of an event; NotFound if there is none."""
        spec = self._specs.get(event_id)
        if spec is not None:
            return spec
        if not is_valid_id(event_id):
            raise NotFound(f"no event {event_id!r}")
        row = await self._pg.event(event_id)
        if row is None:
            raise NotFound(f"no event {event_id!r}")
        return self._remember(row)

    async def newest(self, limit: int) -> list[tuple[str, EventSpec]]:
        """The ``limit`` most recently created events and their specs, newest first."""
        rows = await self._pg.newest_events(limit)
        return [(row.id, self._specs.get(row.id) or self._remember(row)) for row in rows]

    def _remember(self, row: EventRow) -> EventSpec:
        spec = EventSpec(
            name=row.name,
            opens_at=row.opens_at,
            sections=msgspec.json.decode(row.sections, type=list[SectionSpec]),
            max_per_order=row.max_per_order,
            hold_seconds=row.hold_seconds,
            max_active_holds=row.max_active_holds,
            currency=row.currency,
            identity=msgspec.json.decode(row.identity, type=IdentitySpec) if row.identity else None,
            max_per_person=row.max_per_person,
            challenge_difficulty=row.challenge_difficulty,
            buyer_refunds=row.buyer_refunds,
            refund_until=row.refund_until,
        )
        self._specs[row.id] = spec
        return spec
