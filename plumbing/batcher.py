"""Coalesce concurrent requests into batches: one round trip serves many callers.

A :class:`Batcher` takes whatever requests are waiting when the previous batch
finishes; there is no fixed delay, so at low load a batch holds one request and
adds no latency, and under load batches grow by themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

__all__ = ["Batcher", "BatcherStatistics", "BatcherStopped"]

Req = TypeVar("Req")
Res = TypeVar("Res")


class BatcherStopped(RuntimeError):
    """The batcher is not running: not started yet, or shut down (its callers' work is
    not done)."""


@dataclass(slots=True)
class BatcherStatistics:
    """Counters for introspection and metrics."""

    batches: int = 0
    requests: int = 0
    largest_batch: int = 0


class _Slot(Generic[Req, Res]):
    __slots__ = ("done", "error", "request", "result")

    def __init__(self, request: Req) -> None:
        self.request = request  # what the caller asked for
        self.done = anyio.Event()  # set once result or error is filled in
        self.result: Res | None = None  # the answer for this caller
        self.error: BaseException | None = None  # or the failure of its batch


@dataclass
class Batcher(Generic[Req, Res]):
    """Run ``handler`` over batches of requests submitted concurrently.

    ``handler`` gets a list of requests and returns one result per request, in
    order. If it raises, every caller in that batch gets the exception.
    Start :meth:`run` in a task group before submitting.
    """

    handler: Callable[[list[Req]], Awaitable[Sequence[Res]]]
    max_batch: int = 500
    name: str = "batch"
    _pending: list[_Slot[Req, Res]] = field(default_factory=list)
    _wakeup: anyio.Event = field(default_factory=anyio.Event)
    _stats: BatcherStatistics = field(default_factory=BatcherStatistics)
    _running: bool = False

    async def submit(self, request: Req) -> Res:
        """Queue ``request`` for the next batch and wait for its result."""
        if not self._running:
            raise BatcherStopped(f"batcher {self.name!r} is not running")
        slot: _Slot[Req, Res] = _Slot(request)
        self._pending.append(slot)
        self._wakeup.set()
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def statistics(self) -> BatcherStatistics:
        """Return batch counters."""
        return self._stats

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve batches until cancelled."""
        self._running = True
        task_status.started()
        try:
            while True:
                if not self._pending:
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                slots = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._serve(slots)
        finally:
            self._running = False
            for slot in self._pending:
                slot.error = BatcherStopped(f"batcher {self.name!r} stopped")
                slot.done.set()

    async def _serve(self, slots: list[_Slot[Req, Res]]) -> None:
        stats = self._stats
        stats.batches += 1
        stats.requests += len(slots)
        stats.largest_batch = max(stats.largest_batch, len(slots))
        try:
            results = await self.handler([slot.request for slot in slots])
        except Exception as exc:
            for slot in slots:
                slot.error = exc
                slot.done.set()
            return
        except BaseException:  # cancelled: callers must not hang
            for slot in slots:
                slot.error = BatcherStopped(f"batcher {self.name!r} was cancelled mid-batch")
                slot.done.set()
            raise
        if len(results) != len(slots):
            error = RuntimeError(f"{self.name}: {len(results)} results for {len(slots)} requests")
            for slot in slots:
                slot.error = error
                slot.done.set()
            return
        for slot, result in zip(slots, results, strict=True):
            slot.result = result
            slot.done.set()
