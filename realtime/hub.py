"""Per-event fan-out: route each event's outcomes to its clients, and push positions.

For every event with clients on this server there is one notify reader (one
blocking read serves every outcome of a script call: prompts, expiries,
confirmations) and one position ticker (one small read of the serving counter
per tick, from which each client's position follows). Prompts go to their
client's outbox at once; they never wait behind a position round.

Position frames are the bulk of what a server sends, so they have a budget per
server (frames per second), shared by its events and spent nearest the head
first (see ``waitroom/cadence.py``): the frames per second stay bounded however
many clients wait here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from engine.catalog import EventCatalog
from engine.checkout import hold_id
from engine.events import seat_label
from realtime import protocol as p
from realtime.metrics import CONNECTIONS, MESSAGES_SENT, POSITIONS_SENT
from realtime.session import ClientSession
from storage.errors import StorageUnavailable
from storage.records import Confirmed, Expired, Left, NotifyBatch, Outcome, Prompted, SoldOut
from storage.redis_store import RedisStore
from waitroom.cadence import Cadence, plan_cadence, share_budget
from waitroom.eta import (
    OutflowEstimator,
    admission_prior,
    position,
    update_interval,
    wire_eta,
)
from waitroom.line import TicketState
from waitroom.tokens import TokenKind, TokenSigner

__all__ = ["EventChannel", "Hub"]

logger = logging.getLogger(__name__)


@dataclass
class EventChannel:
    """This server's clients of one event."""

    event_id: str
    estimator: OutflowEstimator  # measured outflow of the line, for wait estimates
    sessions: dict[int, ClientSession] = field(default_factory=dict)  # ticket seq -> its connection
    serving: int = 0  # the newest serving counter seen
    state: str = "scheduled"  # the event's admission state as last seen
    last_notify_id: str = "0-0"  # the notify entry read last
    ready: anyio.Event = field(default_factory=anyio.Event)  # set once the reader is positioned
    ranked: list[ClientSession] = field(default_factory=list)  # placed sessions by place
    ranked_unsorted: bool = False  # a session joined ``ranked`` out of place order
    ranked_stale: bool = False  # a session in ``ranked`` was detached or decided
    allowance: float = 0.0  # position frames this event may still send (carried between ticks)


