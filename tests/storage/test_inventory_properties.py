"""Random operation sequences against the real scripts: the inventory always adds up."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers
from storage.records import AdmitSummary, TicketRecord
from storage.redis_store import RedisStore, open_redis_store
from tests.storage.helpers import T0, TERMINAL, Event, fewest_rows, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]


SECTIONS = (("A", 300, "000|00|"), ("B", 100, "0000|"))
ORDER = [s for s, _, _ in SECTIONS]
HOLD = 20_000
MAX_ACTIVE = 3
START = T0 - 5_000  # the event opens at T0

#: Ticket state changes any script may make; everything else is a bug.
ALLOWED = {
    # Admission releases the holds that are due before it admits anyone.
    "admit": {
        ("queued", "held"),
        ("queued", "sold_out"),
        ("held", "expired"),
        ("paying", "expired"),
    },
    "begin": {("held", "paying")},
    "abort": {("paying", "held")},
    "confirm": {("paying", "confirmed")},
    "expire": {("held", "expired"), ("paying", "expired")},
}

Op = tuple[Any, ...]

seqs = st.integers(1, 9)
keys = st.sampled_from(["k1", "k2"])
ops_strategy = st.lists(
    st.one_of(
        st.tuples(
            st.just("join"), st.integers(0, 7), st.integers(1, 4), st.sampled_from(["", "A", "B"])
        ),
        st.tuples(st.just("admit"), st.integers(1, 4)),
        st.tuples(st.just("begin"), seqs, keys, st.sampled_from([5_000, 30_000, 90_000])),
        st.tuples(st.just("abort"), seqs, keys),
        st.tuples(st.just("confirm"), seqs, keys, st.sampled_from(["b1", "b2"])),
        st.tuples(st.just("expire"), st.integers(1, 4)),
        st.tuples(st.just("advance"), st.integers(0, 40_000)),
        st.tuples(st.just("pause")),
        st.tuples(st.just("resume")),
    ),
    max_size=30,
)

#: Holds 1..3 in A's first row, keeps seat 2 with a long payment, lets 1 and 3 expire, then
#: asks for 3 seats of A: no row has 3, so the fewest rows (two, the better first): [1, 3, 5].
FRAGMENTED: list[Op] = [
    ("advance", 5_000),
    ("join", 0, 1, "A"),
    ("join", 1, 1, "A"),
    ("join", 2, 1, "A"),
    ("admit", 4),
    ("begin", 2, "k1", 90_000),
    ("advance", HOLD),
    ("expire", 4),
    ("join", 3, 3, "A"),
    ("admit", 4),
]


def run(servers: EmbeddedServers, ops: Sequence[Op], *, model_admit: bool) -> None:
    """Run ``ops`` on a fresh event in the session's Redis, checking after every step."""
    assert servers.redis_url is not None
    url = servers.redis_url

    async def body() -> None:
        async with open_bridge() as bridge, open_redis_store(url, bridge) as store:
            await Runner(store, model_admit).run(ops)

    try:
        trio.run(body)
    except BaseExceptionGroup as group:
        raise _leaf(group) from None


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member groups (trio-asyncio's nurseries)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Runner:
    """Applies operations and checks each script's effect on the ticket records."""

    def __init__(self, store: RedisStore, model_admit: bool) -> None:
        self.store = store
        self.model_admit = model_admit
        self.ev = Event(store, "p" + uuid.uuid4().hex[:12])
        self.now = START

    async def run(self, ops: Sequence[Op]) -> None:
        self.ev = await new_event(
            self.store, self.ev.id, SECTIONS, opens_at_ms=T0, hold_ms=HOLD, max_active=MAX_ACTIVE
        )
        for op in ops:
            await self.step(op)
        if not self.model_admit:
            await self.drain()

    async def step(self, op: Op) -> None:
        ev, now = self.ev, self.now
        kind = op[0]
        if kind == "advance":
            self.now += op[1]
            return
        pre = await self.store.tickets(ev.id)
        pre_snap = await ev.check()
        pre_state = pre_snap.meta["state"]
        pre_maps = await ev.maps()
        if kind == "join":
            [res] = await ev.join_many([(f"c{op[1]}", op[2], op[3])], now)
            known = {t.client_id: s for s, t in pre.items()}
            if f"c{op[1]}" in known:
                assert res.seq == known[f"c{op[1]}"]
            elif pre_state in ("sold_out", "closed"):
                assert (res.seq, res.status) == (0, pre_state)
            else:
                assert (res.seq, res.status) == (len(pre) + 1, "queued")
        elif kind == "admit":
            summary = await ev.admit(now, op[1])
            post = await self.store.tickets(ev.id)
            # Due holds go back first (as the sweep would release them), before any admission.
            released = {
                q for q in post if post[q].status == "expired" and pre[q].status != "expired"
            }
            assert len(released) == summary.released <= op[1]
            for q in released:
                t = pre[q]
                due = (
                    t.expires_ms
                    if t.status == "held"
                    else max(t.expires_ms, t.paying_until_ms or 0)
                )
                assert t.status in ("held", "paying") and due <= now, (q, t)
            self.check_admit(pre, post, pre_snap.stats["serving"], summary, released)
            if summary.reason == "expiring":  # more due than one call releases: nobody admitted
                assert summary.admitted == summary.sold_out == 0
            elif self.model_admit:
                state, reason, changes = model_admit(
                    meta=pre_snap.meta,
                    stats=pre_snap.stats,
                    maps=pre_maps,
                    tickets=pre,
                    now=now,
                    max_count=op[1],
                    order=line_order(post),
                    released=released,
                )
                got = {q: (post[q].status, post[q].held_section, post[q].seats) for q in changes}
                assert (summary.state, summary.reason, got) == (state, reason, changes), pre_maps
        elif kind == "begin":
            _, seq, key, window = op
            [res] = await ev.begin_many([(seq, key)], now, window)
            t = pre.get(seq)
            if t is None or t.held_section is None:
                assert res.result == "unknown"
            elif t.status == "confirmed":
                assert (res.result, res.idempotency_key, res.booking_id) == (
                    "paid",
                    t.idempotency_key,
                    t.booking_id,
                )
            elif t.status == "paying":
                assert (res.result, res.idempotency_key) == ("in_progress", t.idempotency_key)
            elif t.status == "held" and now < t.expires_ms:
                assert (res.result, res.seats, res.paying_until_ms) == ("ok", t.seats, now + window)
            else:
                assert res.result == "expired"
        elif kind == "abort":
            _, seq, key = op
            [res] = await ev.abort_many([(seq, key)], now)
            t = pre.get(seq)
            undo = t is not None and t.status == "paying" and t.idempotency_key == key
            assert res == ("held" if undo else "ignored")
        elif kind == "confirm":
            _, seq, key, booking = op
            [res] = await ev.confirm_many([(seq, key, booking)], now)
            t = pre.get(seq)
            if t is not None and (
                (t.status == "paying" and t.idempotency_key == key)
                or (t.status == "confirmed" and t.booking_id == booking)
            ):
                assert res == "confirmed"
            else:
                assert res == f"conflict:{t.status if t else 'missing'}"
        elif kind == "expire":
            limit = op[1]
            due = sorted(
                (t.expires_ms if t.status == "held" else t.paying_until_ms or 0, s)
                for s, t in pre.items()
                if (t.status == "held" and t.expires_ms <= now)
                or (t.status == "paying" and (t.paying_until_ms or 0) <= now)
            )
            summary = await ev.expire(now, limit)
            assert summary.released == min(limit, len(due))
            post = await self.store.tickets(ev.id)
            gone = {q for q in post if post[q].status == "expired" and pre[q].status != "expired"}
            assert len(gone) == summary.released
            score = {q: ms for ms, q in due}
            assert gone <= set(score)
            if gone and len(gone) < len(due):
                assert max(score[q] for q in gone) <= min(score[q] for q in set(score) - gone)
        elif kind == "pause":
            res = await ev.set_state("pause", now)
            assert res.ok == (pre_state in ("open", "scheduled"))
        elif kind == "resume":
            res = await ev.set_state("resume", now)
            assert res.ok == (pre_state == "paused")
            if res.ok:
                assert res.state == ("open" if now >= T0 else "scheduled")
        post = await self.store.tickets(ev.id)
        check_transitions(kind, pre, post)

    def check_admit(
        self,
        pre: dict[int, TicketRecord],
        post: dict[int, TicketRecord],
        serving: int,
        s: AdmitSummary,
        released: set[int],
    ) -> None:
        """Only the entries between the old and new serving counter were decided, in order
        (besides the due holds the call released first)."""
        order = line_order(post)
        decided = {q for q in post if post[q].status != pre[q].status} - released
        assert decided <= set(order[serving : s.serving])
        for q in order[serving : s.serving]:
            assert post[q].status != "queued"
        assert s.active == sum(t.status in ("held", "paying") for t in post.values())
        assert s.admitted == sum(post[q].status == "held" for q in decided)

    async def drain(self) -> None:
        """Resume, then admit and sweep until nobody waits and nothing is held: all terminal."""
        ev = self.ev
        self.now += 10 * HOLD
        await self.step(("resume",))
        for _ in range(40):
            await self.step(("admit", 4))
            self.now += 100 * HOLD
            await self.step(("expire", 100))
            stats = await ev.stats()
            if stats["serving"] == stats["seq"] and stats["held"] == 0:
                break
        stats = (await ev.check()).stats
        assert (stats["serving"], stats["held"]) == (stats["seq"], 0)
        tickets = await self.store.tickets(ev.id)
        assert all(t.status in TERMINAL for t in tickets.values()), tickets
        assert stats["sold"] == sum(t.quantity for t in tickets.values() if t.status == "confirmed")


def check_transitions(
    kind: str, pre: dict[int, TicketRecord], post: dict[int, TicketRecord]
) -> None:
    """Tickets only move along the allowed edges of this script; terminal tickets never change."""
    if kind != "join":
        assert set(post) == set(pre)
    for seq, t in post.items():
        old = pre.get(seq)
        if old is None:
            assert kind == "join"
            continue
        assert (t.quantity, t.requested_section, t.client_id, t.joined_ms) == (
            old.quantity,
            old.requested_section,
            old.client_id,
            old.joined_ms,
        )
        if old.status in TERMINAL:
            assert t == old, f"terminal ticket {seq} changed by {kind}: {old} -> {t}"
        elif t.status != old.status:
            assert (old.status, t.status) in ALLOWED.get(kind, set()), (kind, seq, old, t)
        if old.held_section is not None:
            assert (t.held_section, t.seats, t.amount_cents, t.expires_ms) == (
                old.held_section,
                old.seats,
                old.amount_cents,
                old.expires_ms,
            )


def line_order(tickets: dict[int, TicketRecord]) -> list[int]:
    """Ticket seqs in line order: by place (a shuffled pre-queue ticket's drawn place, else its seq)."""
    return sorted(tickets, key=lambda q: tickets[q].drawn_place or q)


def model_admit(
    *,
    meta: dict[str, str],
    stats: dict[str, int],
    maps: dict[str, str],
    tickets: dict[int, TicketRecord],
    now: int,
    max_count: int,
    order: list[int],
    released: set[int],
) -> tuple[str, str, dict[int, tuple[str, str | None, list[int]]]]:
    """What admit_next should decide, per its header: (state, reason, {seq: (status, held section, seats)}),
    after the due holds it released first (``released``) gave their seats back."""
    state = meta["state"]
    if state == "scheduled" and now >= int(meta["opens_at_ms"]):
        state = "open"
    if state not in ("open", "sold_out"):
        return state, "not_open", {}
    seat_maps = {s: list(m) for s, m in maps.items()}
    free = {s: stats[f"free:{s}"] for s in ORDER}
    held = {s: stats[f"held:{s}"] for s in ORDER}
    serving, last = stats["serving"], stats["seq"]
    for q in released:
        t = tickets[q]
        assert t.held_section is not None
        for p in t.seats:
            seat_maps[t.held_section][p - 1] = "0"
        free[t.held_section] += t.quantity
        held[t.held_section] -= t.quantity

    def after(st8: str) -> str:
        if st8 == "open" and sum(free.values()) == 0 and sum(held.values()) == 0:
            return "sold_out"
        return st8

    if serving >= last:
        return after(state), "empty", {}
    if after(state) == "sold_out":  # sold out for now: the line keeps its places
        return "sold_out", "sold_out", {}
    budget = max_count
    room = MAX_ACTIVE - sum(
        t.status in ("held", "paying") for q, t in tickets.items() if q not in released
    )
    if room <= 0:
        return state, "capped", {}
    budget = min(budget, room)
    # Skipped entries use no budget; the call stops once budget clients were decided.
    entries = order[serving:last]
    changes: dict[int, tuple[str, str | None, list[int]]] = {}
    reason = "budget"
    full = False
    for seq in entries:
        if sum(1 for c in changes.values() if c[0] in ("held", "sold_out")) >= budget:
            full = True
            break
        t = tickets[seq]
        if t.status != "queued":
            continue
        cands = [
            s
            for s in (ORDER if t.requested_section == "" else [t.requested_section])
            if s in seat_maps
        ]
        pick: tuple[str, list[int]] | None = None
        for s in cands:
            at = "".join(seat_maps[s]).find("0" * t.quantity)
            if free[s] >= t.quantity and at >= 0:
                pick = (s, list(range(at + 1, at + t.quantity + 1)))
                break
        if pick is None:
            for s in cands:
                if free[s] >= t.quantity:
                    pick = (s, sorted(fewest_rows(seat_maps[s], t.quantity)))
                    break
        if pick is not None:
            s, seats = pick
            for p in seats:
                seat_maps[s][p - 1] = "h"
            free[s] -= t.quantity
            held[s] += t.quantity
            changes[seq] = ("held", s, seats)
        elif any(held[s] > 0 and held[s] + free[s] >= t.quantity for s in cands):
            reason = "waiting_for_seats"
            break
        else:
            changes[seq] = ("sold_out", None, [])
    if reason == "budget" and not full:
        reason = "empty"
    return after(state), reason, changes


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_random_operations_keep_inventory_consistent(
    servers: EmbeddedServers, ops: list[Op]
) -> None:
    """Any call sequence keeps free+held+sold == capacity, maps == counters, terminals final."""
    run(servers, ops, model_admit=False)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
@example(ops=FRAGMENTED)
def test_admission_follows_documented_seat_rules(servers: EmbeddedServers, ops: list[Op]) -> None:
    """admit_next's holds, sell-outs and stop reasons match a model of its documented rules."""
    run(servers, ops, model_admit=True)
