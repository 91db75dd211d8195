"""A bench process: runs its share of the simulated clients and reports over stdout.

The parent (``bench.harness``) writes one ``Job`` as JSON to stdin; this
process answers with JSON lines on stdout: ``Progress`` every half second,
then one ``Done`` with every client's result. It stops by itself at the job's
deadline, and early on SIGINT or SIGTERM, still answering ``Done`` with what its
clients saw so far. One process holds at most ~19,000 sockets (20,000 open files).
"""

from __future__ import annotations

import os
import sys
import time

import anyio
import msgspec

from api.client import BookingClient
from bench.client import Behaviour, ClientResult, run_client
from bench.scenarios import ClientSpec
from bench.tally import Tally, tally_of
from plumbing.gc_tuning import tune_collector
from plumbing.interrupts import open_interrupt
from plumbing.runtime import run

__all__ = ["Done", "Job", "Progress", "main", "progress_of", "run_job"]


class Job(msgspec.Struct, frozen=True):
    """What one bench process is asked to do."""

    worker: int
    http_url: str
    waitroom_url: str
    hold_seconds: float
    clients: list[ClientSpec]
    local_addresses: list[str]  # source addresses, used round-robin
    deadline: float  # wall time at which everything stops, s since the epoch
    connect_concurrency: int = 200
    http_connections: int = 64
    storm_after_joined_s: float = 0.0  # this long after all joined, the storm (0: none)
    niceness: int = 0  # how much lower than its parent the process runs (0-19)
    identity_secret: str = ""  # each client joins with an identity token signed with it


class Progress(msgspec.Struct, frozen=True, tag=True):
    """Counts so far."""

    worker: int
    tally: Tally


class Done(msgspec.Struct, frozen=True, tag=True):
    """Every client's result."""

    worker: int
    results: list[ClientResult]
    stopped_early: bool


Report = Progress | Done


async def run_job(
    job: Job, out: anyio.abc.ByteSendStream | None = None, stop: anyio.Event | None = None
) -> Done:
    """Run the job's clients to their outcomes (or the deadline, or ``stop``); stream
    progress to ``out``."""
    encoder = msgspec.json.Encoder()
    results = [
        ClientResult(c.client_id, Behaviour(c.behaviour), c.quantity, worker=job.worker)
        for c in job.clients
    ]
    storm = anyio.Event()
    finished = anyio.Event()
    stopped_early = True
    rest = BookingClient(job.http_url, max_connections=job.http_connections, timeout_s=None)
    try:
        limiter = anyio.CapacityLimiter(job.connect_concurrency)
        started = time.time()

        async def one(i: int, spec: ClientSpec) -> None:
            await anyio.sleep(spec.arrival_s)
            address = job.local_addresses[i % len(job.local_addresses)]
            await run_client(
                job.waitroom_url,
                rest,
                results[i],
                hold_seconds=job.hold_seconds,
                think_s=spec.think_s,
                connect_limiter=limiter,
                local_address=(address, 0),
                leave_after_s=spec.leave_after_s,
                reconnect_at=storm if spec.reconnects else None,
                identity_secret=job.identity_secret,
            )

        async def report() -> None:
            while not finished.is_set():
                with anyio.move_on_after(0.5):
                    await finished.wait()
                if out is not None:
                    await out.send(encoder.encode(progress_of(job.worker, results)) + b"\n")

        async def storm_after_joined(delay: float) -> None:
            # Polls: thousands of clients fill in their results; one waiter checks them.
            while sum(1 for r in results if r.ticket or r.outcome) < len(results):  # noqa: ASYNC110
                await anyio.sleep(0.05)
            await anyio.sleep(delay)
            storm.set()

        async def stop_early(scope: anyio.CancelScope, stop: anyio.Event) -> None:
            await stop.wait()
            scope.cancel()

        with anyio.move_on_after(max(0.0, job.deadline - started)) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(report)
                if stop is not None:
                    tg.start_soon(stop_early, scope, stop)
                if job.storm_after_joined_s:
                    tg.start_soon(storm_after_joined, job.storm_after_joined_s)
                async with anyio.create_task_group() as clients:
                    for i, spec in enumerate(job.clients):
                        clients.start_soon(one, i, spec)
                stopped_early = False
                finished.set()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await rest.aclose()
    return Done(job.worker, results, stopped_early)


def progress_of(worker: int, results: list[ClientResult]) -> Progress:
    """The counts a bench process reports while its clients run."""
    return Progress(worker, tally_of(results))


async def _main(runtime_input: bytes) -> int:
    job = msgspec.json.decode(runtime_input, type=Job)
    stdout = anyio.wrap_file(sys.stdout.buffer)

    class _Out(anyio.abc.ByteSendStream):
        async def send(self, item: bytes) -> None:
            await stdout.write(item)
            await stdout.flush()

        async def send_eof(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    out = _Out()
    if job.niceness:
        os.nice(job.niceness)
    async with open_interrupt() as interrupted:  # Ctrl-C: stop the clients, still report
        done = await run_job(job, out, interrupted)
        await out.send(msgspec.json.encode(done) + b"\n")
    return 0


def main() -> int:
    """Entry point: ``python -m bench.procs [runtime] < job.json``."""
    runtime = sys.argv[1] if len(sys.argv) > 1 else "trio"
    data = sys.stdin.buffer.read()
    tune_collector()
    result = run(lambda: _main(data), runtime)
    return 130 if result is None else result


if __name__ == "__main__":
    sys.exit(main())
