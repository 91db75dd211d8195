"""The waiting-room WebSocket endpoint: ``/v1/events/{id}/waitroom``.

Each connection gets a session (frames to the client are written from whichever
task produces them, see realtime/session.py); its one task reads ``join`` and
``resume``. Bad input is answered with an ``error`` message, never a silent drop.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import msgspec
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from engine.catalog import EventCatalog
from engine.challenge import CHALLENGE_TTL_S, JoinChallenges
from engine.errors import (
    ChallengeRefused,
    IdentityRefused,
    NotFound,
    StorageError,
    StorageUnavailable,
)
from engine.identity import IdentityVerifier, person_client_id
from plumbing import tracing
from plumbing.batcher import BatcherStopped
from plumbing.client_ip import AddressPolicy
from plumbing.clock import Clock
from realtime import protocol as p
from realtime.hub import EventChannel, Hub
from realtime.metrics import OPEN_SOCKETS
from realtime.session import ClientSession, Heartbeats
from waitroom.line import PERSON_LIMIT, RATE_LIMITED, UnknownTicket, WaitingLine
from waitroom.tokens import InvalidToken, TokenKind, TokenSigner

__all__ = ["WaitroomHandler"]

T = TypeVar("T")

#: Reads of an attached client's state tried, 0.5 s apart, while Redis is unreachable.
ATTACH_ATTEMPTS = 20

logger = logging.getLogger(__name__)

_PATH = re.compile(r"^/v1/events/([A-Za-z0-9_-]{1,64})/waitroom/?$")
QUEUE_TOKEN_TTL_S = 24 * 3600


class WaitroomHandler:
    """Serves one WebSocket connection per call."""

    def __init__(
        self,
        hub: Hub,
        line: WaitingLine,
        catalog: EventCatalog,
        signer: TokenSigner,
        clock: Clock,
        *,
        max_pending: int = 32,
        heartbeats: Heartbeats,
        addresses: AddressPolicy | None = None,
        connections_per_ip: int = 200,
        join_timeout_s: float = 30.0,
        join_wait_s: int = 1,
        identity: IdentityVerifier | None = None,
        challenges: JoinChallenges | None = None,
    ) -> None:
        self._hub = hub  # routing of outcomes and positions
        self._line = line  # joins
        self._catalog = catalog  # event specs, for validation
        self._signer = signer  # queue tokens
        self._clock = clock  # token expiry
        self._max_pending = max_pending  # per-client outbox bound
        self._heartbeats = heartbeats  # keeps quiet connections alive
        self._addresses = addresses or AddressPolicy()  # trusted proxies, exempt clients
        self._connections_per_ip = connections_per_ip  # open sockets per client address
        self._join_timeout_s = join_timeout_s  # a socket that never joins is closed then
        self._join_wait_s = join_wait_s  # told to a client whose join was rate limited
        self._identity = identity  # checks identity tokens (None: no event may require one)
        self._challenges = challenges  # checks proofs of work (None: none asked)
        self._open: Counter[str] = Counter()  # open sockets per (non-exempt) client address

    async def __call__(self, ws: Any) -> None:
        """Serve ``ws`` until it closes."""
        ip = self._client_ip(ws)
        counted = not self._addresses.exempt(ip)
        if counted and self._open[ip] >= self._connections_per_ip:
            await _turn_away(ws, self._connections_per_ip)
            return
        if counted:
            self._open[ip] += 1
        OPEN_SOCKETS.inc()
        session = ClientSession(ws, max_pending=self._max_pending, backlog=self._hub.wire_backlog)
        try:
            self._heartbeats.add(session)
            try:
                await self._read(ws, session, ip)
            finally:
                self._heartbeats.discard(session)
                if session.backed_up:  # let what is queued (an error, say) reach it, briefly
                    with anyio.move_on_after(2):
                        await session.flush()
        except Exception as exc:  # the connection broke; the place in line stays
            if not _is_disconnect(exc):
                logger.exception("waitroom connection failed")
        finally:
            if counted:
                self._open[ip] -= 1
                if not self._open[ip]:
                    del self._open[ip]
            routed = self._hub.detach(session)
            OPEN_SOCKETS.dec()
            if routed and session.waiting and session.event_id is not None:
                await self._mark_gone(session.event_id, session.seq)

    async def _mark_gone(self, event_id: str, seq: int) -> None:
        """Start the client's grace period: its place is kept until it runs out."""
        with anyio.move_on_after(5, shield=True):
            try:
                await self._line.mark_presence(event_id, seq, gone=True)
            except StorageError:
                logger.warning("waitroom: could not mark ticket %s of %s as gone", seq, event_id)
            except BatcherStopped:
                # The server is shutting down: as after a crash, the place stays and
                # the client resumes it on another server (or is skipped in its turn).
                logger.debug("waitroom: shutting down; ticket %s of %s not marked", seq, event_id)

    def _client_ip(self, ws: Any) -> str:
        """The client's address: the peer, or behind trusted proxies from the handshake's
        X-Forwarded-For."""
        request = getattr(ws, "request", None)
        forwarded = request.headers.get_all("X-Forwarded-For") if request is not None else []
        return self._addresses.client(_peer_ip(ws), forwarded)

    async def _read(self, ws: Any, session: ClientSession, ip: str) -> None:
        match = _PATH.match(ws.request.path.split("?", 1)[0])
        if match is None:
            _refuse(session, "not_found", "use /v1/events/{id}/waitroom")
            return
        event_id = match.group(1)
        try:
            await self._catalog.get(event_id)
        except NotFound:
            _refuse(session, "not_found", f"no event {event_id!r}")
            return
        # Until it joins or resumes, a connection has join_timeout_s; then it is closed.
        join_deadline = anyio.current_time() + self._join_timeout_s
        while True:
            try:
                if session.event_id is not None:  # in line: no deadline, no cancel scope
                    raw = await ws.recv()
                else:
                    raw = None  # until it joins or resumes, the deadline applies
                    with anyio.move_on_after(join_deadline - anyio.current_time()):
                        raw = await ws.recv()
                    if raw is None:
                        _refuse(
                            session,
                            "join_timeout",
                            f"join or resume within {self._join_timeout_s:g} s",
                        )
                        return
            except ConnectionClosedOK:
                return
            if isinstance(raw, bytes):
                _refuse(session, "binary_frame", "send messages as JSON text frames")
                continue
            try:
                message = p.client_decoder.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                _refuse(session, "invalid_message", str(exc))
                continue
            if isinstance(message, p.Ping):
                session.send(p.encode(p.Pong()))
                continue
            if session.event_id is not None:
                _refuse(session, "already_joined", "this connection has a place already")
                continue
            try:
                if isinstance(message, p.Join):
                    if await self._join(event_id, message, session, ip, ws):
                        # Handed a challenge: the connection has its lifetime to solve it.
                        join_deadline = anyio.current_time() + CHALLENGE_TTL_S
                else:
                    await self._resume(event_id, message, session)
            except StorageError:
                logger.exception("waitroom: storage failed")
                _refuse(session, "unavailable", "try again in a moment")

    async def _join(
        self, event_id: str, msg: p.Join, session: ClientSession, ip: str, ws: Any
    ) -> bool:
        """Take the join's place in line, or answer why not; True when the answer was a
        challenge to solve (the event asks for proof of work and the join brought none)."""
        spec = await self._catalog.get(event_id)
        if msg.quantity > spec.max_per_order:
            _refuse(session, "invalid_quantity", f"at most {spec.max_per_order} seats per order")
            return False
        if msg.section is not None and spec.section(msg.section) is None:
            _refuse(session, "invalid_section", f"no section {msg.section!r}")
            return False
        if self._challenges is not None:
            # Cheapest check first: a bot that did no work costs two HMACs, no Redis write.
            try:
                await self._challenges.check(event_id, msg.challenge)
            except ChallengeRefused as exc:
                if exc.code == "challenge_required":
                    await self._hand_out_challenge(event_id, session)
                    return True
                _refuse(session, exc.code, exc.message)
                return False
        client_id, person = msg.client_id, ""
        if spec.identity is not None:
            # One place per person: the line knows a verified buyer by its identity alone.
            if self._identity is None:
                _refuse(session, "identity_unavailable", "identity is not checked here")
                return False
            try:
                person = await self._identity.person(event_id, spec, msg.identity)
            except IdentityRefused as exc:
                _refuse(session, exc.code, exc.message)
                return False
            client_id = person_client_id(person)
        ch = await self._hub.channel(event_id)
        if tracing.ENABLED:
            parent = _traceparent(ws)
            attributes: tracing.Attributes = {
                "booking.event": event_id,
                "booking.quantity": msg.quantity,
            }
            with tracing.span("join", parent, attributes=attributes) as span:
                result = await self._line.join(
                    event_id,
                    client_id,
                    msg.quantity,
                    msg.section or "",
                    ip=ip,
                    traceparent=span.traceparent,
                    person=person,
                )
                span.set("booking.ticket", result.seq)
                span.set("booking.join_status", result.status)
        else:
            result = await self._line.join(
                event_id, client_id, msg.quantity, msg.section or "", ip=ip, person=person
            )
        if result.status == RATE_LIMITED:
            _refuse(session, "rate_limited", f"too many joins; retry in {self._join_wait_s} s")
            return False
        if result.status == PERSON_LIMIT:
            _refuse(session, "person_limit", f"at most {spec.max_per_person} seats per person")
            return False
        if result.seq == 0:
            session.send(p.encode(p.SoldOut()))
            return False
        await self._attach(ch, session, result.seq, result.place)
        return False

    async def _hand_out_challenge(self, event_id: str, session: ClientSession) -> None:
        """Answer a join that brought no proof of work with a challenge to solve, on the
        same connection (no HTTP request of its own); the client joins again with it."""
        assert self._challenges is not None
        challenge, difficulty = await self._challenges.issue(event_id)
        session.send(p.encode(p.Challenge(challenge=challenge, difficulty=difficulty)))

    async def _resume(self, event_id: str, msg: p.Resume, session: ClientSession) -> None:
        try:
            claims = self._signer.verify(msg.token, TokenKind.QUEUE, self._clock.now_ms() / 1000)
        except InvalidToken as exc:
            _refuse(session, "invalid_token", str(exc))
            return
        if claims.event_id != event_id:
            _refuse(session, "invalid_token", "token is for another event")
            return
        ch = await self._hub.channel(event_id)
        seq = claims.seq

        async def come_back() -> int:
            await self._line.mark_presence(event_id, seq, gone=False)
            return await self._line.place(event_id, seq)

        # The client is in line already: a Redis restart is waited out, not reported.
        place = await _wait_out_restart(come_back)
        await self._attach(ch, session, seq, place)

    async def _attach(self, ch: EventChannel, session: ClientSession, seq: int, place: int) -> None:
        session.event_id, session.seq, session.waiting = ch.event_id, seq, True
        session.place = place
        token = self._signer.issue(
            TokenKind.QUEUE, ch.event_id, seq, self._clock.now_ms() // 1000 + QUEUE_TOKEN_TTL_S
        )
        undecided = self._hub.attach(ch, session)
        session.send(p.encode(self._hub.queued_message(ch, seq, place, token)))
        if undecided:
            return

        # Decided before this connection was routed: tell it where it stands. It is in
        # line already, so a Redis restart here is waited out rather than reported.
        async def where_it_stands() -> p.ServerMessage | None:
            try:
                outcome = await self._line.outcome(ch.event_id, seq)
            except UnknownTicket:
                return p.Error(code="not_found", message="no such ticket")
            if outcome is None:
                return None
            return await self._hub.outcome_message(ch.event_id, outcome)

        message = await _wait_out_restart(where_it_stands)
        if message is not None and session.waiting:
            session.waiting = False
            session.send(p.encode(message))


