"""Batcher: no added latency, coalescing while a batch is in flight, routing, errors, shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from plumbing.batcher import Batcher, BatcherStopped

pytestmark = [pytest.mark.anyio, pytest.mark.once, pytest.mark.mock_clock(autojump_threshold=0)]

#: A guard against hangs; with the autojumping mock clock it fires at once in real time.
GUARD_S = 60


class GatedHandler:
    """Records each batch; batches block on a gate while ``hold`` is set, so tests steer timing."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []  # every batch the handler was called with, in order
        self.hold = hold  # whether new batches wait for ``release``
        self.entered = anyio.Event()  # set when a batch enters the handler
        self._gate = anyio.Event()  # released batches proceed
        self.fail_with: Exception | None = None  # raised by the next batch, then cleared
        self.extra_results = 0  # results added to (or, if negative, removed from) each answer

    def finish_current(self) -> None:
        """Let the blocked batch finish while later batches still block; re-arm ``entered``."""
        self.entered = anyio.Event()
        gate, self._gate = self._gate, anyio.Event()
        gate.set()

    def release(self) -> None:
        """Let the blocked batch (and every later one) finish."""
        self.hold = False
        self._gate.set()

    async def __call__(self, requests: list[int]) -> Sequence[str]:
        self.batches.append(list(requests))
        self.entered.set()
        if self.hold:
            await self._gate.wait()
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc
        results = [f"r{r}" for r in requests]
        if self.extra_results > 0:
            results += ["extra"] * self.extra_results
        elif self.extra_results < 0:
            results = results[: self.extra_results]
        return results


@asynccontextmanager
async def running(
    batcher: Batcher[int, str],
) -> AsyncIterator[tuple[anyio.abc.TaskGroup, anyio.CancelScope]]:
    """Run the batcher in a task group; yield the group and a scope that stops only the runner."""
    async with anyio.create_task_group() as tg:
        runner_scope = anyio.CancelScope()

        async def run_batcher(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with runner_scope:
                await batcher.run(task_status=task_status)

        await tg.start(run_batcher)
        yield tg, runner_scope
        runner_scope.cancel()


class Caller:
    """One submitter, remembering its result or error."""

    def __init__(self, batcher: Batcher[int, str], request: int) -> None:
        self.request = request
        self.result: str | None = None
        self.error: BaseException | None = None
        self.done = anyio.Event()
        self._batcher = batcher

    async def __call__(self) -> None:
        try:
            self.result = await self._batcher.submit(self.request)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


async def submit_in_order(
    tg: anyio.abc.TaskGroup, batcher: Batcher[int, str], requests: Sequence[int]
) -> list[Caller]:
    """Start one caller per request, each queued before the next starts."""
    callers = []
    for r in requests:
        caller = Caller(batcher, r)
        tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        callers.append(caller)
    return callers


async def test_low_load_submit_is_a_batch_of_one_without_delay() -> None:
    """One submit at a time: each is its own batch and no (virtual) time passes."""
    handler = GatedHandler()
    batcher: Batcher[int, str] = Batcher(handler)
    with anyio.fail_after(GUARD_S):
        async with running(batcher):
            for r in range(5):
                before = anyio.current_time()
                assert await batcher.submit(r) == f"r{r}"
                assert anyio.current_time() == before
    assert handler.batches == [[0], [1], [2], [3], [4]]
    stats = batcher.statistics()
    assert (stats.batches, stats.requests, stats.largest_batch) == (5, 5, 1)


async def test_submits_during_a_batch_are_coalesced_into_the_next() -> None:
    """Requests arriving while a batch is in flight form exactly the next batch."""
    handler = GatedHandler(hold=True)
    batcher: Batcher[int, str] = Batcher(handler)
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, _):
            [first] = await submit_in_order(tg, batcher, [1])
            await handler.entered.wait()
            waiting = await submit_in_order(tg, batcher, [2, 3, 4, 5])
            assert handler.batches == [[1]]  # nothing else started while [1] is in flight
            assert not first.done.is_set()
            handler.release()
            for caller in [first, *waiting]:
                await caller.done.wait()
    assert handler.batches == [[1], [2, 3, 4, 5]]
    assert [c.result for c in [first, *waiting]] == ["r1", "r2", "r3", "r4", "r5"]
    assert batcher.statistics().largest_batch == 4


