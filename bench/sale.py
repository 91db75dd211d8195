"""Run a simulated flash sale against a running deployment and report what happened.

Talks to the system only over its public interfaces: the admin REST API to
create the event and audit it, the waiting-room WebSocket and the payment REST
API as buyers would.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import anyio
import msgspec

from api.client import BookingClient
from bench.client import Behaviour, ClientResult, run_client
from bench.tally import tally_of

__all__ = ["SalePlan", "SaleReport", "demo_event", "render_summary", "run_sale"]


@dataclass(frozen=True)
class SalePlan:
    """Who shows up and what they do."""

    clients: int = 3000
    pay_ratio: float = 0.6  # share who pay (some after one declined card)
    decline_ratio: float = 0.1  # share of payers whose first card is declined
    max_quantity: int = 4
    think_s: tuple[float, float] = (0.05, 0.5)  # time from prompt to paying
    arrival_s: float = 2.0  # joins spread over this long
    connect_concurrency: int = 200
    seed: int = 1


def demo_event(
    seats_rows: int = 40,
    seats_per_row: int = 30,
    *,
    hold_seconds: int = 5,
    max_active_holds: int = 300,
    opens_in_s: float = 0.0,
    name: str = "Demo night",
) -> dict[str, Any]:
    """An event body: two seated sections and a general-admission floor."""
    opens = datetime.fromtimestamp(time.time() + opens_in_s, UTC).isoformat()
    half = seats_rows // 2
    return {
        "name": name,
        "opens_at": opens,
        "max_per_order": 4,
        "hold_seconds": hold_seconds,
        "max_active_holds": max_active_holds,
        "sections": [
            {
                "id": "stalls",
                "name": "Stalls",
                "price_cents": 9500,
                "rows": [{"label": f"S{r + 1}", "seats": seats_per_row} for r in range(half)],
            },
            {
                "id": "circle",
                "name": "Circle",
                "price_cents": 6500,
                "rows": [
                    {"label": f"C{r + 1}", "seats": seats_per_row} for r in range(seats_rows - half)
                ],
            },
        ],
    }


@dataclass
class SaleReport:
    """The numbers of one sale."""

    event_id: str
    capacity: int
    results: list[ClientResult]
    elapsed_s: float
    audit: dict[str, Any]
    #: Storage round trips and bridge crossings during the sale, whole server.
    trips: dict[str, float] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.outcomes = Counter(r.outcome for r in self.results)

    @property
    def admitted(self) -> int:
        """Clients who received a prompt."""
        return sum(1 for r in self.results if r.prompted_at)

    @property
    def seats_sold(self) -> int:
        """Seats of confirmed clients."""
        return sum(r.seats for r in self.results if r.outcome == "confirmed")

    def percentile(self, values: list[float], q: float) -> float:
        """The q-quantile of ``values`` (0 when empty)."""
        if not values:
            return 0.0
        values = sorted(values)
        return values[min(int(q * len(values)), len(values) - 1)]

    @property
    def latencies(self) -> list[float]:
        """Admission -> prompt, seconds, per admitted client."""
        return [
            r.admission_to_prompt_s for r in self.results if r.admission_to_prompt_s is not None
        ]

    @property
    def problems(self) -> list[str]:
        """Broken invariants, as seen by the clients and the audit."""
        out = list(self.audit.get("problems", []))
        unfinished = [
            r.client_id
            for r in self.results
            if r.outcome not in ("confirmed", "expired", "sold_out", "left")
        ]
        if unfinished:
            out.append(
                f"{len(unfinished)} clients without a terminal outcome (e.g. {unfinished[:3]})"
            )
        errors = [e for r in self.results for e in r.errors]
        if errors:
            out.append(f"{len(errors)} client errors (e.g. {errors[:3]})")
        confirmed = self.outcomes["confirmed"]
        if self.audit.get("tickets_by_state", {}).get("confirmed", 0) != confirmed:
            out.append(
                f"{confirmed} clients confirmed, Redis has {self.audit.get('tickets_by_state')}"
            )
        if self.seats_sold != self.audit.get("sold_in_postgres"):
            out.append(
                f"clients hold {self.seats_sold} seats, PostgreSQL {self.audit.get('sold_in_postgres')}"
            )
        if self.audit.get("oversold", 0):
            out.append(f"oversold: {self.audit['oversold']}")
        return out

    def summary(self) -> str:
        """A table for people."""
        return render_summary("Sale summary", self.summary_rows(), self.problems)

    def summary_rows(self) -> list[tuple[str, str]]:
        """The summary's rows: what the buyers saw, the invariants' numbers, then the costs."""
        t = tally_of(self.results)
        return [
            ("clients joined", f"{t.joined}"),
            ("admitted (prompted)", f"{t.admitted}"),
            ("confirmed (paid)", f"{t.confirmed}"),
            ("expired", f"{t.expired}"),
            ("sold out", f"{t.sold_out}"),
            ("errors", f"{t.errors}"),
            ("seats sold / capacity", f"{t.seats_sold} / {self.capacity}"),
            ("oversold", f"{self.audit.get('oversold', '?')}"),
            ("free + held + sold = capacity", "yes" if self.audit.get("conserved") else "NO"),
            ("elapsed", f"{self.elapsed_s:.1f} s"),
            *self.latency_rows(),
        ]

    def latency_rows(self) -> list[tuple[str, str]]:
        """Admission -> prompt and payment latencies, and storage round trips per booking."""
        lat = self.latencies
        pay = [r.payment_s for r in self.results if r.payment_status == 200]
        return [
            (
                "admission -> prompt p50 / p99",
                f"{self.percentile(lat, 0.5) * 1000:.1f} / {self.percentile(lat, 0.99) * 1000:.1f} ms",
            ),
            (
                "payment p50 / p99 (buyer)",
                f"{self.percentile(pay, 0.5) * 1000:.1f} / {self.percentile(pay, 0.99) * 1000:.1f} ms",
            ),
            (
                "payment p50 / p99 (server, bucket bound)",
                f"<= {histogram_quantile(self.trips, 0.5) * 1000:.0f} / <= {histogram_quantile(self.trips, 0.99) * 1000:.0f} ms"
                if any(k.startswith("payment_le_") for k in self.trips)
                else "-",  # the server was not scraped
            ),
            (
                "per booking: Redis / PostgreSQL round trips",
                self._per_booking("redis") + " / " + self._per_booking("postgres"),
            ),
            ("per booking: bridge crossings", self._per_booking("bridge")),
        ]

    def _per_booking(self, key: str) -> str:
        confirmed = self.outcomes["confirmed"]
        if not confirmed or key not in self.trips:  # none, or the server was not scraped
            return "-"
        return f"{self.trips[key] / confirmed:.2f}"

    def round_trips_by_op(self) -> dict[str, float]:
        """Round trips per confirmed booking, by backend and operation, largest first."""
        confirmed = self.outcomes["confirmed"] or 1
        ops = {k: v / confirmed for k, v in self.trips.items() if ":" in k and v}
        return dict(sorted(ops.items(), key=lambda kv: -kv[1]))

    def to_json(self) -> bytes:
        """Machine-readable results."""
        lat = self.latencies
        return msgspec.json.encode(
            {
                "event_id": self.event_id,
                "clients": len(self.results),
                "admitted": self.admitted,
                "outcomes": dict(self.outcomes),
                "seats_sold": self.seats_sold,
                "capacity": self.capacity,
                "elapsed_s": self.elapsed_s,
                "admission_to_prompt_p50_s": self.percentile(lat, 0.5),
                "admission_to_prompt_p99_s": self.percentile(lat, 0.99),
                "mean_admission_to_prompt_s": statistics.fmean(lat) if lat else 0.0,
                "storage_round_trips": self.trips,
                "round_trips_per_booking_by_op": self.round_trips_by_op(),
                "audit": self.audit,
                "problems": self.problems,
            }
        )


def render_summary(title: str, rows: list[tuple[str, str]], problems: list[str]) -> str:
    """A report for people: aligned rows, then whether every invariant held."""
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k.ljust(width)}  {v}" for k, v in rows]
    verdict = (
        "all invariants hold"
        if not problems
        else "INVARIANTS BROKEN:\n    " + "\n    ".join(problems)
    )
    return "\n".join([title, *lines, f"  {verdict}"])


async def _progress(
    results: list[ClientResult], total: int, started: float, out: TextIO, done: anyio.Event
) -> None:
    while not done.is_set():
        with anyio.move_on_after(0.5):
            await done.wait()
        c = Counter(r.outcome for r in results if r.outcome)
        joined = sum(1 for r in results if r.ticket)
        prompted = sum(1 for r in results if r.prompted_at)
        finished = sum(c.values())
        bar = "#" * int(30 * finished / total) + "." * (30 - int(30 * finished / total))
        out.write(
            f"\r  [{bar}] {time.monotonic() - started:5.1f}s joined {joined:>6} prompted {prompted:>6} "
            f"confirmed {c['confirmed']:>6} expired {c['expired']:>5} sold out {c['sold_out']:>6} errors {c['error']:>3}"
        )
        out.flush()
    out.write("\n")


async def scrape_counters(client: BookingClient) -> dict[str, float]:
    """Storage round trips and bridge crossings so far, from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {"redis": 0.0, "postgres": 0.0, "bridge": 0.0}
    for family in text_string_to_metric_families(await client.metrics()):
        for sample in family.samples:
            if sample.name == "booking_storage_round_trips_total":
                totals[sample.labels["backend"]] += sample.value
                key = f"{sample.labels['backend']}:{sample.labels['op']}"
                totals[key] = totals.get(key, 0.0) + sample.value
            elif sample.name == "booking_bridge_crossings_total":
                totals["bridge"] += sample.value
            elif sample.name == "booking_payment_seconds_bucket":
                totals[f"payment_le_{sample.labels['le']}"] = sample.value
    return totals


