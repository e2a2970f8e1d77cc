"""The layout's rules, checked on the source: no import circle between sparsepo's modules, and the library's
lower layers never import evaluation, experiments or benchmarks (which sit on top of them). Imports inside
functions count (they are dependencies too); ``if TYPE_CHECKING:`` blocks do not (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sparsepo"
UPPER = ("sparsepo.evaluation", "sparsepo.experiments", "sparsepo.bench")
TOP = {"sparsepo.cli"}  # the command line names every command


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(tree: ast.AST) -> set[str]:
    """Every module or ``module.name`` an import statement outside ``if TYPE_CHECKING:`` names."""
    out: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.update(f"{node.module}.{a.name}" for a in node.names)
            out.add(node.module)
        stack.extend(ast.iter_child_nodes(node))
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(f): f for f in PACKAGE.rglob("*.py")}
    graph = {}
    for name, f in files.items():
        deps = set()
        for target in imported_names(ast.parse(f.read_text())):
            while target and target not in files:  # `from pkg import name`: the module that holds it
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\ndef f():\n    import y\n")
    assert imported_names(tree) == {"typing", "typing.TYPE_CHECKING", "y"}


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_lower_layers_never_import_evaluation_experiments_or_benchmarks():
    bad = {name: sorted(d for d in deps if d.startswith(UPPER))
           for name, deps in import_graph().items() if not name.startswith(UPPER) and name not in TOP}
    assert {k: v for k, v in bad.items() if v} == {}
