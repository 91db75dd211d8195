"""``booking bench``: a scenario run over several bench processes, checked and reported.

The harness creates an event over the admin REST API, splits the scenario's
clients over bench processes (``bench.procs``, each holding its share of
WebSockets from its own 127.0.x.y source addresses), samples the event's queue
while they run, then audits the event and checks the invariants. Loopback
only; bounded in clients and in time (``max_seconds`` stops everything, and so
does ``stop``: the processes are told to stop and report what they have).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import msgspec

from api.client import ApiError, BookingClient
from bench.client import IDENTITY_AUDIENCE, IDENTITY_ISSUER, ClientResult
from bench.cpu import ROLES, CpuMeter
from bench.display import ProgressSink, SaleFrame, plural
from bench.procs import Done, Job, Progress, Report
from bench.sale import SaleReport, render_summary, scrape_counters
from bench.scenarios import SCENARIOS, ClientSpec, Scenario, event_body, plan_clients
from bench.tally import Tally, tally_of

__all__ = [
    "MAX_CLIENTS",
    "BenchOptions",
    "BenchReport",
    "Sample",
    "check_invariants",
    "require_loopback",
    "run_bench",
]

#: The most clients one run may simulate.
MAX_CLIENTS = 200_000
#: Clients per bench process: each socket is an open file, 20,000 per process.
CLIENTS_PER_PROCESS = 19_000
#: How often the harness reads every process's CPU counters, seconds (a read of /proc
#: costs ~2 ms with a few hundred processes: ~1 % of a core at this pace).
CPU_SAMPLE_S = 0.25
#: Clients per source address (ephemeral ports run out near 28,000).
CLIENTS_PER_ADDRESS = 20_000


@dataclass(frozen=True)
class BenchOptions:
    """One run: the scenario, its size, and its bounds."""

    scenario: str = "steady"
    clients: int = 3000
    #: 0: as many as the buyers ask for (up to the 200,000 an event may have), so that
    #: every buyer can hold at once and the rates measure the engine, not buyers
    #: waiting for holds to expire.
    seats: int = 1200
    hold_seconds: int = 10
    max_active_holds: int = 300
    processes: int = 0  # 0: one per CLIENTS_PER_PROCESS clients, at least 2 from 2,000 clients
    max_seconds: float = 300.0
    pay_ratio: float | None = None  # overrides the scenario's
    arrival_s: float | None = None  # overrides the scenario's
    seed: int = 1
    #: Of the bench processes, whatever the servers run: asyncio + uvloop is the cheaper
    #: load generator (at 50,000 clients 34-42 µs of CPU per prompt received, trio's
    #: 47-58), and one load generator for both server runtimes compares the servers.
    runtime: str = "asyncio"
    connect_concurrency: int = 200  # per process
    http_connections: int = 64  # per process
    #: WebSocket servers (``ws://host:port``) to spread the clients over, one per bench
    #: process in turn; empty: the one the event names. Past ~19,000 clients a server
    #: process runs out of open files, so bigger runs need several.
    ws_servers: tuple[str, ...] = ()
    #: How much lower than this process the bench processes run (0-19).
    niceness: int = 0
    #: The join challenge's difficulty (0: none); each client solves one, as a page does.
    challenge_difficulty: int = 0
    #: Non-empty: the event requires a verified identity (HS256 tokens signed with this,
    #: the deployment's ``BOOKING_IDENTITY_SECRET``) and each client joins with its own.
    identity_secret: str = field(default="", repr=False)
    #: What this process is, for the CPU by role ("bench": the harness alone; the demo
    #: serves from it too). The stores' URLs name the Redis and PostgreSQL to measure.
    cpu_role: str = "bench"
    store_urls: tuple[str, str] = ("", "")
    #: The sandbox payment gateway's URL, to measure it wherever it was started ("": not
    #: measured unless it runs under this process).
    gateway_url: str = ""

    def scenario_spec(self) -> Scenario:
        """The scenario with this run's overrides."""
        spec = SCENARIOS[self.scenario]
        if self.pay_ratio is not None:  # the share who pay, some after a declined card
            payers = spec.pay + spec.decline_then_pay
            spec = msgspec.structs.replace(
                spec,
                pay=self.pay_ratio * spec.pay / payers,
                decline_then_pay=self.pay_ratio * spec.decline_then_pay / payers,
            )
        if self.arrival_s is not None:
            spec = msgspec.structs.replace(spec, arrival_s=self.arrival_s)
        return spec

    def process_count(self) -> int:
        """Bench processes for this many clients."""
        if self.processes:
            return self.processes
        return max(math.ceil(self.clients / CLIENTS_PER_PROCESS), 2 if self.clients >= 2000 else 1)


