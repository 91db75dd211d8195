"""The done-when check of the read models: after a bench sale with cancellations and
check-ins, the event log's counts per type equal the bench's own, the report equals the
bench's totals to the cent, and a replay of the log rebuilds the report byte for byte."""

from __future__ import annotations

import json

import httpx
import pytest

from api.wiring import Services
from bench.ledger import projection_p99_s, run_ledger
from engine.readmodels import replay
from tests.api.helpers import pg_value
from tests.conftest import ADMIN_KEY, admin_headers

pytestmark = pytest.mark.anyio


async def test_the_report_equals_the_bench_ledger_and_a_replay_reproduces_it(
    services: Services, http: httpx.AsyncClient
) -> None:
    result = await run_ledger(services.http_url, ADMIN_KEY, bookings=24, concurrency=6)
    assert result.problems == [], result.summary()
    ledger = result.ledger
    assert ledger.totals["cancellations"] >= 6 and ledger.totals["checked_in"] >= 12
    assert ledger.totals["bookings_cancelled"] == 6  # every fourth booking, whole

    counts = await pg_value(
        services,
        "SELECT json_object_agg(kind, n)::text FROM (SELECT kind, count(*) AS n FROM event_log "
        "WHERE event_id = $1 GROUP BY kind) k",
        result.event_id,
    )
    logged = json.loads(counts)
    assert {kind: logged.get(kind, 0) for kind in ledger.log_counts()} == ledger.log_counts()

    # The replay rebuilds the same bytes (an entry logged meanwhile, such as a worker's
    # admission summary, changes both: then they are compared again).
    path = f"/v1/events/{result.event_id}/report"
    for _ in range(3):
        live = (await http.get(path, headers=admin_headers())).content
        applied = await replay(services.pg, result.event_id)
        rebuilt = (await http.get(path, headers=admin_headers())).content
        if rebuilt == live and json.loads(rebuilt)["as_of_seq"] == applied:
            break
    assert rebuilt == live
    assert json.loads(rebuilt)["as_of_seq"] == applied >= result.report.log_seq

    metrics = (await http.get("/metrics")).text
    assert "booking_projection_lag_entries" in metrics
    assert "booking_projection_delay_seconds_bucket" in metrics


def test_the_projection_delay_p99_is_read_from_the_histogram() -> None:
    text = "\n".join(
        [
            'booking_projection_delay_seconds_bucket{le="0.1"} 90.0',
            'booking_projection_delay_seconds_bucket{le="0.25"} 98.0',
            'booking_projection_delay_seconds_bucket{le="0.5"} 99.0',
            'booking_projection_delay_seconds_bucket{le="+Inf"} 100.0',
        ]
    )
    assert projection_p99_s(text) == 0.5
    assert projection_p99_s("") is None
