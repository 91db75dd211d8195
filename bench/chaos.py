"""A sale run while its processes are crashed: workers SIGKILLed and restarted, Redis and
PostgreSQL restarted, then a report of the invariants.

The deployment runs as separate processes on loopback (``booking serve``, several
``booking worker``), on embedded Redis and PostgreSQL this module starts and
restarts; the buyers are the bench's, over the public interfaces.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio
import httpx
import msgspec

from api.client import ApiError, BookingClient
from bench.sale import SalePlan, SaleReport, demo_event, render_summary, run_sale
from storage.embedded import PostgresServer, RedisServer

__all__ = ["ChaosPlan", "ChaosReport", "WorkerPool", "free_port", "run_chaos"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)


def _booking(*args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", *args]


class WorkerPool:
    """``booking worker`` processes that can be SIGKILLed and restarted."""

    def __init__(
        self, redis_url: str, database_url: str, count: int, *, log: Path | None = None
    ) -> None:
        self._argv = _booking(
            "worker",
            "--redis-url",
            redis_url,
            "--database-url",
            database_url,
            "--metrics-port",
            "0",
        )
        self._count = count  # processes kept running
        self._log = log  # where their output goes (discarded when None)
        self._procs: list[subprocess.Popen[bytes]] = []  # running workers
        self.kills = 0  # SIGKILLs so far

    def _spawn(self) -> subprocess.Popen[bytes]:
        return _spawn(self._argv, dict(os.environ), self._log or Path(os.devnull))

    def start(self) -> None:
        """Start the workers."""
        while len(self._procs) < self._count:
            self._procs.append(self._spawn())

    def alive(self) -> int:
        """How many of the workers are still running."""
        return sum(1 for proc in self._procs if proc.poll() is None)

    def kill_one(self, rng: random.Random) -> int:
        """SIGKILL a random worker and start a replacement; the killed pid."""
        victim = self._procs.pop(rng.randrange(len(self._procs)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.kills += 1
        self.start()
        return victim.pid

    def stop(self) -> None:
        """Stop every worker cleanly (SIGTERM), killing any that hangs."""
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()


@dataclass(frozen=True)
class ChaosPlan:
    """How big the sale is and what breaks during it."""

    clients: int = 5000
    rows: int = 40  # rows of 30 seats
    hold_seconds: int = 5
    arrival_s: float = 20.0
    pay_ratio: float = 0.7
    workers: int = 3
    kill_every_s: float = 3.0  # a worker is SIGKILLed this often
    redis_restart_at_s: float | None = 12.0  # seconds into the sale; None: never
    postgres_restart_at_s: float | None = 20.0
    time_limit_s: float = 240.0  # the sale is stopped after this long
    seed: int = 7


@dataclass
class ChaosReport:
    """The sale's report and what was broken during it."""

    sale: SaleReport
    worker_kills: int
    redis_restarts: int
    postgres_restarts: int
    confirmed_missing_in_postgres: int

    @property
    def oversold(self) -> int:
        """Seats sold more than once (from the audit)."""
        return int(self.sale.audit.get("oversold", -1))

    @property
    def stuck_seats(self) -> int:
        """|capacity - (free + held + sold)| in Redis at the end."""
        a = self.sale.audit
        return abs(
            int(a.get("capacity", 0))
            - int(a.get("free", 0))
            - int(a.get("held", 0))
            - int(a.get("sold", 0))
        )

    @property
    def clients_without_one_outcome(self) -> int:
        """Clients with no terminal outcome (or an error instead)."""
        return sum(
            1 for r in self.sale.results if r.outcome not in ("confirmed", "expired", "sold_out")
        )

    @property
    def client_errors(self) -> int:
        """Errors the buyers saw, terminal outcome or not (a hold that expired is none)."""
        return sum(len(r.errors) for r in self.sale.results)

    @property
    def release_lateness_ms(self) -> int:
        """Worst delay between a hold's deadline and its release (from the audit), ms."""
        return int(self.sale.audit.get("release_lateness_ms", 0))

    @property
    def problems(self) -> list[str]:
        """Every broken invariant.

        Holds ending within hold_seconds + 1 s is not among them: while every worker
        is down or Redis restarts nothing can release a hold; the worst lateness is
        reported instead.
        """
        # A buyer too slow to pay in time gets 409 hold_expired, which is not an error:
        # every client error the sale reports is one.
        out = [p for p in self.sale.problems if not p.startswith("a hold was released")]
        if self.confirmed_missing_in_postgres:
            out.append(
                f"{self.confirmed_missing_in_postgres} confirmed payments missing in PostgreSQL"
            )
        if self.stuck_seats:
            out.append(f"{self.stuck_seats} seats stuck (free + held + sold != capacity)")
        return out

    def summary(self) -> str:
        """The printed report."""
        s = self.sale
        rows = [
            ("clients", f"{len(s.results)}"),
            ("seats", f"{s.capacity}"),
            ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(s.outcomes.items()))),
            ("workers SIGKILLed and restarted", f"{self.worker_kills}"),
            ("Redis restarts", f"{self.redis_restarts}"),
            ("PostgreSQL restarts", f"{self.postgres_restarts}"),
            (
                "seats sold (Redis / PostgreSQL)",
                f"{s.audit.get('sold')} / {s.audit.get('sold_in_postgres')}",
            ),
            ("oversold", f"{self.oversold}"),
            ("confirmed payments missing in PostgreSQL", f"{self.confirmed_missing_in_postgres}"),
            ("seats stuck (free + held + sold != capacity)", f"{self.stuck_seats}"),
            ("clients without exactly one terminal outcome", f"{self.clients_without_one_outcome}"),
            ("worst hold release after its deadline", f"{self.release_lateness_ms} ms"),
            ("errors seen by buyers", f"{self.client_errors}"),
            ("elapsed", f"{s.elapsed_s:.1f} s"),
        ]
        return render_summary("Chaos summary", rows, self.problems)


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=2) as http:
        with anyio.fail_after(timeout_s):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"booking serve exited with {proc.returncode}")
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await anyio.sleep(0.1)


