"""Position updates on trio's mock clock, against real Redis: a moving line of thousands of
clients gets at most the budget of frames per second, the head every change each tick."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial

import anyio
import msgspec
import pytest

from engine.admission import AdmissionPolicy, run_admission
from engine.events import EventSpec, SectionSpec, seat_map
from engine.holds import Holds
from plumbing.clock import LoopAnchoredClock
from realtime import protocol as p
from realtime.hub import Hub
from realtime.session import ClientSession
from storage.redis_store import JoinRequest, RedisStore
from tests.realtime.recording import RecordingTransport
from waitroom.cadence import plan_cadence
from waitroom.line import WaitingLine
from waitroom.tokens import TokenSigner

pytestmark = [pytest.mark.once, pytest.mark.anyio, pytest.mark.mock_clock(autojump_threshold=0.005)]

CLIENTS = 3_000
BUDGET = 250.0  # position frames per second; a tenth of the clients
BASE_S = 1.0
RATE_PER_MIN = 600  # the line moves 10 places a second
SEATS = 2_000
RUN_S = 90.0


SECTION = SectionSpec(id="a", price_cents=100, capacity=SEATS)
SPEC = EventSpec(
    name="budget",
    opens_at=datetime(2020, 1, 1, tzinfo=UTC),
    sections=[SECTION],
    max_per_order=4,
    hold_seconds=3600,  # nobody's hold runs out during the run
    max_active_holds=SEATS,
)


class _Catalog:
    """The one event's spec (the hub only looks specs up)."""

    async def get(self, event_id: str) -> EventSpec:
        return SPEC


class _Recorder(RecordingTransport):
    """A connection that records every message with the (virtual) time it was written."""

    @property
    def frames(self) -> list[tuple[float, p.ServerMessage]]:
        return [(t, p.server_decoder.decode(payload)) for t, payload in self.sent]


async def _metronome() -> None:
    """Wake every 100 virtual ms, so the mock clock moves in small steps while a Redis call is
    slow in real time (a leap of seconds would time the call out)."""
    while True:  # noqa: ASYNC110 (the sleeping is the point)
        await anyio.sleep(0.1)


