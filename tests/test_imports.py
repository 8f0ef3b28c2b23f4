"""The layering of ecmlib, checked on every import (module level or inside a function).

The method (``ecmlib.method``: model, losses, localisation, evaluation) and the data readers
(``ecmlib.data``) sit on the shared helpers (``ecmlib.errors``, ``ecmlib.io``, ``ecmlib.datasets``) and know
nothing of the machinery above them; training sits on both; studies on training; views
(figures, the explorer) on all of those; the command line and the parity check on top. A
module may import from its own package and from the packages its layer lists, never from
above: a back-import fails :func:`test_ecmlib_follows_its_layers`, naming the file and line.
There is no import cycle either.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ecmlib"

BASE = {"ecmlib", "ecmlib.errors", "ecmlib.io", "ecmlib.datasets", "ecmlib.env"}
#: package (or top-level module) -> what it may import besides itself
ALLOWED: dict[str, set[str]] = {
    "ecmlib": set(), "ecmlib.errors": set(), "ecmlib.io": set(), "ecmlib.datasets": set(), "ecmlib.env": set(),
    "ecmlib.method": BASE,
    "ecmlib.data": BASE,
    "ecmlib.training": BASE | {"ecmlib.method", "ecmlib.data"},
    "ecmlib.studies": BASE | {"ecmlib.method", "ecmlib.data", "ecmlib.training"},
    "ecmlib.views": BASE | {"ecmlib.method", "ecmlib.data", "ecmlib.training",
                            "ecmlib.studies"},
}
TOP = {"ecmlib.cli", "ecmlib.parity", "ecmlib.__main__"}   # may import anything


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, imported module) of every ``import``/``from`` inside ``package``."""
    name = module_name(path, package)
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    root = package.name
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root:
                continue
            if node.module is None or target in _packages(package):
                # `from . import x` / `from .pkg import mod`: the names may be modules
                out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            out.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == root]
    return out


def _packages(package: Path) -> set[str]:
    return {module_name(p, package) for p in package.rglob("__init__.py")}


def _modules(package: Path) -> set[str]:
    return {module_name(p, package) for p in package.rglob("*.py")}


def layer_of(module: str, root: str = "ecmlib") -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else root


def layering_violations(package: Path = PACKAGE, allowed: dict[str, set[str]] | None = None,
                        top: set[str] | None = None) -> list[str]:
    allowed = ALLOWED if allowed is None else allowed
    top = TOP if top is None else top
    known = _modules(package)
    out = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        if name in top:
            continue
        mine = layer_of(name, package.name)
        for line, target in imports(path, package):
            if target not in known:
                continue
            theirs = layer_of(target, package.name)
            if theirs != mine and theirs not in allowed.get(mine, set()):
                out.append(f"{path.relative_to(package.parent)}:{line}: {mine} imports "
                           f"{target} ({theirs} is above it)")
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    known = _modules(package)
    return {module_name(p, package): {t for _, t in imports(p, package)
                                      if t in known and t != module_name(p, package)
                                      and t not in _packages(package)}
            for p in package.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}          # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
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


def test_ecmlib_follows_its_layers():
    bad = layering_violations()
    assert not bad, "back-imports:\n" + "\n".join(bad)


def test_every_package_has_a_layer():
    for pkg in _packages(PACKAGE) | {m for m in _modules(PACKAGE) if m.count(".") == 1}:
        layer = layer_of(pkg)
        assert layer in ALLOWED or pkg in TOP, f"{pkg} is in no layer of ALLOWED"


def test_ecmlib_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "ecmlib"
    for name, text in {"__init__.py": "", "method/__init__.py": "",
                       "training/__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_a_back_import_is_caught(tmp_path):
    pkg = _fake_package(tmp_path, {
        "method/model.py": "def f():\n    from ..training.train import g\n",
        "training/train.py": "from ..method import model\n"})
    bad = layering_violations(pkg)
    assert len(bad) == 1 and "ecmlib/method/model.py:2: ecmlib.method imports " \
        "ecmlib.training.train" in bad[0], bad
    assert find_cycle(import_graph(pkg)) == ["ecmlib.method.model", "ecmlib.training.train",
                                             "ecmlib.method.model"]


def test_imports_resolve_every_spelling(tmp_path):
    pkg = _fake_package(tmp_path, {
        "training/a.py": ("from . import b\nfrom .b import x\nfrom .. import io\n"
                          "import ecmlib.method.model\nfrom ecmlib.method.model import m\n"),
        "training/b.py": "", "io.py": "", "method/model.py": ""})
    got = {t for _, t in imports(pkg / "training" / "a.py", pkg)}
    assert {"ecmlib.training.b", "ecmlib.io", "ecmlib.method.model"} <= got