class Sample(msgspec.Struct, frozen=True, array_like=True):
    """The event seen from outside at one moment."""

    elapsed_s: float  # since the start
    queue_length: int
    active_holds: int
    state: str


@dataclass
class BenchReport(SaleReport):
    """A sale report with the scenario's context and the queue over time."""

    scenario: str = ""
    started_at: float = 0.0  # wall time the clients were started, s
    opened_at: float = 0.0  # wall time admission started, s
    samples: list[Sample] = field(default_factory=list)
    stopped_early: bool = False
    processes: int = 1
    interrupted: bool = False  # stopped by a signal (Ctrl-C): the results are partial
    seats_requested: int = 0  # the seats every buyer asked for, together
    seats_sized_to_demand: bool = False  # the event was made with as many seats
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds by role
    #: (wall time, CPU seconds by role since the start) through the sale, a few a second
    cpu_track: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)  # at the end of the sale

    @property
    def problems(self) -> list[str]:
        """Broken invariants (and an early stop, which proves nothing)."""
        out = check_invariants(self.results, self.audit)
        if self.interrupted:
            out.append("interrupted before every client finished")
        elif self.stopped_early:
            out.append("stopped by --max-seconds before every client finished")
        return out

    def admissions_per_s(self) -> float:
        """Holds made per second, from the first to the last (of clients who got a prompt)."""
        times = sorted(r.admitted_at for r in self.results if r.prompted_at)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def busiest_admissions_per_s(self, window_s: float = 5.0) -> float:
        """Holds made per second in the busiest ``window_s`` of the sale (all of them over
        first..last hold when they took less)."""
        times = sorted(r.admitted_at for r in self.results if r.prompted_at)
        if not times or times[-1] - times[0] < window_s:
            return self.admissions_per_s()
        best, first = 0, 0
        for last, t in enumerate(times):
            while t - times[first] >= window_s:
                first += 1
            best = max(best, last - first + 1)
        return best / window_s

    def cpu_us_per(self, count: int) -> dict[str, float]:
        """CPU µs by role (and "total") per one of ``count`` things (0: nothing counted)."""
        if not count or not self.cpu_s:
            return {}
        out = {role: s * 1e6 / count for role, s in self.cpu_s.items() if role != "other"}
        out["total"] = sum(out.values())
        return out

    def admitting_window(self) -> tuple[float, float] | None:
        """Wall times of the first hold made and the last prompt received (None: no prompt)."""
        prompted = [r for r in self.results if r.prompted_at]
        if not prompted:
            return None
        return min(r.admitted_at for r in prompted), max(r.prompted_at for r in prompted)

    def cpu_while_admitting(self) -> dict[str, float]:
        """CPU seconds by role from the first hold made to the last prompt received, read
        off the track between its samples ({} without two samples around the window). In
        a flash sale this is the work of admission and delivery alone, where the whole
        run's CPU is mostly the joins before it."""
        window = self.admitting_window()
        if window is None or len(self.cpu_track) < 2:
            return {}
        start, end = (_cpu_at(self.cpu_track, t) for t in window)
        if start is None or end is None:
            return {}
        return {role: max(end.get(role, 0.0) - start.get(role, 0.0), 0.0) for role in end}

    def prompts_per_s(self) -> float:
        """Prompts received per second, from the first hold made to the last prompt received:
        queue -> hold -> prompt end to end."""
        prompted = [r for r in self.results if r.prompted_at]
        if not prompted:
            return 0.0
        first = min(r.admitted_at for r in prompted)
        last = max(r.prompted_at for r in prompted)
        return len(prompted) / (last - first) if last > first else 0.0

    def bookings_per_s(self) -> float:
        """Confirmations over the span from the first admission to the last confirmation."""
        confirmed = sorted(r.ended_at for r in self.results if r.outcome == "confirmed")
        first = min((r.admitted_at for r in self.results if r.prompted_at), default=0.0)
        if not confirmed or confirmed[-1] <= first:
            return 0.0
        return len(confirmed) / (confirmed[-1] - first)

    def summary(self) -> str:
        """The sale summary with the scenario's rows, each once."""
        if self.interrupted:  # the problems of a sale cut short say nothing (the JSON has them)
            title = f"Sale summary (interrupted after {self.elapsed_s:.1f} s: partial results)"
            table = render_summary(title, self.summary_rows(), [])
            verdict = "interrupted before every client finished: the invariants were not checked"
            return table.rsplit("\n", 1)[0] + f"\n  {verdict}"
        return render_summary("Sale summary", self.summary_rows(), self.problems)

    def summary_rows(self) -> list[tuple[str, str]]:
        """The rows, counted as the progress display counts (``bench.tally``)."""
        t = tally_of(self.results)
        return [
            (
                "scenario",
                f"{self.scenario}, {plural(self.processes, 'bench process', 'bench processes')}",
            ),
            ("clients joined", f"{t.joined} of {len(self.results)}"),
            ("admitted (prompted)", f"{t.admitted}"),
            ("confirmed (paid)", f"{t.confirmed}"),
            ("expired", f"{t.expired}"),
            ("sold out", f"{t.sold_out}"),
            ("left while waiting", f"{t.left}"),
            ("errors", f"{t.errors}"),
            ("reconnects (resumed)", f"{sum(r.reconnects for r in self.results)}"),
            ("seats sold / capacity", f"{t.seats_sold} / {self.capacity}"),
            ("oversold", f"{self.audit.get('oversold', '?')}"),
            ("free + held + sold = capacity", _yes_no(self.audit.get("conserved"))),
            ("most waiting at once", f"{max((s.queue_length for s in self.samples), default=0)}"),
            ("elapsed", f"{self.elapsed_s:.1f} s"),
            ("seats asked / capacity", self._seats_note()),
            ("holds made (first..last hold)", f"{self.admissions_per_s():.1f} /s"),
            ("holds made (busiest 5 s)", f"{self.busiest_admissions_per_s():.1f} /s"),
            ("prompts received (first hold..last prompt)", f"{self.prompts_per_s():.1f} /s"),
            ("bookings (first hold..last booking)", f"{self.bookings_per_s():.1f} /s"),
            *self.latency_rows(),
            ("prompts after their deadline", f"{sum(1 for r in self.results if r.late_prompt)}"),
            ("CPU per admission, µs", _by_role(self.cpu_us_per(t.admitted))),
            ("CPU per paid booking, µs", _by_role(self.cpu_us_per(t.confirmed))),
            ("CPU, s", _by_role(self.cpu_s, ".1f")),
            *self._admitting_rows(t.admitted),
            ("load average (1, 5, 15 min)", " ".join(f"{x:.2f}" for x in self.load_average)),
        ]

    def _admitting_rows(self, prompted: int) -> list[tuple[str, str]]:
        """CPU per prompt and cores busy from the first hold to the last prompt."""
        cpu = self.cpu_while_admitting()
        window = self.admitting_window()
        if not cpu or window is None or window[1] <= window[0] or not prompted:
            return []
        counted = {role: s for role, s in cpu.items() if role != "other"}
        per = {role: s * 1e6 / prompted for role, s in counted.items()}
        busy = sum(counted.values()) / (window[1] - window[0])
        return [
            ("CPU per prompt, first hold..last prompt, µs", _by_role(per)),
            ("cores busy, first hold..last prompt", f"{busy:.2f} of {os.cpu_count()}"),
        ]

    def _seats_note(self) -> str:
        counts = f"{self.seats_requested} / {self.capacity}"
        if self.seats_requested > self.capacity:
            return (
                f"{counts}: fewer seats than asked for, so buyers after the first wave "
                "waited for holds to expire, and the rates include that wait"
            )
        how = "sized to the demand" if self.seats_sized_to_demand else "given"
        return f"{counts} ({how}): every buyer could hold at once"

    def to_json(self) -> bytes:
        """Machine-readable results, with every client and the queue samples."""
        summary = msgspec.json.decode(super().to_json())
        summary.update(
            {
                "scenario": self.scenario,
                "processes": self.processes,
                "stopped_early": self.stopped_early,
                "interrupted": self.interrupted,
                "admissions_per_s": self.admissions_per_s(),
                "prompts_per_s": self.prompts_per_s(),
                "bookings_per_s": self.bookings_per_s(),
                "busiest_admissions_per_s": self.busiest_admissions_per_s(),
                "seats_requested": self.seats_requested,
                "seats_sized_to_demand": self.seats_sized_to_demand,
                "cpu_s": self.cpu_s,
                "cpu_us_per_admission": self.cpu_us_per(tally_of(self.results).admitted),
                "cpu_us_per_booking": self.cpu_us_per(tally_of(self.results).confirmed),
                "cpu_s_while_admitting": self.cpu_while_admitting(),
                "load_average": self.load_average,
                "samples": self.samples,
                "results": self.results,
            }
        )
        return msgspec.json.encode(summary)


