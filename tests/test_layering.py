"""The layering of the code is a test: a lower layer never imports a higher one.

Layers, lowest first (docs/architecture.md draws them). Modules in one layer separated by
``|`` are independent siblings: neither imports the other. Every import counts, lazy ones
inside functions too (a lazy import hides a dependency, it does not remove it); only
``if TYPE_CHECKING:`` blocks are skipped. A module belongs to the layer of the longest
prefix that names it (``=name``: that module only); a module in no layer fails the test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "drivers", "firmware_sim")

LAYERS: list[list[str]] = [
    [
        "=gateway",
        "=gateway.notify",
        "=gateway.evidence",
    ],  # packages with nothing but a docstring or version
    ["gateway.core"],
    ["drivers"],
    ["firmware_sim"],
    # pure domain models and encodings, then the settings the config is made of
    [
        "gateway.custody.events",
        "gateway.custody.chain",
        "gateway.sop.profiles",
        "gateway.outbox.lineprotocol",
    ],
    [
        "gateway.sop.settings",
        "gateway.sinks.planner.config",
        "gateway.notify.config",
        "gateway.evidence.settings",
        "gateway.commands.config",
    ],
    ["gateway.sop.spikes"],  # a pure rule the normaliser applies at ingest
    ["gateway.config"],
    ["gateway.journal", "gateway.influxql", "gateway.commands"],
    ["gateway.ingest", "gateway.alerts", "gateway.custody", "gateway.evidence.chain"],
    [
        "gateway.sop",
        "gateway.outbox",
        "gateway.notify.policy",
        "gateway.evidence.checkpoint",
    ],
    [
        "gateway.notify.store",
        "gateway.evidence.service",
        "gateway.evidence.verify",
        "gateway.evidence.report_sign",
    ],
    ["gateway.notify.history", "gateway.evidence.report"],
    ["gateway.sinks"],
    ["gateway.notify.channels"],
    ["gateway.notify.service"],
    ["gateway.trace"],
    ["gateway.runtime"],
    [
        "gateway.notify.cli",
        "gateway.evidence.cli",
        "gateway.commands.cli",
    ],  # command parts the apps use
    ["gateway.apps"],
    ["gateway.cli"],
]


def layer_of(module: str, layers: list[list[str]]) -> tuple[int, str]:
    """(layer index, the prefix that placed it) for a module."""
    best: tuple[int, int, str] | None = None
    for i, group in enumerate(layers):
        for entry in group:
            exact = entry.startswith("=")
            prefix = entry.removeprefix("=")
            matches = module == prefix or (not exact and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix), prefix)
    if best is None:
        msg = f"{module} is in no layer: add it to LAYERS"
        raise AssertionError(msg)
    return best[0], best[2]


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of the packages under root, by dotted name."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of a known module, TYPE_CHECKING blocks skipped."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for n in ast.walk(node):
            targets: list[str] = []
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                targets = [n.module] + [f"{n.module}.{a.name}" for a in n.names]
            for t in targets:
                if t in known:
                    yield n.lineno, t


def violations(root: Path, packages: Iterable[str], layers: list[list[str]]) -> list[str]:
    """Every import that goes up a layer or across to an independent sibling."""
    known = modules(root, packages)
    found: list[str] = []
    for name, path in sorted(known.items()):
        mine, my_prefix = layer_of(name, layers)
        for line, target in imports(path, known):
            theirs, their_prefix = layer_of(target, layers)
            where = f"{path.relative_to(root)}:{line}"
            if theirs > mine:
                found.append(f"{where}: {name} ({my_prefix}) imports higher {target}")
            elif theirs == mine and their_prefix != my_prefix:
                found.append(f"{where}: {name} imports its sibling {target} ({their_prefix})")
    return found


def cycles(root: Path, packages: Iterable[str]) -> list[list[str]]:
    """Strongly connected groups of modules (import cycles), inside a layer too."""
    known = modules(root, packages)
    graph = {
        name: sorted({t for _, t in imports(path, known) if t != name})
        for name, path in known.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_anywhere() -> None:
    # A lazy import inside a function hides a cycle, it does not remove it.
    assert cycles(ROOT, PACKAGES) == []


def test_no_module_imports_a_higher_layer_or_a_sibling() -> None:
    assert violations(ROOT, PACKAGES, LAYERS) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The check itself on a temporary tree: a core module importing the runtime.
    for rel, text in {
        "gateway/__init__.py": "",
        "gateway/core/__init__.py": "",
        "gateway/core/model.py": "import gateway.runtime.daemon\n",
        "gateway/runtime/__init__.py": "",
        "gateway/runtime/daemon.py": "from gateway.core.model import x\n",
        "gateway/sop/__init__.py": "",
        "gateway/sop/engine.py": "def f():\n    from gateway.outbox.streams import s\n",
        "gateway/outbox/__init__.py": "",
        "gateway/outbox/streams.py": "",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = violations(tmp_path, ["gateway"], LAYERS)
    assert len(found) == 2
    assert "gateway.core.model (gateway.core) imports higher gateway.runtime.daemon" in found[0]
    assert "gateway.sop.engine imports its sibling gateway.outbox.streams" in found[1]


PROBE = """
import sys
import gateway.config
loaded = sorted(
    m for m in sys.modules
    if m.split(".")[0] in {"aiomqtt", "paho", "sqlite3", "serial", "serial_asyncio_fast"}
    or (m.startswith("drivers.") and m.endswith(".driver"))
    or m.startswith(("gateway.journal", "gateway.runtime", "gateway.sinks.planner.feed"))
)
print(",".join(loaded))
"""


def test_loading_the_config_loads_no_driver_network_library_or_journal() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""
