"""Keep CPython's cyclic garbage collector off the objects that live as long as a connection.

A server process holding 10,000 WebSocket connections keeps millions of container
objects alive for minutes (tasks, frames, buffers, protocol state), and almost none
of them die in reference cycles: reference counting frees them. The collector still
walks all of them in every full collection, and a full collection comes whenever a
quarter as many objects again have survived the younger generations, which a
connect phase or a busy sale does every few seconds. Measured on a trio server with
~10,000 connections: the collector was on 18 of 30 stack samples, 30 full
collections in four minutes, each finding a few hundred objects.

So objects that survive a full collection are moved to the permanent generation
(``gc.freeze()``), which later collections skip: each full collection then walks
only what arrived since the last one. Once per ``rescan_interval_s`` the frozen
objects are handed back (``gc.unfreeze()``) and the next full collection walks
everything, so cycles among long-lived objects are still found, only later; what
such cycles hold stays allocated until then. Start-up objects (modules, the app)
are frozen at once. The youngest generation is collected every ``young_threshold``
allocations rather than every 700, so objects that live across a few awaits die by
reference counting before a collection has to look at them.

``GC_PAUSES`` records how long each collection held the process, by generation.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Histogram

__all__ = ["GC_PAUSES", "CollectorTuning", "tune_collector"]

GC_PAUSES = Histogram(
    "booking_gc_pause_seconds",
    "Time the process spent in one cyclic garbage collection, by generation.",
    ["generation"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
)


class CollectorTuning:
    """A ``gc.callbacks`` hook: times collections; freezes what survives a full one."""

    def __init__(
        self,
        *,
        rescan_interval_s: float = 300.0,
        young_threshold: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rescan_interval_s >= 0:
            raise ValueError("rescan_interval_s must not be negative")
        if young_threshold < 1:
            raise ValueError("young_threshold must be at least 1")
        self.rescan_interval_s = rescan_interval_s  # time between full rescans
        self.young_threshold = young_threshold  # allocations between young collections
        self.full_collections = 0  # seen since install
        self.rescans = 0  # full collections that walked every object
        self._clock = clock  # for the rescan interval
        self._rescan_due_at = 0.0  # clock time from which the next rescan is due
        self._rescanning = False  # the next full collection walks everything
        self._old_thresholds = gc.get_threshold()  # restored by uninstall
        self._started = 0.0  # perf_counter at the start of the running collection
        self._pauses = [GC_PAUSES.labels(str(g)) for g in range(3)]

    def install(self) -> None:
        """Freeze what exists now and hook every later collection."""
        self._old_thresholds = gc.get_threshold()
        gc.set_threshold(self.young_threshold, *self._old_thresholds[1:])
        self._rescan_due_at = self._clock() + self.rescan_interval_s
        gc.freeze()
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        """Unhook, restore the thresholds and hand every frozen object back."""
        if self in gc.callbacks:
            gc.callbacks.remove(self)
        gc.set_threshold(*self._old_thresholds)
        gc.unfreeze()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self._pauses[generation].observe(time.perf_counter() - self._started)
        if generation != 2:
            return
        # A full collection has just merged every survivor into the oldest generation.
        self.full_collections += 1
        if self._rescanning:
            self.rescans += 1
            self._rescanning = False
        now = self._clock()
        if now >= self._rescan_due_at:
            self._rescan_due_at = now + self.rescan_interval_s
            self._rescanning = True
            gc.unfreeze()  # the next full collection walks everything once
        else:
            gc.freeze()


def tune_collector() -> CollectorTuning:
    """Install the tuning for this process (once; later calls return the same hook)."""
    for hook in gc.callbacks:
        if isinstance(hook, CollectorTuning):
            return hook
    tuning = CollectorTuning()
    tuning.install()
    return tuning
