"""The prompts this server has routed to its clients of one event and not yet written.

Admission is paced by it: each server reports its count per event to the store a few
times a second (``Hub``), and the worker admits nobody while the servers' counts
(with the admissions they have not read yet) reach its bound. A prompt counts from
the moment the hub queues it on a session until the session writes it
(``ClientSession.send``'s ``on_written``, called once after the socket write), the
connection goes (``forget``: it will never be written), or its hold runs out
(``lapse``: a client that stops reading its socket holds admission back no longer
than its hold would).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial

__all__ = ["DeliveryBacklog"]


class _Prompt:
    """One prompt queued on a session."""

    __slots__ = ("counted", "deadline_ms", "session")

    def __init__(self, session: object, deadline_ms: int) -> None:
        self.session = session  # the connection it is queued on
        self.deadline_ms = deadline_ms  # when its hold runs out, ms since the epoch
        self.counted = True  # still in the backlog


class DeliveryBacklog:
    """Prompts queued on this server's sessions of one event, not yet written."""

    def __init__(self) -> None:
        self.count = 0  # prompts queued and not yet written, over every session
        self.routed = 0  # prompts queued here ever (position rounds leave them the frames)
        self._by_session: dict[object, list[_Prompt]] = {}  # session -> its counted prompts
        #: Every prompt queued, in order (holds are made in order: deadlines nearly are),
        #: until it is at the front and done or due.
        self._in_order: deque[_Prompt] = deque()

    def queued(self, session: object, deadline_ms: int) -> Callable[[], None]:
        """Count a prompt queued on ``session`` whose hold ends at ``deadline_ms``; call the
        answer once it is written."""
        prompt = _Prompt(session, deadline_ms)
        self._by_session.setdefault(session, []).append(prompt)
        self._in_order.append(prompt)
        self.count += 1
        self.routed += 1
        return partial(self._done, prompt)

    def _done(self, prompt: _Prompt) -> None:
        if not prompt.counted:  # already written, forgotten or lapsed
            return
        prompt.counted = False
        self.count -= 1
        prompts = self._by_session.get(prompt.session)
        if prompts is not None:
            prompts.remove(prompt)  # a session has a prompt or two at most
            if not prompts:
                del self._by_session[prompt.session]

    def forget(self, session: object) -> None:
        """The connection is gone: its unwritten prompts will never be written."""
        for prompt in self._by_session.pop(session, []):
            prompt.counted = False
            self.count -= 1

    def lapse(self, now_ms: int) -> None:
        """Stop counting the prompts whose hold has run out by ``now_ms``."""
        queue = self._in_order
        while queue and (not queue[0].counted or queue[0].deadline_ms <= now_ms):
            self._done(queue.popleft())