async def test_coalescing_repeats_batch_after_batch() -> None:
    """Each batch takes exactly what queued up while the previous one ran."""
    handler = GatedHandler(hold=True)
    batcher: Batcher[int, str] = Batcher(handler)
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, _):
            callers = await submit_in_order(tg, batcher, [1])
            await handler.entered.wait()
            callers += await submit_in_order(tg, batcher, [2, 3])
            # let [1] finish; [2, 3] enters and blocks again
            handler.finish_current()
            await handler.entered.wait()
            assert handler.batches == [[1], [2, 3]]
            callers += await submit_in_order(tg, batcher, [4, 5, 6])
            handler.release()
            for caller in callers:
                await caller.done.wait()
    assert handler.batches == [[1], [2, 3], [4, 5, 6]]
    assert [c.result for c in callers] == [f"r{r}" for r in range(1, 7)]


async def test_results_route_to_their_callers_in_order() -> None:
    """Each caller of a batch gets the result at its own index, in submission order."""

    async def handler(requests: list[int]) -> list[str]:
        return [f"{i}:{r}" for i, r in enumerate(requests)]

    gate = GatedHandler(hold=True)

    async def gated(requests: list[int]) -> list[str]:
        await gate(requests)
        return await handler(requests)

    batcher: Batcher[int, str] = Batcher(gated)
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, _):
            callers = await submit_in_order(tg, batcher, [7])
            await gate.entered.wait()
            callers += await submit_in_order(tg, batcher, [30, 10, 20])
            gate.release()
            for caller in callers:
                await caller.done.wait()
    assert gate.batches == [[7], [30, 10, 20]]
    assert [c.result for c in callers] == ["0:7", "0:30", "1:10", "2:20"]


async def test_handler_exception_reaches_every_caller_of_its_batch_only() -> None:
    """An exception raised by the handler is raised in each caller of that batch; later batches work."""
    handler = GatedHandler(hold=True)
    boom = ValueError("storage said no")
    batcher: Batcher[int, str] = Batcher(handler)
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, _):
            [ok] = await submit_in_order(tg, batcher, [1])
            await handler.entered.wait()
            failing = await submit_in_order(tg, batcher, [2, 3, 4])
            handler.finish_current()  # [1] succeeds
            await handler.entered.wait()  # [2, 3, 4] is in flight
            handler.fail_with = boom
            handler.release()
            for caller in [ok, *failing]:
                await caller.done.wait()
            assert await batcher.submit(5) == "r5"  # still serving
    assert ok.result == "r1"
    assert all(c.error is boom and c.result is None for c in failing)
    assert handler.batches == [[1], [2, 3, 4], [5]]


async def test_failed_batch_leaves_queued_requests_to_the_next_batch() -> None:
    """Requests queued behind a failing batch are still served in the following batch."""
    handler = GatedHandler(hold=True)
    batcher: Batcher[int, str] = Batcher(handler)
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, _):
            [bad] = await submit_in_order(tg, batcher, [1])
            await handler.entered.wait()
            queued = await submit_in_order(tg, batcher, [2, 3])
            handler.fail_with = KeyError("x")
            handler.release()
            for caller in [bad, *queued]:
                await caller.done.wait()
    assert isinstance(bad.error, KeyError)
    assert [c.result for c in queued] == ["r2", "r3"]
    assert handler.batches == [[1], [2, 3]]


