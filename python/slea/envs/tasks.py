"""Task sources: which tasks an env plays in each split, owned by the env layer.

The trainer never branches on an env id: it asks the env's :class:`TaskSource` for the tasks of a
split (``train``, ``test``), for the keyword arguments that make the split's envs, and for the
training-time augmentation of a batch of tasks. A :class:`Task` is the env's reset ``options``
plus a name (and an optional task type for per-type metrics).

:func:`task_source` builds the source for an env config (``env.id``, ``env.games``, ...).
TextWorld's source generates (and caches) its games and plays training tasks under the compass
symmetries when ``env.games.compass_augment`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from slea.errors import ConfigError

TEXTWORLD = "slea/TextWorld-v0"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Task:
    """One task: the env's reset options and a name for the records."""

    name: str
    """Name of the task in the records (e.g. a game file's stem)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Reset options of the env, e.g. ``{"task_id": 3}``."""
    type: str = ""
    """Task type for per-type metrics ("" when the env has none)."""


@runtime_checkable
class TaskSource(Protocol):
    """The tasks of an env, per split."""

    def tasks(self, split: str) -> list[Task]:
        """Every task of ``split`` (``train`` or ``test``), in a fixed order."""
        ...

    def env_kwargs(self, split: str) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make`` of the envs that play ``split``."""
        ...

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        """Training tasks as they are played this iteration (identity when the env has no
        augmentation); draws only from ``rng``."""
        ...


class TextWorldTasks:
    """TextWorld's generated games: task ``i`` of a split is its ``i``-th game.

    Args:
        games: game files per split (``{"train": [...], "test": [...]}``).
        compass_augment: play each training task under a random one of the 8 compass symmetries
            (the reset option ``compass``; one draw per task, so a group shares it).
    """

    def __init__(
        self, games: Mapping[str, Sequence[str | Path]], *, compass_augment: bool = False
    ) -> None:
        self.games = {split: [Path(p) for p in paths] for split, paths in games.items()}
        self.compass_augment = bool(compass_augment)

    @classmethod
    def from_config(cls, env: Any) -> TextWorldTasks:
        """Generate (or find in the cache) the games of ``env.games`` (a GamesConfig)."""
        from slea.envs.textworld import make_splits

        g = env.games
        cache = Path(g.cache_dir) if g.cache_dir else None
        try:  # about 3 s per game per core, on a pool of 2 processes
            games = make_splits(
                cache, {"train": g.train, "test": g.test}, seed=g.seed, kind=g.kind, level=g.level
            )
        except ValueError as exc:
            raise ConfigError(f"env.games: {exc}") from None
        return cls(games, compass_augment=g.compass_augment)

    def tasks(self, split: str) -> list[Task]:
        return [Task(p.stem, {"task_id": i}) for i, p in enumerate(self.games.get(split, []))]

    def env_kwargs(self, split: str) -> dict[str, Any]:
        return {"games": [str(p) for p in self.games.get(split, [])]}

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        if not self.compass_augment:
            return list(tasks)
        turns = rng.integers(8, size=len(tasks))
        return [
            Task(f"{t.name}@compass{int(k)}", {**t.options, "compass": int(k)}, t.type)
            for t, k in zip(tasks, turns, strict=True)
        ]

    def __repr__(self) -> str:
        sizes = {split: len(paths) for split, paths in self.games.items()}
        return f"TextWorldTasks({sizes}, compass_augment={self.compass_augment})"


class NoTasks:
    """The source of an env that has no task list in slea yet: every split is empty."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id

    def tasks(self, split: str) -> list[Task]:
        return []

    def env_kwargs(self, split: str) -> dict[str, Any]:
        return {}

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        return list(tasks)


SOURCES: dict[str, Callable[[Any], TaskSource]] = {TEXTWORLD: TextWorldTasks.from_config}
"""env id -> builder of its task source from the env config section."""


def task_source(env: Any) -> TaskSource:
    """The task source of an env config section (``env.id``, ``env.games``, ...)."""
    build = SOURCES.get(env.id)
    if env.games.compass_augment and env.id != TEXTWORLD:
        raise ConfigError(
            f"env.games.compass_augment: only {TEXTWORLD} has compass symmetries "
            f"(env.id is {env.id!r}); set it to false"
        )
    return build(env) if build is not None else NoTasks(env.id)


__all__ = ["SOURCES", "SPLITS", "NoTasks", "Task", "TaskSource", "TextWorldTasks", "task_source"]