TERMINAL = ("confirmed", "expired", "sold_out", "left")


def check_invariants(results: list[ClientResult], audit: dict[str, Any]) -> list[str]:
    """Every invariant the run can see broken, from the clients' results and the server's audit."""
    out = [f"audit: {p}" for p in audit.get("problems", [])]
    if audit.get("oversold", 0):
        out.append(f"oversold: {audit['oversold']} seats sold more than once")
    if not audit.get("conserved", False):
        out.append("free + held + sold != capacity")
    if audit.get("sold_in_postgres", 0) > audit.get("capacity", 0):
        out.append(f"PostgreSQL sold {audit['sold_in_postgres']} of {audit['capacity']} seats")
    unfinished = [r.client_id for r in results if r.outcome not in TERMINAL]
    if unfinished:
        out.append(
            f"{len(unfinished)} clients without one terminal outcome (e.g. {unfinished[:3]})"
        )
    errors = [e for r in results for e in r.errors]
    if errors:
        out.append(f"{len(errors)} client errors (e.g. {errors[:3]})")
    confirmed = [r for r in results if r.outcome == "confirmed"]
    by_state = audit.get("tickets_by_state", {})
    if by_state.get("confirmed", 0) != len(confirmed):
        out.append(f"{len(confirmed)} clients confirmed, the server has {by_state}")
    seats = sum(r.seats for r in confirmed)
    if seats != audit.get("sold_in_postgres"):
        out.append(
            f"confirmed clients hold {seats} seats, PostgreSQL has {audit.get('sold_in_postgres')}"
        )
    bookings = [r.booking_id for r in confirmed]
    if len(set(bookings)) != len(bookings):
        out.append("two clients were confirmed with the same booking")
    joined = sum(1 for r in results if r.ticket)
    tickets = sum(by_state.values())
    if tickets != joined:
        out.append(f"{joined} clients joined, the server has {tickets} tickets")
    open_tickets = tickets - sum(by_state.get(s, 0) for s in TERMINAL)
    left = sum(1 for r in results if r.outcome == "left")
    kept = sum(1 for r in results if r.place_kept)  # told "sold out for now": still queued
    if open_tickets > left + kept:  # else only a client that left can have a ticket in play
        out.append(
            f"{open_tickets} tickets not decided, only {left} clients left and {kept} places kept"
        )
    out.extend(_admission_order(results))
    if audit.get("admitted_out_of_order", 0):
        out.append(f"audit: {audit['admitted_out_of_order']} tickets admitted out of join order")
    return out


