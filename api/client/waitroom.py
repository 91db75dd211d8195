"""The waiting room over its WebSocket, typed: join or resume, positions, the prompt, the outcome."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from api.client.challenge import solve_challenge
from api.client.ws import WsConnection, connect_ws
from realtime import protocol as p

__all__ = ["Outcome", "WaitingRoom", "WaitroomError"]

#: How a place in line ends.
Outcome = p.Confirmed | p.Expired | p.SoldOut | p.Left


class WaitroomError(Exception):
    """The server refused the last message (an ``error`` message): its ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class WaitingRoom:
    """One buyer's connection to an event's waiting room.

    ``queued`` is the latest ``queued`` answer (its ``token`` resumes the place on a
    new connection), ``prompt`` the hold offered once the buyer's turn came,
    ``sold_out_for_now`` whether the event is sold out with the place kept. The
    methods skip heartbeats and pongs; an ``error`` message raises
    :class:`WaitroomError`. :meth:`receive` is the message stream itself, for
    callers that handle every message.
    """

    def __init__(self, ws: WsConnection) -> None:
        self.ws = ws  # the connection
        self.queued: p.Queued | None = None  # the latest place in line
        self.prompt: p.Prompt | None = None  # the hold offered, once prompted
        self._outcome: Outcome | None = None  # how the place ended, once it has
        #: The latest ``queued`` or ``position`` said the event is sold out for now: the
        #: place is kept, and seats come to it in order if bookings are cancelled.
        self.sold_out_for_now = False

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        *,
        open_timeout: float = 60,
        local_address: tuple[str, int] | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[WaitingRoom]:
        """Open ``url`` (an event's ``waitroom_url``); closed on leaving the block.
        ``headers``: sent with the handshake."""
        async with connect_ws(
            url, open_timeout=open_timeout, local_address=local_address, headers=headers
        ) as ws:
            yield cls(ws)

    async def send(self, message: p.ClientMessage) -> None:
        """Send one message."""
        await self.ws.send(p.encode(message), text=True)

    async def receive(self) -> p.ServerMessage:
        """The next message, whatever it is (``queued``, ``prompt`` and outcomes are kept)."""
        message: p.ServerMessage = p.server_decoder.decode(await self.ws.recv(decode=False))
        match message:
            case p.Queued():
                self.queued = message
                self.sold_out_for_now = message.sold_out_for_now
            case p.Position():
                self.sold_out_for_now = message.sold_out_for_now
            case p.Prompt():
                self.prompt = message
            case p.Confirmed() | p.Expired() | p.SoldOut() | p.Left():
                self._outcome = message
            case _:
                pass
        return message

    async def join(
        self,
        client_id: str,
        quantity: int = 1,
        section: str | None = None,
        *,
        identity: str | None = None,
        challenge: str | None = None,
    ) -> p.Queued | p.SoldOut:
        """Take a place in line for ``quantity`` seats (in ``section``, or any): ``queued``,
        or ``sold_out`` when nothing is left to wait for. ``identity``: the identity token
        an event that requires one asks for (refused: WaitroomError with its code).
        When the event asks for proof of work the server answers with a ``challenge``:
        it is solved (in a thread) and the join sent again with the solution.
        ``challenge``: a join challenge solved beforehand (``solve_challenge`` of ``GET
        /v1/events/{id}/challenge``), to skip that round trip."""
        join = p.Join(
            quantity=quantity,
            client_id=client_id,
            section=section,
            identity=identity,
            challenge=challenge,
        )
        await self.send(join)
        message = await self._next()
        if isinstance(message, p.Challenge) and challenge is None:
            solved = await solve_challenge(message)
            await self.send(msgspec.structs.replace(join, challenge=solved))
            message = await self._next()
        if not isinstance(message, p.Queued | p.SoldOut):
            raise _unexpected("queued", message)
        return message

    async def resume(self, token: str) -> p.Queued:
        """Reattach to a place with the ``token`` of an earlier ``queued`` (after a reconnect).

        The place's prompt or outcome, if it came meanwhile, follows.
        """
        await self.send(p.Resume(token=token))
        message = await self._next()
        if not isinstance(message, p.Queued):
            raise _unexpected("queued", message)
        return message

    async def until_prompt(self) -> AsyncGenerator[p.Position, None]:
        """Each ``position`` update while waiting; ends when the prompt arrives (``prompt``
        is then set) or the place ends without one (:meth:`outcome` says how). A caller
        that stops early closes it (``contextlib.aclosing``)."""
        while self.prompt is None and self._outcome is None:
            message = await self._next()
            if isinstance(message, p.Position):
                yield message

    async def outcome(self) -> Outcome:
        """How the place ended: ``confirmed``, ``expired``, ``sold_out`` or ``left`` (waits
        for it, skipping position updates and a repeated prompt)."""
        while self._outcome is None:
            await self._next()
        return self._outcome

    async def _next(self) -> p.ServerMessage:
        """The next message that is not a heartbeat or pong; an ``error`` raises."""
        while True:
            message = await self.receive()
            if isinstance(message, p.Error):
                raise WaitroomError(message.code, message.message)
            if not isinstance(message, p.Heartbeat | p.Pong):
                return message


def _unexpected(expected: str, message: p.ServerMessage) -> WaitroomError:
    return WaitroomError("unexpected_message", f"expected {expected}, got {message!r}")
