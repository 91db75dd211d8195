"""``booking demo`` and ``booking bench`` as a user runs them: their output off a terminal,
Ctrl-C, and the niceness of the bench processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from api.commands import FANOUT_NICENESS
from api.wiring import Services
from storage.embedded import EmbeddedServers
from tests.conftest import ADMIN_KEY, RUNTIME

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SALE = ["--rows", "2", "--hold-seconds", "2", "--arrival-seconds", "1", "--max-seconds", "120"]
#: The numbers a progress line and the summary both give.
FRAME = re.compile(
    r"joined (?P<joined>\d+)/\d+ .* admitted (?P<admitted>\d+) .* paid (?P<paid>\d+) .*"
    r"sold (?P<sold>\d+)/\d+ seats; expired (?P<expired>\d+), sold out (?P<sold_out>\d+)"
)
SUMMARY = {
    "joined": r"clients joined +(\d+) of",
    "admitted": r"admitted \(prompted\) +(\d+)",
    "paid": r"confirmed \(paid\) +(\d+)",
    "sold": r"seats sold / capacity +(\d+) /",
    "expired": r"expired +(\d+)",
    "sold_out": r"sold out +(\d+)",
}


def _demo_argv(servers: EmbeddedServers, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "api.cli", "demo", "--runtime", RUNTIME, "--bench-runtime", RUNTIME,
        "--redis-url", servers.redis_url, "--database-url", servers.database_url, *extra,
    ]  # fmt: skip


def _bench_processes(parent: int) -> Iterator[tuple[int, int]]:
    """(pid, niceness) of each ``bench.procs`` child of ``parent`` now, from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if f"\nPPid:\t{parent}\n" in status and b"bench.procs" in cmdline:
            yield int(entry.name), int(stat.rsplit(")", 1)[1].split()[16])  # field 19: nice


def test_demo_output_off_a_terminal(servers: EmbeddedServers, tmp_path: Path) -> None:
    """Redirected, the demo prints plain progress lines (no carriage returns), the event's
    page while it runs, each summary row once, a last line that agrees with the summary, and
    runs its bench processes FANOUT_NICENESS below itself."""
    out, err = tmp_path / "out", tmp_path / "err"
    argv = _demo_argv(servers, "--clients", "60", *SALE)
    seen: dict[int, int] = {}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=stdout, stderr=stderr)
        try:
            while proc.poll() is None:  # polls until the demo ends, whatever it takes
                seen.update(_bench_processes(proc.pid))
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
    # Bytes: read_text would turn a carriage return into a newline.
    text_out, text_err = out.read_bytes().decode(), err.read_bytes().decode()
    assert proc.returncode == 0, text_out + text_err
    assert "\r" not in text_out + text_err and "\x1b[?25l" not in text_err  # no cursor games
    expected = min(19, os.nice(0) + FANOUT_NICENESS)
    assert seen and set(seen.values()) == {expected}, seen

    assert re.search(r"Mail: SMTP smtp://127\.0\.0\.1:\d+, every mail kept in /\S+/mail", text_err)
    page = re.search(r"Waiting-room page: (http://\S+/events/\w+)", text_err)
    assert page is not None, text_err
    frames = [m for m in map(FRAME.search, text_err.splitlines()) if m]
    assert frames and text_err.index(page.group(0)) < text_err.index(frames[0].group(0))

    summary = text_out[text_out.index("Sale summary") :].splitlines()
    labels = [re.split(r"\s{2,}", row.strip())[0] for row in summary[1:-1]]
    assert len(labels) == len(set(labels)), labels
    assert "scenario" in labels and "steady, 1 bench process" in text_out
    assert summary[-1].strip() == "all invariants hold"
    last = frames[-1].groupdict()
    for name, pattern in SUMMARY.items():
        found = re.search(pattern, text_out)
        assert found is not None and found.group(1) == last[name], (name, last, text_out)


