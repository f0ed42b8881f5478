"""Task sources: which tasks an env plays in each split, owned by the env layer.

The trainer never branches on an env id: it asks the env's :class:`TaskSource` for the tasks of a
split (``train``, ``valid``, ``test``), for the keyword arguments that make the split's envs, and
for the training-time augmentation of a batch of tasks. A :class:`Task` is the env's reset
``options`` plus a name (and a task type for per-type metrics).

:func:`task_source` builds the source for an env config section (``env.id``, ``env.games``,
``env.data_root``, ``env.task_types``, ``env.tasks``, ...):

==========================  ===================================================================
env                         tasks of a split
==========================  ===================================================================
``slea/TextWorld-v0``       generated games, ``env.games.{train,valid,test}`` (cached on disk)
``slea/ALFWorld-v0``        the games under ``env.data_root``: train = ``json_2.1.1/train``,
                            valid = ``valid_seen`` (in distribution), test = ``valid_unseen``
                            (out of distribution, the split the SLEA-RL paper reports)
``slea/ScienceWorld-v0``    task names (``env.task_types``, default all 30) x variations, with
                            ScienceWorld's own split: train, valid = dev, test
``slea/Sokoban-v0``         generated levels, ``env.games.{train,valid,test}`` of them; each
                            split's seeds are drawn apart (its name salts every level's seed)
any env                     ``env.tasks.{train,valid,test}``: lists of reset options, or JSONL
==========================  ===================================================================

``env.task_types`` keeps only tasks of those types and ``env.max_tasks_per_type`` the first N of
each type. A source whose training split is empty is a :class:`~slea.errors.ConfigError` naming
the key to change; so is a split listed in ``env.tasks`` with no task.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from slea.errors import ConfigError, EnvError

TEXTWORLD = "slea/TextWorld-v0"
ALFWORLD = "slea/ALFWorld-v0"
SCIENCEWORLD = "slea/ScienceWorld-v0"
SOKOBAN = "slea/Sokoban-v0"
SPLITS = ("train", "valid", "test")


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
        """Every task of ``split`` (``train``, ``valid`` or ``test``), in a fixed order."""
        ...

    def env_kwargs(self, split: str) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make`` of the envs that play ``split``."""
        ...

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        """Training tasks as they are played this iteration (identity when the env has no
        augmentation); draws only from ``rng``."""
        ...


# ---------------------------------------------------------------------------- explicit lists


def as_task(entry: Any, *, key: str, default_name: str) -> Task:
    """A :class:`Task` from a list entry: a Task, a mapping of reset options, or the named form
    ``{"options": {...}, "name": ..., "type": ...}`` (recognised by its ``options`` key and no
    keys besides those three). ``ConfigError`` naming ``key`` for anything else."""
    if isinstance(entry, Task):
        return entry
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"{key}: a task is a mapping of reset options (e.g. {{task_id: 0}}) or "
            f"{{name, options, type}}, got {entry!r:.80}"
        )
    if "options" in entry and set(entry) <= {"options", "name", "type"}:
        options, name, kind = entry["options"], entry.get("name", default_name), entry.get("type")
        if not isinstance(options, Mapping):
            raise ConfigError(f"{key}.options: must be a mapping of reset options")
        if not isinstance(name, str) or not isinstance(kind or "", str):
            raise ConfigError(f"{key}: name and type must be strings")
        return Task(name, dict(options), kind or "")
    return Task(default_name, dict(entry))


def read_tasks_file(path: str | os.PathLike[str], *, key: str) -> list[Any]:
    """The entries of a JSONL file (one JSON object per line; blank lines skipped)."""
    p = Path(os.path.expanduser(str(path)))
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{key}: cannot read the task file {str(path)!r} ({exc}); give a JSONL file with one "
            "reset-options object per line, or a list"
        ) from None
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise ConfigError(f"{key}: {p}:{n} is not JSON ({exc})") from None
    return out


