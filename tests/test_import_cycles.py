"""No import cycles between the modules of agent/, collector/, common/ and playbooks/.

Read with ``ast`` only (nothing is imported). Every import statement counts: module
level, inside ``if TYPE_CHECKING:`` (a type-only cycle still ties two modules
together), and inside functions (a lazy import that hides a cycle is still one). An
import of ``a.b.c`` is an edge to ``a.b.c`` (or to its nearest first-party module when
``c`` is a name in ``a.b``); edges to a module's own enclosing packages are left out,
since Python initialises those first anyway.

Packages are checked too, one node per package directly under a program
(``collector.tickets``, ``collector.server``, and each top-level module such as
``collector.alertmanager``): the gateway, server and portal, or tickets and notify,
must not import each other. One knot remains and is pinned here so it cannot grow:
the store imports the domain models (``tickets/model.py``, ``runs/model.py``, ...),
while those packages' services use the store.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = ("agent", "collector", "common", "playbooks")

# Package-level knot left for later: the domain packages' models and services share a
# package, and the store sits between them (see the module docstring).
KNOWN_PACKAGE_KNOT = frozenset(
    {
        "collector.alertmanager",
        "collector.approval_check",
        "collector.archive",
        "collector.audit",
        "collector.history",
        "collector.inspections",
        "collector.revocation",
        "collector.rules",
        "collector.runs",
        "collector.sessions",
        "collector.store",
        "collector.tickets",
    }
)


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the programs."""
    found: dict[str, Path] = {}
    for program in PROGRAMS:
        for path in sorted((REPO / program).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every dotted name an import statement in ``path`` asks for (absolute)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join([*base, *([module] if module else [])])
            yield from (f"{module}.{alias.name}" for alias in node.names)


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for wanted in _imported(name, path):
            while wanted and wanted not in modules:
                wanted = wanted.rpartition(".")[0]
            if wanted and wanted != name and not name.startswith(f"{wanted}."):
                targets.add(wanted)
        graph[name] = targets
    return graph


def package_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The graph with each module folded into its package under a program."""

    def home(module: str) -> str:
        return ".".join(module.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = folded.setdefault(home(module), set())
        edges |= {home(t) for t in targets if home(t) != home(module)}
    return folded


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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


def _explain(graph: Mapping[str, set[str]], component: list[str]) -> str:
    members = set(component)
    return "\n".join(f"  {m} -> {sorted(graph[m] & members)}" for m in component)


def test_no_module_imports_itself_through_others() -> None:
    graph = import_graph(module_files())
    found = cycles(graph)
    assert found == [], "import cycles:\n" + "\n".join(_explain(graph, c) for c in found)


def test_packages_import_each_other_only_in_the_known_knot() -> None:
    graph = package_graph(import_graph(module_files()))
    found = [c for c in cycles(graph) if set(c) != KNOWN_PACKAGE_KNOT]
    assert found == [], "package cycles:\n" + "\n".join(_explain(graph, c) for c in found)


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_relative_type_checking_and_lazy_imports_are_edges(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    files = {"pkg": tmp_path / "pkg" / "__init__.py"}
    for name, text in {
        "pkg.one": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import two\n",
        "pkg.two": "def late():\n    from pkg.three import thing\n",
        "pkg.three": "import pkg.one\nthing = 1\n",
    }.items():
        files[name] = tmp_path / "pkg" / f"{name.split('.')[1]}.py"
        files[name].write_text(text)
    files["pkg"].write_text("")
    graph = import_graph(files)
    assert graph["pkg.one"] == {"pkg.two"} and graph["pkg.two"] == {"pkg.three"}
    assert cycles(graph) == [["pkg.one", "pkg.three", "pkg.two"]]