async def _break_things(
    plan: ChaosPlan,
    pool: WorkerPool,
    redis: RedisServer,
    postgres: PostgresServer,
    counts: Counter[str],
    log: TextIO | None,
) -> None:
    """SIGKILL a worker every ``kill_every_s``; restart Redis and PostgreSQL once each."""
    rng = random.Random(plan.seed)
    started = anyio.current_time()
    pending: list[tuple[float, str]] = sorted(
        (at, what)
        for at, what in ((plan.redis_restart_at_s, "redis"), (plan.postgres_restart_at_s, "pg"))
        if at is not None
    )
    next_kill = plan.kill_every_s
    while True:
        now = anyio.current_time() - started
        if pending and pending[0][0] <= now:
            _, what = pending.pop(0)
            if what == "redis":
                await anyio.to_thread.run_sync(redis.stop)
                await anyio.to_thread.run_sync(redis.start)
            else:
                await anyio.to_thread.run_sync(postgres.stop)
                await anyio.to_thread.run_sync(postgres.start)
            counts[what] += 1
            if log:
                print(f"chaos: {what} restarted at {now:.1f} s", file=log)
        if now >= next_kill:
            pid = await anyio.to_thread.run_sync(pool.kill_one, rng)
            next_kill += plan.kill_every_s
            if log:
                print(f"chaos: worker {pid} SIGKILLed at {now:.1f} s", file=log)
        await anyio.sleep(0.1)


async def chaos_sale(
    http_url: str,
    admin_key: str,
    plan: ChaosPlan,
    pool: WorkerPool,
    redis: RedisServer,
    postgres: PostgresServer,
    reconcile_argv: Sequence[str],
    *,
    log: TextIO | None = None,
) -> ChaosReport:
    """Run the sale against a deployment while breaking it; reconcile, audit and report."""
    counts: Counter[str] = Counter()
    event = demo_event(plan.rows, 30, hold_seconds=plan.hold_seconds)
    sale_plan = SalePlan(
        clients=plan.clients, pay_ratio=plan.pay_ratio, arrival_s=plan.arrival_s, seed=plan.seed
    )
    report: SaleReport | None = None
    with anyio.move_on_after(plan.time_limit_s):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_break_things, plan, pool, redis, postgres, counts, log)
            report = await run_sale(http_url, admin_key, event, sale_plan, progress=log)
            tg.cancel_scope.cancel()
    if report is None:
        raise TimeoutError(f"the sale did not finish within {plan.time_limit_s} s")
    # PostgreSQL is the record: one last pass makes Redis agree before the final audit.
    await anyio.run_process(list(reconcile_argv), check=False)
    async with BookingClient(http_url, admin_key=admin_key, timeout_s=30) as client:
        report.audit = msgspec.to_builtins(await client.audit(report.event_id, settled=True))
        missing = 0
        for r in report.results:
            if r.payment_status == 200 and r.booking_id:
                try:
                    await client.booking(r.booking_id)
                except ApiError:
                    missing += 1
    return ChaosReport(
        sale=report,
        worker_kills=pool.kills,
        redis_restarts=counts["redis"],
        postgres_restarts=counts["pg"],
        confirmed_missing_in_postgres=missing,
    )


async def run_chaos(plan: ChaosPlan, *, log: TextIO | None = sys.stderr) -> ChaosReport:
    """Start Redis, PostgreSQL, ``booking serve`` and workers on loopback; run the chaos sale."""
    data_dir = Path(tempfile.mkdtemp(prefix="booking-chaos-"))
    redis = RedisServer(data_dir)
    postgres: PostgresServer | None = None
    serve: subprocess.Popen[bytes] | None = None
    pool: WorkerPool | None = None
    try:
        redis_url = redis.start()
        postgres = await anyio.to_thread.run_sync(PostgresServer, data_dir)
        urls = ["--redis-url", redis_url, "--database-url", postgres.url]
        http_port, ws_port = free_port(), free_port()
        admin_key = "chaos-" + os.urandom(8).hex()
        env = {
            **os.environ,
            "BOOKING_ADMIN_KEY": admin_key,
            "BOOKING_SECRET": os.urandom(16).hex(),
        }
        serve = _spawn(
            _booking("serve", *urls, "--http-port", str(http_port), "--ws-port", str(ws_port)),
            env,
            data_dir / "serve.log",
        )
        http_url = f"http://127.0.0.1:{http_port}"
        await _wait_healthy(http_url, serve, 60)
        pool = WorkerPool(redis_url, postgres.url, plan.workers, log=data_dir / "workers.log")
        pool.start()
        return await chaos_sale(
            http_url,
            admin_key,
            plan,
            pool,
            redis,
            postgres,
            _booking("reconcile", *urls),
            log=log,
        )
    finally:
        if pool is not None:
            pool.stop()
        if serve is not None:
            serve.terminate()
            try:
                serve.wait(timeout=15)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        redis.stop()
        if postgres is not None:
            postgres.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
