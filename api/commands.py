"""What each ``booking`` subcommand does once settings and servers are resolved."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from subprocess import PIPE

import anyio
import msgspec

from api.client import ApiError
from api.gateway import SandboxOptions, sandbox_app
from api.http.server import serve_http
from api.logs import say
from api.processes import READY, gateway_env, serving_processes
from api.settings import Settings
from api.wiring import Roles, open_database, open_services, open_stores
from bench.chaos import ChaosPlan, run_chaos
from bench.display import SaleDisplay
from bench.harness import BenchOptions, BenchReport, run_bench
from bench.outputs import write_outputs
from bench.scenarios import SCENARIOS
from engine.catalog import EventCatalog
from engine.eventlog import run_relay
from engine.events import EventSpec, validate_event
from engine.readmodels import replay as replay_event
from engine.reconcile import reconcile as reconcile_all
from plumbing.clock import WallClock
from plumbing.interrupts import open_interrupt
from storage.dev_smtp import dev_smtp_server
from storage.sandbox_store import DB_FILE as GATEWAY_DB_FILE
from storage.sandbox_store import SandboxStore

__all__ = [
    "SaleOptions",
    "bench",
    "chaos",
    "create_event",
    "demo",
    "gateway",
    "migrate",
    "read_event_spec",
    "reconcile",
    "relay",
    "replay",
    "serve",
    "worker",
]

logger = logging.getLogger("booking")


async def serve(settings: Settings, processes: int = 1) -> int:
    """Run the HTTP API and the waiting-room WebSocket until interrupted.

    ``processes`` > 1 runs that many server processes on the same ports and
    supervises them: if one exits, the others are stopped and this returns 1.
    """
    if processes > 1:
        failed = False
        try:
            async with serving_processes(settings, processes) as running:
                _print_serving(settings, running.http_url, running.ws_url, processes)
                for url in running.metrics_urls:
                    say(f"metrics:   {url}")
                await anyio.sleep_forever()
        except* RuntimeError as group:
            for exc in group.exceptions:
                say(f"booking serve: {exc}", logging.ERROR)
            failed = True
        return 1 if failed else 0
    async with open_services(settings, Roles(api=True, worker=False)) as services:
        _print_serving(settings, services.http_url, settings.ws_url(services.ws_port), 1)
        if settings.reuse_port:  # tells a supervising ``serve --processes`` it listens
            print(READY.decode(), flush=True)
        await anyio.sleep_forever()
    return 0


def _print_serving(settings: Settings, http_url: str, ws_url: str, processes: int) -> None:
    each = f" ({processes} processes)" if processes > 1 else ""
    say(f"HTTP API:  {http_url}{each}")
    say(f"WebSocket: {ws_url}{each}")
    if settings.admin_key_generated:
        say(f"admin key (generated; set BOOKING_ADMIN_KEY to choose one): {settings.admin_key}")


async def worker(settings: Settings) -> int:
    """Run an engine worker until interrupted."""
    async with open_services(settings, Roles(api=False, worker=True)) as services:
        say(f"worker running; metrics at {services.http_url}/metrics")
        await anyio.sleep_forever()
    return 0


async def gateway(
    settings: Settings,
    *,
    port: int,
    options: SandboxOptions,
    url_file: Path | None = None,
) -> int:
    """Run the sandbox gateway on ``port`` until interrupted; its state in the data directory.

    ``url_file``: where to write its URL once it listens (written whole, by rename), for the
    process that started it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SandboxStore(settings.data_dir / GATEWAY_DB_FILE)
    try:
        async with anyio.create_task_group() as tg:
            bound = await tg.start(
                partial(serve_http, sandbox_app(store, options), settings.host, port)
            )
            url = f"http://{settings.host}:{bound}"
            say(f"sandbox gateway: {url} (state in {settings.data_dir / GATEWAY_DB_FILE})")
            if url_file is not None:
                partial_file = url_file.with_name(url_file.name + ".tmp")
                partial_file.write_text(url + "\n")
                partial_file.replace(url_file)
            await anyio.sleep_forever()
    finally:
        store.close()
    return 0


async def relay(settings: Settings) -> int:
    """Publish the event log (the Redis streams, the webhooks) until interrupted; any number
    of relays may run, alone or alongside workers."""
    async with open_stores(settings, wait_s=settings.startup_wait_s) as (redis, pg):
        say("relay running")
        await run_relay(pg, redis, settings.relay_policy)
    return 0