class ListedTasks:
    """Tasks given as lists, per split (any env): ``{"train": [{"task_id": 0}, ...], ...}``.

    Args:
        tasks: per split, a list of :class:`Task`, reset-option mappings or ``{name, options,
            type}`` entries, or the path of a JSONL file of them.
        env_kwargs: extra ``gymnasium.make`` keyword arguments per split (default none).
        key: the config key the lists come from, for error messages.
    """

    def __init__(
        self,
        tasks: Mapping[str, Any],
        *,
        env_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        key: str = "tasks",
    ) -> None:
        if not isinstance(tasks, Mapping):
            raise ConfigError(f"{key}: expected a mapping of split -> task list, got {tasks!r:.80}")
        self.lists: dict[str, list[Task]] = {}
        for split, entries in tasks.items():
            where = f"{key}.{split}"
            if split not in SPLITS:
                raise ConfigError(f"{where}: unknown split; use {', '.join(SPLITS)}")
            if isinstance(entries, str | os.PathLike):
                entries = read_tasks_file(entries, key=where)
            if isinstance(entries, Mapping) or not isinstance(entries, Sequence):
                raise ConfigError(f"{where}: expected a list of tasks or a JSONL path")
            self.lists[split] = [
                as_task(e, key=f"{where}[{i}]", default_name=f"{split}-{i}")
                for i, e in enumerate(entries)
            ]
            if not self.lists[split]:
                raise ConfigError(
                    f"{where}: the split has no task; list at least one (reset options such as "
                    "{task_id: 0}) or leave the split out"
                )
        self.extra = {s: dict(kw) for s, kw in (env_kwargs or {}).items()}

    def tasks(self, split: str) -> list[Task]:
        return list(self.lists.get(split, []))

    def env_kwargs(self, split: str) -> dict[str, Any]:
        return dict(self.extra.get(split, {}))

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        return list(tasks)

    def __repr__(self) -> str:
        return f"ListedTasks({ {s: len(t) for s, t in self.lists.items()} })"


# ---------------------------------------------------------------------------- TextWorld


