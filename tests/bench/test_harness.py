"""``booking bench`` at small scale: every scenario keeps the invariants, and the check can fail."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest

from api.commands import SaleOptions, bench
from api.settings import Settings
from api.wiring import Services
from bench.client import Behaviour, ClientResult
from bench.harness import BenchOptions, BenchReport, check_invariants, require_loopback, run_bench
from bench.procs import progress_of
from bench.scenarios import MAX_EVENT_SEATS, SCENARIOS, event_body, plan_clients
from engine.events import EventSpec, validate_event
from tests.conftest import ADMIN_KEY, RUNTIME

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HOLD_SECONDS = 2


def _options(scenario: str, **overrides: Any) -> BenchOptions:
    base: dict[str, Any] = {
        "scenario": scenario,
        "clients": 120,
        "seats": 90,
        "hold_seconds": HOLD_SECONDS,
        "max_active_holds": 40,
        "max_seconds": 60,
        "arrival_s": 1.0,
        "runtime": RUNTIME,
        "connect_concurrency": 50,
        "http_connections": 16,
    }
    return BenchOptions(**{**base, **overrides})


async def _run(services: Services, options: BenchOptions) -> BenchReport:
    return await run_bench(services.http_url, ADMIN_KEY, options, progress=None)


@pytest.mark.parametrize(
    "scenario",
    [pytest.param("steady", marks=pytest.mark.cluster), "abandon", "slow-pay", "decline"],
)
async def test_scenario_keeps_every_invariant(services: Services, scenario: str) -> None:
    """Each scenario runs to the end in two bench processes with every invariant holding."""
    report = await _run(services, _options(scenario, processes=2))
    assert report.problems == []
    assert report.processes == 2 and {r.worker for r in report.results} == {0, 1}
    assert report.audit["sold_in_postgres"] == report.seats_sold > 0
    assert report.samples, "the queue was sampled while the clients ran"
    if scenario == "abandon":
        assert report.outcomes["left"] > 0
    if scenario == "decline":
        assert report.outcomes["expired"] > 0


async def test_clients_solve_the_join_challenge(services: Services) -> None:
    """With a join challenge asked, every bench client solves one and the sale runs as usual."""
    report = await _run(
        services, _options("steady", clients=40, seats=30, challenge_difficulty=500)
    )
    assert report.problems == []
    assert report.seats_sold > 0
    assert not [e for r in report.results for e in r.errors if "challenge" in e]


async def test_flash_sale_admits_in_join_order_once_everyone_is_in_line(
    services: Services,
) -> None:
    """A flash sale opens only once every client joined; admissions follow tickets."""
    report = await _run(services, _options("flash"))
    assert report.problems == []
    assert report.opened_at >= max(r.queued_at for r in report.results)
    prompted = sorted((r.ticket, r.expires_ms) for r in report.results if r.prompted_at)
    assert [e for _, e in prompted] == sorted(e for _, e in prompted)
    assert report.audit["admitted_out_of_order"] == 0


async def test_reconnect_storm_resumes_places(services: Services) -> None:
    """Clients that drop their socket mid-sale resume with their token and still get one outcome.

    Nobody pays, so the line still waits behind the first holds when the storm comes a
    second after everyone joined (with payments, 90 seats can sell out before it).
    """
    report = await _run(services, _options("reconnect", clients=150, pay_ratio=0.0))
    assert report.problems == []
    assert sum(r.reconnects for r in report.results) > 0


async def test_clients_spread_over_named_websocket_servers(services: Services) -> None:
    """Clients connect to the WebSocket servers given, and a non-loopback one is refused."""
    server = f"ws://127.0.0.1:{services.ws_port}"
    report = await _run(services, _options("steady", clients=40, seats=60, ws_servers=(server,)))
    assert report.problems == []
    with pytest.raises(ValueError, match="loopback"):
        await _run(services, _options("steady", ws_servers=("ws://10.1.2.3:8001",)))


async def test_check_fails_on_doctored_results(services: Services) -> None:
    """The invariant check catches out-of-order admission, oversell and a lost confirmation."""
    report = await _run(services, _options("steady", clients=60, seats=60))
    assert check_invariants(report.results, report.audit) == []

    results = copy.deepcopy(report.results)
    admitted = sorted((r for r in results if r.prompted_at), key=lambda r: r.ticket)
    admitted[-1].expires_ms = admitted[0].expires_ms - 1000  # the last ticket held first
    assert any(
        "admitted before an earlier ticket" in p for p in check_invariants(results, report.audit)
    )

    audit = {**report.audit, "oversold": 1, "sold_in_postgres": report.audit["capacity"] + 1}
    problems = check_invariants(report.results, audit)
    assert any("oversold" in p for p in problems)

    results = copy.deepcopy(report.results)
    confirmed = next(r for r in results if r.outcome == "confirmed")
    confirmed.outcome = ""  # a client that never heard its outcome
    problems = check_invariants(results, report.audit)
    assert any("without one terminal outcome" in p for p in problems)
    assert any("clients confirmed, the server has" in p for p in problems)


async def test_bench_command_fails_loudly(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped before its clients finish exits 1 and says INVARIANTS BROKEN."""
    options = SaleOptions(
        clients=200, rows=2, hold_seconds=5, arrival_s=0.5, max_seconds=0.3,
        bench_runtime=RUNTIME,
    )  # fmt: skip
    assert await bench(services.http_url, ADMIN_KEY, options) == 1
    captured = capsys.readouterr()
    assert "INVARIANTS BROKEN" in captured.err and "INVARIANTS BROKEN" in captured.out
    assert "stopped by --max-seconds" in captured.out


