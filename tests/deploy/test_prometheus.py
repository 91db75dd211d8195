"""The monitoring files against a real Prometheus (Debian's package: /usr/bin/prometheus and
/usr/bin/promtool, installed by ./run-tests when missing).

The alert rules pass ``promtool check rules`` and their unit tests (alerts_test.yml); the
scrape config passes ``promtool check config``; and a running system (two server
processes and a worker process on the embedded stores) scraped by Prometheus, with the
scrape config's jobs pointed at its loopback ports, answers every panel query of the
Grafana dashboard with data after a short sale.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import yaml

from api.processes import serving_processes
from bench.harness import BenchOptions, run_bench
from storage.embedded import EmbeddedServers
from tests.api.test_processes import free_port_run
from tests.conftest import ADMIN_KEY, RUNTIME, SECRET, make_settings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "booking.json"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"


def tool(name: str) -> str:
    """Path of a Prometheus binary; a missing one fails wherever it can be installed."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if found:
        return found
    if os.environ.get("CI") or shutil.which("apt-get"):
        pytest.fail(f"{name} is missing: ./run-tests installs it (apt-get install prometheus)")
    pytest.skip(f"{name} is missing and apt-get is not here to install it")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.once
def test_alert_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


@pytest.mark.once
def test_alert_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", "alerts_test.yml", cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.once
def test_scrape_config_passes_promtool_check() -> None:
    done = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard, Grafana's variables filled
    in as Grafana would with every event selected."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$event", ".*")
            out.append((panel["title"], expr))
    return out


@pytest.mark.once
def test_dashboard_reads_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [source] = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "line",
        "admissions",
        "holds",
        "sales",
        "revenue",
        "payment latency",
        "http",
        "projection lag",
        "prompt delivery",
    ):
        assert topic in titles


def loopback_config(jobs: dict[str, list[str]], data: Path) -> Path:
    """deploy/prometheus/prometheus.yml with each job's discovery replaced by the loopback
    targets of the system under test; scraped every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    names = {job["job_name"] for job in config["scrape_configs"]}
    assert names == {"booking-api", "booking-worker", "booking-demo"}
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / rules) for rules in config["rule_files"]]
    kept = []
    for job in config["scrape_configs"]:
        if job["job_name"] not in jobs:  # the demo's fixed ports may be taken here
            continue
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": jobs[job["job_name"]]}]
        kept.append(job)
    config["scrape_configs"] = kept
    path = data / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def running(argv: list[str], ready_url: str) -> AsyncIterator[anyio.abc.Process]:
    """A process of this test, until ``ready_url`` answers 200; terminated on exit."""
    env = {**os.environ, "BOOKING_SECRET": SECRET, "BOOKING_ADMIN_KEY": ADMIN_KEY}
    proc = await anyio.open_process(argv, stdout=subprocess.DEVNULL, stderr=None, env=env)
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            with anyio.fail_after(60):
                while True:
                    assert proc.returncode is None, f"{argv[0]} exited with {proc.returncode}"
                    try:
                        if (await http.get(ready_url)).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.2)
        yield proc
    finally:
        with anyio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.terminate()
            with anyio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def query(http: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    """The instant vector (or scalar) ``expr`` evaluates to now."""
    resp = await http.get("/api/v1/query", params={"query": expr})
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.anyio
@pytest.mark.slow
@pytest.mark.once  # the metrics are the same code on both runtimes
async def test_every_dashboard_panel_has_data(servers: EmbeddedServers, tmp_path: Path) -> None:
    """Serve (2 processes) and a worker process, a short sale, Prometheus scraping them
    with the scrape config's jobs: every panel query of the dashboard returns data."""
    prometheus = tool("prometheus")
    base = free_port_run(3)
    settings = make_settings(
        servers.redis_url, servers.database_url, runtime=RUNTIME, metrics_port=base
    )
    assert servers.redis_url and servers.database_url
    worker = [sys.executable, "-m", "api.cli", "worker", "--runtime", RUNTIME]
    worker += ["--redis-url", servers.redis_url, "--database-url", servers.database_url]
    worker += ["--metrics-port", str(base)]
    prom_port = _free_port()
    async with (
        running(worker, f"http://127.0.0.1:{base}/readyz"),
        serving_processes(settings, 2) as api,
    ):
        targets = {
            "booking-api": [re.sub(r"^http://|/metrics$", "", url) for url in api.metrics_urls],
            "booking-worker": [f"127.0.0.1:{base}"],
        }
        assert len(targets["booking-api"]) == 2
        config = loopback_config(targets, tmp_path)
        argv = [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}"]
        argv += [f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"]
        url = f"http://127.0.0.1:{prom_port}"
        async with (
            running(argv, f"{url}/-/ready"),
            httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as prom,
        ):
            up = 'up{job=~"booking-.*"}'
            with anyio.fail_after(60):  # every process scraped at least once
                while [r["value"][1] for r in await query(prom, up)] != ["1"] * 3:  # noqa: ASYNC110
                    await anyio.sleep(0.5)
            options = BenchOptions(
                scenario="steady",
                clients=150,
                seats=90,
                hold_seconds=2,
                max_active_holds=40,
                max_seconds=60,
                arrival_s=1.0,
                runtime=RUNTIME,
                processes=1,
            )
            report = await run_bench(api.http_url, ADMIN_KEY, options, progress=None)
            assert report.problems == []
            confirmed = report.outcomes["confirmed"]
            assert confirmed > 0
            # Every booking, whichever process took it, reaches Prometheus.
            total = f'sum(booking_bookings_total{{event="{report.event_id}"}})'
            with anyio.fail_after(30):
                while [r["value"][1] for r in await query(prom, total)] != [str(confirmed)]:  # noqa: ASYNC110
                    await anyio.sleep(0.5)

            empty = [
                f"{title}: {expr}" for title, expr in panel_queries() if not await query(prom, expr)
            ]
            events = (await prom.get("/api/v1/label/event/values")).json()["data"]
            rules = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
    assert empty == []
    assert report.event_id in events  # the dashboard's event variable lists it
    health = {r["name"]: r.get("lastError", "") for g in rules for r in g["rules"]}
    assert len(health) == 10 and set(health.values()) == {""}, health
