"""Admission control in admit_next.lua and set_admission.lua: open holds and admissions per minute."""

from __future__ import annotations

import pytest

from storage.records import AdmissionCaps
from storage.redis_store import RedisStore
from tests.storage.helpers import T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

HOLD = 2_000


@pytest.mark.anyio
async def test_set_admission_changes_caps_keeps_unnamed_and_repeats_safely(
    redis_store: RedisStore, event_id: str
) -> None:
    """Each cap changes alone ("" keeps the other); repeating a change changes no cap or seat."""
    ev = await new_event(redis_store, event_id, max_active=7)
    caps = await redis_store.set_admission(event_id, T0, None, 120)
    assert caps == AdmissionCaps(max_active=7, rate_per_min=120)
    caps = await redis_store.set_admission(event_id, T0, 3, None)
    assert caps == AdmissionCaps(max_active=3, rate_per_min=120)
    before = await ev.state()
    assert await redis_store.set_admission(event_id, T0, 3, None) == caps
    after = await ev.state()
    assert {k: after[k] for k in ("meta", "stats", "maps", "tickets")} == {
        k: before[k] for k in ("meta", "stats", "maps", "tickets")
    }
    # Each change wakes waiting workers with a notify entry that decides nothing.
    assert [(n.kind, n.outcomes) for n in after["notify"]] == [("config", [])] * 3
    await ev.check()


@pytest.mark.anyio
async def test_rate_cap_spaces_admissions_and_says_when_next(
    redis_store: RedisStore, event_id: str
) -> None:
    """At 60 per minute with a one-token burst: one admission, then "rate" until a second later."""
    ev = await new_event(redis_store, event_id, [("A", 100, "0" * 10 + "|")])
    await redis_store.set_admission(event_id, T0, None, 60)
    await ev.join_many([(f"c{i}", 1, "") for i in range(5)])
    first = await ev.admit(now=T0)
    assert (first.admitted, first.reason) == (1, "budget")
    blocked = await ev.admit(now=T0 + 400)
    assert (blocked.admitted, blocked.reason, blocked.next_ms) == (0, "rate", T0 + 1_000)
    assert (await ev.admit(now=T0 + 1_000)).admitted == 1
    # Unlimited again: everyone left is admitted at once.
    await redis_store.set_admission(event_id, T0, None, 0)
    assert (await ev.admit(now=T0 + 1_001)).admitted == 3


@pytest.mark.anyio
async def test_sale_with_caps_changed_midway_never_exceeds_either(
    redis_store: RedisStore, event_id: str
) -> None:
    """A simulated 30 s sale (50 ms steps, holds expire) whose rate and hold caps change twice:
    from the admission times in the ticket records, no window ever has more admissions than
    the bucket allows, and no moment more open holds than the cap in force."""
    ev = await new_event(
        redis_store, event_id, [("A", 100, "0" * 2_000 + "|")], hold_ms=HOLD, max_active=40
    )
    await ev.join_many([(f"c{i}", 1, "") for i in range(600)])
    # (from ms, max_active, rate_per_min): each phase's caps.
    phases = [(T0, 40, 600), (T0 + 10_000, 40, 120), (T0 + 20_000, 4, 1_200)]
    await redis_store.set_admission(event_id, T0, 40, 600)
    for now in range(T0, T0 + 30_000, 50):
        for start, cap, rate in phases[1:]:
            if now == start:
                await redis_store.set_admission(event_id, now, cap, rate)
        await redis_store.expire(event_id, now, 1_000)
        summary = await redis_store.admit(event_id, now, 500)
        phase = max(p for p in phases if p[0] <= now)
        assert summary.active <= phase[1], (now, summary)
    await redis_store.expire(event_id, T0 + 60_000, 1_000)
    await ev.check()

    tickets = await redis_store.tickets(event_id)
    held = [
        (t.expires_ms - HOLD, t.released_ms or 0)
        for t in tickets.values()
        if t.held_section is not None
    ]
    admitted_at = sorted(a for a, _ in held)
    for start, cap, rate in phases:
        end = next((p[0] for p in phases if p[0] > start), T0 + 30_000)
        times = [t for t in admitted_at if start <= t < end]
        burst = max(1, rate // 60)
        for i, ti in enumerate(times):
            for j in range(i, len(times)):
                allowed = burst + rate * (times[j] - ti) / 60_000
                assert j - i + 1 <= allowed + 1e-9, (start, ti, times[j], j - i + 1, allowed)
        for a in times:
            open_then = sum(1 for b, r in held if b <= a < r)
            assert open_then <= cap, (a, open_then, cap)
        # The caps were binding, not idle: each phase admitted close to what it allowed.
        phase_s = (end - start) / 1000
        most = min(rate / 60 * phase_s + burst, cap * phase_s * 1000 / HOLD + cap)
        assert len(times) >= 0.8 * most, (start, len(times), most)