@pytest.mark.parametrize("servers_flags", [[], ["--server-processes", "2"]], ids=["one", "two"])
def test_ctrl_c_prints_the_partial_summary_and_exits_130(
    servers: EmbeddedServers, tmp_path: Path, servers_flags: list[str]
) -> None:
    """SIGINT to the demo's process group mid-sale: the buyers stop, the summary of what
    they saw so far is printed, marked interrupted, and the exit code is 130; server
    processes that got the SIGINT too end without failing the demo."""
    out, err = tmp_path / "out", tmp_path / "err"
    # Nobody pays: seats come back only as holds expire, so the sale outlasts the wait below.
    argv = _demo_argv(
        servers, "--clients", "300", "--rows", "2", "--hold-seconds", "5", "--pay-ratio", "0",
        "--arrival-seconds", "1", "--max-seconds", "120", *servers_flags,
    )  # fmt: skip
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            # Until a progress line shows buyers in line (or the demo ends: asserted below).
            while proc.poll() is None and not re.search(r"joined [1-9]", err.read_text()):
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on a terminal does
            code = proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text_out, text_err = out.read_bytes().decode(), err.read_bytes().decode()
    assert code == 130, text_out + text_err
    assert "Sale summary (interrupted after" in text_out, text_out + text_err
    assert "interrupted before every client finished" in text_out
    # Of the clients whose results came back: a bench process caught by the signal before
    # it reported leaves its clients out of a partial summary.
    joined = re.search(r"clients joined +(\d+) of \d+", text_out)
    assert joined is not None and int(joined.group(1)) > 0, text_out + text_err
    # Nobody's shutdown is an error: not the servers', nor the bench's clients whose
    # servers closed their connections under them.
    assert "Traceback" not in text_err, text_err
    if not servers_flags:
        # The servers in the demo's process outlive the Ctrl-C: the audit is still read.
        assert re.search(r"oversold +0\n", text_out), text_out
        assert re.search(r"free \+ held \+ sold = capacity +yes\n", text_out), text_out


@pytest.mark.anyio
async def test_bench_nice_reaches_the_bench_processes(services: Services, tmp_path: Path) -> None:
    """``booking bench --nice 7`` runs itself and its bench processes 7 lower than its parent."""
    argv = [
        sys.executable, "-m", "api.cli", "bench", "--url", services.http_url, "--nice", "7",
        "--clients", "40", "--bench-runtime", RUNTIME, *SALE,
    ]  # fmt: skip
    env = {**os.environ, "BOOKING_ADMIN_KEY": ADMIN_KEY, "BOOKING_RUNTIME": RUNTIME}
    seen: dict[int, int] = {}
    with (tmp_path / "err").open("wb") as stderr:
        async with await anyio.open_process(
            argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        ) as proc:
            while proc.returncode is None:  # polls until the bench ends, whatever it takes
                seen.update(_bench_processes(proc.pid))
                with anyio.move_on_after(0.05):
                    await proc.wait()
    assert proc.returncode == 0, (tmp_path / "err").read_text()
    assert seen and set(seen.values()) == {min(19, os.nice(0) + 7)}, seen


def test_keep_open_serves_the_event_after_the_sale_until_ctrl_c(
    servers: EmbeddedServers, tmp_path: Path
) -> None:
    """With --keep-open the event's page still answers after the summary; Ctrl-C then ends
    the demo with the sale's own exit code."""
    err = tmp_path / "err"
    argv = _demo_argv(servers, "--clients", "20", "--keep-open", *SALE)
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
        try:
            while proc.poll() is None and "stay up until Ctrl-C" not in err.read_bytes().decode():
                time.sleep(0.1)
            page = re.search(r"the waiting-room page is (http://\S+),", err.read_bytes().decode())
            assert page is not None, err.read_bytes().decode()
            assert httpx.get(page.group(1), trust_env=False, timeout=10).status_code == 200
            assert proc.poll() is None, "the servers stayed up"
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert code == 0, err.read_bytes().decode()
