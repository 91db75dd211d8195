"""CPU by role, read from /proc: the roles named from command lines, and time counted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.cpu import CpuMeter, role_of


def test_roles_from_command_lines() -> None:
    """Each process of a sale is named from its command line, Redis by its rewritten title."""
    py = sys.executable
    assert role_of([py, "-m", "bench.procs", "trio"]) == "bench"
    assert role_of([py, "-m", "api.cli", "worker", "--runtime", "trio"]) == "worker"
    assert role_of([py, "-m", "api.cli", "serve", "--reuse-port"]) == "servers"
    assert role_of(["/x/bin/redis-server unixsocket:/tmp/d/redis/redis.sock"]) == "Redis"
    assert role_of(["postgres: postgres postgres [local] idle"]) == "PostgreSQL"
    assert role_of(["/x/bin/postgres", "-D", "/tmp/d"]) == "PostgreSQL"
    assert role_of([py, "-m", "api.cli", "gateway", "--runtime", "asyncio"]) == "gateway"
    assert role_of([py, "-m", "api.cli", "demo"]) is None  # the harness's own role, given
    assert role_of([]) is None


def test_meter_counts_this_process_and_its_children() -> None:
    """CPU spent after the meter starts counts: this process's under its role, a child
    started meanwhile under the child's, all of it (sampled before it ends)."""
    meter = CpuMeter("servers")
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn 0.3 s of CPU here
        pass
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen(
        [sys.executable, "-c", burn + "input()", "bench.procs"], stdin=subprocess.PIPE
    )
    try:
        time.sleep(0.1)
        give_up = time.monotonic() + 60  # a busy machine takes longer, a broken meter forever
        while meter.seconds().get("bench", 0.0) < 0.25 and time.monotonic() < give_up:
            meter.sample()
            time.sleep(0.05)
    finally:
        child.communicate(b"\n")
    seconds = meter.seconds()
    assert seconds["servers"] >= 0.25 and seconds["bench"] >= 0.25, seconds


# Run in a process of its own: the test session's own children (the embedded servers, the
# sandbox gateway) have no role either, and would be counted as "other" beside the child.
_ENDED_CHILD = """
import json, subprocess, sys, time
from pathlib import Path
from bench.cpu import CpuMeter
meter = CpuMeter("servers")
burn = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass\\n"
child = subprocess.Popen([sys.executable, "-c", burn, "bench.procs"])
try:
    give_up = time.monotonic() + 60
    while meter.seconds().get("bench", 0.0) <= 0.0 and time.monotonic() < give_up:
        meter.sample()  # seen running, as a bench process
        time.sleep(0.02)
    stat = Path(f"/proc/{child.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped
        assert time.monotonic() < give_up, "the child did not exit"
        time.sleep(0.05)
    meter.sample()
finally:
    child.wait()
print(json.dumps(meter.seconds()))
"""


def test_a_process_that_ended_keeps_its_role() -> None:
    """A bench process that has exited but is not reaped yet has no command line left;
    its CPU still counts under the role it had, not under no role ("other")."""
    done = subprocess.run(
        [sys.executable, "-c", _ENDED_CHILD],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    seconds = json.loads(done.stdout)
    assert "other" not in seconds and seconds["bench"] >= 0.25, seconds


# A process listening on loopback that burns 0.3 s of CPU when told: a sandbox gateway
# started by another command, outside the meter's process tree.
_LISTENER = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
sys.stdin.readline()
end = time.process_time() + 0.3
while time.process_time() < end: pass
print("done", flush=True)
sys.stdin.readline()
"""

_METER = """
import json, sys
from bench.cpu import CpuMeter
meter = CpuMeter("bench", gateway_url=sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
meter.sample()
print(json.dumps(meter.seconds()), flush=True)
"""


def test_the_gateway_at_its_url_is_counted_wherever_it_was_started() -> None:
    """The sandbox gateway listening at the sale's gateway URL counts under "gateway",
    though it is no child of the meter's process (shared, started by another command)."""
    root = Path(__file__).resolve().parents[2]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    with subprocess.Popen([sys.executable, "-c", _LISTENER], **pipes) as gateway:  # type: ignore[call-overload]
        assert gateway.stdin and gateway.stdout
        url = f"http://127.0.0.1:{gateway.stdout.readline().strip()}"
        with subprocess.Popen([sys.executable, "-c", _METER, url], cwd=root, **pipes) as meter:  # type: ignore[call-overload]
            assert meter.stdin and meter.stdout
            assert meter.stdout.readline().strip() == "ready"
            gateway.stdin.write("burn\n")
            gateway.stdin.flush()
            assert gateway.stdout.readline().strip() == "done"
            seconds = json.loads(meter.communicate("\n", timeout=60)[0])
        gateway.communicate("\n", timeout=60)
    assert seconds.get("gateway", 0.0) >= 0.25, seconds