def _admission_order(results: list[ClientResult]) -> list[str]:
    """Clients admitted in ticket (join) order: hold deadlines never go down as tickets go up."""
    admitted = sorted((r.ticket, r.expires_ms, r.client_id) for r in results if r.prompted_at)
    late = [
        (a[2], b[2])
        for a, b in itertools.pairwise(admitted)
        if b[1] < a[1]  # a later ticket held earlier
    ]
    if late:
        return [f"{len(late)} clients admitted before an earlier ticket (e.g. {late[:2]})"]
    return []


def require_loopback(url: str) -> None:
    """Refuse to load anything but this machine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the bench loads loopback addresses only, not {host!r}")


def _jobs(
    options: BenchOptions,
    specs: list[ClientSpec],
    http_url: str,
    waitroom_url: str,
    deadline: float,
    storm: bool,
) -> list[Job]:
    n = options.process_count()
    path = urlsplit(waitroom_url).path
    jobs = []
    for k in range(n):
        share = specs[k::n]
        url = waitroom_url
        if options.ws_servers:
            url = options.ws_servers[k % len(options.ws_servers)].rstrip("/") + path
        addresses = [
            f"127.0.{k + 1}.{a + 1}" for a in range(max(1, -(-len(share) // CLIENTS_PER_ADDRESS)))
        ]
        jobs.append(
            Job(
                worker=k,
                http_url=http_url,
                waitroom_url=url,
                hold_seconds=options.hold_seconds,
                clients=share,
                local_addresses=addresses,
                deadline=deadline,
                connect_concurrency=options.connect_concurrency,
                http_connections=options.http_connections,
                storm_after_joined_s=1.0 if storm else 0.0,
                niceness=options.niceness,
            )
        )
    return jobs


async def run_bench(
    http_url: str,
    admin_key: str,
    options: BenchOptions,
    *,
    progress: ProgressSink | None = None,
    stop: anyio.Event | None = None,
) -> BenchReport:
    """Run ``options``' scenario against the deployment at ``http_url``.

    ``progress`` is shown the sale twice a second and its last frame from the final
    results; ``stop`` (Ctrl-C) stops the bench processes early and the report is
    marked interrupted, with what their clients saw until then.
    """
    require_loopback(http_url)
    for server in options.ws_servers:
        require_loopback(server)
    if not 1 <= options.clients <= MAX_CLIENTS:
        raise ValueError(f"clients must be between 1 and {MAX_CLIENTS}")
    scenario = options.scenario_spec()
    deadline = time.time() + options.max_seconds
    sink = progress or ProgressSink()
    stop = stop or anyio.Event()
    specs = plan_clients(
        scenario, options.clients, hold_seconds=options.hold_seconds, seed=options.seed
    )
    requested = sum(c.quantity for c in specs)
    async with BookingClient(http_url, admin_key=admin_key) as client:
        before = await scrape_counters(client)
        body = event_body(
            options.seats or requested,
            hold_seconds=options.hold_seconds,
            max_active_holds=options.max_active_holds,
            name=f"Bench: {options.scenario}",
        )
        if options.challenge_difficulty:
            body["challenge_difficulty"] = options.challenge_difficulty
        if options.identity_secret:
            body["identity"] = {
                "kind": "jwt",
                "issuer": IDENTITY_ISSUER,
                "audience": IDENTITY_AUDIENCE,
            }
        created = await client.create_event(body)
        event_id, waitroom_url = created.id, created.waitroom_url
        require_loopback(waitroom_url)
        sink.note(f"Waiting-room page: {http_url}/events/{event_id}")
        capacity = sum(sum(r["seats"] for r in s["rows"]) for s in body["sections"])
        if scenario.flash:  # nobody is admitted until everyone is in line
            await client.pause(event_id)
        jobs = _jobs(options, specs, http_url, waitroom_url, deadline, scenario.reconnect > 0)
        if options.identity_secret:
            secret = options.identity_secret
            jobs = [msgspec.structs.replace(j, identity_secret=secret) for j in jobs]
        latest: dict[int, Progress] = {}
        done: dict[int, Done] = {}
        samples: list[Sample] = []
        redis_url, database_url = options.store_urls
        cpu = CpuMeter(
            options.cpu_role,
            redis_url=redis_url,
            database_url=database_url,
            gateway_url=options.gateway_url,
        )
        started = time.time()
        opened_at = 0.0 if scenario.flash else started
        all_done = anyio.Event()

        async def run_process(job: Job) -> None:
            command = [sys.executable, "-m", "bench.procs", options.runtime]
            async with await anyio.open_process(command, stderr=subprocess.PIPE) as process:
                assert process.stdin is not None and process.stdout is not None
                await process.stdin.send(msgspec.json.encode(job))
                await process.stdin.aclose()
                decoder = msgspec.json.Decoder(Report)
                buffer = b""
                try:
                    with anyio.fail_after(max(1.0, deadline - time.time()) + 30):
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(_echo_lines, process, sink)  # to the end of stderr
                            async with anyio.create_task_group() as forwarding:
                                forwarding.start_soon(_forward_stop, process, stop)
                                async for chunk in process.stdout:
                                    buffer += chunk
                                    *lines, buffer = buffer.split(b"\n")
                                    for line in lines:
                                        match decoder.decode(line):
                                            case Progress() as p:
                                                latest[job.worker] = p
                                            case Done() as d:
                                                done[job.worker] = d
                                await process.wait()
                                forwarding.cancel_scope.cancel()
                except TimeoutError:  # reported as stopped early, with the others' results
                    process.kill()
                    sink.note(
                        f"bench process {job.worker} did not report within 30 s of the "
                        "deadline; stopped"
                    )

        async def open_when_joined() -> None:
            nonlocal opened_at
            # Everyone who will join has: clients that failed to connect are not waited for.
            while (
                sum(p.tally.joined + p.tally.never_joined for p in latest.values())
                < options.clients
            ):
                if all_done.is_set() or stop.is_set() or time.time() > deadline:
                    break
                await anyio.sleep(0.1)
            await client.resume(event_id)
            opened_at = time.time()

        cpu_track: list[tuple[float, dict[str, float]]] = [(started, cpu.seconds())]

        async def track_cpu() -> None:
            while not all_done.is_set():
                with anyio.move_on_after(CPU_SAMPLE_S):
                    await all_done.wait()
                cpu.sample()
                cpu_track.append((time.time(), cpu.seconds()))

        async def sample() -> None:
            while not all_done.is_set():
                view = None
                # A server too busy to answer in time misses a sample, not the run.
                with anyio.move_on_after(5), contextlib.suppress(ApiError, ConnectionError):
                    view = await client.event(event_id)
                if view is not None:
                    samples.append(
                        Sample(
                            time.time() - started, view.queue_length, view.active_holds, view.state
                        )
                    )
                with anyio.move_on_after(0.5):
                    await all_done.wait()

        async def show_progress() -> None:
            while not all_done.is_set():
                with anyio.move_on_after(0.5):
                    await all_done.wait()
                if not all_done.is_set():
                    tally = sum((p.tally for p in latest.values()), Tally())
                    sink.show(SaleFrame(time.time() - started, options.clients, capacity, tally))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            tg.start_soon(track_cpu)
            tg.start_soon(show_progress)
            if scenario.flash:
                tg.start_soon(open_when_joined)
            async with anyio.create_task_group() as procs:
                for job in jobs:
                    procs.start_soon(run_process, job)
            all_done.set()
        load_average = os.getloadavg()
        elapsed = time.time() - started
        results = [r for k in sorted(done) for r in done[k].results]
        final = SaleFrame(elapsed, options.clients, capacity, tally_of(results), stop.is_set())
        sink.show(final, final=True)
        stopped_early = len(done) < len(jobs) or any(d.stopped_early for d in done.values())
        audit: dict[str, Any] = {}
        try:
            after = await scrape_counters(client)
            audit = msgspec.to_builtins(await client.audit(event_id, settled=True))
        except (ApiError, ConnectionError):
            if not stop.is_set():
                raise
            after = {}  # stopped with the servers: the clients' side only
        trips = {k: after[k] - before.get(k, 0.0) for k in after}
        return BenchReport(
            event_id,
            capacity,
            results,
            elapsed,
            audit,
            trips,
            scenario=options.scenario,
            started_at=started,
            opened_at=opened_at,
            samples=samples,
            stopped_early=stopped_early,
            processes=len(jobs),
            interrupted=stop.is_set(),
            seats_requested=requested,
            seats_sized_to_demand=not options.seats,
            cpu_s=cpu.seconds(),
            cpu_track=cpu_track,
            load_average=load_average,
        )


async def _echo_lines(process: anyio.abc.Process, sink: ProgressSink) -> None:
    """A bench process's stderr (a traceback, a warning), line by line, above the progress."""
    assert process.stderr is not None
    buffer = b""
    async for chunk in process.stderr:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            sink.note(line.decode(errors="replace"))
    if buffer:
        sink.note(buffer.decode(errors="replace"))


