"""slea: multi-turn RL for LLM agents with a step-level, self-evolving experience library.

Public API (names are loaded lazily, so ``import slea`` stays light and never imports torch)::

    import slea
    c = slea.ObservationClusterer(threshold=0.85)
    ids = c.assign_batch(observations)                    # np.ndarray[uint64]
    adv = slea.compute_advantages(batch, estimator="slea")
    lib = slea.ExperienceLibrary(slea.LibraryConfig())
    trainer = slea.Trainer(slea.TrainConfig.from_yaml("examples/configs/textworld_cpu.yaml"))

Gymnasium ids ``slea/TextWorld-v0``, ``slea/ALFWorld-v0``, ``slea/ScienceWorld-v0`` and
``slea/Sokoban-v0`` are registered on import.
"""

from __future__ import annotations

import importlib
from typing import Any

from slea._core import __version__
from slea.errors import (
    ConfigError,
    EngineError,
    EnvError,
    MissingExtraError,
    ModelFileError,
    SleaError,
    SnapshotError,
)

# name -> module that defines it; resolved on first attribute access.
_LAZY: dict[str, str] = {
    # observation canonicalisation and clustering
    "CanonSpec": "slea.clustering",
    "canonicalize": "slea.clustering",
    "canonicalize_batch": "slea.clustering",
    "structural_hash": "slea.clustering",
    "structural_hash_batch": "slea.clustering",
    "simhash": "slea.clustering",
    "simhash_batch": "slea.clustering",
    "ObservationClusterer": "slea.clustering",
    # step-level advantages
    "StepBatch": "slea.algo.advantages",
    "Advantages": "slea.algo.advantages",
    "compute_advantages": "slea.algo.advantages",
    "ESTIMATORS": "slea.algo.advantages",
    # experience library
    "ExperienceLibrary": "slea.experience.library",
    "LibraryConfig": "slea.experience.library",
    "Experience": "slea.experience.library",
    "Candidate": "slea.experience.library",
    "AdmissionReport": "slea.experience.library",
    "HashingEmbedder": "slea.experience.embed",
    "MiniLMEmbedder": "slea.experience.embed",
    "Embedder": "slea.experience.embed",
    "HnswIndex": "slea.experience.hnsw",
    # training
    "TrainConfig": "slea.train.config",
    "Trainer": "slea.train.trainer",
}

__all__ = [
    "ConfigError",
    "EngineError",
    "EnvError",
    "MissingExtraError",
    "ModelFileError",
    "SleaError",
    "SnapshotError",
    "__version__",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slea' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# Importing slea.envs registers slea's gymnasium ids (slea/TextWorld-v0, ...).
importlib.import_module("slea.envs")
