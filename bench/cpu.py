"""CPU time a sale cost each part of the system, from the processes' own counters.

Read from ``/proc`` (Linux): user + system time of every process under this one
(server, worker and bench processes, embedded Redis and PostgreSQL and the sandbox
payment gateway started here), and of the Redis, PostgreSQL and sandbox gateway that
listen on the sale's URLs wherever they were started (PostgreSQL with its backends). Sampled while the sale runs, so that a
process that ends before the sale does still counts (up to its last sample).
CPU seconds per admission or per booking are steadier than rates on a shared
machine: they do not grow when another job takes the cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["ROLES", "CpuMeter", "role_of", "tree_seconds"]

#: The roles in the order a summary lists them.
ROLES = ("servers", "worker", "Redis", "PostgreSQL", "gateway", "bench")

_PROC = Path("/proc")
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _stat(pid: int) -> tuple[int, int, float] | None:
    """(parent pid, start time in ticks, user + system CPU seconds) of ``pid``, or None."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # After the command: state ppid ... utime(14) stime(15) ... starttime(22), 1-based.
    return int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) * _TICK_S


def tree_seconds(pid: int) -> float:
    """User + system CPU seconds so far of ``pid`` (all its threads) and its live children."""
    pids = [pid]
    try:
        children = (_PROC / str(pid) / "task" / str(pid) / "children").read_text()
    except OSError:
        children = ""
    pids += [int(p) for p in children.split()]
    return sum(stat[2] for p in pids if (stat := _stat(p)) is not None)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def role_of(argv: list[str]) -> str | None:
    """The role of a process from its command line (None: not part of the sale)."""
    if not argv:
        return None
    # Redis rewrites its title into argv[0]: "/path/redis-server unixsocket:/path/sock".
    program = Path(argv[0].split(" ", 1)[0]).name
    if program.startswith("redis-server"):
        return "Redis"
    if program.startswith("postgres") or program == "postmaster":
        return "PostgreSQL"
    if "bench.procs" in argv:
        return "bench"
    if "api.cli" in argv:
        command = argv[argv.index("api.cli") + 1 : argv.index("api.cli") + 2]
        if command == ["worker"]:
            return "worker"
        if command == ["serve"]:
            return "servers"
        if command == ["gateway"]:  # the sandbox payment gateway, standing in for Stripe
            return "gateway"
    return None


def _pids() -> Iterator[int]:
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _listening_inodes(url: str) -> set[str]:
    """Socket inodes listening at ``url``'s unix socket or loopback TCP port."""
    parts = urlsplit(url)
    inodes: set[str] = set()
    path = parts.path if parts.scheme == "unix" else ""
    host = parse_qs(parts.query).get("host", [""])[0]
    if host.startswith("/"):  # PostgreSQL on a unix socket in that directory
        path = f"{host}/.s.PGSQL.{parts.port or 5432}"
    if path:
        try:
            lines = (_PROC / "net" / "unix").read_text().splitlines()[1:]
        except OSError:
            return inodes
        for line in lines:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path:
                inodes.add(fields[6])
        return inodes
    if parts.port is None:
        return inodes
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == parts.port:  # LISTEN
                inodes.add(fields[9])
    return inodes


def _owners(inodes: set[str], programs: tuple[str, ...]) -> set[int]:
    """Processes running one of ``programs`` that hold one of the sockets ``inodes``."""
    if not inodes:
        return set()
    wanted = {f"socket:[{i}]" for i in inodes}
    found: set[int] = set()
    for pid in _pids():
        try:
            comm = (_PROC / str(pid) / "comm").read_text().strip()
        except OSError:
            continue
        if not comm.startswith(programs):
            continue
        try:
            fds = os.listdir(_PROC / str(pid) / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(_PROC / str(pid) / "fd" / fd) in wanted:
                    found.add(pid)
                    break
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU seconds by role since the meter was made, for this process's tree, the stores
    at ``redis_url`` and ``database_url`` and the sandbox gateway at ``gateway_url`` (any
    may be empty)."""

    def __init__(
        self,
        own_role: str,
        *,
        redis_url: str = "",
        database_url: str = "",
        gateway_url: str = "",
    ) -> None:
        self.own_role = own_role  # what this process is: the harness alone is "bench"
        self._root = os.getpid()
        self._stores: dict[int, str] = {}
        for url, role, programs in (
            (redis_url, "Redis", ("redis-server",)),
            (database_url, "PostgreSQL", ("postgres", "postmaster")),
            (gateway_url, "gateway", ("python",)),
        ):
            if url:
                for pid in _owners(_listening_inodes(url), programs):
                    self._stores[pid] = role
        self._first: dict[tuple[int, int], float] = {}  # (pid, start) -> CPU when first seen
        self._last: dict[tuple[int, int], tuple[str, float]] = {}  # -> (role, CPU) last seen
        self._sampled = False
        self.sample()

    def sample(self) -> None:
        """Read every process of the sale once more."""
        stats = {pid: s for pid in _pids() if (s := _stat(pid)) is not None}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        roles: dict[int, str] = {}
        for root, role in [(self._root, self.own_role), *self._stores.items()]:
            stack = [root]
            while stack:
                pid = stack.pop()
                if pid not in stats or pid in roles:
                    continue
                if pid == root:
                    roles[pid] = role
                else:
                    named = role_of(_cmdline(pid))
                    if named is None and role in ("Redis", "PostgreSQL"):
                        named = role  # a backend of the store
                    if named is None and (seen := self._last.get((pid, stats[pid][1]))):
                        # Ended and not yet reaped, a process has no command line left:
                        # it keeps the role it had while it ran.
                        named = seen[0]
                    roles[pid] = named or "other"
                stack.extend(children.get(pid, []))
        for pid, role in roles.items():
            _, start, cpu = stats[pid]
            key = (pid, start)
            if key not in self._first:
                # Running before the meter: count from now; started during the sale: all of it.
                self._first[key] = cpu if not self._sampled else 0.0
            self._last[key] = (role, cpu)
        self._sampled = True

    def seconds(self) -> dict[str, float]:
        """CPU seconds by role over the samples so far (roles never seen are left out)."""
        out: dict[str, float] = {}
        for key, (role, cpu) in self._last.items():
            out[role] = out.get(role, 0.0) + max(cpu - self._first[key], 0.0)
        return out