def histogram_quantile(counters: dict[str, float], q: float) -> float:
    """The q-quantile of the server's payment histogram (upper bucket bound), from scraped counters."""
    buckets = sorted(
        (float(k.removeprefix("payment_le_")), v)
        for k, v in counters.items()
        if k.startswith("payment_le_")
    )
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    target = q * buckets[-1][1]
    return next(bound for bound, count in buckets if count >= target)


async def run_sale(
    http_url: str,
    admin_key: str,
    event: dict[str, Any],
    plan: SalePlan,
    *,
    progress: TextIO | None = sys.stderr,
) -> SaleReport:
    """Create ``event``, run ``plan.clients`` buyers through it, audit it, and report."""
    rng = random.Random(plan.seed)
    # Payments answered 503 (a backing service restarting) are retried with the same key.
    async with BookingClient(
        http_url, admin_key=admin_key, max_connections=64, unavailable_retries=30
    ) as client:
        before = await scrape_counters(client)
        created = await client.create_event(event)
        event_id, url = created.id, created.waitroom_url
        capacity = sum(
            sum(r["seats"] for r in s.get("rows", [])) or s.get("capacity", 0)
            for s in event["sections"]
        )
        results: list[ClientResult] = []
        limiter = anyio.CapacityLimiter(plan.connect_concurrency)
        started = time.monotonic()
        done = anyio.Event()

        async def one(
            i: int, behaviour: Behaviour, quantity: int, delay: float, think: float
        ) -> None:
            await anyio.sleep(delay)
            result = ClientResult(f"buyer-{i}", behaviour, quantity)
            results.append(result)
            await run_client(
                url,
                client,
                result,
                hold_seconds=event.get("hold_seconds", 120),
                think_s=think,
                connect_limiter=limiter,
            )

        async with anyio.create_task_group() as tg:
            if progress is not None:
                tg.start_soon(_progress, results, plan.clients, started, progress, done)
            async with anyio.create_task_group() as buyers:
                for i in range(plan.clients):
                    roll = rng.random()
                    if roll < plan.pay_ratio * plan.decline_ratio:
                        behaviour = Behaviour.DECLINE_THEN_PAY
                    elif roll < plan.pay_ratio:
                        behaviour = Behaviour.PAY
                    else:
                        behaviour = Behaviour.ABANDON
                    buyers.start_soon(
                        one,
                        i,
                        behaviour,
                        rng.randint(1, min(plan.max_quantity, event.get("max_per_order", 4))),
                        rng.uniform(0, plan.arrival_s),
                        rng.uniform(*plan.think_s),
                    )
            elapsed = time.monotonic() - started
            done.set()
        after = await scrape_counters(client)
        audit = await client.audit(event_id, settled=True)
        trips = {k: after[k] - before.get(k, 0.0) for k in after}
        return SaleReport(event_id, capacity, results, elapsed, msgspec.to_builtins(audit), trips)
