"""The collector tuning freezes what survives a full collection and still finds old cycles."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from plumbing.gc_tuning import GC_PAUSES, CollectorTuning, tune_collector


class Node:
    """A container that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


class ManualClock:
    """The tuning's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def tuning(clock: ManualClock) -> Iterator[CollectorTuning]:
    hook = CollectorTuning(rescan_interval_s=100, young_threshold=5_000, clock=clock)
    hook.install()
    try:
        yield hook
    finally:
        hook.uninstall()


def _cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def test_survivors_of_a_full_collection_are_frozen(tuning: CollectorTuning) -> None:
    kept = [Node() for _ in range(1_000)]
    before = gc.get_freeze_count()
    gc.collect()
    assert tuning.full_collections == 1
    assert gc.get_freeze_count() >= before + len(kept)
    assert gc.get_count()[2] == 0  # nothing left for the next full collection to walk


def test_a_frozen_cycle_is_found_at_the_rescan(tuning: CollectorTuning, clock: ManualClock) -> None:
    keep, ref = _cycle()
    gc.collect()  # the cycle is alive, so it survives and is frozen
    del keep  # now it is garbage, but frozen
    gc.collect()  # frozen objects are not walked
    assert ref() is not None
    clock.now = 100  # the rescan is due: this collection hands the frozen objects back
    gc.collect()
    assert ref() is not None
    assert gc.get_freeze_count() == 0
    gc.collect()  # walks everything and finds the cycle, then freezes again
    assert ref() is None
    assert tuning.rescans == 1
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert tuning.rescans == 1  # the next one is due at 200


def test_young_collections_wait_for_more_allocations(tuning: CollectorTuning) -> None:
    assert gc.get_threshold()[0] == 5_000
    before = gc.get_threshold()
    tuning.uninstall()
    assert gc.get_threshold()[0] != 5_000
    tuning.install()
    assert gc.get_threshold() == before


def test_young_cycles_are_still_collected(tuning: CollectorTuning) -> None:
    ref = _cycle()[1]
    gc.collect(0)
    assert ref() is None


def test_pauses_are_recorded_by_generation(tuning: CollectorTuning) -> None:
    full = GC_PAUSES.labels("2")
    before = _samples(full)
    gc.collect()
    gc.collect()
    assert _samples(full) == before + 2


def test_installed_once_per_process() -> None:
    first = tune_collector()
    try:
        assert tune_collector() is first
        assert sum(isinstance(h, CollectorTuning) for h in gc.callbacks) == 1
    finally:
        first.uninstall()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="rescan_interval_s"):
        CollectorTuning(rescan_interval_s=-1)
    with pytest.raises(ValueError, match="young_threshold"):
        CollectorTuning(young_threshold=0)


def _samples(histogram: object) -> float:
    for metric in histogram.collect():  # type: ignore[attr-defined]
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    raise AssertionError("histogram has no _count sample")