async def replay(settings: Settings, event_id: str) -> int:
    """Rebuild an event's read models from its log (one transaction); print how many entries
    were applied and how fast; a bar on a terminal for long logs. 1 if the event has no log."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    async with open_database(settings, wait_s=settings.startup_wait_s) as pg:
        total = await pg.readmodels.log_length(event_id)
        if total == 0:
            say(f"event {event_id!r} has no event log entries", logging.ERROR)
            return 1
        console = Console(stderr=True)
        progress = Progress(
            *Progress.get_default_columns()[:-1],
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        task = progress.add_task(f"replaying {event_id}", total=total)
        started = time.perf_counter()
        with progress:
            applied = await replay_event(
                pg, event_id, progress=lambda done, _: progress.update(task, completed=done)
            )
        elapsed = time.perf_counter() - started
    rate = applied / elapsed if elapsed > 0 else 0.0
    print(
        f"replayed {applied} entries of event {event_id} in {elapsed:.2f} s ({rate:,.0f} entries/s)"
    )
    return 0


async def migrate(settings: Settings) -> int:
    """Apply pending migrations."""
    async with open_database(settings, wait_s=settings.startup_wait_s, migrate=False) as pg:
        applied = await pg.migrate()
    print("applied: " + (", ".join(applied) or "nothing (up to date)"))
    return 0


async def reconcile(settings: Settings) -> int:
    """Make Redis agree with the bookings in PostgreSQL; print what was done; 1 on conflicts."""
    async with open_stores(settings, wait_s=settings.startup_wait_s) as (redis, pg):
        report = await reconcile_all(redis, pg, WallClock())
    print(report.summary())
    if report.conflicts:
        say(
            f"{report.conflicts} bookings conflict with Redis (refunds logged in event_log)",
            logging.WARNING,
        )
    return 1 if report.conflicts else 0


def read_event_spec(body: bytes) -> EventSpec:
    """An event spec from JSON, checked as ``POST /v1/events`` checks it (msgspec errors
    or InvalidRequest when it is not valid)."""
    spec = msgspec.json.decode(body, type=EventSpec)
    validate_event(spec)
    return spec


async def create_event(settings: Settings, spec: EventSpec) -> int:
    """Create an event from a checked spec (read_event_spec); print its id."""
    async with open_stores(settings, wait_s=settings.startup_wait_s) as (redis, pg):
        event_id = await EventCatalog(redis, pg).create(spec)
    print(event_id)
    return 0


@dataclass(frozen=True)
class SaleOptions:
    """The knobs of a simulated sale."""

    clients: int = 3000
    rows: int | None = None  # None: the scenario's default (see seats)
    hold_seconds: int = 10
    pay_ratio: float | None = None  # None: the scenario's
    arrival_s: float | None = None  # None: the scenario's
    json_path: Path | None = None
    scenario: str = "steady"
    max_seconds: float = 300.0
    processes: int = 0
    max_active_holds: int = 300
    plots_dir: Path | None = None
    bench_runtime: str = "asyncio"  # of the bench processes (see BenchOptions.runtime)
    ws_servers: tuple[str, ...] = ()
    challenge_difficulty: int = 0  # the event's join challenge (0: none)
    identity_secret: str = field(default="", repr=False)  # non-empty: identity required

    def argv(self) -> list[str]:
        """These options as ``booking bench`` flags."""
        out = [
            "--clients",
            str(self.clients),
            "--hold-seconds",
            str(self.hold_seconds),
            "--scenario",
            self.scenario,
            "--max-seconds",
            str(self.max_seconds),
            "--processes",
            str(self.processes),
            "--max-active-holds",
            str(self.max_active_holds),
            "--bench-runtime",
            self.bench_runtime,
        ]
        out += ["--rows", str(self.rows)] if self.rows is not None else []
        out += ["--pay-ratio", str(self.pay_ratio)] if self.pay_ratio is not None else []
        out += ["--arrival-seconds", str(self.arrival_s)] if self.arrival_s is not None else []
        out += ["--json", str(self.json_path)] if self.json_path else []
        if self.challenge_difficulty:
            out += ["--challenge-difficulty", str(self.challenge_difficulty)]
        out += ["--identity"] if self.identity_secret else []  # the secret from the environment
        return out + (["--plots", str(self.plots_dir)] if self.plots_dir else [])

    def seats(self) -> int:
        """Seats of the sale's event: ``rows`` of 30; by default, in a flash sale, as many as
        the buyers ask for (0), so that every buyer can hold at once and the rates measure
        the engine rather than buyers waiting for holds to expire; otherwise 1,200."""
        if self.rows is not None:
            return self.rows * 30
        return 0 if SCENARIOS[self.scenario].flash else 1200

    def seats_text(self) -> str:
        """The seats, for a line of the command's output."""
        seats = self.seats()
        return f"{seats} seats" if seats else "as many seats as they ask for"

    def bench_options(self) -> BenchOptions:
        """The harness's options for this sale."""
        return BenchOptions(
            scenario=self.scenario,
            clients=self.clients,
            seats=self.seats(),
            hold_seconds=self.hold_seconds,
            max_active_holds=self.max_active_holds,
            processes=self.processes,
            max_seconds=self.max_seconds,
            pay_ratio=self.pay_ratio,
            arrival_s=self.arrival_s,
            runtime=self.bench_runtime,
            ws_servers=self.ws_servers,
            challenge_difficulty=self.challenge_difficulty,
            identity_secret=self.identity_secret,
        )


