"""A typed Python client of the v1 interface: REST (:class:`BookingClient`) and the
waiting room's WebSocket (:class:`WaitingRoom`), on trio or asyncio.

It imports only the wire types (``api.http.schemas`` for REST, ``realtime.protocol``
for the WebSocket) and no other part of the program, so the bench and other
programs use it without loading the engine. Error answers raise :class:`ApiError`
(``status``, ``code``, ``message``); a refused WebSocket message raises
:class:`WaitroomError` (``code``, ``message``).
"""

from api.client.challenge import solve_challenge
from api.client.rest import AlreadyCheckedIn, ApiError, BookingClient
from api.client.waitroom import Outcome, WaitingRoom, WaitroomError

__all__ = [
    "AlreadyCheckedIn",
    "ApiError",
    "BookingClient",
    "Outcome",
    "WaitingRoom",
    "WaitroomError",
    "solve_challenge",
]
