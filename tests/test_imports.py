"""The package's import graph: dependencies point one way and no module imports itself in a circle.

Every ``import`` statement in ``python/slea`` counts, lazy ones inside functions included. The
parts sit in layers; a module may import its own layer and the layers below, never above:

0. foundations: ``_core`` (the extension), ``errors``, ``rundir``, ``trajectory``, ``engine``
1. algorithms and data: ``clustering``, ``algo``, ``experience``, ``envs``, ``testing``
2. acting: ``policy``, ``rollout``, ``models``, ``wrappers``
3. running and reading runs: ``train``, ``report`` (neither imports the other), ``serve``
4. the command line: ``cli``, ``__main__``

``slea/__init__.py`` re-exports names lazily (by module path strings, not imports) and registers
the envs; a module below it never does ``import slea`` to reach a sibling.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "python"

LAYERS: dict[str, int] = {
    "slea._core": 0,
    "slea.errors": 0,
    "slea.rundir": 0,
    "slea.trajectory": 0,
    "slea.engine": 0,
    "slea.clustering": 1,
    "slea.algo": 1,
    "slea.experience": 1,
    "slea.envs": 1,
    "slea.testing": 1,
    "slea.policy": 2,
    "slea.rollout": 2,
    "slea.models": 2,
    "slea.wrappers": 2,
    "slea.train": 3,
    "slea.report": 3,
    "slea.serve": 3,
    "slea.cli": 4,
    "slea.__main__": 4,
}

FORBIDDEN = {("slea.train", "slea.report"), ("slea.report", "slea.train")}
"""Pairs of parts in one layer that must not import each other."""


def _modules() -> dict[str, Path]:
    out = {"slea._core": ROOT / "slea" / "_core.pyi"}
    for p in (ROOT / "slea").rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the slea modules it imports (anywhere in its body)."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in modules.items():
        if path.suffix != ".py":
            continue
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                # `from a import b` imports the module a.b when there is one, else from a
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for name in names:
                if name == "slea" or name.startswith("slea."):
                    target = resolve(name)
                    if target and target != mod:
                        edges[mod].add(target)
    return edges


def _part(mod: str) -> str:
    return ".".join(mod.split(".")[:2])


def test_every_part_has_a_layer() -> None:
    parts = {_part(m) for m in _modules()} - {"slea"}
    assert parts <= set(LAYERS), f"give these parts a layer: {sorted(parts - set(LAYERS))}"


def test_dependencies_point_down() -> None:
    modules = _modules()
    wrong = []
    for mod, targets in _imports(modules).items():
        if mod == "slea":
            continue
        for target in targets:
            a, b = _part(mod), _part(target)
            if b == "slea":
                wrong.append(f"{mod} imports the package root; import the module that defines it")
            elif a != b and (LAYERS[b] > LAYERS[a] or (a, b) in FORBIDDEN):
                wrong.append(f"{mod} (layer {LAYERS[a]}) imports {target} (layer {LAYERS[b]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circles() -> None:
    edges = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "slea"
    (pkg / "algo").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "algo" / "__init__.py").write_text("")
    (pkg / "algo" / "update.py").write_text("def f():\n    from ..train import config\n")
    (pkg / "train").mkdir()
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "train" / "config.py").write_text("from slea.algo.update import f\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        edges = _imports(_modules())
    finally:
        ROOT = saved
    assert edges["slea.algo.update"] == {"slea.train.config"}
    assert edges["slea.train.config"] == {"slea.algo.update"}
