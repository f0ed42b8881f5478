"""Evaluation: play a split's tasks through the same prompt path as training.

:class:`Evaluator` owns the evaluation vector envs (one per split, built on first use; the
``train`` split reuses the training envs) and plays every task of a split ``episodes_per_task``
times, sampled or greedy. It never changes the training run's memory: it plays on copies of the
clusterer and the library, and with ``eval.evolve`` (test-time evolution) the copy evolves during
that evaluation and is dropped afterwards, so nothing learned on held-out tasks reaches the
training library.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from slea.clustering import ObservationClusterer
from slea.envs.tasks import TaskSource
from slea.envs.vector import SleaVectorEnv
from slea.experience.library import ExperienceLibrary
from slea.rollout import EpisodeSpec, Rollout
from slea.train import setup
from slea.train.config import TrainConfig
from slea.trajectory import Episode


class Play(Protocol):
    """Plays a wave of episodes (the trainer's ``collect`` with its engine and prompts bound)."""

    def __call__(
        self,
        venv: SleaVectorEnv,
        specs: list[EpisodeSpec],
        *,
        clusterer: ObservationClusterer,
        library: ExperienceLibrary | None,
        generator: torch.Generator,
        seed: int,
        greedy: bool = False,
        temperature: float | None = None,
    ) -> Rollout: ...


@contextmanager
def memory_copies(
    clusterer: ObservationClusterer, library: ExperienceLibrary
) -> Iterator[tuple[ObservationClusterer, ExperienceLibrary]]:
    """Independent copies of a clusterer and a library (through their snapshots)."""
    tmp = Path(tempfile.mkdtemp(prefix="slea-eval-"))
    try:
        clusterer.save(tmp / "c.snap")
        library.save(tmp / "l.snap")
        yield ObservationClusterer.load(tmp / "c.snap"), ExperienceLibrary.load(tmp / "l.snap")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def by_type(episodes: Sequence[Episode], types: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Success rate, mean return and episode count per task type (``types[i]`` is the type of
    ``episodes[i]``), types in order of first appearance (the task source's order)."""
    groups: dict[str, list[Episode]] = {}
    for episode, kind in zip(episodes, types, strict=True):
        groups.setdefault(kind, []).append(episode)
    return {
        kind: {
            "success": float(np.mean([e.won for e in eps])),
            "return": float(np.mean([e.total_reward for e in eps])),
            "episodes": len(eps),
        }
        for kind, eps in groups.items()
    }


class Evaluator:
    """Evaluates a policy on the tasks of ``tasks`` as configured by ``cfg``.

    Args:
        cfg: the run's config (rollout shape, retrieval, eval settings, seed).
        tasks: the env's task source.
        train_venv: the training vector env (reused for the ``train`` split), or None.
    """

    def __init__(
        self, cfg: TrainConfig, tasks: TaskSource, train_venv: SleaVectorEnv | None
    ) -> None:
        self.config = cfg
        self.tasks = tasks
        self.train_venv = train_venv
        self.venvs: dict[str, SleaVectorEnv] = {}

    def evaluate(
        self,
        play: Play,
        split: str,
        *,
        clusterer: ObservationClusterer,
        library: ExperienceLibrary,
        iteration: int,
        greedy: bool = False,
        episodes_per_task: int = 1,
        max_tasks: int = 0,
        evolve: Callable[[ExperienceLibrary, Rollout], Any] | None = None,
        use_library: bool | None = None,
        progress: Callable[[int, int], Any] | None = None,
    ) -> dict[str, Any]:
        """Play every task of ``split`` (at most ``max_tasks``; 0 = all) ``episodes_per_task``
        times; return success rate, mean return, episode length, retrieval fraction, steps and
        the fraction of steps whose action was invalid (unparsable in generate mode, or not
        understood by the env; ``1 - invalid_fraction`` is the valid-action rate), and
        (when the tasks have types, e.g. ALFWorld's pick, look, ...) ``by_type``: ``{type:
        {success, return, episodes}}``.

        The library is used when retrieval is active at ``iteration`` and ``retrieval.in_eval``
        (``use_library``, when given, replaces ``retrieval.in_eval``);
        ``evolve(library_copy, rollout)`` runs after each wave when given (test-time evolution).
        Sampled episodes play at ``eval.temperature`` when it is set. ``progress(done, total)``
        is called with the episodes played so far, at the start and after each wave.
        """
        cfg = self.config
        temperature = None if greedy or not cfg.eval.temperature else cfg.eval.temperature
        tasks = self.tasks.tasks(split)
        if max_tasks:
            tasks = tasks[:max_tasks]
        if not tasks:
            return {"split": split, "greedy": greedy, "episodes": 0, "success": 0.0, "return": 0.0}
        specs = [
            EpisodeSpec(group=g, options=task.options, task_id=task.name)
            for g, task in enumerate(tasks)
            for _ in range(episodes_per_task)
        ]
        venv = self._venv(split, len(specs))
        gen = torch.Generator().manual_seed(setup.mix(cfg.train.seed, iteration, split, greedy))
        in_eval = cfg.retrieval.in_eval if use_library is None else use_library
        shown = in_eval and cfg.retrieval.active(iteration, len(library), evaluating=True)
        episodes, rows, retrieved, invalid = [], 0, 0, 0
        used = {  # which library this evaluation played with (a copy; the training one is kept)
            "source": f"copy of the training library after iteration {iteration}",
            "entries": len(library),
            "version": int(library.version),
            "in_prompts": shown,
            "evolved": evolve is not None,
        }
        if progress is not None:
            progress(0, len(specs))
        with memory_copies(clusterer, library) as (clusterer_copy, library_copy):
            for lo in range(0, len(specs), venv.num_envs):
                rollout = play(
                    venv,
                    specs[lo : lo + venv.num_envs],
                    clusterer=clusterer_copy,
                    library=library_copy if shown else None,
                    generator=gen,
                    greedy=greedy,
                    temperature=temperature,
                    seed=setup.mix(cfg.train.seed, lo, split) & 0x7FFFFFFF,
                )
                episodes.extend(rollout.episodes)
                rows += len(rollout)
                retrieved += sum(1 for r in rollout.retrieved if r)
                invalid += int(rollout.invalid.sum())
                if evolve is not None:
                    evolve(library_copy, rollout)
                if progress is not None:
                    progress(len(episodes), len(specs))
            used["entries_after"] = len(library_copy)
        out: dict[str, Any] = {
            "split": split,
            "greedy": greedy,
            "episodes": len(episodes),
            "success": float(np.mean([e.won for e in episodes])),
            "return": float(np.mean([e.total_reward for e in episodes])),
            "episode_length": float(np.mean([len(e) for e in episodes])),
            "retrieval_fraction": retrieved / max(rows, 1),
            "temperature": None if greedy else (temperature or cfg.policy.temperature),
            "steps": rows,
            "invalid_fraction": invalid / max(rows, 1),
            "library": used,
        }
        types = [task.type for task in tasks for _ in range(episodes_per_task)]
        if any(types):
            out["by_type"] = by_type(episodes, types)
        return out

    def _venv(self, split: str, episodes: int) -> SleaVectorEnv:
        if split == "train" and self.train_venv is not None:
            return self.train_venv
        if split not in self.venvs:
            r = self.config.rollout
            size = min(episodes, r.tasks_per_iteration * r.group_size)
            self.venvs[split] = setup.make_venv(self.config, self.tasks, split, size)
        return self.venvs[split]

    def close(self) -> None:
        """Close the evaluation vector envs (not the training one)."""
        for venv in self.venvs.values():
            venv.close()
        self.venvs.clear()


__all__ = ["Evaluator", "Play", "by_type", "memory_copies"]
