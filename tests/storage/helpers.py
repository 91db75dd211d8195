"""Shared setup for the storage script tests: event configs, a call wrapper, invariants."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.records import (
    AdmitSummary,
    BeginPaymentResult,
    EventSnapshot,
    ExpireSummary,
    JoinResult,
    NotifyBatch,
    StateChange,
    TicketRecord,
    TicketStatus,
)
from storage.redis_store import HoldRef, JoinRequest, PaidHold, RedisStore

#: A realistic "now" (ms since the epoch); every test passes time explicitly.
T0 = 1_700_000_000_000
HOLD_MS = 60_000
WINDOW_MS = 120_000

#: (section id, price in cents, seat map)
Section = tuple[str, int, str]

ONE_SECTION: tuple[Section, ...] = (("A", 1_000, "0000|0000|"),)

#: Ticket states after which nothing may change the ticket again.
TERMINAL = frozenset({"confirmed", "expired", "sold_out", "left"})


def config_json(
    sections: Sequence[Section] = ONE_SECTION,
    *,
    opens_at_ms: int = T0,
    hold_ms: int = HOLD_MS,
    max_active: int = 100,
    max_per_order: int = 10,
    max_per_person: int = 0,
) -> bytes:
    """The init_event config JSON for these sections and settings."""
    return json.dumps(
        {
            "opens_at_ms": opens_at_ms,
            "hold_ms": hold_ms,
            "max_active": max_active,
            "max_per_order": max_per_order,
            "max_per_person": max_per_person,
            "sections": [{"id": s, "price_cents": p, "map": m} for s, p, m in sections],
        }
    ).encode()


async def assert_conserved(store: RedisStore, event_id: str) -> EventSnapshot:
    """Assert free+held+sold == capacity (overall, per section) and maps == counters == tickets."""
    snap = await store.snapshot(event_id)
    assert snap is not None, "event missing"
    stats = snap.stats
    maps = await store.seat_maps(event_id)
    tickets = await store.tickets(event_id)
    assert list(maps) == snap.meta["sections"].split(",")

    totals: Counter[str] = Counter()
    for sec, seat_map in maps.items():
        free, held, sold = stats[f"free:{sec}"], stats[f"held:{sec}"], stats[f"sold:{sec}"]
        cap = stats[f"capacity:{sec}"]
        assert min(free, held, sold) >= 0, (sec, free, held, sold)
        assert free + held + sold == cap, (sec, free, held, sold, cap)
        in_map = (seat_map.count("0"), seat_map.count("h"), seat_map.count("s"))
        assert in_map == (free, held, sold), (sec, seat_map, free, held, sold)
        assert set(seat_map) <= set("0hs|"), seat_map
        totals.update(free=free, held=held, sold=sold, capacity=cap)
    for field in ("free", "held", "sold", "capacity"):
        assert stats[field] == totals[field], (field, stats[field], totals[field])
    assert stats["free"] + stats["held"] + stats["sold"] == stats["capacity"]

    # Every held/sold byte belongs to exactly one ticket, in the state the byte says.
    owner: dict[tuple[str, int], int] = {}
    for seq, t in tickets.items():
        if t.status in ("held", "paying", "confirmed"):
            assert t.held_section in maps, (seq, t)
            assert len(t.seats) + len(t.cancelled) == t.quantity, (seq, t)
            want = "s" if t.status == "confirmed" else "h"
            for p in t.seats:
                assert (t.held_section, p) not in owner, (
                    f"seat {t.held_section}:{p} owned by {owner[(t.held_section, p)]} and {seq}"
                )
                owner[(t.held_section, p)] = seq
                assert maps[t.held_section][p - 1] == want, (seq, t, maps[t.held_section])
    for sec, seat_map in maps.items():
        for pos, ch in enumerate(seat_map, start=1):
            if ch in "hs":
                assert (sec, pos) in owner, f"seat {sec}:{pos} is {ch!r} but no ticket has it"

    # Each verified person's count is the seats its tickets hold or bought.
    persons: Counter[str] = Counter()
    for t in tickets.values():
        if t.person is not None:
            persons[t.person] += len(t.seats) if t.status in ("held", "paying", "confirmed") else 0
    for person, seats in persons.items():
        assert await store.person_seats(event_id, person) == seats, (person, seats)

    # Counters of outcomes agree with the ticket records.
    states = Counter(t.status for t in tickets.values())
    assert stats["confirmed"] == states[TicketStatus.CONFIRMED]
    assert stats["expired"] == states[TicketStatus.EXPIRED]
    assert stats["sold_out"] == states[TicketStatus.SOLD_OUT]
    assert stats["admitted"] == sum(1 for t in tickets.values() if t.held_section is not None)
    assert stats["seq"] == len(tickets)
    assert set(tickets) == set(range(1, stats["seq"] + 1))
    assert 0 <= stats["serving"] <= stats["seq"]
    return snap


@dataclass
class Event:
    """One event in the real Redis; every script call is followed by a conservation check."""

    store: RedisStore
    id: str

    async def check(self) -> EventSnapshot:
        """Assert the invariants and return the snapshot."""
        return await assert_conserved(self.store, self.id)

    async def create(self, config: bytes, section_ids: Sequence[str]) -> bool:
        """Run init_event."""
        created = await self.store.create_event(self.id, config, section_ids)
        await self.check()
        return created

    async def join_many(
        self, requests: Sequence[tuple[str, int, str]], now: int = T0, person: str = ""
    ) -> list[JoinResult]:
        """Run join_queue once for (client, quantity, section) triples (all as ``person``)."""
        out = await self.store.join(
            [JoinRequest(self.id, c, q, s, person=person) for c, q, s in requests], now
        )
        await self.check()
        return out

    async def join(
        self, client: str, qty: int = 1, section: str = "", now: int = T0, person: str = ""
    ) -> JoinResult:
        """Run join_queue for one client (``person``: a verified identity's)."""
        [res] = await self.join_many([(client, qty, section)], now, person)
        return res

    async def admit(self, now: int = T0, max_count: int = 100) -> AdmitSummary:
        """Run admit_next; its notify_id must name the newest notify entry."""
        out = await self.store.admit(self.id, now, max_count)
        await self.check()
        assert out.notify_id == await self.store.last_notify_id(self.id)
        return out

    async def expire(self, now: int, limit: int = 100) -> ExpireSummary:
        """Run expire_holds; check its open-hold and waiting counts, return released/next_ms."""
        out = await self.store.expire(self.id, now, limit)
        snap = await self.check()
        tickets = await self.store.tickets(self.id)
        assert out.active == sum(1 for t in tickets.values() if t.status in ("held", "paying"))
        assert out.waiting == snap.stats["seq"] - snap.stats["serving"]
        return ExpireSummary(released=out.released, next_ms=out.next_ms)

    async def begin_many(
        self, holds: Sequence[tuple[int, str]], now: int = T0, window: int = WINDOW_MS
    ) -> list[BeginPaymentResult]:
        """Run begin_payment once for (seq, key) pairs."""
        out = await self.store.begin_payments(
            [HoldRef(self.id, s, k) for s, k in holds], now, window
        )
        await self.check()
        return out

    async def begin(
        self, seq: int, key: str, now: int = T0, window: int = WINDOW_MS
    ) -> BeginPaymentResult:
        """Run begin_payment for one hold."""
        [res] = await self.begin_many([(seq, key)], now, window)
        return res

    async def abort_many(self, holds: Sequence[tuple[int, str]], now: int = T0) -> list[str]:
        """Run abort_payment once for (seq, key) pairs."""
        out = await self.store.abort_payments([HoldRef(self.id, s, k) for s, k in holds], now)
        await self.check()
        return out

    async def abort(self, seq: int, key: str, now: int = T0) -> str:
        """Run abort_payment for one hold."""
        [res] = await self.abort_many([(seq, key)], now)
        return res

    async def confirm_many(self, paid: Sequence[tuple[int, str, str]], now: int = T0) -> list[str]:
        """Run confirm_paid once for (seq, key, booking id) triples."""
        out = await self.store.confirm_paid([PaidHold(self.id, s, k, b) for s, k, b in paid], now)
        await self.check()
        return out

    async def confirm(self, seq: int, key: str, booking: str, now: int = T0) -> str:
        """Run confirm_paid for one hold."""
        [res] = await self.confirm_many([(seq, key, booking)], now)
        return res

    async def set_state(self, action: str, now: int = T0) -> StateChange:
        """Run set_event_state."""
        out = await self.store.set_event_state(self.id, action, now)
        await self.check()
        return out

    async def pay(self, seq: int, now: int = T0) -> None:
        """Begin and confirm a payment for a hold (key k<seq>, booking bk<seq>)."""
        assert (await self.begin(seq, f"k{seq}", now)).result == "ok"
        assert await self.confirm(seq, f"k{seq}", f"bk{seq}", now) == "confirmed"

    # -- reads ----------------------------------------------------------------

    async def notes(self) -> list[NotifyBatch]:
        """Every notify entry so far (blocks at most 1 ms when there is none)."""
        return await self.store.read_notify(self.id, "0-0", 1)

    async def ticket(self, seq: int) -> TicketRecord:
        """One ticket record (must exist)."""
        rec = await self.store.ticket(self.id, seq)
        assert rec is not None, f"no ticket {seq}"
        return rec

    async def stats(self) -> dict[str, int]:
        """The stats hash."""
        snap = await self.store.snapshot(self.id)
        assert snap is not None
        return snap.stats

    async def meta(self) -> dict[str, str]:
        """The meta hash."""
        snap = await self.store.snapshot(self.id)
        assert snap is not None
        return snap.meta

    async def maps(self) -> dict[str, str]:
        """The seat maps by section."""
        return await self.store.seat_maps(self.id)

    async def state(self) -> dict[str, Any]:
        """Everything a script may change, for before/after comparisons."""
        snap = await self.store.snapshot(self.id)
        assert snap is not None
        return {
            "meta": snap.meta,
            "stats": snap.stats,
            "maps": await self.maps(),
            "tickets": await self.store.tickets(self.id),
            "notify": await self.notes(),
        }


async def new_event(
    store: RedisStore,
    event_id: str,
    sections: Sequence[Section] = ONE_SECTION,
    **settings: int,
) -> Event:
    """Create an event (checked) and return its wrapper."""
    ev = Event(store, event_id)
    assert await ev.create(config_json(sections, **settings), [s[0] for s in sections]) is True
    return ev


async def hold_pattern(ev: Event, section: str, pattern: str, now: int = T0) -> dict[int, int]:
    """Shape a section whose map is all free into ``pattern`` (same map, seats "0", "h" or "s").

    Every seat gets its own one-seat hold at ``now``; "h" seats are then kept by a long
    payment (key ``k<seq>``), "s" seats are confirmed and the others expire at
    ``now + HOLD_MS``. Returns {position: ticket seq} of the tickets holding "h" seats.
    """
    n = sum(1 for ch in pattern if ch != "|")
    base = (await ev.stats())["seq"]
    joined = await ev.join_many(
        [(f"shape-{section}-{base + i}", 1, section) for i in range(n)], now
    )
    summary = await ev.admit(now, n)
    assert summary.admitted == n, summary
    keep: dict[int, int] = {}
    for res in joined:
        [pos] = (await ev.ticket(res.seq)).seats
        ch = pattern[pos - 1]
        if ch in "hs":
            assert (await ev.begin(res.seq, f"k{res.seq}", now, window=10 * HOLD_MS)).result == "ok"
        if ch == "s":
            assert await ev.confirm(res.seq, f"k{res.seq}", f"bk{res.seq}", now) == "confirmed"
        if ch == "h":
            keep[pos] = res.seq
    await ev.expire(now + HOLD_MS, 1_000)
    assert (await ev.maps())[section] == pattern
    return keep


# -- the seat rules of admit_next, as a reference --------------------------------------


def seats_together(seat_map: Sequence[str], q: int) -> list[int] | None:
    """The first q free positions side by side in map order (rows end with "|"), or None."""
    at = "".join(seat_map).find("0" * q)
    return None if at < 0 else list(range(at + 1, at + q + 1))


def fewest_rows(seat_map: Sequence[str], q: int) -> list[int]:
    """q free positions over the fewest rows: fullest rows first (better on a tie), longest runs."""
    rows: list[tuple[int, int, list[list[int]]]] = []
    start, run, runs = 1, list[int](), list[list[int]]()
    for pos, ch in enumerate(seat_map, start=1):
        if ch == "0":
            run.append(pos)
            continue
        if run:
            runs.append(run)
            run = []
        if ch == "|":
            if runs:
                runs.sort(key=lambda r: (-len(r), r[0]))
                rows.append((-sum(len(r) for r in runs), start, runs))
            start, runs = pos + 1, []
    rows.sort(key=lambda r: (r[0], r[1]))
    picked = [p for _, _, rs in rows for r in rs for p in r]
    return picked[:q]


def policy_seats(seat_map: Sequence[str], q: int) -> list[int]:
    """The positions admit_next holds for q seats of one section with at least q free."""
    return seats_together(seat_map, q) or sorted(fewest_rows(seat_map, q))
