"""``slea/ScienceWorld-v0``: the scienceworld package's tasks (a Java simulator; needs Java 17+).

::

    env = gymnasium.make("slea/ScienceWorld-v0", task_name="find-non-living-thing",
                         variations="train", max_episode_steps=100)
    obs, info = env.reset(options={"task_id": 3})     # the 4th training variation

``task_id`` i is the i-th variation of ``variations`` (ScienceWorld's train/dev/test split of the
task's variations, or an explicit list); with ``tasks=[(task_name, variation), ...]`` it is the
i-th pair, so one env plays several ScienceWorld tasks (slea's task source does this; see
:func:`variation_splits`). The first observation is the task description followed
by the "look around" text; later ones are the simulator's replies. ``admissible_actions`` are
ScienceWorld's valid action-object combinations; that list does not hold every phrasing the
parser accepts (the gold path uses some that are not in it), so ``invalid_action`` is True only
when the simulator does not understand the action ("No known action matches that input.").
``score`` is ScienceWorld's 0-100 progress score (negative on failure), ``max_score`` 100;
``won`` is a completed task with score 100, and a task that ends otherwise is lost.
``state_key`` is the simulator's own "look around" text plus the inventory (whitespace-
normalised), its ground truth. ``walkthrough`` is ScienceWorld's gold action sequence.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from slea.envs.base import TextEnv, Transition
from slea.errors import EnvError, require

_NOT_UNDERSTOOD = ("No known action matches that input.",)
_VARIATION_SETS = ("train", "dev", "test", "all")


def task_names() -> list[str]:
    """ScienceWorld's 30 task names, in its own order (read from the package, no simulator)."""
    module: Any = require("scienceworld.constants", "envs", "slea/ScienceWorld-v0")
    return [str(t["task_name"]) for t in module.TASKS]


def canonical_task_name(name: str) -> str:
    """The task name of ``name`` (a task name, or ScienceWorld's id such as ``"1-1"``);
    ``ValueError`` naming the valid names when it is neither."""
    module: Any = require("scienceworld.constants", "envs", "slea/ScienceWorld-v0")
    names = task_names()
    out = module.ID2TASK.get(name, name) if isinstance(name, str) else name
    if out not in names:
        raise ValueError(f"unknown ScienceWorld task {name!r}; valid task names: {names}")
    return str(out)


def variation_splits(names: Sequence[str]) -> dict[str, dict[str, list[int]]]:
    """ScienceWorld's own split of each task's variations: ``{name: {"train": [...], "dev":
    [...], "test": [...]}}`` (starts one simulator, about 3 s, plus 0.2-0.8 s per task; cached
    per process). ``names`` are task names or ids (see :func:`canonical_task_name`)."""
    return dict(_variation_splits(tuple(canonical_task_name(n) for n in names)))


@functools.lru_cache(maxsize=8)
def _variation_splits(names: tuple[str, ...]) -> Mapping[str, dict[str, list[int]]]:
    module: Any = require("scienceworld", "envs", "slea/ScienceWorld-v0")
    try:
        sw = module.ScienceWorldEnv("", envStepLimit=1 << 30)
    except Exception as exc:  # the JVM did not start
        raise EnvError(
            f"could not start the ScienceWorld simulator ({exc}); it needs Java 17 or newer on PATH"
        ) from exc
    try:
        out = {}
        for name in names:
            sw.load(name, 0, "", False)
            out[name] = {
                "train": [int(v) for v in sw.get_variations_train()],
                "dev": [int(v) for v in sw.get_variations_dev()],
                "test": [int(v) for v in sw.get_variations_test()],
            }
        return out
    finally:
        sw.close()


