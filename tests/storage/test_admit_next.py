"""admit_next.lua: deciding the head of the line in join order."""

from __future__ import annotations

import pytest

from storage.records import AdmitSummary, EventState, Prompted, SoldOut
from storage.redis_store import RedisStore
from tests.storage.helpers import HOLD_MS, T0, hold_pattern, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]


@pytest.mark.anyio
async def test_not_open_before_opens_at(redis_store: RedisStore, event_id: str) -> None:
    """Before opens_at nothing is decided and the event stays scheduled."""
    ev = await new_event(redis_store, event_id, opens_at_ms=T0 + 1_000)
    await ev.join("c1")
    before = await ev.state()
    summary = await ev.admit(now=T0 + 999)
    assert summary == AdmitSummary(
        state=EventState.SCHEDULED, admitted=0, sold_out=0, skipped=0, serving=0, seq=1, active=0,
        free=8, held=0, sold=0, reason="not_open", notify_id="0-0",
    )  # fmt: skip
    assert await ev.state() == before


@pytest.mark.anyio
async def test_opens_at_opens_at_ms_and_holds_best_row_first(
    redis_store: RedisStore, event_id: str
) -> None:
    """At opens_at the event opens; holds take the best row's first seats, with price and expiry."""
    ev = await new_event(redis_store, event_id, [("A", 1_250, "000|000|")], opens_at_ms=T0 + 1_000)
    await ev.join_many([("c1", 2, ""), ("c2", 2, "A")])
    now = T0 + 1_000
    summary = await ev.admit(now=now)
    assert summary == AdmitSummary(
        state=EventState.OPEN, admitted=2, sold_out=0, skipped=0, serving=2, seq=2, active=2,
        free=2, held=4, sold=0, reason="empty", notify_id=summary.notify_id,
    )  # fmt: skip
    assert summary.notify_id != "0-0"  # the prompts were published
    assert (await ev.meta())["state"] == "open"
    assert await ev.maps() == {"A": "hh0|hh0|"}
    # Both joined before opens_at: the pre-queue was shuffled, so go by place.
    t1, t2 = sorted([await ev.ticket(1), await ev.ticket(2)], key=lambda t: t.drawn_place or 0)
    assert (t1.drawn_place, t2.drawn_place) == (1, 2)
    assert (t1.status, t1.held_section, t1.seats, t1.amount_cents, t1.expires_ms) == (
        "held",
        "A",
        [1, 2],
        2_500,
        now + HOLD_MS,
    )
    assert (t2.status, t2.held_section, t2.seats, t2.amount_cents, t2.expires_ms) == (
        "held",
        "A",
        [5, 6],
        2_500,
        now + HOLD_MS,
    )
    first = 1 if (await ev.ticket(1)).drawn_place == 1 else 2
    stats = await ev.stats()
    assert (stats["admitted"], stats["held:A"], stats["free:A"]) == (2, 4, 2)

    [note] = await ev.notes()
    assert note.kind == "admit"
    assert note.serving == 2
    assert note.sold_out_after is None
    assert note.outcomes == [
        Prompted(first, "A", [1, 2], 2_500, now + HOLD_MS),
        Prompted(3 - first, "A", [5, 6], 2_500, now + HOLD_MS),
    ]


