"""A ``booking`` command run as a real process, its stderr kept in a file for its log lines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

#: The repository root (the processes run from it).
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Process:
    """A ``booking`` process and the file its stderr goes to."""

    proc: anyio.abc.Process
    stderr: Path

    def lines(self) -> list[str]:
        return self.stderr.read_text(encoding="utf-8").splitlines()

    def logged(self) -> list[dict[str, Any]]:
        """Every stderr line, decoded: a line that is not JSON fails the test here."""
        out = []
        for line in self.lines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"a stderr line is not JSON: {line!r}")
        return out


def _messages(lines: list[str]) -> Iterator[str]:
    """The messages of the JSON lines among ``lines`` (the others are checked later)."""
    for line in lines:
        try:
            yield str(json.loads(line).get("message", ""))
        except ValueError:
            continue


@asynccontextmanager
async def booking(
    argv: list[str], env: dict[str, str], stderr: Path, ready: str
) -> AsyncIterator[tuple[Process, str]]:
    """Run ``booking ARGV`` until the ``with`` ends (SIGTERM); yields it and the message
    of its first log line starting with ``ready``."""
    with stderr.open("wb") as err:
        proc = await anyio.open_process(
            [sys.executable, "-m", "api.cli", *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    process = Process(proc, stderr)
    try:
        with anyio.fail_after(60):
            while True:
                hits = [m for m in _messages(process.lines()) if m.startswith(ready)]
                if hits:
                    break
                assert proc.returncode is None, process.lines()
                await anyio.sleep(0.1)
        yield process, hits[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await proc.wait()
