"""Import layering rules, checked by parsing the sources with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("plumbing", "storage", "waitroom", "engine", "realtime", "api", "bench")
#: Clients of outside systems: databases, and the payment provider.
DRIVERS = ("redis", "asyncpg", "trio_asyncio", "sqlite3", "stripe")

# bench modules that may reach past the wire types, and what else they may import.
BENCH_ALLOWED: dict[str, tuple[str, ...]] = {
    # The Lua baseline drives the Redis scripts and keys itself: the system's rival, not a client.
    "bench/baselines.py": ("engine", "storage"),
    # The row-locking baseline is a whole app of its own on PostgreSQL.
    "bench/baseline_app.py": ("engine", "storage"),
    # Chaos kills and restarts the embedded Redis and PostgreSQL servers.
    "bench/chaos.py": ("storage.embedded",),
}


@dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the root
    line: int
    text: str  # as written, one name: "from x import y" or "import x"
    module: str  # the importing module
    name: str  # absolute dotted name imported ("pkg.y" for "from pkg import y")
    target: str | None  # the project module it loads, if any

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the project packages by dotted name (``pkg/__init__.py`` is ``pkg``)."""
    found = {}
    for path in sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def parse_imports(root: Path) -> tuple[Import, ...]:
    """Every import statement, nested ones too, one entry per imported name."""
    modules = module_files(root)

    def resolve(name: str) -> str | None:  # the longest prefix of name that is a project module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found = []
    for module, path in modules.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [(f"import {a.name}", a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                up = package[: len(package) - node.level + 1] if node.level else []
                pkg = ".".join([*up, *filter(None, [node.module])])
                head = f"from {'.' * node.level}{node.module or ''} import "
                names = [(head + a.name, f"{pkg}.{a.name}".removesuffix(".*")) for a in node.names]
            else:
                continue
            rel = path.relative_to(root).as_posix()
            found += [Import(rel, node.lineno, t, module, n, resolve(n)) for t, n in names]
    return tuple(sorted(found, key=lambda i: (i.path, i.line)))


def find_cycles(root: Path) -> list[list[Import]]:
    """A shortest import cycle through each module not on a cycle found before; [] if none."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in parse_imports(root):
        if imp.target and imp.target != imp.module:
            graph.setdefault(imp.module, {}).setdefault(imp.target, imp)

    def shortest_cycle(start: str) -> list[Import]:
        reached_by: dict[str, Import] = {}  # breadth-first from start
        queue = [start]
        for node in queue:
            for target, imp in sorted(graph.get(node, {}).items()):
                if target == start:
                    cycle = [imp]
                    while cycle[0].module != start:
                        cycle.insert(0, reached_by[cycle[0].module])
                    return cycle
                if target not in reached_by:
                    reached_by[target] = imp
                    queue.append(target)
        return []

    cycles: list[list[Import]] = []
    for start in sorted(graph):
        if all(start != imp.module for cycle in cycles for imp in cycle):
            cycles += [cycle] if (cycle := shortest_cycle(start)) else []
    return cycles


def violations(
    root: Path,
    sources: tuple[str, ...],
    *,
    allowed: tuple[str, ...] | None = None,
    forbidden: tuple[str, ...] = (),
    exempt: Mapping[str, tuple[str, ...]] | None = None,
) -> list[str]:
    """Imports in modules under ``sources`` of a project package outside ``allowed``, or of
    any name (third-party too) under ``forbidden``, less the names ``exempt`` for their file."""
    missing = [s for s in sources if not any(under(m, (s,)) for m in module_files(root))]
    assert not missing, f"no .py files for {missing} under {root}: the rule would pass vacuously"
    bad: dict[str, list[str]] = {}  # "file:line: from x" -> offending names
    for imp in parse_imports(root):
        if not under(imp.module, sources) or under(imp.name, (exempt or {}).get(imp.path, ())):
            continue
        internal = imp.name.split(".")[0] in PACKAGES
        outside = internal and allowed is not None and not under(imp.name, allowed)
        if outside or under(imp.name, forbidden):
            head, _, name = str(imp).rpartition(" import ")
            bad.setdefault(head, []).append(name)
    return [f"{head} import {', '.join(names)}" for head, names in bad.items()]


def check(sources: tuple[str, ...], **rule: Any) -> None:
    bad = violations(ROOT, sources, **rule)
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_no_cycles() -> None:
    """No import cycle between the project's modules."""
    assert all(any(under(m, (p,)) for m in module_files(ROOT)) for p in PACKAGES)
    found = ["\n".join(f"  {i}  ({i.module} -> {i.target})" for i in c) for c in find_cycles(ROOT)]
    assert not found, "import cycles:\n" + "\n\n".join(found)


def test_plumbing_is_a_leaf() -> None:
    """plumbing imports no other project package."""
    check(("plumbing",), allowed=("plumbing",))


def test_storage_layer() -> None:
    """storage imports only storage and plumbing."""
    check(("storage",), allowed=("storage", "plumbing"))


def test_waitroom_layer() -> None:
    """waitroom imports only waitroom, storage and plumbing (never engine)."""
    check(("waitroom",), allowed=("waitroom", "storage", "plumbing"))


def test_engine_layer() -> None:
    """engine imports only engine, waitroom, storage and plumbing."""
    check(("engine",), allowed=("engine", "waitroom", "storage", "plumbing"))


def test_realtime_layer() -> None:
    """realtime imports no storage, api or bench module."""
    check(("realtime",), forbidden=("storage", "api", "bench"))


def test_api_http_layer() -> None:
    """api.http imports no storage or bench module."""
    check(("api.http",), forbidden=("storage", "bench"))


def test_api_is_the_top() -> None:
    """Nothing outside api (tests aside) imports api, but bench its client (checked below)."""
    check(tuple(p for p in PACKAGES if p not in ("api", "bench")), forbidden=("api",))


def test_bench_uses_the_wire_only() -> None:
    """bench imports only the client, realtime.protocol and plumbing, except the BENCH_ALLOWED
    modules."""
    allowed = ("bench", "api.client", "realtime.protocol", "plumbing")
    check(("bench",), allowed=allowed, exempt=BENCH_ALLOWED)


#: What loading the client may load: the wire types, their packages' (empty) faces, plumbing.
CLIENT_CLOSURE = ("api.client", "api.http.schemas", "realtime.protocol", "plumbing")


def loaded_by(root: Path, module: str) -> set[str]:
    """The project modules that importing ``module`` loads: what it imports, the packages
    on the way (a package's ``__init__`` runs first), and so on."""
    graph: dict[str, set[str]] = {}
    for imp in parse_imports(root):
        if imp.target:
            graph.setdefault(imp.module, set()).add(imp.target)
    modules = module_files(root)
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for m in [".".join(parts[:i]) for i in range(1, len(parts))] + [name]:
            if m in modules and m not in seen:
                seen.add(m)
                todo += graph.get(m, set())
    return seen


def test_client_loads_only_the_wire() -> None:
    """api.client is a leaf of the program: loading it loads the wire types (REST and
    WebSocket) and plumbing, never the engine, a store or the HTTP app, so the bench may use
    it."""
    packages = {"api", "api.http", "realtime", "plumbing"}  # run on the way; docstrings only
    extra = {m for m in loaded_by(ROOT, "api.client") - packages if not under(m, CLIENT_CLOSURE)}
    assert not extra, f"loading api.client loads {sorted(extra)}"


def test_drivers_only_in_storage() -> None:
    """Only storage (and the two baselines, which are the system's rivals) import the drivers."""
    baselines = {"bench/baselines.py": DRIVERS, "bench/baseline_app.py": DRIVERS}
    check(tuple(p for p in PACKAGES if p != "storage"), forbidden=DRIVERS, exempt=baselines)


def test_opentelemetry_only_in_the_tracing_seam() -> None:
    """Only plumbing/tracing.py imports OpenTelemetry: off, no other module can load it."""
    check(
        PACKAGES, forbidden=("opentelemetry",), exempt={"plumbing/tracing.py": ("opentelemetry",)}
    )


def test_checker_reports_violations(tmp_path: Path) -> None:
    """The checker catches cycles and nested, relative and TYPE_CHECKING imports in a fake tree."""
    for rel, text in {
        "plumbing/a.py": "from . import b\n",
        "plumbing/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from plumbing.a import A\n",
        "engine/x.py": "def f() -> None:\n    from api.http import y\n",
        "api/http/__init__.py": "",
        "api/http/y.py": "from ..services import S\nimport storage.keys\n",
        "api/services.py": "",
        "storage/keys.py": "import redis.asyncio\n",
        "bench/chaos.py": "from storage.embedded import E\nfrom storage.keys import K\nimport asyncpg\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    [cycle] = find_cycles(tmp_path)
    assert [(i.path, i.line, i.target) for i in cycle] == [
        ("plumbing/a.py", 1, "plumbing.b"),
        ("plumbing/b.py", 3, "plumbing.a"),
    ]
    assert ("api.http.y", "api.services") in {(i.module, i.target) for i in parse_imports(tmp_path)}
    found = partial(violations, tmp_path)
    engine_to_api = ["engine/x.py:2: from api.http import y"]
    assert found(("engine",), allowed=("engine", "storage")) == engine_to_api
    assert found(("plumbing", "engine", "bench"), forbidden=("api",)) == engine_to_api
    assert found(("api.http",), forbidden=("storage",)) == ["api/http/y.py:2: import storage.keys"]
    bench = found(("bench",), allowed=("bench",), exempt=BENCH_ALLOWED)
    assert bench == ["bench/chaos.py:2: from storage.keys import K"]
    assert found(("bench", "api"), forbidden=DRIVERS) == ["bench/chaos.py:3: import asyncpg"]
    with pytest.raises(AssertionError, match="vacuously"):
        found(("waitroom",), allowed=("waitroom",))
    loaded = {"api.http", "api.http.y", "api.services", "storage.keys"}  # no api/__init__.py
    assert loaded_by(tmp_path, "api.http.y") == loaded
    assert loaded_by(tmp_path, "plumbing.b") == {"plumbing.a", "plumbing.b"}