class ScienceWorldEnv(TextEnv):
    """One ScienceWorld task, its variations as the env's tasks (needs the ``[envs]`` extra).

    Args:
        task_name: a ScienceWorld task name (``"boil"``, ``"find-non-living-thing"``, ...; see
            ``scienceworld.ScienceWorldEnv().get_task_names()``) or its id (``"1-1"``).
        variations: ``"train"``, ``"dev"``, ``"test"``, ``"all"`` or a list of variation indices.
        variation: shorthand for ``variations=[variation]`` (one fixed variation).
        simplifications: ScienceWorld simplification string (``""``, ``"easy"``,
            ``"openDoors,selfWateringFlowerPots"``, ...).
        reward_mode: ``"sparse"`` (1.0 on a win) or ``"dense"`` (score increments / 100).
        gold_path: ask the simulator for the gold path (``info["walkthrough"]``) at each load.
        tasks: ``(task_name, variation)`` pairs instead of ``task_name`` and ``variations``:
            ``task_id`` i plays pair i (task names or ids; variations in range).
        render_mode: ``None``, ``"ansi"`` or ``"human"``.

    Starting the JVM takes a few seconds; loading another variation about a second.
    """

    refused_action_feedback = _NOT_UNDERSTOOD[0]

    def __init__(
        self,
        task_name: str = "boil",
        *,
        variations: str | Sequence[int] = "train",
        variation: int | None = None,
        simplifications: str = "",
        reward_mode: str = "sparse",
        gold_path: bool = True,
        tasks: Sequence[Sequence[Any]] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(reward_mode=reward_mode, render_mode=render_mode)
        module: Any = require("scienceworld", "envs", "slea/ScienceWorld-v0")
        pairs = _check_pairs(tasks) if tasks is not None else None
        if pairs:
            task_name = pairs[0][0]
        if not isinstance(task_name, str):
            raise TypeError(f"task_name must be a str, got {type(task_name).__name__}")
        if not isinstance(simplifications, str):
            raise TypeError("simplifications must be a comma-separated str")
        try:
            self._sw = module.ScienceWorldEnv("", envStepLimit=1 << 30)
        except Exception as exc:  # the JVM did not start
            raise EnvError(
                f"could not start the ScienceWorld simulator ({exc}); it needs Java 17 or newer "
                "on PATH"
            ) from exc
        self.gold_path = bool(gold_path)
        if variation is not None:
            variations = [variation]
        try:
            self._sw.load(task_name, 0, simplifications, self.gold_path)
        except ValueError as exc:
            self._sw.close()
            raise ValueError(f"task_name: {exc}") from exc
        self.task_name = self._sw.taskName
        self.simplifications = simplifications
        self._loaded: tuple[str, int] | None = None
        self._set_loaded(self.task_name, 0)
        try:
            if pairs is None:
                self.variations = self._variations(variations)
                self.pairs = [(self.task_name, v) for v in self.variations]
            else:
                self.pairs = self._check_ranges(pairs)
                self.variations = [v for _, v in self.pairs]
        except ValueError:
            self.close()
            raise

    def _check_ranges(self, pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
        out, sizes = [], {}
        for name, v in pairs:
            canon = canonical_task_name(name)
            if canon not in sizes:
                sizes[canon] = int(self._sw.get_max_variations(canon))
            if not 0 <= v < sizes[canon]:
                raise ValueError(f"tasks: variation {v} of {canon!r} not in [0, {sizes[canon]})")
            out.append((canon, v))
        return out

    def _variations(self, variations: str | Sequence[int]) -> list[int]:
        if isinstance(variations, str):
            if variations not in _VARIATION_SETS:
                raise ValueError(f"variations must be one of {_VARIATION_SETS} or a list of ints")
            if variations == "all":
                return list(range(self._sw.get_max_variations(self.task_name)))
            get = {
                "train": self._sw.get_variations_train,
                "dev": self._sw.get_variations_dev,
                "test": self._sw.get_variations_test,
            }[variations]
            return [int(v) for v in get()]
        out = [int(v) for v in variations]
        n = self._sw.get_max_variations(self.task_name)
        bad = [v for v in out if not 0 <= v < n]
        if not out or bad:
            raise ValueError(f"variations must be non-empty indices in [0, {n}), bad: {bad}")
        return out

    def _set_loaded(self, task_name: str, variation: int) -> None:
        self._loaded = (task_name, variation)
        self.task_name = task_name
        gold = self._sw.get_gold_action_sequence() if self.gold_path else None
        self.walkthrough = list(gold) if gold and not gold[0].startswith("ERROR") else None

    @property
    def num_tasks(self) -> int:
        return len(self.pairs)

    def _reset_task(self, task_id: int, options: dict[str, Any]) -> Transition:
        name, variation = self.pairs[task_id]
        if self._loaded != (name, variation):
            self._sw.load(name, variation, self.simplifications, self.gold_path)
            self._set_loaded(name, variation)
        obs, info = self._sw.reset()
        self.task_id = task_id
        desc = str(info["taskDesc"]).strip()
        self.task = desc.removeprefix("Task Description:").strip()
        self.max_score = 100.0
        return self._transition(f"{self.task}\n\n{obs.strip()}", info, done=False, invalid=False)

    def _step_action(self, action: str) -> Transition:
        obs, _, done, info = self._sw.step(" ".join(action.split()))
        invalid = obs.strip().startswith(_NOT_UNDERSTOOD)
        return self._transition(obs.strip(), info, done=bool(done), invalid=invalid)

    def _transition(
        self, text: str, info: dict[str, Any], *, done: bool, invalid: bool
    ) -> Transition:
        score = float(info["score"])
        won = done and score >= 100
        state_key = " ".join(f"{info['look']} | {info['inv']}".split())
        return Transition(
            observation=text,
            score=score,
            won=won,
            lost=done and not won,
            invalid=invalid,
            admissible=list(info["valid"]),
            state_key=state_key,
            extra={"task_name": self.task_name, "variation": self.pairs[self.task_id][1]},
        )

    def close(self) -> None:
        """Shut the JVM down."""
        sw = getattr(self, "_sw", None)
        if sw is not None:
            try:
                sw.close()
            except Exception:  # pragma: no cover - already gone
                pass
            self._sw = None

    def __repr__(self) -> str:
        return f"ScienceWorldEnv(task_name={self.task_name!r}, variations=<{self.num_tasks}>)"


def _check_pairs(tasks: Sequence[Sequence[Any]]) -> list[tuple[str, int]]:
    """``tasks`` as (task name, variation) pairs; ``TypeError`` / ``ValueError`` naming it."""
    if isinstance(tasks, str | bytes) or not isinstance(tasks, Sequence):
        raise TypeError("tasks must be a list of (task_name, variation) pairs")
    if not tasks:
        raise ValueError("tasks is empty: give at least one (task_name, variation) pair")
    out = []
    for i, pair in enumerate(tasks):
        ok = isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2
        if ok:
            name, v = pair
            ok = isinstance(name, str) and isinstance(v, int) and not isinstance(v, bool)
        if not ok:
            raise TypeError(
                f"tasks[{i}] must be a (task_name: str, variation: int) pair, got {pair!r}"
            )
        out.append((name, int(v)))
    return out