class Hub:
    """Routes outcomes and positions to the sessions connected here."""

    def __init__(
        self,
        redis: RedisStore,
        catalog: EventCatalog,
        signer: TokenSigner,
        *,
        position_interval_s: float,
        position_frames_per_s: float,
        payment_window_s: float,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis  # notify streams and counters
        self._catalog = catalog  # seat labels for prompts
        self._signer = signer  # hold tokens
        self._position_interval_s = position_interval_s  # cadence of position pushes
        self._position_frames_per_s = position_frames_per_s  # budget of position frames, all events
        self._payment_window_s = payment_window_s  # hold tokens outlive the hold by this
        self._now_s = now_s  # wall clock, seconds
        self._channels: dict[str, EventChannel] = {}  # event id -> channel
        self._task_group: anyio.abc.TaskGroup | None = None  # owns readers and tickers

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the per-event tasks until cancelled."""
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            task_status.started()
            await anyio.sleep_forever()

    def statistics(self) -> dict[str, int]:
        """Connected sessions per event."""
        return {e: len(c.sessions) for e, c in self._channels.items()}

    async def channel(self, event_id: str) -> EventChannel:
        """The channel of an event, its reader started and positioned."""
        ch = self._channels.get(event_id)
        if ch is None:
            spec = await self._catalog.get(event_id)
            prior = spec.max_active_holds / spec.hold_seconds
            ch = EventChannel(event_id, OutflowEstimator(prior_rate=prior))
            self._channels[event_id] = ch
            assert self._task_group is not None, "Hub.run must be started first"
            self._task_group.start_soon(self._supervise, self._read_outcomes, ch)
            self._task_group.start_soon(self._supervise, self._tick_positions, ch)
        await ch.ready.wait()
        return ch

    def attach(self, ch: EventChannel, session: ClientSession) -> bool:
        """Route the outcomes of ``session.seq`` to it; False if it was decided already.

        Runs without yielding: either the reader has already passed the ticket
        (the caller reads its state) or the ticket's outcome will find the session.
        """
        old = ch.sessions.get(session.seq)
        if old is None:
            CONNECTIONS.inc()
        elif old is not session:
            old.waiting = False  # a newer connection of the same ticket takes over
            ch.ranked_stale = True
        ch.sessions[session.seq] = session
        if session.place:
            # The ``queued`` message tells this position; the ticker sends changes.
            session.last_position = position(session.place, ch.serving)
            self._rank(ch, session)
        if ch.state == "sold_out":
            return False
        return session.place == 0 or ch.serving < session.place

    def detach(self, session: ClientSession) -> bool:
        """Stop routing to ``session``; False if another connection of its ticket took over."""
        ch = self._channels.get(session.event_id or "")
        if ch is not None and ch.sessions.get(session.seq) is session:
            del ch.sessions[session.seq]
            ch.ranked_stale = True
            CONNECTIONS.dec()
            return True
        return False

    @staticmethod
    def _rank(ch: EventChannel, session: ClientSession) -> None:
        """Add a placed session to the ranking (joins come in place order: no sort needed)."""
        if ch.ranked and session.place < ch.ranked[-1].place:
            ch.ranked_unsorted = True
        ch.ranked.append(session)

    def queued_message(self, ch: EventChannel, seq: int, place: int, token: str) -> p.Queued:
        """The ``queued`` message for ticket ``seq`` at ``place`` (0: in the pre-queue)."""
        if place == 0:
            return p.Queued(ticket=seq, token=token, position=0, eta_s=0.0, pre_queue=True)
        pos = position(place, ch.serving)
        low, high = ch.estimator.eta_range_s(pos)
        return p.Queued(
            ticket=seq,
            token=token,
            position=pos,
            eta_s=wire_eta(ch.estimator.eta_s(pos)),
            eta_low_s=wire_eta(low),
            eta_high_s=wire_eta(high),
        )

    async def prompt_message(self, outcome: Prompted, event_id: str) -> p.Prompt:
        """The ``prompt`` message for a hold."""
        spec = await self._catalog.get(event_id)
        section = spec.section(outcome.section)
        assert section is not None, "a hold names a section of its event"
        seats = []
        for pos in outcome.seats:
            label = seat_label(section, pos)
            seats.append(p.Seat(section=outcome.section, row=label.row, number=label.number))
        token = self._signer.issue(
            TokenKind.HOLD,
            event_id,
            outcome.seq,
            outcome.expires_ms // 1000 + int(self._payment_window_s) + 1,
        )
        return p.Prompt(
            hold_id=hold_id(event_id, outcome.seq),
            hold_token=token,
            seats=seats,
            amount_cents=outcome.amount_cents,
            expires_at=datetime.fromtimestamp(outcome.expires_ms / 1000, UTC).isoformat(),
            expires_ms=outcome.expires_ms,
        )

    async def current_message(
        self, event_id: str, seq: int, state: TicketState
    ) -> p.ServerMessage | None:
        """What a client whose ticket is in ``state`` should be told (None: still waiting)."""
        rec = state.record
        if rec is None:
            return p.Error(code="not_found", message="no such ticket")
        if rec.st in ("held", "paying"):
            assert rec.hs is not None
            return await self.prompt_message(
                Prompted(seq, rec.hs, list(rec.seats), rec.amt, rec.exp), event_id
            )
        if rec.st == "confirmed":
            return p.Confirmed(booking_id=rec.bk or "")
        if rec.st == "expired":
            return p.Expired()
        if rec.st == "left":
            return p.Left()
        if rec.st == "sold_out" or state.event_state in ("sold_out", "closed"):
            return p.SoldOut()
        return None

    async def _deliver(self, ch: EventChannel, outcome: Outcome) -> None:
        session = ch.sessions.get(outcome.seq)
        if session is None:
            return
        message: p.ServerMessage
        match outcome:
            case Prompted():
                message = await self.prompt_message(outcome, ch.event_id)
            case SoldOut():
                message = p.SoldOut()
            case Expired():
                message = p.Expired()
            case Confirmed():
                message = p.Confirmed(booking_id=outcome.booking_id)
            case Left():
                message = p.Left()
        session.waiting = False
        ch.ranked_stale = True
        session.send(p.encode(message))
        MESSAGES_SENT.labels(message.__struct_config__.tag).inc()

    def _sold_out_after(self, ch: EventChannel, after: int) -> None:
        frame = p.encode(p.SoldOut())
        for session in ch.sessions.values():
            if (session.place == 0 or session.place > after) and session.waiting:
                session.waiting = False
                session.send(frame)
                MESSAGES_SENT.labels("sold_out").inc()
        ch.ranked_stale = True

    async def _supervise(
        self, task: Callable[[EventChannel], Awaitable[None]], ch: EventChannel
    ) -> None:
        """Run a per-event task, restarting it after a failure: one event's trouble
        (Redis away, a bad entry) must not take down the server's other clients."""
        while True:
            try:
                await task(ch)
            except StorageUnavailable:
                logger.warning(
                    "%s for %s: Redis unreachable, restarting", task.__name__, ch.event_id
                )
            except Exception:
                logger.exception("%s for %s failed, restarting", task.__name__, ch.event_id)
            await anyio.sleep(0.5)

    async def _read_outcomes(self, ch: EventChannel) -> None:
        if not ch.ready.is_set():  # first start: read only what is new from here on
            ch.last_notify_id = await self._redis.last_notify_id(ch.event_id)
            snapshot = await self._redis.snapshot(ch.event_id)
            if snapshot is not None:
                ch.serving, ch.state = snapshot.stats.get("serving", 0), snapshot.state
                spec = await self._catalog.get(ch.event_id)
                ch.estimator.prior_rate = admission_prior(
                    int(snapshot.meta.get("max_active", spec.max_active_holds)),
                    spec.hold_seconds,
                    int(snapshot.meta.get("rate_per_min", 0)),
                )
            ch.ready.set()
        while True:
            batches: list[NotifyBatch] = await self._redis.read_notify(
                ch.event_id, ch.last_notify_id, 1000
            )
            for batch in batches:
                ch.last_notify_id = batch.entry_id
                ch.serving = max(ch.serving, batch.serving)
                for outcome in batch.outcomes:
                    await self._deliver(ch, outcome)
                if batch.sold_out_after is not None:
                    ch.state = "sold_out"
                    self._sold_out_after(ch, batch.sold_out_after)

    async def _place_pre_queue(self, ch: EventChannel) -> None:
        """Learn the places drawn for this server's pre-queue clients once the line opened."""
        waiting = [seq for seq, s in ch.sessions.items() if s.place == 0 and s.waiting]
        if not waiting:
            return
        places = await self._redis.places(ch.event_id, waiting)
        for seq, place in places.items():
            session = ch.sessions.get(seq)
            if session is not None and session.place == 0:
                session.place = place
                self._rank(ch, session)

    async def _tick_positions(self, ch: EventChannel) -> None:
        await ch.ready.wait()
        base = self._position_interval_s
        while True:
            await anyio.sleep(base)
            snapshot = await self._redis.snapshot(ch.event_id)
            if snapshot is None:
                continue
            ch.serving = max(ch.serving, snapshot.stats.get("serving", 0))
            ch.estimator.observe(ch.serving, anyio.current_time())
            if snapshot.state == "sold_out" and ch.state != "sold_out":
                ch.state = "sold_out"
                self._sold_out_after(ch, ch.serving)
            if snapshot.meta.get("opened") == "1":
                await self._place_pre_queue(ch)
            stats = snapshot.stats
            may_return = stats.get("free", 0) == 0 and stats.get("held", 0) > 0
            # From here to the end of the round nothing yields: the ranking stays true.
            self._refresh_ranking(ch)
            share = self._budget_share(ch)
            # Unspent frames carry over, up to one tick's worth (and at least one frame).
            ch.allowance = min(ch.allowance + share * base, max(share * base, 1.0))
            if share <= 0:  # no client of this event is in line here
                continue
            cadence = plan_cadence(share, len(ch.ranked), base)
            sent = self._push_positions(ch, cadence, may_return, int(ch.allowance))
            if sent:
                ch.allowance -= sent
                POSITIONS_SENT.inc(sent)

    @staticmethod
    def _refresh_ranking(ch: EventChannel) -> None:
        """Drop detached and decided sessions from the ranking; sort it only if one joined
        out of place order (places never change once drawn)."""
        if ch.ranked_stale or ch.ranked_unsorted:
            sessions = ch.sessions
            ch.ranked = [s for s in ch.ranked if s.waiting and sessions.get(s.seq) is s]
            ch.ranked_stale = False
        if ch.ranked_unsorted:
            ch.ranked.sort(key=_place)
            ch.ranked_unsorted = False

    def _budget_share(self, ch: EventChannel) -> float:
        """This event's part of the server's position frames per second."""
        if len(self._channels) == 1:
            return self._position_frames_per_s
        channels = list(self._channels.values())
        shares = share_budget(
            self._position_frames_per_s,
            [len(c.ranked) for c in channels],
            self._position_interval_s,
        )
        return shares[channels.index(ch)]

    def _push_positions(
        self, ch: EventChannel, cadence: Cadence, may_return: bool, allowance: int
    ) -> int:
        """Send due position updates nearest the head first, at most ``allowance``; the count sent.

        A client is due once its interval has passed since its last update: its rank's
        interval under ``cadence`` (whole ticks), or a tenth of its wait if longer. It is
        sent a frame when its position or ``seats_may_return`` changed; otherwise it stays
        due. Due times are rounded to the nearest tick, so a rank's interval of n ticks
        is n ticks whatever the jitter of the tick itself.
        """
        now = anyio.current_time()
        base = self._position_interval_s
        horizon = now + base / 2
        serving = ch.serving
        estimator = ch.estimator
        rank = sent = 0
        for session in ch.ranked:
            if not session.waiting:  # decided since the ranking was refreshed
                continue
            rank += 1
            if session.next_position_at > horizon:
                continue
            pos = position(session.place, serving)
            if pos == session.last_position and may_return == session.seats_may_return:
                continue
            if sent >= allowance:
                break
            session.seats_may_return = may_return
            eta = estimator.eta_s(pos)
            low, high = estimator.eta_range_s(pos)
            message = p.Position(
                position=pos,
                eta_s=wire_eta(eta),
                eta_low_s=wire_eta(low),
                eta_high_s=wire_eta(high),
                seats_may_return=may_return,
            )
            session.send_position(pos, p.encode(message))
            session.next_position_at = now + max(
                cadence.interval_s(rank), update_interval(eta, base)
            )
            sent += 1
        return sent


def _place(session: ClientSession) -> int:
    return session.place
