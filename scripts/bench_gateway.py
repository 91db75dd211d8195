"""The Stripe adapter's own rate: charges per second from one process, ``--concurrency`` at a
time, against a sandbox gateway process of its own (on asyncio + uvloop, as ``serve`` starts
it), and the CPU each charge costs the client (``stripe``, its HTTP transport and the adapter) and the
sandbox process. ``--profile FILE`` writes the client's cProfile stats.

    PYTHONPATH=. .venv/bin/python scripts/bench_gateway.py [--runtime trio] [--charges 4000]
"""

from __future__ import annotations

import argparse
import cProfile
import secrets
import sys
import tempfile
import time
from pathlib import Path

import anyio

from bench.cpu import tree_seconds
from storage.embedded import GATEWAY_URL_FILE, start_gateway_process
from storage.stripe_gateway import StripeGateway


async def _run(url: str, charges: int, concurrency: int) -> tuple[int, float]:
    gateway = StripeGateway("sk_test_bench", api_base=url, sandbox=True)
    done = 0
    prefix = secrets.token_hex(4)

    async def payer(first: int) -> None:
        nonlocal done
        for i in range(first, charges, concurrency):
            charge = await gateway.charge(
                amount_cents=1_000,
                currency="EUR",
                card_token="tok_visa",
                idempotency_key=f"bench-{prefix}-{i}",
            )
            assert charge.reference
            done += 1

    try:
        for i in range(concurrency):  # warm: connections opened, code paths imported
            await gateway.charge(
                amount_cents=1_000,
                currency="EUR",
                card_token="tok_visa",
                idempotency_key=f"warm-{prefix}-{i}",
            )
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for first in range(concurrency):
                tg.start_soon(payer, first)
        return done, time.perf_counter() - started
    finally:
        await gateway.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("trio", "asyncio"), default="trio")
    parser.add_argument("--charges", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", type=Path, help="write the client's cProfile stats here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="booking-gwbench-") as tmp:
        argv = [sys.executable, "-m", "api.cli", "gateway", "--runtime", "asyncio"]
        proc = start_gateway_process(argv, Path(tmp))
        try:
            url = (Path(tmp) / GATEWAY_URL_FILE).read_text().strip()
            own0, sbx0 = time.process_time(), tree_seconds(proc.pid)
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            backend_options = {"use_uvloop": True} if args.runtime == "asyncio" else {}
            done, elapsed = anyio.run(
                _run,
                url,
                args.charges,
                args.concurrency,
                backend=args.runtime,
                backend_options=backend_options,
            )
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            own1, sbx1 = time.process_time(), tree_seconds(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    warm = args.concurrency
    client_ms = (own1 - own0) * 1000 / (done + warm)
    sandbox_ms = (sbx1 - sbx0) * 1000 / (done + warm)
    print(
        f"{done} charges in {elapsed:.2f} s: {done / elapsed:.0f} charges/s "
        f"({args.runtime}, {args.concurrency} at a time); CPU per charge: client "
        f"{client_ms:.2f} ms, sandbox {sandbox_ms:.2f} ms"
    )


if __name__ == "__main__":
    main()
