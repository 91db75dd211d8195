"""Per-event fan-out: route each event's outcomes to its clients, and push positions.

For every event with clients on this server there is one notify reader (one
blocking read serves every outcome of a script call: prompts, expiries,
confirmations) and one position ticker (one small read of the event's status
per tick, from which each client's position follows). Prompts are written to
their client at once; they never wait behind a position round.

Admission is paced by delivery: every ``report_interval_s`` the hub tells the store,
per event with clients here, how many prompts it has queued and not yet written and
the newest notify entry it has routed in full (``realtime/delivery.py``); the worker
admits nobody while the servers' backlog reaches its bound.

Position frames are the bulk of what a server sends, so they have a budget per
server (frames per second), shared by its events and spent nearest the head
first (see ``waitroom/cadence.py``): the frames per second stay bounded however
many clients wait here. Messages queued on backed-up connections (prompts, above
all) come first: while they wait, each takes one frame from every round's
allowance, and a round skips clients whose socket is backed up; every prompt routed since
the last round takes a frame from the round too, so a flash's prompts are not slowed by
positions. What a round sends is decided in ``realtime/channel.py``
and every message is built in ``realtime/messages.py``; this module runs the tasks.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable

import anyio
import msgspec

from engine.errors import StorageUnavailable
from engine.holds import Holds, hold_id
from plumbing import log_context, tracing
from realtime import protocol as p
from realtime.channel import EventChannel, budget_share
from realtime.connection import text_frame
from realtime.messages import outcome_message, position_message, queued_message
from realtime.metrics import CONNECTIONS, POSITIONS_SENT, PROMPTS_PENDING, messages_sent
from realtime.session import ClientSession, WireBacklog
from waitroom.cadence import plan_cadence
from waitroom.eta import (
    OutflowEstimator,
    SaleOutlook,
    admission_prior,
    estimate_wait,
    position,
)
from waitroom.line import WaitingLine
from waitroom.records import Confirmed, EventState, Outcome, Prompted

__all__ = ["EventChannel", "Hub"]

logger = logging.getLogger(__name__)

#: Assumed outflow of a channel's line (clients/s) until its caps are read.
_UNKNOWN_PRIOR = 1.0


class Hub:
    """Routes outcomes and positions to the sessions connected here."""

    def __init__(
        self,
        line: WaitingLine,
        holds: Holds,
        *,
        position_interval_s: float,
        position_frames_per_s: float,
        report_interval_s: float = 0.02,
        report_ttl_s: float = 15.0,
    ) -> None:
        self._line = line  # outcome streams, status and places of each event's line
        self._holds = holds  # offers of held seats, for prompts
        self._position_interval_s = position_interval_s  # cadence of position pushes
        self._position_frames_per_s = position_frames_per_s  # budget of position frames, all events
        self._channels: dict[str, EventChannel] = {}  # event id -> channel
        self._task_group: anyio.abc.TaskGroup | None = None  # owns readers and tickers
        #: This server in its delivery reports (one process, one id; a restart is new).
        self.server_id = uuid.uuid4().hex[:16]
        self._report_interval_s = report_interval_s  # cadence of delivery reports
        #: How long a report counts: a server silent this long holds admission back no more.
        self._report_ttl_ms = int(report_ttl_s * 1000)
        #: Messages queued on this server's backed-up connections (each event's prompts
        #: not yet written are its channel's ``backlog``, which admission is paced by).
        self.wire_backlog = WireBacklog()

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
            # The reader sets the prior from the event's caps before the channel is ready.
            ch = EventChannel(event_id, OutflowEstimator(prior_rate=_UNKNOWN_PRIOR))
            self._channels[event_id] = ch
            assert self._task_group is not None, "Hub.run must be started first"
            self._task_group.start_soon(self._supervise, self._read_outcomes, ch)
            self._task_group.start_soon(self._supervise, self._tick_positions, ch)
            self._task_group.start_soon(self._supervise, self._report_delivery, ch)
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
            session.wait_basis = estimate_wait(ch.estimator, 1, ch.outlook).basis
            session.sold_out_for_now = ch.state == EventState.SOLD_OUT  # so ``queued`` says
            ch.rank(session)
        if ch.state == EventState.CLOSED:
            return False
        return session.place == 0 or ch.serving < session.place

    def detach(self, session: ClientSession) -> bool:
        """Stop routing to ``session``; False if another connection of its ticket took over."""
        ch = self._channels.get(session.event_id or "")
        if ch is not None:
            ch.backlog.forget(session)  # its prompts not yet written never will be
        if ch is not None and ch.sessions.get(session.seq) is session:
            del ch.sessions[session.seq]
            ch.ranked_stale = True
            CONNECTIONS.dec()
            return True
        return False

    def queued_message(self, ch: EventChannel, seq: int, place: int, token: str) -> p.Queued:
        """The ``queued`` message for ticket ``seq`` at ``place`` (0: in the pre-queue)."""
        return queued_message(
            ch.estimator,
            ch.outlook,
            ch.serving,
            seq,
            place,
            token,
            sold_out_for_now=ch.state == EventState.SOLD_OUT and place > 0,
        )

    async def outcome_message(self, event_id: str, outcome: Outcome) -> p.ServerMessage:
        """The message that tells a client of ``event_id`` its outcome."""
        offer = None
        if isinstance(outcome, Prompted):
            offer = await self._holds.offer(event_id, outcome)
        return outcome_message(outcome, offer)

    async def _deliver(self, ch: EventChannel, outcome: Outcome) -> None:
        session = ch.sessions.get(outcome.seq)
        if session is None:
            return
        if tracing.ENABLED and isinstance(outcome, Prompted | Confirmed) and outcome.traceparent:
            message = await self._traced_message(ch.event_id, outcome)
        else:
            message = await self.outcome_message(ch.event_id, outcome)
        session.waiting = False
        ch.ranked_stale = True
        if isinstance(outcome, Prompted):
            written = ch.backlog.queued(session, outcome.expires_ms)
            session.send(p.encode(message), on_written=written)
        else:
            session.send(p.encode(message))
        messages_sent(message.__struct_config__.tag).inc()

    async def _traced_message(
        self, event_id: str, outcome: Prompted | Confirmed
    ) -> p.ServerMessage:
        """The outcome's message, made in a span of the booking's trace; a prompt carries
        that span's ``traceparent`` on to the client's payment."""
        kind = "prompt" if isinstance(outcome, Prompted) else "confirmed"
        hold = hold_id(event_id, outcome.seq)
        attributes: tracing.Attributes = {
            "booking.event": event_id,
            "booking.ticket": outcome.seq,
            "booking.hold": hold,
        }
        booking = outcome.booking_id if isinstance(outcome, Confirmed) else None
        with (
            log_context.bound(event=event_id, ticket=outcome.seq, hold=hold, booking=booking),
            tracing.span(f"{kind} delivered", outcome.traceparent, attributes=attributes) as span,
        ):
            message = await self.outcome_message(event_id, outcome)
            if isinstance(message, p.Prompt):
                message = msgspec.structs.replace(message, traceparent=span.traceparent)
            logger.debug("%s delivered", kind)
        return message

    def _sold_out_for_now(self, ch: EventChannel, after: int) -> None:
        """The event sold out: tell every client still waiting at once that its place is
        kept (a ``position`` with ``sold_out_for_now``), outside the position budget."""
        ch.state = EventState.SOLD_OUT
        ch.outlook = dataclasses.replace(ch.outlook, state=EventState.SOLD_OUT)
        sent = 0
        for session in ch.sessions.values():
            if session.place > after and session.waiting and not session.sold_out_for_now:
                pos = position(session.place, ch.serving)
                wait = estimate_wait(ch.estimator, pos, ch.outlook)
                message = position_message(pos, wait, seats_may_return=False, sold_out_for_now=True)
                session.seats_may_return = False
                session.sold_out_for_now = True
                session.wait_basis = wait.basis
                session.send_position(pos, p.encode(message))
                sent += 1
        if sent:
            POSITIONS_SENT.inc(sent)

    def _reopened(self, ch: EventChannel) -> None:
        """Cancelled seats came back to a sold-out event: admission goes on from the line's
        head, and the next position round tells the waiting clients (``sold_out_for_now``
        false), ahead of their usual cadence."""
        ch.state = EventState.OPEN
        ch.outlook = dataclasses.replace(ch.outlook, state=EventState.OPEN)

    def _sold_out_after(self, ch: EventChannel, after: int) -> None:
        """The sale is over: every client still waiting is told a final ``sold_out``."""
        ch.state = EventState.CLOSED
        frame = text_frame(p.encode(p.SoldOut()))  # the same bytes for every client
        for session in ch.sessions.values():
            if (session.place == 0 or session.place > after) and session.waiting:
                session.waiting = False
                session.send_frame(frame)
                messages_sent("sold_out").inc()
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
            ch.last_notify_id = await self._line.last_outcome_id(ch.event_id)
            ch.routed_id = ch.last_notify_id  # what came before has no clients here
            status = await self._line.status(ch.event_id)
            if status is not None:
                ch.serving, ch.state = status.serving, status.state
                ch.outlook = SaleOutlook.of(status)
                ch.estimator.prior_rate = admission_prior(
                    status.max_active, ch.outlook.hold_s, status.rate_per_min
                )
            ch.ready.set()
        while True:
            batches = await self._line.read_outcomes(ch.event_id, ch.last_notify_id, 1000)
            for batch in batches:
                ch.last_notify_id = batch.entry_id
                ch.serving = max(ch.serving, batch.serving)
                if batch.kind == "return" and ch.state == EventState.SOLD_OUT:
                    # Cancelled seats came back: the sale is open again (known before the
                    # next status read, so a client attaching now is not told sold out).
                    self._reopened(ch)
                for outcome in batch.outcomes:
                    await self._deliver(ch, outcome)
                if batch.sold_out_wait is not None and ch.state != EventState.CLOSED:
                    self._sold_out_for_now(ch, batch.sold_out_wait)
                if batch.sold_out_after is not None:
                    self._sold_out_after(ch, batch.sold_out_after)
                ch.routed_id = batch.entry_id  # its prompts are in the backlog now

    async def _report_delivery(self, ch: EventChannel) -> None:
        """Report this server's delivery backlog of the event while it has clients of it
        (a server with none delivers nothing; its last report lapses), at least every
        third of a report's lifetime even when nothing changed."""
        await ch.ready.wait()
        last: tuple[int, str] | None = None
        last_at = 0.0
        refresh_s = self._report_ttl_ms / 3000
        while True:
            await anyio.sleep(self._report_interval_s)
            now = anyio.current_time()
            ch.backlog.lapse(self._line.now_ms())
            if not ch.sessions and not ch.backlog.count:
                continue
            report = (ch.backlog.count, ch.routed_id)
            if report == last and now - last_at < refresh_s:
                continue
            await self._line.report_delivery(
                ch.event_id, self.server_id, report[0], report[1], self._report_ttl_ms
            )
            PROMPTS_PENDING.labels(ch.event_id).set(report[0])
            last, last_at = report, now

    async def _place_pre_queue(self, ch: EventChannel) -> None:
        """Learn the places drawn for this server's pre-queue clients once the line opened."""
        waiting = [seq for seq, s in ch.sessions.items() if s.place == 0 and s.waiting]
        if not waiting:
            return
        places = await self._line.places(ch.event_id, waiting)
        for seq, place in places.items():
            session = ch.sessions.get(seq)
            if session is not None and session.place == 0:
                session.place = place
                ch.rank(session)

    async def _tick_positions(self, ch: EventChannel) -> None:
        await ch.ready.wait()
        base = self._position_interval_s
        while True:
            await anyio.sleep(base)
            status = await self._line.status(ch.event_id)
            if status is None:
                continue
            ch.serving = max(ch.serving, status.serving)
            # A window measures outflow only if the sale was open with somebody waiting
            # when it began: an idle or paused line leaving nobody says nothing of its pace.
            ch.estimator.observe(ch.serving, anyio.current_time(), counting=ch.counting)
            ch.counting = status.state == EventState.OPEN and status.waiting > 0
            ch.outlook = SaleOutlook.of(status)
            ch.estimator.prior_rate = admission_prior(
                status.max_active, ch.outlook.hold_s, status.rate_per_min
            )
            # A notify entry missed (the reader restarted) is caught up with here.
            if status.state == EventState.CLOSED and ch.state != EventState.CLOSED:
                self._sold_out_after(ch, ch.serving)
            elif status.state == EventState.SOLD_OUT and ch.state != EventState.SOLD_OUT:
                self._sold_out_for_now(ch, ch.serving)
            elif status.state != EventState.SOLD_OUT and ch.state == EventState.SOLD_OUT:
                self._reopened(ch)
            if status.opened:
                await self._place_pre_queue(ch)
            # From here to the end of the round nothing yields: the ranking stays true.
            ch.refresh_ranking()
            share = budget_share(
                list(self._channels.values()),
                ch,
                self._position_frames_per_s,
                self._position_interval_s,
            )
            # Unspent frames carry over, up to one tick's worth (and at least one frame).
            ch.allowance = min(ch.allowance + share * base, max(share * base, 1.0))
            # Prompts come out of the same budget first: each one routed since the last
            # round takes a position frame (a burst empties one round's, no more).
            prompted = ch.backlog.routed - ch.prompts_at_round
            ch.prompts_at_round = ch.backlog.routed
            ch.allowance = max(ch.allowance - prompted, 0.0)
            if share <= 0:  # no client of this event is in line here
                continue
            # Messages waiting for backed-up sockets (prompts, most of all) come first: every
            # one of them takes a position frame from this round.
            allowance = int(ch.allowance) - self.wire_backlog.messages
            if allowance <= 0:
                continue
            cadence = plan_cadence(share, len(ch.ranked), base)
            sent = ch.push_positions(
                cadence,
                seats_may_return=status.seats_may_return,
                allowance=allowance,
                now=anyio.current_time(),
                base_s=base,
            )
            if sent:
                ch.allowance -= sent
                POSITIONS_SENT.inc(sent)