@pytest.mark.anyio
async def test_repeat_admit_with_nobody_waiting_changes_nothing(
    redis_store: RedisStore, event_id: str
) -> None:
    """A second call finds the line empty: no new holds, counters or notify entries."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("c1", 1, ""), ("c2", 3, "")])
    first = await ev.admit()
    assert (first.admitted, first.reason) == (2, "empty")
    before = await ev.state()
    again = await ev.admit(now=T0 + 1)
    assert (again.admitted, again.sold_out, again.serving, again.reason) == (0, 0, 2, "empty")
    assert await ev.state() == before


@pytest.mark.anyio
async def test_budget_stops_after_max_count(redis_store: RedisStore, event_id: str) -> None:
    """max_count limits the entries decided; the rest wait for the next call."""
    ev = await new_event(redis_store, event_id)
    await ev.join_many([("c1", 1, ""), ("c2", 1, ""), ("c3", 1, "")])
    summary = await ev.admit(max_count=2)
    assert (summary.admitted, summary.serving, summary.reason) == (2, 2, "budget")
    assert (await ev.ticket(3)).status == "queued"
    summary = await ev.admit(max_count=2)
    assert (summary.admitted, summary.serving, summary.reason) == (1, 3, "empty")


@pytest.mark.anyio
async def test_capped_at_max_active_open_holds(redis_store: RedisStore, event_id: str) -> None:
    """No more than max_active holds are open; the next call reports capped and decides nobody."""
    ev = await new_event(redis_store, event_id, max_active=2)
    await ev.join_many([("c1", 1, ""), ("c2", 1, ""), ("c3", 1, "")])
    summary = await ev.admit()
    assert (summary.admitted, summary.active, summary.serving) == (2, 2, 2)
    before = await ev.state()
    capped = await ev.admit()
    assert (capped.admitted, capped.active, capped.serving, capped.reason) == (0, 2, 2, "capped")
    assert await ev.state() == before

    # A paying hold still counts; a confirmed one frees a slot.
    assert (await ev.begin(1, "k1")).result == "ok"
    assert (await ev.admit()).reason == "capped"
    assert await ev.confirm(1, "k1", "bk1") == "confirmed"
    summary = await ev.admit()
    assert (summary.admitted, summary.active, summary.serving) == (1, 2, 3)


@pytest.mark.anyio
async def test_waiting_for_seats_keeps_strict_order(redis_store: RedisStore, event_id: str) -> None:
    """The head waits for seats open holds may return; later small requests do not jump ahead."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0000|")])
    await ev.join("big1", 3)
    await ev.admit()
    await ev.join_many([("big2", 3, ""), ("small", 1, "")])
    before = await ev.state()

    summary = await ev.admit(now=T0 + 1)
    assert (summary.admitted, summary.sold_out, summary.serving) == (0, 0, 1)
    assert summary.reason == "waiting_for_seats"
    assert (await ev.ticket(2)).status == "queued"
    assert (await ev.ticket(3)).status == "queued"
    assert (await ev.maps())["A"] == "hhh0|"
    assert await ev.state() == before

    # Once the first hold expires, the head is served first, then the small request.
    assert (await ev.expire(T0 + HOLD_MS)).released == 1
    summary = await ev.admit(now=T0 + HOLD_MS)
    assert (summary.admitted, summary.serving, summary.reason) == (2, 3, "empty")
    assert (await ev.ticket(2)).seats == [1, 2, 3]
    assert (await ev.ticket(3)).seats == [4]


@pytest.mark.anyio
async def test_sold_out_per_ticket_when_nothing_can_come_back(
    redis_store: RedisStore, event_id: str
) -> None:
    """A request no section could ever fill is sold out at once and the line moves on."""
    ev = await new_event(redis_store, event_id, [("A", 100, "000|"), ("B", 200, "00|")])
    await ev.join_many([("c1", 2, "A"), ("huge", 4, ""), ("wrongsec", 3, "B"), ("c4", 1, "")])
    summary = await ev.admit()
    assert (summary.admitted, summary.sold_out, summary.serving, summary.reason) == (
        2,
        2,
        4,
        "empty",
    )
    assert summary.state == "open"
    assert (await ev.ticket(2)).status == "sold_out"
    assert (await ev.ticket(3)).status == "sold_out"
    t4 = await ev.ticket(4)
    assert (t4.status, t4.held_section, t4.seats) == ("held", "A", [3])
    assert (await ev.stats())["sold_out"] == 2
    [note] = await ev.notes()
    assert note.outcomes == [
        Prompted(1, "A", [1, 2], 200, T0 + HOLD_MS),
        SoldOut(2),
        SoldOut(3),
        Prompted(4, "A", [3], 100, T0 + HOLD_MS),
    ]


@pytest.mark.anyio
async def test_section_sold_while_others_remain_sells_out_that_ticket(
    redis_store: RedisStore, event_id: str
) -> None:
    """A ticket for a section whose seats are all sold is sold out while the event stays open."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0|"), ("B", 100, "00|")])
    await ev.join("c1", 1, "A")
    await ev.admit()
    await ev.pay(1)
    await ev.join_many([("wantsA", 1, "A"), ("any", 1, "")])
    summary = await ev.admit()
    assert (summary.admitted, summary.sold_out, summary.state) == (1, 1, "open")
    assert (await ev.ticket(2)).status == "sold_out"
    t3 = await ev.ticket(3)
    assert (t3.held_section, t3.seats) == ("B", [1])


@pytest.mark.anyio
async def test_event_sells_out_for_now_and_the_line_keeps_its_places(
    redis_store: RedisStore, event_id: str
) -> None:
    """With nothing free or held the event becomes sold_out before anyone more is decided;
    one notify entry has sold_out_wait, and every waiting ticket stays queued."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00|")])
    await ev.join("buyer", 2)
    await ev.admit()
    await ev.pay(1)
    await ev.join_many([("c2", 1, ""), ("c3", 1, ""), ("c4", 1, "")])

    summary = await ev.admit(max_count=1)
    assert (summary.state, summary.sold_out, summary.serving, summary.reason) == (
        "sold_out",
        0,
        1,
        "sold_out",
    )
    assert (await ev.meta())["state"] == "sold_out"
    notes = await ev.notes()
    assert [n.kind for n in notes] == ["admit", "confirm", "admit"]
    assert (notes[2].outcomes, notes[2].sold_out_wait, notes[2].sold_out_after) == ([], 1, None)

    # Later calls decide nothing and write nothing: the line waits for seats to return.
    before = await ev.state()
    summary = await ev.admit()
    assert (summary.state, summary.sold_out, summary.serving, summary.reason) == (
        "sold_out",
        0,
        1,
        "sold_out",
    )
    assert [(await ev.ticket(s)).status for s in (2, 3, 4)] == ["queued"] * 3
    assert await ev.state() == before