async def bench(url: str, admin_key: str, options: SaleOptions) -> int:
    """Run a scenario against the deployment at ``url``; print the summary; 1 if an invariant
    broke, 130 if interrupted (Ctrl-C: the summary is of the clients' results so far)."""
    print(
        f"Bench {options.scenario}: {options.clients} buyers for {options.seats_text()} at {url}",
        file=sys.stderr,
    )
    async with open_interrupt() as interrupted:
        code, _ = await _sale(url, admin_key, options.bench_options(), options, interrupted)
    return code


async def _sale(
    url: str,
    admin_key: str,
    bench_options: BenchOptions,
    options: SaleOptions,
    interrupted: anyio.Event,
) -> tuple[int, BenchReport | None]:
    """The sale with its progress display, then its summary and outputs; the exit code
    (and the report, unless the deployment refused the sale)."""
    try:
        with SaleDisplay() as display:
            report = await run_bench(
                url, admin_key, bench_options, progress=display, stop=interrupted
            )
    except ApiError as exc:  # the deployment refused to set the sale up
        print(f"booking bench: the deployment answered {exc}", file=sys.stderr)
        return 2, None
    print(report.summary(), flush=True)
    write_outputs(report, options.json_path, options.plots_dir)
    if report.interrupted:
        return 130, report
    if report.problems:
        print("\033[1;31mINVARIANTS BROKEN\033[0m", file=sys.stderr)
        return 1, report
    return 0, report


async def chaos(plan: ChaosPlan) -> int:
    """A sale on loopback while workers, Redis and PostgreSQL are crashed; 1 if an invariant broke."""
    print(
        f"Chaos: {plan.clients} buyers for {plan.rows * 30} seats, {plan.workers} workers, "
        f"one SIGKILLed every {plan.kill_every_s:g} s",
        file=sys.stderr,
    )
    report = await run_chaos(plan)
    print(report.summary())
    return 0 if not report.problems else 1


#: How much lower the demo runs its server and bench processes than its worker, Redis
#: and PostgreSQL. A deployment gives the worker a core of its own; here everything
#: shares two, and at 50,000 clients the fan-out processes kept the worker's expiry
#: sweep behind by 1.3 s (trio) and 2.1 s (asyncio; limit 1 s) at nice 0 and 5. At 10
#: it kept up on both. They still get every cycle the worker does not want.
FANOUT_NICENESS = 10


async def _keep_serving(
    settings: Settings,
    count: int,
    interrupted: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[tuple[str, str]],
) -> None:
    """Serve from ``count`` processes until cancelled; started with their (HTTP, WS) URLs.

    Apart from the sale, so that server processes ending on the Ctrl-C that reached
    them too stop neither the sale's partial summary nor the demo; any other exit of
    one fails the demo.
    """
    try:
        async with serving_processes(settings, count, niceness=FANOUT_NICENESS) as running:
            task_status.started((running.http_url, running.ws_url))
            await anyio.sleep_forever()
    except* RuntimeError:
        if not interrupted.is_set():
            raise


