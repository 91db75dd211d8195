"""One simulated buyer: join over the WebSocket, wait, pay (or not) over REST, see the outcome."""

from __future__ import annotations

import enum
import secrets
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import anyio
import jwt
import msgspec
from websockets.exceptions import WebSocketException

from api.client import ApiError, BookingClient, WaitingRoom, solve_challenge
from realtime import protocol as p

__all__ = [
    "IDENTITY_AUDIENCE",
    "IDENTITY_ISSUER",
    "Behaviour",
    "ClientResult",
    "identity_token",
    "run_client",
]

#: The bench's identity tokens' issuer and audience: signed HS256 with the deployment's
#: ``BOOKING_IDENTITY_SECRET``, as an operator's site signs its known users'.
IDENTITY_ISSUER = "https://shop.bench"
IDENTITY_AUDIENCE = "booking-bench"


def identity_token(secret: str, subject: str, expires_in_s: int = 3600) -> str:
    """An identity token for ``subject``, as the operator's site would sign it."""
    claims = {
        "sub": subject,
        "iss": IDENTITY_ISSUER,
        "aud": IDENTITY_AUDIENCE,
        "exp": int(time.time()) + expires_in_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class Behaviour(enum.Enum):
    """What the buyer does when prompted."""

    PAY = "pay"  # pays with a good card
    DECLINE_THEN_PAY = "decline_then_pay"  # a declined card first, then a good one
    ABANDON = "abandon"  # lets the hold expire
    DECLINE = "decline"  # only a declined card, then lets the hold expire
    LEAVE = "leave"  # closes the page while waiting and never comes back


@dataclass
class ClientResult:
    """What one buyer saw."""

    client_id: str
    behaviour: Behaviour
    quantity: int
    ticket: int = 0
    joined_at: float = 0.0  # wall time of the join, s
    queued_at: float = 0.0  # wall time of ``queued``, s
    prompted_at: float = 0.0  # wall time the prompt arrived, s
    admitted_at: float = 0.0  # wall time the server held the seats, s
    first_eta_s: float | None = None
    positions: int = 0  # position updates received
    outcome: str = ""  # confirmed, expired, sold_out, error
    #: The sold_out outcome was "sold out for now": the buyer stopped waiting, its place
    #: still kept (queued) by the server.
    place_kept: bool = False
    ended_at: float = 0.0  # wall time the outcome arrived, s
    expires_ms: int = 0  # the hold's deadline, ms since the epoch
    hold_id: str = ""
    hold_token: str = ""
    payment_key: str = ""  # the idempotency key of the accepted payment
    booking_id: str = ""
    seats: int = 0
    payment_status: int = 0
    payment_s: float = 0.0  # pay request -> answer, s
    confirmed_s: float = 0.0  # pay request -> confirmed message, s
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0  # times the socket was dropped and the place resumed
    worker: int = 0  # the bench process that ran this client
    late_prompt: bool = False  # the prompt arrived after its hold's deadline

    @property
    def admission_to_prompt_s(self) -> float | None:
        """Seats held on the server -> prompt received by the client."""
        return self.prompted_at - self.admitted_at if self.prompted_at else None


async def run_client(
    waitroom_url: str,
    http: BookingClient,
    result: ClientResult,
    *,
    hold_seconds: float,
    think_s: float = 0.0,
    connect_limiter: anyio.CapacityLimiter | None = None,
    local_address: tuple[str, int] | None = None,
    leave_after_s: float | None = None,
    reconnect_at: anyio.Event | None = None,
    identity_secret: str = "",
) -> ClientResult:
    """Run one buyer to its outcome, filling in ``result`` as it goes.

    ``leave_after_s``: with ``Behaviour.LEAVE``, close the socket this long after
    ``queued`` (outcome ``left``). ``reconnect_at``: once set, drop the socket
    and resume the place with the queue token on a new one (a reconnect storm).
    A ``challenge`` answering the join (the event asks for proof of work) is solved and
    the join sent again with the solution, as a page does.
    ``identity_secret``: join with an identity token of its own (the client id as subject).
    """
    try:
        await _run(
            waitroom_url,
            http,
            result,
            hold_seconds,
            think_s,
            connect_limiter,
            local_address,
            leave_after_s,
            reconnect_at,
            identity_secret,
        )
    # A failed handshake (InvalidMessage when the server drops the connection under a
    # storm) or a closed socket (a server shutting down) ends this client with an error,
    # never its process: raised inside the conversation's task group, it comes grouped.
    except* (OSError, WebSocketException) as group:
        result.errors.extend(f"{type(e).__name__}: {e}" for e in _leaves(group))
        result.outcome = result.outcome or "error"
    return result


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions of a (nested) group."""
    return [
        leaf
        for e in group.exceptions
        for leaf in (_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    ]


async def _run(
    url: str,
    http: BookingClient,
    r: ClientResult,
    hold_seconds: float,
    think_s: float,
    limiter: anyio.CapacityLimiter | None,
    local_address: tuple[str, int] | None,
    leave_after_s: float | None,
    reconnect_at: anyio.Event | None,
    identity_secret: str,
) -> None:
    identity = identity_token(identity_secret, r.client_id) if identity_secret else None
    first: p.ClientMessage = p.Join(quantity=r.quantity, client_id=r.client_id, identity=identity)
    state = _Conversation()
    while True:
        async with AsyncExitStack() as stack:
            async with limiter or anyio.CapacityLimiter(1):
                room = await stack.enter_async_context(
                    WaitingRoom.connect(url, local_address=local_address)
                )
            async with anyio.create_task_group() as tg:
                dropped = False

                async def drop_when_told(event: anyio.Event) -> None:
                    nonlocal dropped
                    await event.wait()
                    if r.ticket and not r.prompted_at:  # a place in line, not a payment under way
                        dropped = True
                        tg.cancel_scope.cancel()

                async def leave_later(delay: float) -> None:
                    await state.queued.wait()
                    await anyio.sleep(delay)
                    if not r.prompted_at:
                        r.outcome, r.ended_at = "left", time.time()
                        tg.cancel_scope.cancel()

                if reconnect_at is not None and not r.reconnects:
                    tg.start_soon(drop_when_told, reconnect_at)
                if r.behaviour is Behaviour.LEAVE and leave_after_s is not None:
                    tg.start_soon(leave_later, leave_after_s)
                await _converse(room, http, r, hold_seconds, think_s, first, state)
                tg.cancel_scope.cancel()
        if not dropped:
            return
        r.reconnects += 1
        first = p.Resume(token=state.token)


class _Conversation:
    """What a buyer remembers across reconnects."""

    def __init__(self) -> None:
        self.token = ""  # the queue token, to resume with
        self.queued = anyio.Event()  # set once the place in line is known
        self.paid_at = 0.0  # wall time of the accepted payment request, s


async def _converse(
    room: WaitingRoom,
    http: BookingClient,
    r: ClientResult,
    hold_seconds: float,
    think_s: float,
    first: p.ClientMessage,
    state: _Conversation,
) -> None:
    if isinstance(first, p.Join):
        r.joined_at = time.time()
    await room.send(first)
    rejoins = 0
    while True:
        msg = await room.receive()
        match msg:
            case p.Queued():
                if not r.ticket:
                    r.ticket, r.queued_at, r.first_eta_s = msg.ticket, time.time(), msg.eta_s
                state.token = msg.token
                state.queued.set()
                if msg.sold_out_for_now:  # resumed during a sell-out: see ``position``
                    r.outcome, r.ended_at, r.place_kept = "sold_out", time.time(), True
                    return
            case p.Position():
                r.positions += 1
                # Sold out for now: seats come back only if bookings are cancelled, and a
                # simulated sale cancels none, so the buyer stops waiting there.
                if msg.sold_out_for_now:
                    r.outcome, r.ended_at, r.place_kept = "sold_out", time.time(), True
                    return
            case p.Prompt():
                if r.prompted_at:  # the same hold again, after a resume
                    continue
                r.prompted_at = time.time()
                r.late_prompt = r.prompted_at * 1000 >= msg.expires_ms
                r.admitted_at = msg.expires_ms / 1000 - hold_seconds
                r.expires_ms, r.hold_id, r.hold_token = msg.expires_ms, msg.hold_id, msg.hold_token
                r.seats = len(msg.seats)
                if r.behaviour in (Behaviour.ABANDON, Behaviour.LEAVE):
                    continue  # wait for ``expired``
                if think_s:
                    await anyio.sleep(think_s)
                state.paid_at = time.time()
                if r.behaviour in (Behaviour.DECLINE_THEN_PAY, Behaviour.DECLINE):
                    try:
                        await http.pay(
                            msg.hold_id,
                            msg.hold_token,
                            "tok_declined",
                            secrets.token_hex(8),
                            traceparent=msg.traceparent,
                        )
                        declined = 200
                    except ApiError as exc:
                        declined = exc.status
                    if declined not in (402, 409):  # 409: the hold expired meanwhile
                        r.errors.append(f"declined card answered {declined}")
                    if r.behaviour is Behaviour.DECLINE:
                        r.payment_status = declined
                        continue  # gives up; the hold runs out
                key = secrets.token_hex(8)
                try:
                    booking = await http.pay(
                        msg.hold_id, msg.hold_token, "tok_visa", key, traceparent=msg.traceparent
                    )
                except ApiError as exc:
                    r.payment_s, r.payment_status = time.time() - state.paid_at, exc.status
                    if exc.status != 409:  # 409: the hold expired meanwhile
                        r.errors.append(f"payment answered {exc}")
                else:
                    r.payment_s, r.payment_status = time.time() - state.paid_at, 200
                    r.booking_id, r.payment_key = booking.id, key
            case p.Confirmed():
                r.outcome, r.booking_id, r.ended_at = "confirmed", msg.booking_id, time.time()
                r.confirmed_s = time.time() - state.paid_at if state.paid_at else 0.0
                return
            case p.Expired():
                r.outcome, r.ended_at = "expired", time.time()
                return
            case p.SoldOut():
                r.outcome, r.ended_at = "sold_out", time.time()
                return
            case p.Challenge() if isinstance(first, p.Join):
                # The event asks for proof of work: solve it and join again with it.
                solved = await solve_challenge(msg)
                await room.send(msgspec.structs.replace(first, challenge=solved))
            case p.Error() if msg.code == "unavailable" and rejoins < 30:
                rejoins += 1  # not done (storage restarting): joining and resuming are idempotent
                await anyio.sleep(0.5)
                await room.send(first)
            case p.Left():
                r.outcome, r.ended_at = "left", time.time()
                return
            case p.Error():
                r.errors.append(f"{msg.code}: {msg.message}")
                r.outcome = "error"
                return
