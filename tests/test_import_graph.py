"""The package's import graph has no cycles (issue 13, item 8).

The graph is built statically with ``ast`` from every module of ``wattprof``: an edge A -> B for each
``import`` of B in A (``from . import x`` is an edge to the submodule ``x`` when there is one, else
to the package), plus the packages the import passes through (importing ``a.b.c`` runs ``a.b``'s
``__init__``), except A's own enclosing packages (already being imported when A runs). Imports under
``if TYPE_CHECKING:`` are not edges.

Module-level imports (those that run when a module is imported) must form no cycle at all. Imports
inside functions (lazy, to keep ``import wattprof`` light) are checked too: a cycle through them is a
back edge in the layering (e.g. the run store calling up into reports) and fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wattprof

PKG = Path(wattprof.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts)] = (f, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(*, lazy: bool) -> dict[str, set[str]]:
    """``{module: modules it imports}`` within the package; ``lazy`` adds imports inside functions."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for mod, (f, is_pkg) in mods.items():
        ancestors = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        if is_pkg:
            ancestors.add(mod)
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        edges: set[str] = set()

        def add(name: str, explicit: bool, edges: set[str] = edges, ancestors: set[str] = ancestors) -> None:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                n = ".".join(parts[:i])
                if n in mods and (n not in ancestors or (explicit and i == len(parts))):
                    edges.add(n)

        def visit(nodes: list[ast.stmt], depth: int, here: list[str] = here, add=add) -> None:
            for node in nodes:
                if isinstance(node, ast.If) and _is_type_checking(node.test):
                    visit(node.orelse, depth)
                    continue
                if isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name.split(".")[0] == "wattprof":
                            add(a.name, True)
                elif isinstance(node, ast.ImportFrom):
                    base = here[: len(here) - node.level + 1] if node.level else []
                    target = ".".join(base + ([node.module] if node.module else []))
                    if target.split(".")[0] != "wattprof":
                        continue
                    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                    add(target, len(subs) < len(node.names))  # a name, not a submodule: the package runs
                    for s in subs:
                        add(s, True)
                nested = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
                if nested and not lazy and not isinstance(node, ast.ClassDef):
                    continue
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, (ast.stmt, ast.excepthandler))], depth + 1)
                if isinstance(node, ast.Match):
                    for case in node.cases:
                        visit(case.body, depth + 1)

        visit(ast.parse(f.read_text(encoding="utf-8")).body, 0)
        edges.discard(mod)
        graph[mod] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def test_the_graph_sees_the_imports_it_must():
    """The checker itself: known edges of the package are found (a graph without edges has no cycles)."""
    g = import_graph(lazy=False)
    assert "wattprof.run.meta" in g["wattprof.run.writer"]
    assert "wattprof._version" in g["wattprof.run.meta"]
    assert "wattprof.history" in g["wattprof.reports.summary"]
    assert "wattprof.reports.build" in import_graph(lazy=True)["wattprof.analysed_run"]  # inside report()
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_module_level_imports_have_no_cycle():
    assert cycles(import_graph(lazy=False)) == []


def test_no_cycle_at_all():
    """Not even through imports inside functions: the layers only ever import downwards."""
    left = cycles(import_graph(lazy=True))
    assert left == [], "\n".join(" <-> ".join(c) for c in left)
