"""The train package imports downwards only: run -> modes/auto -> quick/loop/tasks -> context."""

from __future__ import annotations

import ast
from pathlib import Path

import lensflow.train

PACKAGE = Path(lensflow.train.__file__).parent


def _imports(path: Path) -> set[str]:
    """lensflow.train.* modules imported anywhere in the file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lensflow.train."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[2] for a in node.names if a.name.startswith("lensflow.train.")
            )
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_train_package_has_no_import_cycle_even_through_lazy_imports():
    graph = {p.stem: _imports(p) - {p.stem} for p in PACKAGE.glob("*.py")}
    assert graph["quick"] >= {"context"}  # the graph is really read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_cycle_finder_reports_a_cycle():
    assert _cycle({"run": {"loop"}, "loop": {"context", "run"}, "context": set()}) == [
        "loop",
        "run",
        "loop",
    ]