async def _wait_out_restart(read: Callable[[], Awaitable[T]]) -> T:
    """``read()``, retried every 0.5 s while Redis is unreachable (ATTACH_ATTEMPTS times)."""
    for _ in range(ATTACH_ATTEMPTS - 1):
        try:
            return await read()
        except StorageUnavailable:
            await anyio.sleep(0.5)
    return await read()


def _refuse(session: ClientSession, code: str, message: str) -> None:
    """Answer the client's last message with an ``error``."""
    session.send(p.encode(p.Error(code=code, message=message)))


async def _turn_away(ws: Any, cap: int) -> None:
    """Refuse a connection over its address's cap: an ``error``, then close (1013)."""
    message = f"at most {cap} connections per address; close one and retry"
    try:
        await ws.send(p.encode(p.Error(code="too_many_connections", message=message)), text=True)
        await ws.close(1013, "too many connections")
    except ConnectionClosed:
        pass


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionClosed):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_disconnect(e) for e in exc.exceptions)
    return False


def _traceparent(ws: Any) -> str:
    """The ``traceparent`` header of the connection's handshake ("" when none)."""
    request = getattr(ws, "request", None)
    value = request.headers.get("traceparent") if request is not None else None
    return value if isinstance(value, str) and len(value) <= 128 else ""


def _peer_ip(ws: Any) -> str:
    """The client's IP address ("" when the transport has none, e.g. a unix socket)."""
    address = getattr(ws, "remote_address", None)
    return str(address[0]) if isinstance(address, tuple) and address else ""
