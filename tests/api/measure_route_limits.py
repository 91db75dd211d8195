"""What a route bucket adds to a request: the same request exempt (loopback) and limited
(a client address through a trusted proxy, so one Redis script call more).

Run: ``PYTHONPATH=$PWD .venv/bin/python -m tests.api.measure_route_limits`` (embedded
Redis and PostgreSQL in a temporary directory; 2,000 sequential requests each way).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from api.settings import Settings
from api.wiring import open_services
from storage.embedded import embedded_servers, remove_data_dir

REQUESTS = 2_000
WARM_UP = 200


async def measure() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="booking-measure-"))
    try:
        with embedded_servers(data_dir, redis_url=None, database_url=None) as servers:
            settings = Settings(
                redis_url=servers.redis_url,
                database_url=servers.database_url,
                secret="measure-secret-0123456789abcdef",
                admin_key="measure-admin-key-0123",
                http_port=0,
                ws_port=0,
                metrics_port=0,
                trusted_proxies=("127.0.0.1/32",),
                limit_per_ip=(1e6, 1_000_000),  # never refused: the cost, not the limit
            )
            async with (
                open_services(settings) as running,
                httpx.AsyncClient(base_url=running.http_url, trust_env=False) as http,
            ):
                for label, headers in (
                    ("exempt (loopback)", {}),
                    ("limited (X-Forwarded-For 198.51.100.7)", {"X-Forwarded-For": "198.51.100.7"}),
                ):
                    for _ in range(WARM_UP):
                        await http.get("/v1/bookings/unknown", headers=headers)
                    seconds = []
                    for _ in range(REQUESTS):
                        start = time.perf_counter()
                        resp = await http.get("/v1/bookings/unknown", headers=headers)
                        seconds.append(time.perf_counter() - start)
                        assert resp.status_code == 401, resp.text
                    seconds.sort()
                    print(
                        f"{label}: {REQUESTS} requests, median "
                        f"{statistics.median(seconds) * 1e3:.2f} ms, "
                        f"p99 {seconds[int(REQUESTS * 0.99)] * 1e3:.2f} ms"
                    )
    finally:
        remove_data_dir(data_dir)


if __name__ == "__main__":
    anyio.run(measure)
