#!/usr/bin/env python3
"""How much of the package one training iteration crosses, and the biggest functions.

    PYTHONPATH=python python scripts/loop_map.py [--iterations 1] [--top 10]

Builds a Trainer on ``examples/configs/textworld_tiny_test.yaml`` (in a temporary run dir),
runs one warm-up iteration, then profiles ``train_iteration`` and prints the package files whose
functions it called (with call counts), and the ``--top`` longest functions of ``python/slea``
(lines from ``def`` to the end of the body). Run it on two checkouts to compare a refactor.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from collections import Counter
from pathlib import Path


def biggest_functions(root: Path, top: int) -> list[tuple[int, str]]:
    """``(lines, "file:qualname")`` of the ``top`` longest functions under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        lines = (child.end_lineno or child.lineno) - child.lineno + 1
                        found.append((lines, f"{path.relative_to(root.parent)}:{name}"))
                    stack.append((child, name + "."))
    return sorted(found, reverse=True)[:top]


def files_per_iteration(package: Path, iterations: int) -> Counter[str]:
    """Package files whose functions one ``train_iteration`` calls, with call counts."""
    from slea.train.config import TrainConfig
    from slea.train.trainer import Trainer

    config = Path(__file__).resolve().parents[1] / "examples/configs/textworld_tiny_test.yaml"
    calls: Counter[str] = Counter()
    prefix = str(package)

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "call" and frame.f_code.co_filename.startswith(prefix):
            calls[str(Path(frame.f_code.co_filename).relative_to(package.parent))] += 1

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.from_yaml(config, [f"run.dir={tmp}/run", "logging.progress=false"])
        trainer = Trainer(cfg)
        try:
            trainer.train_iteration()  # warm-up: lazy imports and caches
            sys.setprofile(profile)
            try:
                for _ in range(iterations):
                    trainer.train_iteration()
            finally:
                sys.setprofile(None)
        finally:
            trainer.close()
    return calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    import slea

    package = Path(slea.__file__).resolve().parent
    calls = files_per_iteration(package, args.iterations)
    print(f"files of python/slea called by train_iteration: {len(calls)}")
    for name, n in sorted(calls.items()):
        print(f"  {n:8d}  {name}")
    print(f"the {args.top} longest functions (lines):")
    for lines, name in biggest_functions(package, args.top):
        print(f"  {lines:5d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