async def _run_passing_stderr(argv: list[str], env: dict[str, str]) -> None:
    """Run ``argv``, its stderr (log lines) passed on line by line through this process's
    stderr: above the progress display while one is shown, not through it."""
    async with await anyio.open_process(argv, env=env, stdout=None, stderr=PIPE) as process:
        assert process.stderr is not None
        buffer = b""
        async for chunk in process.stderr:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                print(line.decode(errors="replace"), file=sys.stderr, flush=True)
        if buffer:
            print(buffer.decode(errors="replace"), file=sys.stderr, flush=True)


async def demo(
    settings: Settings,
    options: SaleOptions,
    *,
    worker_process: bool = False,
    server_processes: int = 1,
    keep_open: bool = False,
) -> int:
    """Everything on embedded servers; the buyers run in processes of their own, as they would.

    ``worker_process``: run admission and the expiry sweep in a process of their
    own, as a deployment would, so that WebSocket fan-out cannot starve them of
    the loop. ``server_processes`` > 1: serve the API and WebSocket from that many
    processes on shared ports (``booking serve --processes``). ``keep_open``: after
    the summary, keep the servers up until Ctrl-C, to look at the event.

    The sale is run and shown from this process, so that the servers' log lines print
    above its progress display; Ctrl-C stops the buyers, prints the partial summary,
    and returns 130.
    """
    roles = Roles(api=server_processes <= 1, worker=not worker_process)
    async with open_interrupt() as interrupted, AsyncExitStack() as stack:
        if settings.smtp_url is None:  # confirmation mails land in a maildir to read
            smtp = stack.enter_context(dev_smtp_server(settings.data_dir))
            settings = replace(settings, smtp_url=smtp.url)
            print(f"Mail: SMTP {smtp.url}, every mail kept in {smtp.maildir}", file=sys.stderr)
        env = {
            **os.environ,
            "BOOKING_ADMIN_KEY": settings.admin_key,
            "BOOKING_SECRET": settings.secret,
            "BOOKING_SMTP_URL": settings.smtp_url or "",
        }
        env |= gateway_env(settings)
        tg = await stack.enter_async_context(anyio.create_task_group())
        if server_processes > 1:
            keep = partial(_keep_serving, settings, server_processes, interrupted)
            http_url, ws_url = await tg.start(keep)
        if roles.api or roles.worker:
            services = await stack.enter_async_context(open_services(settings, roles))
            if roles.api:
                http_url, ws_url = services.http_url, settings.ws_url(services.ws_port)
        where = f" ({server_processes} processes)" if server_processes > 1 else ""
        print(f"HTTP API {http_url}, WebSocket {ws_url}{where}", file=sys.stderr)
        if worker_process:
            assert settings.redis_url and settings.database_url
            worker_argv = [sys.executable, "-m", "api.cli", "worker", "--runtime", settings.runtime]
            worker_argv += [
                "--redis-url",
                settings.redis_url,
                "--database-url",
                settings.database_url,
            ]
            worker_argv += ["--metrics-port", str(settings.metrics_port)]
            tg.start_soon(_run_passing_stderr, worker_argv, env)
        print(
            f"Sale {options.scenario}: {options.clients} buyers for {options.seats_text()}",
            file=sys.stderr,
        )
        here = [role for role, on in (("servers", roles.api), ("worker", roles.worker)) if on]
        bench_options = replace(
            options.bench_options(),
            niceness=FANOUT_NICENESS,
            cpu_role=" + ".join(here) or "bench",  # what this process does beside the harness
            store_urls=(settings.redis_url or "", settings.database_url or ""),
            gateway_url=settings.stripe_api_base or "" if settings.gateway == "sandbox" else "",
        )
        code, report = await _sale(
            http_url, settings.admin_key, bench_options, options, interrupted
        )
        if keep_open and report is not None and not interrupted.is_set():
            print(
                f"The servers stay up until Ctrl-C: the waiting-room page is "
                f"{http_url}/events/{report.event_id}, the event {http_url}/v1/events/"
                f"{report.event_id}, the API {http_url}/openapi.json",
                file=sys.stderr,
                flush=True,
            )
            await interrupted.wait()
        tg.cancel_scope.cancel()  # stops the worker and server processes
    return code
