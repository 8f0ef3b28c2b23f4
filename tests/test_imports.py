"""No import cycle inside ecmlib: every ``from .x import`` (at module level or inside a
function) is an edge, and the graph must have no cycle."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ecmlib"


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = {p.stem for p in package.glob("*.py")}
    graph = {}
    for path in package.glob("*.py"):
        text = path.read_text()
        edges = set(re.findall(r"from \.(\w+)(?:\.\w+)* import", text))
        for group in re.findall(r"from \. import ([\w, ]+)", text):
            edges |= {name.strip() for name in group.split(",")}
        graph[path.stem] = edges & modules - {path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}          # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_ecmlib_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_back_import_is_caught(tmp_path):
    for name, text in {"a.py": "from .b import x\n", "b.py": "def f():\n    from .a import y\n",
                       "c.py": "from . import a\n"}.items():
        (tmp_path / name).write_text(text)
    assert find_cycle(import_graph(tmp_path)) == ["a", "b", "a"]
