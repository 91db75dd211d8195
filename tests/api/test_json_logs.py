"""JSON logs: every stderr line of a process is one JSON object with its context fields."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from api.logs import configure_logging, say
from plumbing import log_context
from tests.api.booking_process import ROOT, booking
from tests.conftest import ADMIN_KEY, RUNTIME, SECRET

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def json_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Logging configured in JSON mode onto a captured stderr; put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, sys.excepthook, threading.excepthook
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("json", "debug")
    try:
        yield stream
    finally:
        root.handlers[:], level, sys.excepthook, threading.excepthook = saved
        root.setLevel(level)
        logging.captureWarnings(False)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _fail() -> None:
    raise ValueError("boom")


@pytest.mark.once
def test_json_lines_carry_context_warnings_and_crashes(json_stderr: io.StringIO) -> None:
    """Context fields, ``extra`` fields, warnings, thread crashes and status lines are all JSON."""
    log = logging.getLogger("engine.checkout")
    with log_context.bound(request_id="r1", event="e1", ticket=7, hold="e1.7"):
        log.info("paying %s", "e1.7")
        with log_context.bound(booking="bk1"):
            log.debug("done")
    log.warning("outside", extra={"booking": "bk2"})
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("something deprecated", DeprecationWarning, stacklevel=1)
    thread = threading.Thread(target=lambda: 1 / 0, name="crasher")
    thread.start()
    thread.join()
    try:
        _fail()
    except ValueError:
        log.exception("failed")
    say("HTTP API:  http://127.0.0.1:1")

    lines = _lines(json_stderr)
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert _TIME.fullmatch(str(line["time"])), line
    paying, done, outside, warned, crashed, failed, said = lines
    assert paying == {
        "time": paying["time"],
        "level": "INFO",
        "logger": "engine.checkout",
        "message": "paying e1.7",
        "request_id": "r1",
        "event": "e1",
        "ticket": 7,
        "hold": "e1.7",
    }
    assert done["booking"] == "bk1" and done["level"] == "DEBUG"
    assert outside["booking"] == "bk2" and "request_id" not in outside
    assert warned["logger"] == "py.warnings" and "something deprecated" in str(warned["message"])
    assert crashed["level"] == "CRITICAL" and "ZeroDivisionError" in str(crashed["exc"])
    assert "ValueError: boom" in str(failed["exc"])
    assert said["logger"] == "booking" and said["message"] == "HTTP API:  http://127.0.0.1:1"


@pytest.mark.anyio
async def test_serve_writes_only_json_to_stderr(tmp_path: Path) -> None:
    """``booking serve --log-format json`` with embedded Redis and PostgreSQL started from
    scratch: startup, requests, errors and shutdown write nothing but JSON lines."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "BOOKING_SECRET": SECRET,
        "BOOKING_ADMIN_KEY": ADMIN_KEY,
        "BOOKING_RUNTIME": RUNTIME,
    }
    argv = ["serve", "--log-format", "json", "--http-port", "0", "--ws-port", "0"]
    argv += ["--data-dir", str(tmp_path / "data")]
    async with booking(argv, env, tmp_path / "serve.err", "HTTP API:") as (serve, ready):
        async with httpx.AsyncClient(base_url=ready.split()[-1], trust_env=False) as http:
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/no/such/page")).status_code == 404
            assert (await http.post("/v1/events", content=b"{")).status_code == 401
        await anyio.sleep(0.2)
    lines = serve.logged()  # fails on any line that is not JSON
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert _TIME.fullmatch(str(line["time"])), line
    loggers = {line["logger"] for line in lines}
    assert {"booking", "storage.embedded", "hypercorn.error"} <= loggers, loggers