@pytest.mark.once
def test_scenarios_are_repeatable_and_mixed() -> None:
    """The same seed gives the same buyers; each scenario has the behaviours it promises."""
    for name, scenario in SCENARIOS.items():
        a = plan_clients(scenario, 500, hold_seconds=10, seed=3)
        assert a == plan_clients(scenario, 500, hold_seconds=10, seed=3), name
        kinds = {Behaviour(c.behaviour) for c in a}
        assert Behaviour.PAY in kinds
        if scenario.leave:
            assert Behaviour.LEAVE in kinds
        if scenario.decline:
            assert Behaviour.DECLINE in kinds
        if scenario.flash:
            assert all(c.arrival_s == 0 for c in a)
        if scenario.reconnect:
            assert any(c.reconnects for c in a)


@pytest.mark.once
def test_only_loopback_is_loaded() -> None:
    """The bench refuses any URL that is not this machine."""
    require_loopback("http://127.0.0.1:8000")
    require_loopback("http://localhost:8000")
    require_loopback("ws://127.0.3.7:8001/v1/events/e/waitroom")
    for url in ("http://10.0.0.1:8000", "http://example.com", "http://0.0.0.0:8000"):
        with pytest.raises(ValueError, match="loopback"):
            require_loopback(url)


@pytest.mark.once
def test_results_travel_between_processes() -> None:
    """A client's result survives the JSON hop from a bench process to the harness."""
    result = ClientResult("c1", Behaviour.DECLINE, 2, ticket=5, outcome="expired", worker=1)
    result.errors.append("x")
    assert msgspec.json.decode(msgspec.json.encode(result), type=ClientResult) == result


@pytest.mark.once
def test_progress_counts_clients_that_will_never_join() -> None:
    """A flash sale opens once every client joined or failed: failures are counted apart."""
    results = [
        ClientResult("in", Behaviour.PAY, 1, ticket=1),
        ClientResult("failed", Behaviour.PAY, 1, outcome="error"),
        ClientResult("in-then-failed", Behaviour.PAY, 1, ticket=2, outcome="error"),
        ClientResult("connecting", Behaviour.PAY, 1),
    ]
    tally = progress_of(0, results).tally
    assert (tally.joined, tally.never_joined) == (2, 1)


@pytest.mark.once
def test_pay_ratio_overrides_the_share_who_pay() -> None:
    """--pay-ratio sets the share of payers, those after a declined card included."""
    for ratio in (0.0, 0.6, 1.0):
        for name in SCENARIOS:
            spec = BenchOptions(scenario=name, pay_ratio=ratio).scenario_spec()
            assert spec.pay + spec.decline_then_pay == pytest.approx(ratio)


def test_rates_count_holds_made_and_prompts_received() -> None:
    """Holds made per second is the engine's pace; prompts received per second also
    counts delivery, from the first hold to the last prompt."""
    results = [
        ClientResult(f"c{i}", Behaviour.PAY, 1, admitted_at=100.0 + i, prompted_at=100.5 + 2 * i)
        for i in range(5)  # holds at 100..104, prompts at 100.5..108.5
    ]
    results.append(ClientResult("waiting", Behaviour.PAY, 1, admitted_at=0.0))  # no prompt
    report = BenchReport("ev", 10, results, 10.0, {}, scenario="flash", processes=1)
    assert report.admissions_per_s() == pytest.approx(4 / 4.0)
    assert report.prompts_per_s() == pytest.approx(5 / 8.5)


def test_busiest_window_and_cpu_per_admission() -> None:
    """The busiest 5 s counts the holds made in the densest 5 s; CPU per admission and
    per booking divide each role's CPU by the clients admitted and confirmed."""
    burst = [100.0 + i * 0.01 for i in range(100)]  # 100 holds in 1 s ...
    trickle = [110.0 + i for i in range(10)]  # ... then one a second
    results = [
        ClientResult(f"c{i}", Behaviour.PAY, 1, admitted_at=t, prompted_at=t + 0.1)
        for i, t in enumerate(burst + trickle)
    ]
    results[0].outcome, results[0].seats = "confirmed", 1
    report = BenchReport(
        "ev", 200, results, 30.0, {}, scenario="flash", cpu_s={"servers": 0.11, "Redis": 0.022}
    )
    assert report.busiest_admissions_per_s() == pytest.approx(100 / 5)
    assert report.admissions_per_s() == pytest.approx(109 / 19)
    per = report.cpu_us_per(110)
    assert per == pytest.approx({"servers": 1000.0, "Redis": 200.0, "total": 1200.0})
    assert report.cpu_us_per(1)["total"] == pytest.approx(132_000)
    rows = dict(report.summary_rows())
    assert rows["CPU per admission, µs"] == "servers 1000, Redis 200 (total 1200)"
    assert rows["holds made (busiest 5 s)"] == "20.0 /s"


