"""CPU time of a command's processes by role: run a command (e.g. ``booking demo``),
sample its process tree from ``/proc`` every 0.2 s, and print the user + system CPU
seconds each role used (``serve``: API and WebSocket processes; ``worker``; ``bench``;
``redis``; ``postgres``; ``demo``: the command itself; ``other``). A process's last
sample before it exits is what counts, so up to 0.2 s of its CPU may be missed.

    PYTHONPATH=. .venv/bin/python scripts/process_cpu.py [--json OUT] -- ./booking demo ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _sample(root: int, seen: dict[int, tuple[str, float]]) -> None:
    tree = _children()
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        if pid == root:
            cmd = "demo"
        elif not cmd and pid in seen:  # exited, not reaped yet: its command line is gone
            cmd = seen[pid][0]
        seen[pid] = (cmd, cpu)


#: A process's role: the first of these its command line contains.
MARKS = (
    ("serve", "api.cli serve"),
    ("worker", "api.cli worker"),
    ("bench", "bench"),
    ("redis", "redis-server"),
    ("postgres", "postgres"),
)


def _role(cmd: str) -> str:
    if cmd == "demo":
        return "demo"
    return next((role for role, mark in MARKS if mark in cmd), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the totals here")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    started = time.monotonic()
    proc = subprocess.Popen(args.command)
    seen: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        _sample(proc.pid, seen)
        time.sleep(0.2)
    totals: dict[str, float] = {}
    for cmd, cpu in seen.values():
        totals[_role(cmd)] = totals.get(_role(cmd), 0.0) + cpu
    out = {
        "returncode": proc.returncode,
        "wall_s": round(time.monotonic() - started, 1),
        "cpu_s": {k: round(v, 2) for k, v in sorted(totals.items())},
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "processes": [
            [_role(cmd), round(cpu, 2), cmd[:160]]
            for cmd, cpu in sorted(seen.values(), key=lambda p: -p[1])
        ],
    }
    print(json.dumps(out), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(out) + "\n")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