@pytest.mark.anyio
async def test_sells_out_with_nobody_waiting(redis_store: RedisStore, event_id: str) -> None:
    """The last confirmation is noticed by the next call even with an empty line."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0|")])
    await ev.join("c1")
    await ev.admit()
    await ev.pay(1)
    summary = await ev.admit(now=T0 + 5)
    assert (summary.state, summary.reason, summary.sold) == ("sold_out", "empty", 1)
    last = (await ev.notes())[-1]
    assert (last.kind, last.outcomes, last.sold_out_wait) == ("admit", [], 1)
    before = await ev.state()
    await ev.admit(now=T0 + 6)
    assert await ev.state() == before, "sold_out is announced once"


@pytest.mark.anyio
async def test_not_sold_out_while_holds_may_come_back(
    redis_store: RedisStore, event_id: str
) -> None:
    """With no free seats but open holds the event stays open and the head waits."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00|")])
    await ev.join("c1", 2)
    await ev.admit()
    await ev.join("c2", 1)
    summary = await ev.admit()
    assert (summary.state, summary.reason, summary.sold_out) == ("open", "waiting_for_seats", 0)


@pytest.mark.anyio
async def test_seats_together_in_a_later_row(redis_store: RedisStore, event_id: str) -> None:
    """With "00h00|0000|" a request for 3 gets the three first seats of row 2."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00000|0000|")])
    await hold_pattern(ev, "A", "00h00|0000|")
    now = T0 + HOLD_MS
    joined = await ev.join("trio", 3, "A", now=now)
    summary = await ev.admit(now=now)
    assert (summary.admitted, summary.reason) == (1, "empty")
    assert (await ev.ticket(joined.seq)).seats == [7, 8, 9]
    assert (await ev.maps())["A"] == "00h00|hhh0|"


@pytest.mark.anyio
async def test_together_in_best_row_before_later_rows(
    redis_store: RedisStore, event_id: str
) -> None:
    """A request that fits together in the first row takes the leftmost run there."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00000|0000|")])
    await hold_pattern(ev, "A", "0h000|0000|")
    now = T0 + HOLD_MS
    joined = await ev.join("pair", 2, "A", now=now)
    await ev.admit(now=now)
    assert (await ev.ticket(joined.seq)).seats == [3, 4]


@pytest.mark.anyio
async def test_falls_back_to_first_free_seats_in_best_row_order(
    redis_store: RedisStore, event_id: str
) -> None:
    """When no row has the seats together, the first free seats in best-row order are held."""
    ev = await new_event(redis_store, event_id, [("A", 100, "000|000|")])
    await hold_pattern(ev, "A", "0h0|h0h|")
    now = T0 + HOLD_MS
    joined = await ev.join("scattered", 3, "A", now=now)
    summary = await ev.admit(now=now)
    assert (summary.admitted, summary.reason) == (1, "empty")
    assert (await ev.ticket(joined.seq)).seats == [1, 3, 6]
    assert (await ev.maps())["A"] == "hhh|hhh|"


@pytest.mark.anyio
async def test_scattered_free_seats_are_not_refused(redis_store: RedisStore, event_id: str) -> None:
    """Free seats that are not together still serve a request; it is not sold out."""
    ev = await new_event(redis_store, event_id, [("A", 100, "000|")])
    await hold_pattern(ev, "A", "0s0|")
    now = T0 + HOLD_MS
    joined = await ev.join("pair", 2, "", now=now)
    summary = await ev.admit(now=now)
    assert (summary.admitted, summary.sold_out) == (1, 0)
    t = await ev.ticket(joined.seq)
    assert (t.status, t.seats) == ("held", [1, 3])