class TextWorldTasks:
    """TextWorld's generated games: task ``i`` of a split is its ``i``-th game.

    Args:
        games: game files per split (``{"train": [...], "valid": [...], "test": [...]}``).
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
        sizes = {"train": g.train, "test": g.test, "valid": g.valid}
        try:  # about 3 s per game per core, on a pool of 2 processes
            games = make_splits(cache, sizes, seed=g.seed, kind=g.kind, level=g.level)
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


# ---------------------------------------------------------------------------- ALFWorld


class ALFWorldTasks:
    """ALFWorld's games from its data layout: task ``i`` of a split is its ``i``-th game (sorted
    by path, as ALFWorld lists them), typed ``pick``, ``look``, ``clean``, ``heat``, ``cool`` or
    ``pick2``.

    Args:
        games: ``game.tw-pddl`` paths per split.
    """

    #: slea's split -> ALFWorld's directory under ``json_2.1.1``.
    DIRS: ClassVar[dict[str, str]] = {
        "train": "train",
        "valid": "valid_seen",
        "test": "valid_unseen",
    }

    def __init__(self, games: Mapping[str, Sequence[str | Path]]) -> None:
        from slea.envs.alfworld import task_type_of

        self.games = {split: [Path(p) for p in paths] for split, paths in games.items()}
        self.types = {s: [task_type_of(p) for p in paths] for s, paths in self.games.items()}

    @classmethod
    def from_config(cls, env: Any) -> ALFWorldTasks:
        """The games under ``env.data_root`` (default ``$ALFWORLD_DATA``) of ``env.task_types``."""
        from slea.envs import alfworld

        _refuse_kwargs(env, ("data_dir", "split", "task_types", "games"), "env.data_root")
        root = (
            Path(os.path.expanduser(os.path.expandvars(env.data_root))) if env.data_root else None
        )
        try:
            types = alfworld.normalize_task_types(env.task_types or None)
        except ValueError as exc:
            raise ConfigError(f"env.task_types: {exc}") from None
        try:
            for d in cls.DIRS.values():
                alfworld.split_dir(root, d)
        except EnvError:
            shown = str(root) if root else f"{alfworld.default_data_dir()} ($ALFWORLD_DATA)"
            raise ConfigError(
                f"env.data_root: no ALFWorld data at {shown} (json_2.1.1/train, valid_seen and "
                "valid_unseen); download it with `alfworld-download` (pip install alfworld; it "
                "fills $ALFWORLD_DATA, default ~/.cache/alfworld), then set env.data_root or "
                "$ALFWORLD_DATA"
            ) from None
        games = {}
        for split, d in cls.DIRS.items():
            try:
                games[split] = alfworld.find_games(root, d, types)
            except EnvError:  # no solvable game of these types in the split
                games[split] = []
        source = cls(games)
        source.games, source.types = _limit(source.games, source.types, env.max_tasks_per_type)
        if not source.games["train"] and env.task_types:
            raise ConfigError(
                f"env.task_types: {list(env.task_types)} matches no playable ALFWorld training "
                f"game under {alfworld.split_dir(root, 'train')}; the types are pick, look, "
                "clean, heat, cool and pick2"
            )
        return source

    def tasks(self, split: str) -> list[Task]:
        return [
            Task(f"{p.parent.parent.name}/{p.parent.name}", {"task_id": i}, kind)
            for i, (p, kind) in enumerate(
                zip(self.games.get(split, []), self.types.get(split, []), strict=True)
            )
        ]

    def env_kwargs(self, split: str) -> dict[str, Any]:
        games = self.games.get(split, [])
        return {"games": [str(p) for p in games]} if games else {}

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        return list(tasks)

    def __repr__(self) -> str:
        return f"ALFWorldTasks({ {s: len(g) for s, g in self.games.items()} })"


# ---------------------------------------------------------------------------- ScienceWorld


class ScienceWorldTasks:
    """ScienceWorld task names x variations: task ``i`` of a split is its ``i``-th (task name,
    variation) pair, typed by its task name.

    Args:
        pairs: ``(task_name, variation)`` pairs per split.
    """

    #: slea's split -> ScienceWorld's variation set.
    SETS: ClassVar[dict[str, str]] = {"train": "train", "valid": "dev", "test": "test"}

    def __init__(self, pairs: Mapping[str, Sequence[tuple[str, int]]]) -> None:
        self.pairs = {split: [(str(n), int(v)) for n, v in ps] for split, ps in pairs.items()}

    @classmethod
    def from_config(cls, env: Any) -> ScienceWorldTasks:
        """The variations of ``env.task_types`` (task names; default all 30) per split."""
        from slea.envs import scienceworld

        _refuse_kwargs(env, ("task_name", "variations", "variation", "tasks"), "env.task_types")
        try:
            names = list(env.task_types) or scienceworld.task_names()
            splits = scienceworld.variation_splits(names)
        except ValueError as exc:
            raise ConfigError(f"env.task_types: {exc}") from None
        except EnvError as exc:
            raise ConfigError(f"env.id: {exc}") from None
        pairs = {
            split: [(name, v) for name, sets in splits.items() for v in sets[sw]]
            for split, sw in cls.SETS.items()
        }
        types = {split: [n for n, _ in ps] for split, ps in pairs.items()}
        kept, _ = _limit(pairs, types, env.max_tasks_per_type)
        return cls(kept)

    def tasks(self, split: str) -> list[Task]:
        return [
            Task(f"{name}-{v}", {"task_id": i}, name)
            for i, (name, v) in enumerate(self.pairs.get(split, []))
        ]

    def env_kwargs(self, split: str) -> dict[str, Any]:
        pairs = self.pairs.get(split, [])
        return {"tasks": [[n, v] for n, v in pairs]} if pairs else {}

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        return list(tasks)

    def __repr__(self) -> str:
        return f"ScienceWorldTasks({ {s: len(p) for s, p in self.pairs.items()} })"


# ---------------------------------------------------------------------------- Sokoban


class SokobanTasks:
    """Generated Sokoban levels: task ``i`` of a split is level ``i`` of the split's level set.

    Args:
        counts: levels per split.
        seed: the level set's seed; each split's name salts every level's seed
            (:func:`slea.envs.sokoban.level_seed`), so the splits share no seed.
    """

    def __init__(self, counts: Mapping[str, int], *, seed: int = 0) -> None:
        self.counts = {split: int(n) for split, n in counts.items()}
        self.seed = int(seed)

    @classmethod
    def from_config(cls, env: Any) -> SokobanTasks:
        """``env.games.{train,valid,test}`` levels of seed ``env.games.seed``; the room and box
        settings are ``env.kwargs`` (width, height, num_boxes, max_states), checked here."""
        from slea.envs.sokoban import check_level_params

        _refuse_kwargs(env, ("split", "seed", "num_levels"), "env.games")
        kw = env.kwargs
        params = {k: kw.get(k, d) for k, d in (("width", 7), ("height", 7), ("num_boxes", 2))}
        params["max_states"] = kw.get("max_states", 50_000)
        try:
            check_level_params(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"env.kwargs: {exc}") from None
        g = env.games
        return cls({"train": g.train, "valid": g.valid, "test": g.test}, seed=g.seed)

    def tasks(self, split: str) -> list[Task]:
        return [Task(f"{split}-{i:04d}", {"task_id": i}) for i in range(self.counts.get(split, 0))]

    def env_kwargs(self, split: str) -> dict[str, Any]:
        n = max(self.counts.get(split, 0), 1)
        return {"split": split, "seed": self.seed, "num_levels": n}

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        return list(tasks)

    def __repr__(self) -> str:
        return f"SokobanTasks({self.counts}, seed={self.seed})"


# ---------------------------------------------------------------------------- helpers


def _refuse_kwargs(env: Any, names: Sequence[str], instead: str) -> None:
    given = [k for k in names if k in env.kwargs]
    if given:
        raise ConfigError(
            f"env.kwargs: {given} are set by {env.id}'s task source; use {instead} instead"
        )


def _limit(
    items: Mapping[str, list[Any]], types: Mapping[str, list[str]], per_type: int
) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """Keep the first ``per_type`` items of each type per split (all when 0)."""
    if not per_type:
        return dict(items), dict(types)
    out: dict[str, list[Any]] = {}
    kinds: dict[str, list[str]] = {}
    for split, xs in items.items():
        seen: dict[str, int] = {}
        out[split], kinds[split] = [], []
        for x, kind in zip(xs, types[split], strict=True):
            if seen.get(kind, 0) < per_type:
                seen[kind] = seen.get(kind, 0) + 1
                out[split].append(x)
                kinds[split].append(kind)
    return out, kinds


class _Filtered:
    """A source with only the tasks of some types (and at most N per type) of another."""

    def __init__(self, inner: TaskSource, types: Sequence[str], per_type: int) -> None:
        self.inner = inner
        self.lists = {}
        for split in SPLITS:
            tasks = [t for t in inner.tasks(split) if not types or t.type in types]
            kinds = {split: [t.type for t in tasks]}
            self.lists[split] = _limit({split: tasks}, kinds, per_type)[0][split]

    def tasks(self, split: str) -> list[Task]:
        return list(self.lists.get(split, []))

    def env_kwargs(self, split: str) -> dict[str, Any]:
        return self.inner.env_kwargs(split)

    def augment(self, tasks: Sequence[Task], rng: np.random.Generator) -> list[Task]:
        return self.inner.augment(tasks, rng)


SOURCES: dict[str, Callable[[Any], TaskSource]] = {
    TEXTWORLD: TextWorldTasks.from_config,
    ALFWORLD: ALFWorldTasks.from_config,
    SCIENCEWORLD: ScienceWorldTasks.from_config,
    SOKOBAN: SokobanTasks.from_config,
}
"""env id -> builder of its task source from the env config section."""

#: Sources that read ``env.task_types`` themselves (the others have no task types).
_TYPED = (ALFWORLD, SCIENCEWORLD)


def task_source(env: Any) -> TaskSource:
    """The task source of an env config section (``env.id``, ``env.games``, ``env.tasks``...).

    ``env.tasks``, when given, replaces the env's own tasks. Raises ConfigError naming the key
    when the training split is empty or a setting does not apply to the env.
    """
    name = env.id.rpartition(":")[2]  # the registered id of a "module:EnvId"
    if env.games.compass_augment and name != TEXTWORLD:
        raise ConfigError(
            f"env.games.compass_augment: only {TEXTWORLD} has compass symmetries "
            f"(env.id is {env.id!r}); set it to false"
        )
    if env.data_root and (name != ALFWORLD or env.tasks):
        raise ConfigError(
            f"env.data_root: only {ALFWORLD}'s own task list reads it (env.id is {env.id!r}); "
            "remove it"
        )
    if env.tasks:
        source: TaskSource = ListedTasks(env.tasks, key="env.tasks")
        return typed(source, env.task_types, env.max_tasks_per_type, key="env.tasks.train")
    build = SOURCES.get(name)
    if build is None:
        raise ConfigError(
            f"env.tasks: {env.id!r} has no task list in slea; list the reset options of its "
            "tasks under env.tasks.train (and .valid, .test), e.g. [{task_id: 0}, {task_id: 1}], "
            "or pass tasks= to slea.Trainer"
        )
    if env.task_types and name not in _TYPED:
        raise ConfigError(
            f"env.task_types: {name} has no task types (ALFWorld and ScienceWorld have); "
            "remove the key"
        )
    source = build(env)
    per_type = 0 if name in _TYPED else env.max_tasks_per_type  # typed sources cap their own
    return typed(source, (), per_type, key="env.id" if name != ALFWORLD else "env.data_root")


def typed(source: TaskSource, types: Sequence[str], per_type: int, *, key: str) -> TaskSource:
    """``source`` with only the tasks of ``types`` (all when empty), at most ``per_type`` of
    each type per split (all when 0). ConfigError naming ``env.task_types`` when no training
    task is left, naming ``key`` when there was none to begin with."""
    if not source.tasks("train"):
        raise ConfigError(
            f"{key}: the env's task source gives no training task; the train split needs at "
            "least one (env.tasks.train lists tasks of any env)"
        )
    if not types and not per_type:
        return source
    out = _Filtered(source, types, per_type)
    if not out.tasks("train"):
        have = sorted({t.type for t in source.tasks("train")})
        raise ConfigError(
            f"env.task_types: {list(types)} matches no training task; the types are {have}"
        )
    return out


__all__ = [
    "ALFWORLD",
    "SCIENCEWORLD",
    "SOKOBAN",
    "SOURCES",
    "SPLITS",
    "TEXTWORLD",
    "ALFWorldTasks",
    "ListedTasks",
    "ScienceWorldTasks",
    "SokobanTasks",
    "Task",
    "TaskSource",
    "TextWorldTasks",
    "as_task",
    "read_tasks_file",
    "task_source",
    "typed",
]
