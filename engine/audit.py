"""Check an event's invariants against Redis and PostgreSQL (no oversell, conservation, one outcome)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import msgspec

from storage.pg_store import PgStore
from storage.records import SectionCounts, TicketRecord, TicketStatus
from storage.redis_store import RedisStore

__all__ = ["Audit", "audit_event"]


class Audit(msgspec.Struct, frozen=True):
    """The invariants of one event at one moment; ``ok`` when all hold."""

    capacity: int
    free: int
    held: int
    sold: int
    sold_in_postgres: int
    oversold: int
    counters_match_maps: bool
    conserved: bool
    postgres_matches_redis: bool
    tickets_by_state: dict[str, int]
    #: Worst delay between a hold's deadline and its release by the sweep, ms.
    release_lateness_ms: int
    problems: list[str]
    #: Tickets held before an earlier ticket was (admission must follow join order).
    admitted_out_of_order: int = 0

    @property
    def ok(self) -> bool:
        """True when no invariant is broken."""
        return not self.problems


async def audit_event(redis: RedisStore, pg: PgStore, event_id: str, *, settled: bool) -> Audit:
    """Audit ``event_id``; ``settled`` (no payment in flight) also requires PostgreSQL == Redis."""
    status = await redis.status(event_id)
    if status is None:
        raise LookupError(event_id)
    maps = await redis.seat_maps(event_id)
    sold_pg = await pg.sold_positions(event_id)
    tickets = await redis.tickets(event_id)
    seats = status.seats
    problems: list[str] = []

    for section, seat_map in maps.items():
        counts = status.sections.get(section, SectionCounts())
        for state, char, counted in (
            ("free", "0", counts.free),
            ("held", "h", counts.held),
            ("sold", "s", counts.sold),
        ):
            n = seat_map.count(char)
            if n != counted:
                problems.append(
                    f"section {section}: {n} seats {state} in the map, counter says {counted}"
                )
    counters_match = not problems
    conserved = seats.free + seats.held + seats.sold == seats.capacity
    if not conserved:
        problems.append(
            f"free {seats.free} + held {seats.held} + sold {seats.sold} != capacity {seats.capacity}"
        )

    duplicates = len(sold_pg) - len(set(sold_pg))
    sold_redis = {(s, i + 1) for s, m in maps.items() for i, c in enumerate(m) if c == "s"}
    oversold = duplicates + max(len(set(sold_pg)) - seats.capacity, 0)
    if oversold:
        problems.append(f"{oversold} seats sold more than once")
    missing_in_redis = set(sold_pg) - sold_redis
    pg_matches = not missing_in_redis and (not settled or len(sold_redis) == len(set(sold_pg)))
    if missing_in_redis:
        problems.append(f"{len(missing_in_redis)} seats booked in PostgreSQL are not sold in Redis")
    if settled and len(sold_redis) != len(set(sold_pg)):
        problems.append(f"Redis has {len(sold_redis)} seats sold, PostgreSQL {len(set(sold_pg))}")

    by_state = Counter(str(t.status) for t in tickets.values())
    booked = sum(
        1 for t in tickets.values() if t.status == TicketStatus.CONFIRMED and not t.booking_id
    )
    if booked:
        problems.append(f"{booked} confirmed tickets name no booking")
    lateness = max(
        (t.released_ms - t.deadline_ms for t in tickets.values() if t.released_ms is not None),
        default=0,
    )
    if lateness > 1000:
        problems.append(f"a hold was released {lateness} ms after its deadline (limit 1000)")
    out_of_order = _admitted_out_of_order(tickets)
    if out_of_order:
        problems.append(f"{out_of_order} tickets were held before an earlier ticket")
    return Audit(
        capacity=seats.capacity,
        free=seats.free,
        held=seats.held,
        sold=seats.sold,
        sold_in_postgres=len(sold_pg),
        oversold=oversold,
        counters_match_maps=counters_match,
        conserved=conserved,
        postgres_matches_redis=pg_matches,
        tickets_by_state=dict(by_state),
        release_lateness_ms=lateness,
        problems=problems,
        admitted_out_of_order=out_of_order,
    )


def _admitted_out_of_order(tickets: Mapping[int, TicketRecord]) -> int:
    """Held tickets whose hold was made after a hold of a ticket later in line.

    Holds are numbered by the script in the order it makes them (``hold_number``), so this
    holds across calls and workers whatever their clocks; a ticket's place in line is
    its drawn place (pre-queue) or its seq.
    """
    numbered = sorted(
        (rec.drawn_place or seq, rec.hold_number) for seq, rec in tickets.items() if rec.hold_number
    )
    latest, late = 0, 0
    for _, number in numbered:
        if number < latest:
            late += 1
        latest = max(latest, number)
    return late