@pytest.mark.anyio
async def test_any_section_tries_sections_best_first(
    redis_store: RedisStore, event_id: str
) -> None:
    """Section "" takes the best section with room, then the next; a named section is kept to."""
    ev = await new_event(redis_store, event_id, [("A", 300, "00|"), ("B", 100, "000|")])
    await ev.join_many(
        [("c1", 2, ""), ("c2", 2, ""), ("c3", 1, "B"), ("c4", 1, "A"), ("c5", 1, "")]
    )
    summary = await ev.admit()
    assert (summary.admitted, summary.reason, summary.serving) == (3, "waiting_for_seats", 3)
    got = [await ev.ticket(s) for s in (1, 2, 3)]
    assert [(t.held_section, t.seats, t.amount_cents) for t in got] == [
        ("A", [1, 2], 600),
        ("B", [1, 2], 200),
        ("B", [3], 100),
    ]
    assert (await ev.ticket(4)).status == "queued"
    assert (await ev.ticket(5)).status == "queued"


@pytest.mark.anyio
async def test_any_section_prefers_together_in_a_later_section(
    redis_store: RedisStore, event_id: str
) -> None:
    """Section "" holds seats together in a later section before scattered seats in a better one."""
    ev = await new_event(redis_store, event_id, [("A", 300, "000|"), ("B", 100, "00|")])
    await hold_pattern(ev, "A", "0h0|")
    now = T0 + HOLD_MS
    joined = await ev.join("pair", 2, "", now=now)
    summary = await ev.admit(now=now)
    assert (summary.admitted, summary.reason) == (1, "empty")
    t = await ev.ticket(joined.seq)
    assert (t.held_section, t.seats, t.amount_cents) == ("B", [1, 2], 200)


@pytest.mark.anyio
async def test_paused_and_closed_events_admit_nobody(
    redis_store: RedisStore, event_id: str
) -> None:
    """Paused or closed events report not_open and leave the line as it is."""
    ev = await new_event(redis_store, event_id)
    await ev.join("c1")
    await ev.set_state("pause")
    before = await ev.state()
    summary = await ev.admit()
    assert (summary.state, summary.reason, summary.admitted) == ("paused", "not_open", 0)
    assert await ev.state() == before
    await ev.set_state("close")
    summary = await ev.admit()
    assert (summary.state, summary.reason, summary.admitted) == ("closed", "not_open", 0)
    assert (await ev.ticket(1)).status == "queued"


@pytest.mark.anyio
async def test_seats_stay_together_in_one_row_when_any_row_has_them(
    redis_store: RedisStore, event_id: str
) -> None:
    """Four seats go to the best row with four free together, skipping fragmented better rows."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00000|00000|00000|")])
    await hold_pattern(ev, "A", "0h0h0|00h00|00000|")
    [res] = await ev.join_many([("four", 4, "A")])
    assert (await ev.admit()).admitted == 1
    assert (await ev.ticket(res.seq)).seats == [13, 14, 15, 16]


@pytest.mark.anyio
async def test_seats_that_cannot_sit_together_take_the_fewest_rows(
    redis_store: RedisStore, event_id: str
) -> None:
    """With no row holding the group together, seats spread over the fewest rows: a row with
    enough free seats apart beats the better rows, and two rows beat three."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00000|00000|00000|")])
    await hold_pattern(ev, "A", "0h0h0|00h00|0h0h0|")
    [four] = await ev.join_many([("four", 4, "A")])
    assert (await ev.admit()).admitted == 1
    # Row 1 has 3 free (1, 3, 5), row 2 has 4 (7, 8, 10, 11): one row, not first-free order.
    assert (await ev.ticket(four.seq)).seats == [7, 8, 10, 11]

    [five] = await ev.join_many([("five", 5, "A")])
    assert (await ev.admit()).admitted == 1
    # Left: rows 1 and 3 with 3 free each: two rows, the better first.
    assert (await ev.ticket(five.seq)).seats == [1, 3, 5, 13, 15]
    await ev.check()


