"""Configuration and input errors on the command line: one line on stderr, exit status 2,
no traceback (exception groups of task groups unwrapped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.dev_processes import run_booking

pytestmark = pytest.mark.anyio

#: Stores nobody listens on.
NOWHERE = {
    "REDIS_URL": "unix:///nonexistent/redis.sock",
    "DATABASE_URL": "postgresql://postgres@/postgres?host=/nonexistent",
    "BOOKING_STARTUP_WAIT_S": "0",
}


async def assert_refused(data_dir: Path, args: list[str], says: str, **env: str) -> None:
    """``booking ARGS`` exits 2 with ``says`` on the last line of stderr and no traceback."""
    done = await run_booking(data_dir / "d", *args, **env)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"booking {args[0]}"), stderr
    assert says in last, stderr
    assert "XDG_RUNTIME_DIR" not in stderr, stderr


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"name": ', "spec.json: Input data was truncated"),
        ('{"name": "no opening time"}', "missing required field `opens_at`"),
        (
            json.dumps(
                {
                    "name": "twice the same section",
                    "opens_at": "2020-01-01T00:00:00Z",
                    "sections": [
                        {"id": "A", "price_cents": 100, "capacity": 2},
                        {"id": "A", "price_cents": 100, "capacity": 2},
                    ],
                }
            ),
            "section ids must be unique",
        ),
    ],
)
async def test_a_bad_event_spec_is_one_line(data_dir: Path, content: str, says: str) -> None:
    """event create with malformed JSON, a missing field or a spec POST /v1/events refuses."""
    (data_dir / "spec.json").write_text(content)
    await assert_refused(data_dir, ["event", "create", "spec.json"], says)
    assert not (data_dir / "d" / "redis").exists()  # refused before any server started


async def test_a_missing_spec_file_is_one_line(data_dir: Path) -> None:
    """event create with a file that is not there."""
    await assert_refused(
        data_dir, ["event", "create", "absent.json"], "cannot read absent.json: No such file"
    )


async def test_a_short_secret_is_one_line(data_dir: Path) -> None:
    """serve with a BOOKING_SECRET shorter than 16 bytes."""
    await assert_refused(
        data_dir, ["serve"], "BOOKING_SECRET must be at least 16 bytes", BOOKING_SECRET="short"
    )


@pytest.mark.parametrize(
    ("variable", "url"),
    [("REDIS_URL", "http://127.0.0.1:6379"), ("DATABASE_URL", "mysql://db/booking")],
)
async def test_a_bad_url_is_one_line(data_dir: Path, variable: str, url: str) -> None:
    """worker with a store URL of the wrong kind; the URL itself is not repeated."""
    await assert_refused(data_dir, ["worker"], f"{variable} must start with", **{variable: url})


@pytest.mark.parametrize(
    "command", [["serve", "--http-port", "0", "--ws-port", "0"], ["reconcile"]]
)
async def test_an_unreachable_store_is_one_line(data_dir: Path, command: list[str]) -> None:
    """serve (inside its task groups) and reconcile with stores that never answer."""
    await assert_refused(data_dir, command, "Redis unreachable", **NOWHERE)


async def test_several_servers_without_a_secret_are_refused(data_dir: Path) -> None:
    """serve --processes 2 (or --reuse-port) against given stores needs BOOKING_SECRET."""
    await assert_refused(data_dir, ["serve", "--processes", "2"], "needs BOOKING_SECRET", **NOWHERE)
    await assert_refused(data_dir, ["serve", "--reuse-port"], "needs BOOKING_SECRET", **NOWHERE)
