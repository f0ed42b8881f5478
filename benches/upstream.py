"""Load small, self-contained modules from an upstream checkout the user has (``--upstream DIR``).

The benches compare slea with our restatements of upstream code (written by us, named as such in
every table). Where the upstream code is small and self-contained, ``--upstream DIR`` times the
real thing from the user's own checkout of the released SLEA-RL repository
(github.com/kingofspace0wzz/slea-rl, a verl-agent fork, which holds both files below) or of
verl-agent. Nothing is copied into this project: the files are imported from ``DIR`` at run time.

- ``gigpo/core_gigpo.py`` (verl-agent's GiGPO advantages): its only project import is
  ``from verl import DataProto``, used as a type annotation. When the ``verl`` package is not
  importable, a placeholder module stands in for it while the file loads.
- ``verl/trainer/ppo/forge/step_experience.py`` (the released SLEA-RL observation clustering,
  ``ObservationIndex``): it imports ``verl.trainer.ppo.forge.experience_library`` (standard library
  and NumPy only), which is loaded from the same checkout under that name; the parent packages are
  placeholders, so verl's own ``__init__`` (torch, ray, ...) is not run.

Placeholders are removed from ``sys.modules`` again after loading.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CORE_GIGPO = Path("gigpo") / "core_gigpo.py"
FORGE = Path("verl") / "trainer" / "ppo" / "forge"
STEP_EXPERIENCE = FORGE / "step_experience.py"
EXPERIENCE_LIBRARY = FORGE / "experience_library.py"


class UpstreamError(RuntimeError):
    """The upstream checkout lacks a file the bench needs, or the file does not load."""


def _require(root: Path, rel: Path) -> Path:
    path = Path(root) / rel
    if not path.is_file():
        raise UpstreamError(
            f"--upstream {str(root)!r}: {rel} not found; pass the root of a checkout of "
            "github.com/kingofspace0wzz/slea-rl (or verl-agent for gigpo/core_gigpo.py)"
        )
    return path


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise UpstreamError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UpstreamError(f"{path} failed to load: {type(exc).__name__}: {exc}") from exc
    return module


@contextmanager
def _placeholders(names: list[str], attrs: dict[str, dict[str, object]]) -> Iterator[None]:
    """Empty modules under ``names`` (those not importable already) for the time of a load."""
    added = []
    for name in names:
        if name in sys.modules:
            continue
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so that submodules can be registered below it
        for key, value in attrs.get(name, {}).items():
            setattr(module, key, value)
        sys.modules[name] = module
        added.append(name)
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def core_gigpo(root: str | Path) -> types.ModuleType:
    """verl-agent's ``gigpo/core_gigpo.py`` from the checkout at ``root``, as a module."""
    path = _require(Path(root), CORE_GIGPO)
    if _importable("verl"):
        return _load("_slea_bench_upstream_core_gigpo", path)
    placeholder = type("DataProto", (), {"__doc__": "placeholder: annotations only"})
    with _placeholders(["verl"], {"verl": {"DataProto": placeholder}}):
        return _load("_slea_bench_upstream_core_gigpo", path)


def step_experience(root: str | Path) -> types.ModuleType:
    """The released SLEA-RL ``forge/step_experience.py`` from the checkout at ``root``."""
    root = Path(root)
    lib_path = _require(root, EXPERIENCE_LIBRARY)
    path = _require(root, STEP_EXPERIENCE)
    parents = ["verl", "verl.trainer", "verl.trainer.ppo", "verl.trainer.ppo.forge"]
    lib_name = "verl.trainer.ppo.forge.experience_library"
    with _placeholders(parents, {}):
        had_lib = lib_name in sys.modules
        if not had_lib:
            _load(lib_name, lib_path)
        try:
            return _load("_slea_bench_upstream_step_experience", path)
        finally:
            if not had_lib:
                sys.modules.pop(lib_name, None)