async def _forward_stop(process: anyio.abc.Process, stop: anyio.Event) -> None:
    """On ``stop``, tell the process to stop its clients and report (it may have been
    told already: Ctrl-C reaches the whole process group)."""
    await stop.wait()
    if process.returncode is None:
        process.send_signal(signal.SIGINT)


def _cpu_at(track: list[tuple[float, dict[str, float]]], at: float) -> dict[str, float] | None:
    """CPU seconds by role at wall time ``at``, interpolated between the samples around it
    (None: ``at`` is outside the track)."""
    for (t0, c0), (t1, c1) in itertools.pairwise(track):
        if t0 <= at <= t1:
            f = (at - t0) / (t1 - t0) if t1 > t0 else 1.0
            return {r: c0.get(r, 0.0) + f * (v - c0.get(r, 0.0)) for r, v in c1.items()}
    return None


def _by_role(values: dict[str, float], spec: str = ".0f") -> str:
    """``servers 120, worker 30, ... (total 345)``: every role measured, in ROLES order."""
    if not values:
        return "-"
    roles = [r for r in (*ROLES, *sorted(values)) if r in values and r != "total"]
    text = ", ".join(f"{r} {values[r]:{spec}}" for r in dict.fromkeys(roles) if r != "other")
    total = values.get("total", sum(v for r, v in values.items() if r != "other"))
    return f"{text} (total {total:{spec}})"


def _yes_no(value: object) -> str:
    return "?" if value is None else "yes" if value else "NO"
