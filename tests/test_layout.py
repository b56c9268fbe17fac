"""The package's layout stays as designed (docs/DESIGN.md, "Layers"): no import cycle between
modules, no import from a lower layer to a higher one, no source file over 450 lines.

Every import counts: inside functions (a dependency all the same), under
``if TYPE_CHECKING:`` (a cycle a type checker needs is still a cycle of design), and by
string (``importlib.import_module("distillmeter.commands.run")``, a module path in a table):
a string that names one of the package's modules, or an f-string that starts with one
(``f"distillmeter.models.{name}"``), is an edge to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "distillmeter"
MAX_LINES = 450

BASE = {"protocol", "errors", "configbase", "paths", "terminal", "privacy", "storage"}
# What each area of the package may import (besides itself). An area is the first name
# under distillmeter/: a subpackage or a top-level module; "distillmeter" is the package's
# own __init__ (the `from distillmeter import EnergyMeter, account` facade).
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "errors": {"protocol"},
    "configbase": set(),
    "paths": set(),
    "terminal": set(),  # rich only: the console, user text made inert
    "privacy": set(),  # secrets redacted in everything written or printed
    "storage": {"errors", "protocol"},  # files written safely: atomic replace, run locks
    "energy": BASE,
    # accounting reads a multi-process run whose ranks were never merged through the
    # meter's own merge (energy.merge): raw files in, raw files out
    "accounting": BASE | {"energy"},
    "tasks": BASE,
    "models": BASE,
    "tables": BASE,
    "engines": BASE | {"models", "tasks"},
    "analysis": BASE | {"accounting"},
    "render": BASE | {"analysis", "accounting", "tables"},
    "pipelines": BASE | {"energy", "accounting", "tasks", "models", "engines"},
    "integrations": BASE | {"energy", "accounting", "tables"},
    "commands": BASE | {"energy", "accounting", "tasks", "models", "engines", "analysis",
                        "render", "pipelines", "integrations", "tables"},
    "cli": {"distillmeter", "errors", "commands", "energy", "terminal", "privacy"},
    "distillmeter": {"energy", "accounting"},
}


def _modules(root: Path) -> dict[str, Path]:
    pkg = root.name
    out = {}
    for path in root.rglob("*.py"):
        parts = (pkg, *path.relative_to(root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _string_target(node: ast.AST, pkg: str, modules: dict[str, Path]) -> str | None:
    """The module a string names (an import by string), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
        return text if text in modules and text.startswith(pkg + ".") else None
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str) \
                and head.value.startswith(pkg + "."):
            return _resolve(head.value.rstrip("."), modules)
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg.a import b`` counts as pkg.a.b
    when b is a module, else pkg.a; imports by string count too)."""
    pkg, modules = root.name, _modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    prefix = base[: len(base) - node.level + 1]
                    mod = ".".join(prefix + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
                targets = [t for t in targets[:-1] if t in modules] or [mod]
            elif (t := _string_target(node, pkg, modules)) is not None:
                targets = [t]
            else:
                continue
            for t in targets:
                if t == pkg or t.startswith(pkg + "."):
                    found = _resolve(t, modules)
                    if found is not None and found != name:
                        deps.add(found)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]],
                   allowed: dict[str, set[str]]) -> list[str]:
    """Every import from one area to another that ``allowed`` does not list."""
    bad = []
    for src, deps in sorted(graph.items()):
        a = area(src)
        for dst in sorted(deps):
            b = area(dst)
            if b != a and b not in allowed.get(a, set()):
                bad.append(f"{src} -> {dst} ({a} may not import {b})")
    return bad


def test_no_import_cycle_between_modules():
    assert cycles(import_graph(SRC)) == []


def test_no_import_against_the_layers():
    graph = import_graph(SRC)
    assert {area(m) for m in graph} <= set(ALLOWED), "a new area: give it its place in ALLOWED"
    assert upward_imports(graph, ALLOWED) == []


def test_no_source_file_over_the_limit():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := p.read_text(encoding="utf-8").count("\n") + 1) > MAX_LINES}
    assert long == {}


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "energy/__init__.py": "",
        "energy/meter.py": "from pkg.energy import sensors\n",
        # inside a function, still a dependency
        "energy/sensors.py": "def f():\n    from pkg.energy.meter import x\n",
        "accounting/__init__.py": "",
        "accounting/core.py": "X = 1\n",
        "energy/merge.py": "from pkg.accounting.core import X\n",
        # for type checkers only, still a dependency
        "energy/typed.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from pkg.accounting import core\n"),
        # by string: a module path, and an f-string that starts with one
        "accounting/lazy.py": ("import importlib\n"
                               "X = importlib.import_module('pkg.accounting.core')\n"
                               "Y = 'pkg.not_a_module'\n"),
        "accounting/front.py": "def f(n):\n    return __import__(f'pkg.energy.{n}')\n",
        "accounting/core2.py": "from pkg.accounting import front\n",
    })
    graph = import_graph(root)
    assert cycles(graph) == [["pkg.energy.meter", "pkg.energy.sensors"]]
    assert graph["pkg.accounting.lazy"] == {"pkg.accounting.core"}
    assert graph["pkg.accounting.front"] == {"pkg.energy"}
    bad = upward_imports(graph, {"energy": set(), "accounting": set(), "pkg": set()})
    assert bad == ["pkg.accounting.front -> pkg.energy (accounting may not import energy)",
                   "pkg.energy.merge -> pkg.accounting.core (energy may not import accounting)",
                   "pkg.energy.typed -> pkg.accounting.core (energy may not import accounting)"]


def test_a_cycle_for_type_checkers_only_is_a_cycle(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "tasks/__init__.py": "",
        "tasks/chat.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                          "    from pkg.tasks.files import RawRecord\n"),
        "tasks/files.py": "from pkg.tasks.chat import render\n",
    })
    assert cycles(import_graph(root)) == [["pkg.tasks.chat", "pkg.tasks.files"]]


@pytest.mark.parametrize("module", ["distillmeter.energy", "distillmeter.protocol",
                                    "distillmeter.models.config", "distillmeter.pipelines.config"])
def test_the_measuring_and_config_layers_import_without_torch(module):
    """`import distillmeter.energy` (the meter) and validating a config must not pull in
    torch: a fresh interpreter checks it."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