@asynccontextmanager
async def _line_moving(
    store: RedisStore,
    event_id: str,
    *,
    queued_messages: int = 0,
    rate_per_min: int = RATE_PER_MIN,
) -> AsyncIterator[tuple[list[_Recorder], float]]:
    """CLIENTS clients in line with a session each on a hub; admission moves the line at
    ``rate_per_min``. Yields the recorders (in place order) and the virtual time admission
    started. ``queued_messages``: messages the hub is told wait for backed-up sockets all along."""
    config = {
        "opens_at_ms": 0,
        "hold_ms": SPEC.hold_seconds * 1000,
        "max_active": SPEC.max_active_holds,
        "max_per_order": SPEC.max_per_order,
        "sections": [{"id": "a", "price_cents": 100, "map": seat_map(SECTION)}],
    }
    await store.create_event(event_id, msgspec.json.encode(config), ["a"])
    clock = LoopAnchoredClock()
    await store.set_admission(event_id, clock.now_ms(), None, rate_per_min)
    holds = Holds(
        _Catalog(),  # type: ignore[arg-type]
        TokenSigner(b"test-secret-0123456789"),
        clock,
        payment_window_s=30.0,
    )
    hub = Hub(
        WaitingLine(store, clock),
        holds,
        position_interval_s=BASE_S,
        position_frames_per_s=BUDGET,
        # Not what is tested, and every wake-up is a step of the mock clock: each waits
        # the autojump threshold in real time (at 0.02 s this file took nearly twice as long).
        report_interval_s=0.1,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(_metronome)
        await tg.start(hub.run)
        ch = await hub.channel(event_id)
        joined = []
        for first in range(0, CLIENTS, 250):
            requests = [JoinRequest(event_id, f"c{i}", 1, "a") for i in range(first, first + 250)]
            joined += await store.join(requests, clock.now_ms())
        recorders = []
        for result in sorted(joined, key=lambda r: r.place):
            recorder = _Recorder()
            session = ClientSession(recorder)
            session.event_id, session.seq, session.place = event_id, result.seq, result.place
            session.waiting = True
            assert hub.attach(ch, session)
            recorders.append(recorder)
        await anyio.sleep(2 * BASE_S)  # positions are told by `queued`: nothing moves, nothing sent
        assert not any(r.frames for r in recorders)
        hub.wire_backlog.messages = queued_messages
        start = anyio.current_time()
        policy = AdmissionPolicy(idle_wait_s=0.2, blocked_wait_s=0.2)
        tg.start_soon(partial(run_admission, store, event_id, clock, policy))
        yield recorders, start
        tg.cancel_scope.cancel()


def _positions(recorder: _Recorder) -> list[tuple[float, int]]:
    return [(t, m.position) for t, m in recorder.frames if isinstance(m, p.Position)]


def _prompted_at(recorder: _Recorder) -> float | None:
    return next((t for t, m in recorder.frames if isinstance(m, p.Prompt)), None)


async def test_position_frames_stay_within_the_budget_and_the_head_sees_every_tick(
    redis_store: RedisStore, event_id: str
) -> None:
    """3,000 clients on a line moving 10 a second: never more than 250 position frames in a
    (virtual) second, though every position changes each tick; the clients nearest the head
    get one every tick; and everyone still waiting hears within the plan's longest interval."""
    async with _line_moving(redis_store, event_id) as (recorders, start):
        await anyio.sleep(RUN_S)
        end = anyio.current_time()

    per_second: defaultdict[int, int] = defaultdict(int)
    for recorder in recorders:
        for t, _ in _positions(recorder):
            per_second[math.floor(t - start)] += 1
    # Binding: all 3,000 moved on the first tick; the prompts of each round take their
    # frames first (10 a second, give or take one of the rate cap's refills).
    assert BUDGET - 2 * RATE_PER_MIN / 60 <= max(per_second.values()) <= BUDGET
    total = sum(per_second.values())
    assert total <= BUDGET * RUN_S

    prompted = [(r, at) for r in recorders if (at := _prompted_at(r)) is not None]
    assert len(prompted) >= 0.8 * RUN_S * RATE_PER_MIN / 60  # the line moved all along
    # Ranks 1..head get the base interval. A client enters them head/rate seconds before its
    # prompt, with up to two ticks left of the interval it had further back.
    cadence = plan_cadence(BUDGET, CLIENTS, BASE_S)
    window = math.floor(cadence.head / (RATE_PER_MIN / 60)) - 2 * BASE_S
    assert window >= 3
    for recorder, at in prompted:
        if at - start < CLIENTS / BUDGET + cadence.max_interval_s(CLIENTS):
            continue  # the opening round, when every position moved at once
        times = [at - window, *(t for t, _ in _positions(recorder) if t > at - window), at]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= BASE_S + 1e-6, (at - start, times)

    # Everyone still waiting heard at least once per longest interval of the plan, after the
    # opening round (CLIENTS / BUDGET ticks) and give or take a tick.
    longest = cadence.max_interval_s(CLIENTS)
    bound = longest + CLIENTS / BUDGET + 2 * BASE_S
    assert bound < RUN_S - 10
    waiting = [r for r in recorders if _prompted_at(r) is None]
    assert waiting
    for recorder in waiting:
        times = [start, *(t for t, _ in _positions(recorder)), end]
        assert max(b - a for a, b in itertools.pairwise(times)) <= bound


async def test_messages_waiting_for_backed_up_sockets_take_frames_from_position_rounds(
    redis_store: RedisStore, event_id: str
) -> None:
    """With 200 messages queued on backed-up connections, a round of the 250 frames/s budget
    sends at most 50 positions: the rest of the budget is left to the messages."""
    queued = 200
    async with _line_moving(redis_store, event_id, queued_messages=queued) as (recorders, start):
        await anyio.sleep(20)
    per_second: defaultdict[int, int] = defaultdict(int)
    for recorder in recorders:
        for t, _ in _positions(recorder):
            per_second[math.floor(t - start)] += 1
    assert per_second  # positions still go out
    assert max(per_second.values()) <= BUDGET - queued


async def test_prompts_take_their_frames_from_position_rounds_first(
    redis_store: RedisStore, event_id: str
) -> None:
    """Admission at 200 a second against a budget of 250 frames a second: each round's
    positions are what the round's prompts left (about 50), so over the run positions
    and prompts together stay within the budget, where positions alone would take all
    of it (~2,500 frames in 10 rounds, beside ~2,000 prompts)."""
    rate, run_s = 200, 10
    async with _line_moving(redis_store, event_id, rate_per_min=rate * 60) as (recorders, _):
        await anyio.sleep(run_s)
    positions = sum(len(_positions(r)) for r in recorders)
    prompted = sum(1 for r in recorders if _prompted_at(r) is not None)
    # On a busy machine the mock clock can run ahead of real Redis, so fewer prompts
    # go out per virtual second: the bound holds whatever their number.
    assert prompted >= rate  # the line moved
    assert positions  # positions still go out
    # Two rounds' worth of slack: the allowance carried in from before admission began,
    # and the prompts routed after the last round.
    assert positions + prompted <= BUDGET * (run_s + 2)