async def test_max_batch_splits_queued_requests() -> None:
    """More queued requests than max_batch are served in max_batch-sized batches, in order."""
    handler = GatedHandler(hold=True)
    batcher: Batcher[int, str] = Batcher(handler, max_batch=2)
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, _):
            callers = await submit_in_order(tg, batcher, [0])
            await handler.entered.wait()
            callers += await submit_in_order(tg, batcher, [1, 2, 3, 4, 5])
            handler.release()
            for caller in callers:
                await caller.done.wait()
    assert handler.batches == [[0], [1, 2], [3, 4], [5]]
    assert [c.result for c in callers] == [f"r{r}" for r in range(6)]
    stats = batcher.statistics()
    assert (stats.batches, stats.requests, stats.largest_batch) == (4, 6, 2)


async def test_submit_before_run_is_refused() -> None:
    """Submitting to a batcher whose runner has not started raises RuntimeError."""
    handler = GatedHandler()
    batcher: Batcher[int, str] = Batcher(handler, name="orders")
    with pytest.raises(BatcherStopped, match="'orders' is not running"):
        await batcher.submit(1)
    assert handler.batches == []


async def test_submit_after_runner_stopped_is_refused() -> None:
    """Once the runner is cancelled, new submits raise BatcherStopped instead of waiting forever."""
    handler = GatedHandler()
    batcher: Batcher[int, str] = Batcher(handler)
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (_, runner):
            assert await batcher.submit(1) == "r1"
            runner.cancel()
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(BatcherStopped, match="not running"):
                await batcher.submit(2)
    assert handler.batches == [[1]]


async def test_cancelled_runner_fails_in_flight_and_pending_callers() -> None:
    """Cancelling the runner gives the in-flight batch and all queued callers an error, no hang."""
    handler = GatedHandler(hold=True)
    batcher: Batcher[int, str] = Batcher(handler, name="orders")
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, runner):
            in_flight = await submit_in_order(tg, batcher, [1, 2])
            # [1] entered the handler alone; [2] is queued behind it
            assert handler.batches == [[1]]
            pending = await submit_in_order(tg, batcher, [3])
            runner.cancel()
            for caller in [*in_flight, *pending]:
                await caller.done.wait()
    assert handler.batches == [[1]]
    for caller in [*in_flight, *pending]:
        assert isinstance(caller.error, BatcherStopped)
        assert caller.result is None
    assert "cancelled" in str(in_flight[0].error)
    assert all("'orders' stopped" in str(c.error) for c in [in_flight[1], *pending])


@pytest.mark.parametrize("extra", [-1, 1])
async def test_wrong_number_of_results_fails_every_caller(extra: int) -> None:
    """A handler returning too few or too many results fails each caller of that batch."""
    handler = GatedHandler(hold=True)
    batcher: Batcher[int, str] = Batcher(handler, name="orders")
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, _):
            [first] = await submit_in_order(tg, batcher, [1])
            await handler.entered.wait()
            batch = await submit_in_order(tg, batcher, [2, 3, 4])
            handler.extra_results = extra
            handler.release()
            for caller in [first, *batch]:
                await caller.done.wait()
            handler.extra_results = 0
            assert await batcher.submit(5) == "r5"  # the batcher keeps serving
    for caller in [first, *batch]:
        assert isinstance(caller.error, RuntimeError)
        assert "results for" in str(caller.error)
        assert caller.result is None
    assert handler.batches == [[1], [2, 3, 4], [5]]


async def test_cancelled_caller_does_not_disturb_the_batch() -> None:
    """A caller that gives up while queued does not break results for the rest of its batch."""
    handler = GatedHandler(hold=True)
    batcher: Batcher[int, str] = Batcher(handler)
    with anyio.fail_after(GUARD_S):
        async with running(batcher) as (tg, _):
            [first] = await submit_in_order(tg, batcher, [1])
            await handler.entered.wait()
            impatient = anyio.CancelScope()

            async def give_up() -> None:
                with impatient:
                    await batcher.submit(2)

            tg.start_soon(give_up)
            await anyio.wait_all_tasks_blocked()
            [patient] = await submit_in_order(tg, batcher, [3])
            impatient.cancel()
            await anyio.wait_all_tasks_blocked()
            handler.release()
            await first.done.wait()
            await patient.done.wait()
    assert patient.result == "r3"
    assert handler.batches == [[1], [2, 3]]