@pytest.mark.anyio
async def test_holds_are_numbered_in_the_order_made_across_calls(
    redis_store: RedisStore, event_id: str
) -> None:
    """Each hold records its number (an): 1, 2, 3... in line order, continuing across calls,
    whatever now_ms each call was given; a ticket not yet held has none."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0000|")])
    await ev.join_many([("c1", 1, ""), ("c2", 1, ""), ("c3", 2, ""), ("c4", 4, "")])
    assert (await ev.admit(now=T0 + 500, max_count=2)).admitted == 2
    assert (await ev.admit(now=T0, max_count=2)).admitted == 1  # an earlier clock: order stands
    tickets = await redis_store.tickets(event_id)
    assert [tickets[s].hold_number for s in (1, 2, 3, 4)] == [1, 2, 3, None]
    assert tickets[4].status == "queued"  # four seats may come back: it waits at the head


@pytest.mark.anyio
async def test_one_call_steps_over_seats_it_held_itself(
    redis_store: RedisStore, event_id: str
) -> None:
    """Within one call each request sees the holds made before it: a later, larger request
    skips the row they filled up and a later, smaller one goes back to a gap they left."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00000|00000|")])
    joined = await ev.join_many([(f"c{q}{k}", q, "A") for k, q in enumerate([2, 1, 3, 1, 2])])
    assert (await ev.admit()).admitted == 5
    seats = [(await ev.ticket(res.seq)).seats for res in joined]
    assert seats == [[1, 2], [3], [7, 8, 9], [4], [10, 11]]
    assert (await ev.maps())["A"] == "hhhh0|hhhhh|"


@pytest.mark.anyio
async def test_seats_given_back_in_an_earlier_row_are_found_by_the_next_call(
    redis_store: RedisStore, event_id: str
) -> None:
    """Seats the expiry sweep frees in a row the sale had already filled are the first
    ones the next call hands out."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0000|0000|")])
    await ev.join_many([("c1", 2, "A"), ("c2", 2, "A"), ("c3", 1, "A")])
    assert (await ev.admit()).admitted == 3
    assert (await ev.begin(1, "k1", window=10 * HOLD_MS)).result == "ok"
    assert (await ev.expire(T0 + HOLD_MS)).released == 2
    assert (await ev.maps())["A"] == "hh00|0000|"
    now = T0 + HOLD_MS
    one, two = await ev.join_many([("c4", 1, "A"), ("c5", 2, "A")], now)
    assert (await ev.admit(now)).admitted == 2
    assert (await ev.ticket(one.seq)).seats == [3]
    assert (await ev.ticket(two.seq)).seats == [6, 7]


@pytest.mark.anyio
async def test_fewest_rows_twice_in_one_call_sees_the_holds_between(
    redis_store: RedisStore, event_id: str
) -> None:
    """Falling back to the fewest rows, holding seats together, then falling back again in
    the same call: each choice counts the seats the earlier holds took."""
    ev = await new_event(redis_store, event_id, [("A", 100, "00000|00000|00000|")])
    await hold_pattern(ev, "A", "0h0h0|00h0h|0h0h0|")
    now = T0 + HOLD_MS
    joined = await ev.join_many([(f"c{k}", q, "A") for k, q in enumerate([4, 2, 1, 2])], now)
    assert (await ev.admit(now)).admitted == 4
    seats = [(await ev.ticket(res.seq)).seats for res in joined]
    assert seats == [[1, 3, 5, 7], [13, 15], [8], [10, 17]]


@pytest.mark.anyio
async def test_a_section_of_one_row(redis_store: RedisStore, event_id: str) -> None:
    """A section that is one row: seats apart go to its longest runs first."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0000000|")])
    await hold_pattern(ev, "A", "0h00h00|")
    now = T0 + HOLD_MS
    three, two = await ev.join_many([("c3", 3, "A"), ("c2", 2, "A")], now)
    assert (await ev.admit(now)).admitted == 2
    assert (await ev.ticket(three.seq)).seats == [3, 4, 6]
    assert (await ev.ticket(two.seq)).seats == [1, 7]
    assert (await ev.maps())["A"] == "hhhhhhh|"


@pytest.mark.anyio
async def test_holds_scattered_over_many_rows_are_all_written(
    redis_store: RedisStore, event_id: str
) -> None:
    """One call holding seats in 40 places (more than are written one by one), then one
    sweep giving every other one back, leave the map exactly as the tickets say."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0|" * 40)])
    joined = await ev.join_many([(f"c{k}", 1, "A") for k in range(40)])
    assert (await ev.admit()).admitted == 40
    assert (await ev.maps())["A"] == "h|" * 40
    for res in joined[::2]:
        assert (await ev.begin(res.seq, f"k{res.seq}", window=10 * HOLD_MS)).result == "ok"
    assert (await ev.expire(T0 + HOLD_MS)).released == 20
    assert (await ev.maps())["A"] == "h|0|" * 20