def test_cpu_while_admitting_is_read_between_the_first_hold_and_the_last_prompt() -> None:
    """The CPU from the first hold made to the last prompt received is interpolated off
    the track; the joins before it (most of a flash sale's CPU) are left out."""
    results = [
        ClientResult(f"c{i}", Behaviour.PAY, 1, admitted_at=101.0 + i, prompted_at=101.5 + i)
        for i in range(4)  # holds 101..104, the last prompt at 104.5: a 3.5 s window
    ]
    track = [
        (90.0, {"servers": 0.0, "bench": 0.0}),
        (100.0, {"servers": 10.0, "bench": 20.0}),  # the joins: 10 s and 20 s of CPU
        (102.0, {"servers": 12.0, "bench": 21.0}),
        (106.0, {"servers": 16.0, "bench": 23.0, "Redis": 1.0}),  # seen from here on
    ]
    report = BenchReport("ev", 10, results, 20.0, {}, scenario="flash", cpu_track=track)
    assert report.admitting_window() == (101.0, 104.5)
    cpu = report.cpu_while_admitting()
    # servers: 11.0 at 101, 14.5 at 104.5; bench: 20.5 and 22.25; Redis from nothing
    assert cpu == pytest.approx({"servers": 3.5, "bench": 1.75, "Redis": 0.625})
    rows = dict(report.summary_rows())
    per = rows["CPU per prompt, first hold..last prompt, µs"]
    assert per == "servers 875000, Redis 156250, bench 437500 (total 1468750)"
    assert rows["cores busy, first hold..last prompt"].startswith("1.68 of ")
    outside = BenchReport("ev", 10, results, 20.0, {}, scenario="flash", cpu_track=track[:2])
    assert outside.cpu_while_admitting() == {}
    assert "cores busy, first hold..last prompt" not in dict(outside.summary_rows())


def test_seats_row_says_whether_buyers_waited_for_seats() -> None:
    """The summary says whether every buyer could hold at once or waited for seats."""
    short = BenchReport("ev", 100, [], 1.0, {}, seats_requested=250)
    assert "fewer seats than asked for" in dict(short.summary_rows())["seats asked / capacity"]
    sized = BenchReport("ev", 270, [], 1.0, {}, seats_requested=250, seats_sized_to_demand=True)
    assert dict(sized.summary_rows())["seats asked / capacity"] == (
        "250 / 270 (sized to the demand): every buyer could hold at once"
    )


def test_flash_sale_seats_default_to_the_demand() -> None:
    """A flash sale without --rows gets as many seats as its buyers ask for; other
    scenarios keep 1,200, and --rows always wins."""
    assert SaleOptions(scenario="flash").bench_options().seats == 0  # sized by the harness
    assert SaleOptions(scenario="steady").bench_options().seats == 1200
    assert SaleOptions(scenario="flash", rows=10).bench_options().seats == 300
    assert "--rows" not in SaleOptions(scenario="flash").argv()


def test_event_bodies_stay_within_what_the_api_accepts() -> None:
    """100,000 buyers of a flash sale ask for ~250,000 seats: the event gets the most an
    event may have (200,000 seats, rows of at most 500) in a body under the size limit,
    not a body the API refuses; fewer seats get about as many as asked."""
    limit = Settings().max_body_bytes
    for seats in (1_000, 125_000, 150_001, 200_000, 250_000):
        raw = json.dumps(event_body(seats, hold_seconds=5, max_active_holds=100_000)).encode()
        assert len(raw) <= limit
        spec = msgspec.json.decode(raw, type=EventSpec)
        validate_event(spec)
        assert min(seats, MAX_EVENT_SEATS) <= spec.capacity < min(seats, MAX_EVENT_SEATS) + 500


async def test_flash_sale_sized_to_the_demand_holds_everyone_at_once(services: Services) -> None:
    """With seats 0 the event has a seat for every seat asked, nobody is told sold out,
    and the CPU of the harness and its bench processes is measured."""
    report = await _run(services, _options("flash", clients=60, seats=0))
    assert report.problems == []
    assert report.seats_sized_to_demand
    assert report.seats_requested <= report.capacity < report.seats_requested + 100
    assert report.seats_requested == sum(r.quantity for r in report.results)
    assert sum(r.outcome == "sold_out" for r in report.results) == 0
    assert report.cpu_s.get("bench", 0.0) > 0.0
    assert 0.0 < report.cpu_while_admitting()["bench"] < report.cpu_s["bench"]
