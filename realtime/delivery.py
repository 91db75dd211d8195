"""The prompts this server has routed to its clients of one event and not yet written.

Admission is paced by it: each server reports its count per event to the store a few
times a second (``Hub``), and the worker admits nobody while the servers' counts
(with the admissions they have not read yet) reach its bound. A prompt counts from
the moment the hub queues it on a session until the session writes it
(``ClientSession.send``'s ``on_written``, called once after the socket write) or the
connection goes (``forget``: a prompt that will never be written counts no more).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

__all__ = ["DeliveryBacklog"]


class DeliveryBacklog:
    """Prompts queued on this server's sessions of one event, not yet written."""

    def __init__(self) -> None:
        self.count = 0  # prompts queued and not yet written, over every session
        self._pending: dict[object, int] = {}  # session -> its prompts not yet written

    def queued(self, session: object) -> Callable[[], None]:
        """Count a prompt queued on ``session``; call the answer once it is written."""
        self._pending[session] = self._pending.get(session, 0) + 1
        self.count += 1
        return partial(self._written, session)

    def _written(self, session: object) -> None:
        n = self._pending.get(session, 0)
        if n == 0:  # forgotten already: the connection went before the write returned
            return
        if n == 1:
            del self._pending[session]
        else:
            self._pending[session] = n - 1
        self.count -= 1

    def forget(self, session: object) -> None:
        """The connection is gone: its unwritten prompts will never be written."""
        self.count -= self._pending.pop(session, 0)
