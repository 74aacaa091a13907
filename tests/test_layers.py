"""The layers point one way, and no module imports itself back.

The project is a stack (README, "Layout"): the NumPy oracle, then the parity harness, then the
framework-neutral run infrastructure, then the two framework columns, then the applications,
then the doc generators and the benchmarks. A module may import only from its own component or
from a lower layer; the two framework columns never import each other, nor do the doc
generators and the benchmarks. Every import counts, those inside functions included, and the
graph of all of them has no cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "torch_impl", "tf_impl", "benchmarks")

# (prefix, layer, component). The longest matching prefix wins. A framework's ``__main__`` is
# its command line, an application: it calls ``shared.apps.impl_cli``.
LAYERS = (
    ("shared", 0, "oracle"),  # the package's own __init__
    ("shared.oracle", 0, "oracle"),
    ("shared.parity", 1, "parity"),
    ("shared.run", 2, "run"),
    ("torch_impl", 3, "torch_impl"),
    ("tf_impl", 3, "tf_impl"),
    ("torch_impl.__main__", 4, "apps"),
    ("tf_impl.__main__", 4, "apps"),
    ("shared.apps", 4, "apps"),
    ("shared.docgen", 5, "docgen"),
    ("benchmarks", 5, "benchmarks"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(path: Path, modules: dict) -> set[str]:
    """The project modules that ``path`` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = [n if n in modules else node.module for n in names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def layer_of(module: str) -> tuple[int, str]:
    best = max(
        (p for p in LAYERS if module == p[0] or module.startswith(p[0] + ".")),
        key=lambda p: len(p[0]),
    )
    return best[1], best[2]


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points up a layer or across to a sibling component."""
    bad = []
    for src, targets in sorted(graph.items()):
        (ls, cs) = layer_of(src)
        for dst in sorted(targets):
            (ld, cd) = layer_of(dst)
            if ld > ls or (ld == ls and cd != cs):
                bad.append(f"{src} ({cs}, layer {ls}) imports {dst} ({cd}, layer {ld})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), or self-imports."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
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
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def project_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        deps = imports_of(path, modules) - {name}
        # a package's own __init__ is imported by every module inside it: not an edge
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def test_every_import_points_down_a_layer():
    assert violations(project_graph()) == []


def test_the_import_graph_has_no_cycle():
    assert cycles(project_graph()) == []


def test_every_module_belongs_to_a_layer():
    top = {m.split(".")[0] + "." + m.split(".")[1] for m in project_graph() if m.count(".")}
    shared = sorted(m for m in top if m.startswith("shared."))
    assert shared == [
        "shared.apps",
        "shared.docgen",
        "shared.oracle",
        "shared.parity",
        "shared.run",
    ]
    assert not list((ROOT / "shared").glob("*.py"))[1:], "shared/ holds only __init__.py and layers"


def test_the_checks_catch_a_back_arrow_and_a_cycle():
    """The checker itself: an oracle module importing the run layer, a column importing the
    other column, and a two-module cycle are each reported."""
    graph = {
        "shared.oracle.losses": {"shared.run.config"},
        "shared.run.config": {"shared.oracle.losses"},
        "torch_impl.moco": {"tf_impl.moco"},
        "tf_impl.train": {"tf_impl.checkpoint"},
        "tf_impl.checkpoint": {"tf_impl.train"},
    }
    bad = violations(graph)
    assert any(
        b.startswith("shared.oracle.losses (oracle, layer 0) imports shared.run") for b in bad
    )
    assert any(b.startswith("torch_impl.moco") for b in bad)
    assert len(bad) == 2
    assert sorted(cycles(graph)) == [
        ["shared.oracle.losses", "shared.run.config"],
        ["tf_impl.checkpoint", "tf_impl.train"],
    ]


def test_the_framework_neutral_layers_import_no_framework():
    """Importing every module of the oracle, the parity harness, the run layer and the apps
    loads neither torch nor TensorFlow (so each framework can be checked in its own process)."""
    code = (
        "import sys, importlib, pkgutil, shared\n"
        "for layer in ('oracle', 'parity', 'run', 'apps'):\n"
        "    pkg = importlib.import_module('shared.' + layer)\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'shared.{layer}.{m.name}')\n"
        "bad = [m for m in ('torch', 'tensorflow', 'torchvision', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
