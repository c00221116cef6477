"""The code's shape, kept: no import circles, no import climbing up the layers, no module over 500 lines, no
class made by mixing in two or more of the project's own classes (Tornado-style request-handler mixins aside).

Read from the sources (every import counts, ``TYPE_CHECKING`` and function-level ones too: they are
dependencies all the same) and, for the classes, from the imported modules themselves.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("proxy", "spawner", "loadtest")
MAX_LINES = 500

# The layers, lowest first: a module may import from its own layer's packages and from lower ones. Within a
# layer, packages may use each other as long as no circle forms (checked below).
LAYERS = [
    # what everything may use: the version, settings' types, retries, the secret, reading processes, reloads
    {"spawner", "spawner.traits", "spawner.backoff", "spawner.secret", "spawner.probe", "spawner.configref",
     "spawner.reload", "spawner.contents"},  # (contents: a notebook server's files, through its contents API)
    {"spawner.engines", "spawner.agent"},  # the container engines, and the node agent beside them
    {"spawner.pool"},  # the warm pool on an engine
    {"spawner.keep", "spawner.record", "spawner.guard", "spawner.classroom"},  # what watches and keeps the pool's
    {"spawner.content", "spawner.report"},  # material from git (kept work's writes), the report (the record's)
    {"spawner.workshops"},  # several pools, each a workshop
    {"spawner.web"},  # the pages and APIs
    {"start"},  # the service put together
]
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}
# The proxy stands alone below everything (nbpool's own code uses it; it uses none of nbpool's); loadtest is
# a client of the service, which may use the report's pure functions, and nothing of the service may use it.
OUTSIDE = {"proxy": {"proxy"}, "loadtest": {"loadtest", "spawner.report", "spawner.record"}}


def modules() -> dict[str, Path]:
    found = {"start": ROOT / "start.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The project's modules ``name`` imports (``from . import x`` is x when x is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                out.add(target)
    return out


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "spawner" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_layers_name_every_package():
    packages = {package_of(m) for m in MODULES} - set(OUTSIDE)
    assert packages <= set(RANK), f"put these in LAYERS: {sorted(packages - set(RANK))}"


def test_no_module_imports_a_module_that_imports_it_back():
    assert circles(GRAPH) == []


def test_no_package_circle():
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        packages.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(module))
    assert circles(packages) == []


def test_no_import_climbs_up_the_layers():
    wrong = []
    for module, targets in GRAPH.items():
        source = package_of(module)
        for target in sorted(targets):
            dest = package_of(target)
            if source in OUTSIDE:
                ok = dest in OUTSIDE[source]
            elif dest in OUTSIDE:
                ok = dest == "proxy"  # nbpool uses its proxy; nothing of the service uses the load tester
            else:
                ok = RANK[dest] <= RANK[source]
            if not ok:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_module_is_over_500_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def own(cls: type) -> bool:
    return cls.__module__.split(".")[0] in PACKAGES or cls.__module__ == "start"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.endswith("__main__")))  # (entry points run)
def test_no_class_mixes_in_two_of_the_projects_classes(name):
    from tornado.web import RequestHandler

    module = importlib.import_module(name)
    mixed = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__ or issubclass(cls, RequestHandler):
            continue  # imported here, or a request handler (Tornado's mixin style is its API)
        bases = [base for base in cls.__bases__ if own(base)]
        if len(bases) >= 2:
            mixed.append(f"{cls.__name__}({', '.join(b.__name__ for b in bases)})")
    assert mixed == []


def test_the_checks_see_what_they_must():
    # A circle and a climb, made up, are found (the checks are not vacuous).
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert GRAPH["spawner.pool.pool"] >= {"spawner.pool.launch", "spawner.engines.base"}
    assert "proxy.routes" in GRAPH["spawner.pool.routing"]
    assert RANK["spawner.web"] > RANK["spawner.pool"] > RANK["spawner.engines"]


def test_the_code_passes_ruff():
    # (pyproject.toml's rules: unused names, import order, loop variables a closure does not bind, 120 columns)
    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(ROOT)],
                           capture_output=True, text=True, cwd=ROOT)
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr[-1000:]
