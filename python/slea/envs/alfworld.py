"""``slea/ALFWorld-v0``: ALFWorld's household text games (TextWorld ``tw-pddl`` files).

Point the env at the ALFWorld data (``alfworld-download`` puts it in ``$ALFWORLD_DATA``, default
``~/.cache/alfworld``) and pick a split and task types, as in the ALFWorld benchmark::

    env = gymnasium.make("slea/ALFWorld-v0", split="valid_unseen", task_types=["pick", "clean"])

Games are found as ALFWorld's own loader finds them: every ``traj_data.json`` under
``<data>/json_2.1.1/<split>/`` with a ``game.tw-pddl`` beside it whose task type is selected,
whose ``solvable`` flag is true, and whose path has neither ``movable`` nor ``Sliced`` in it
(sorted by path, so ``task_id`` i is stable). The games are played by textworld's ``PddlEnv``
with object names demangled the ALFWorld way (``apple_bar__minus_01...`` -> ``apple 1``).

Observations follow ALFWorld's conventions: the first observation is the room overview followed
by ``Your task is to: ...`` (the ``-= Welcome to TextWorld, ALFRED! =-`` banner removed), later
ones the game's feedback (``Nothing happens.`` for an action it cannot do). ``info`` adds
``game`` (path) and ``task_type`` (short name) to the common contract; ``state_key`` is
``at: <receptacle(s) the agent faces> | sees: <objects in view> | carries: <held objects>``.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from slea.envs.base import TextEnv, Transition, admissible_set, normalize_command
from slea.errors import EnvError, require

#: Short task-type names (as used in the ALFWorld paper's tables) -> ALFWorld's names.
TASK_TYPES: dict[str, str] = {
    "pick": "pick_and_place_simple",
    "look": "look_at_obj_in_light",
    "clean": "pick_clean_then_place_in_recep",
    "heat": "pick_heat_then_place_in_recep",
    "cool": "pick_cool_then_place_in_recep",
    "pick2": "pick_two_obj_and_place",
}
_TYPE_NUMBERS = {i + 1: short for i, short in enumerate(TASK_TYPES)}  # ALFWorld configs use 1-6
_LONG_TO_SHORT = {v: k for k, v in TASK_TYPES.items()}
#: Split names -> directory names (ALFWorld's config names are accepted too).
SPLITS: dict[str, str] = {
    "train": "train",
    "valid_seen": "valid_seen",
    "valid_unseen": "valid_unseen",
    "eval_in_distribution": "valid_seen",
    "eval_out_of_distribution": "valid_unseen",
}
_WELCOME = "-= Welcome to TextWorld, ALFRED! =-"
_TASK_PREFIX = "Your task is to: "

_HOW_TO_GET_DATA = (
    "Get the ALFWorld data with `alfworld-download` (from the alfworld package, needs the "
    "internet; it fills $ALFWORLD_DATA, default ~/.cache/alfworld), then set ALFWORLD_DATA or "
    "pass data_dir=..."
)


def default_data_dir() -> Path:
    """``$ALFWORLD_DATA`` or ALFWorld's default ``~/.cache/alfworld``."""
    env = os.environ.get("ALFWORLD_DATA")
    return Path(os.path.expandvars(env)) if env else Path.home() / ".cache" / "alfworld"


def normalize_task_types(task_types: Iterable[str | int] | str | None) -> tuple[str, ...]:
    """Task types as ALFWorld's long names; accepts short names, long names and numbers 1-6."""
    if task_types is None:
        return tuple(TASK_TYPES.values())
    if isinstance(task_types, str | int):
        task_types = [task_types]
    out: list[str] = []
    for t in task_types:
        if isinstance(t, int) and not isinstance(t, bool) and t in _TYPE_NUMBERS:
            out.append(TASK_TYPES[_TYPE_NUMBERS[t]])
        elif isinstance(t, str) and t in TASK_TYPES:
            out.append(TASK_TYPES[t])
        elif isinstance(t, str) and t in _LONG_TO_SHORT:
            out.append(t)
        else:
            raise ValueError(
                f"task_types: unknown task type {t!r}; use {list(TASK_TYPES)} (or 1-6, or "
                f"ALFWorld's names {list(TASK_TYPES.values())})"
            )
    if not out:
        raise ValueError("task_types is empty")
    return tuple(dict.fromkeys(out))


def split_dir(data_dir: str | os.PathLike[str] | None, split: str) -> Path:
    """The directory holding ``split``: ``<data>/json_2.1.1/<split>`` or ``<data>/<split>``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    for candidate in (root / "json_2.1.1" / SPLITS[split], root / SPLITS[split]):
        if candidate.is_dir():
            return candidate
    raise EnvError(
        f"ALFWorld data for split {split!r} not found under {root} (looked for "
        f"json_2.1.1/{SPLITS[split]}/ and {SPLITS[split]}/). {_HOW_TO_GET_DATA}"
    )


def find_games(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "train",
    task_types: Iterable[str | int] | str | None = None,
) -> list[Path]:
    """Paths of the playable ``game.tw-pddl`` files of a split, sorted (see the module doc)."""
    root = split_dir(data_dir, split)
    games = list(_scan(str(root.resolve()), normalize_task_types(task_types)))
    if not games:
        raise EnvError(
            f"no solvable ALFWorld games of types {list(normalize_task_types(task_types))} "
            f"under {root}. {_HOW_TO_GET_DATA}"
        )
    return [Path(g) for g in games]


@lru_cache(maxsize=16)
def _scan(root: str, types: tuple[str, ...]) -> tuple[str, ...]:
    found: list[str] = []
    for dirpath, _, files in os.walk(root):
        if "traj_data.json" not in files or "game.tw-pddl" not in files:
            continue
        if "movable" in dirpath or "Sliced" in dirpath:
            continue
        if _read_json(Path(dirpath, "traj_data.json")).get("task_type") not in types:
            continue
        game = os.path.join(dirpath, "game.tw-pddl")
        if not _read_json(Path(game)).get("solvable"):
            continue
        found.append(game)
    return tuple(sorted(found))


_GAME_KEYS = ("pddl_domain", "pddl_problem", "grammar")


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``EnvError`` naming the file and what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise EnvError(f"ALFWorld file {path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise EnvError(f"ALFWorld file {path} holds a JSON {type(data).__name__}, not an object")
    return data


def demangle_names(ids: Iterable[str]) -> dict[str, str]:
    """ALFWorld display names for PDDL object ids (``apple_bar__minus_01_dot_5...`` -> ``apple 1``).

    The name is the part before ``_bar_`` (plus ``basin`` for sink/bath basins). Instances of a
    name are numbered from 1 in reverse sorted-id order, as ALFWorld numbers them, so names match
    the official env's. Ids without ``_bar_`` keep their (decoded) text.
    """
    ids = sorted(set(ids))
    counts: Counter[str] = Counter()
    base: dict[str, str] = {}
    for id_ in ids:
        head, sep, _ = id_.partition("_bar_")
        if sep:
            base[id_] = head + ("basin" if "basin" in id_ else "")
            counts[base[id_]] += 1
    remaining = dict(counts)
    names: dict[str, str] = {}
    for id_ in ids:
        if id_ in base:
            name = base[id_]
            names[id_] = f"{name} {remaining[name]}"
            remaining[name] -= 1
        else:
            text = id_
            for a, b in (("_minus_", "-"), ("_plus_", "+"), ("_dot_", "."), ("_comma_", ",")):
                text = text.replace(a, b)
            names[id_] = text
    return names


_OBJECT_STATES = {
    "isclean": "clean",
    "ishot": "hot",
    "iscool": "cool",
    "istoggled": "on",
    "issliced": "sliced",
}


def state_key_from_facts(facts: Iterable[Any], names: Mapping[str, str]) -> str:
    """Canonical state string from ALFWorld PDDL facts (``Proposition`` objects, raw ids).

    ``at: <receptacles at the agent's location, with open/closed> | sees: <objects in them when
    they are open or not openable, with clean/hot/cool/on/sliced> | carries: <held objects>``.
    """
    loc = ""
    rec_at: dict[str, list[str]] = {}
    inside: dict[str, list[str]] = {}
    held: list[str] = []
    unary: dict[str, set[str]] = {}
    for fact in facts:
        args = [v.name for v in fact.arguments]
        name = fact.name
        if name == "atlocation" and len(args) == 2:
            loc = args[1]
        elif name == "receptacleatlocation" and len(args) == 2:
            rec_at.setdefault(args[1], []).append(args[0])
        elif name == "inreceptacle" and len(args) == 2:
            inside.setdefault(args[1], []).append(args[0])
        elif name == "holds" and len(args) == 2:
            held.append(args[1])
        elif len(args) == 1:
            unary.setdefault(args[0], set()).add(name)

    def label(x: str, kinds: Mapping[str, str]) -> str:
        st = sorted(v for k, v in kinds.items() if k in unary.get(x, ()))
        n = names.get(x, x)
        return f"{n}({','.join(st)})" if st else n

    receptacles = rec_at.get(loc, [])
    at: list[str] = []
    sees: list[str] = []
    for r in receptacles:
        flags = unary.get(r, set())
        if "openable" in flags:
            state = "open" if "opened" in flags else "closed"
            at.append(f"{names.get(r, r)}({state})")
            if state == "closed":
                continue
        else:
            at.append(names.get(r, r))
        sees.extend(label(o, _OBJECT_STATES) for o in inside.get(r, ()))
    carries = [label(o, _OBJECT_STATES) for o in held]
    return (
        f"at: {', '.join(sorted(at)) or 'middle of room'} | sees: {', '.join(sorted(sees)) or 'nothing'}"
        f" | carries: {', '.join(sorted(carries)) or 'nothing'}"
    )


_TRANSLATIONS: OrderedDict[tuple[str, str, bool, bool], Any] = OrderedDict()
_TRANSLATIONS_MAX = 64


@contextmanager
def _pddl_calls() -> Iterator[None]:
    """Around textworld's PddlEnv.load/reset: memoise the PDDL->SAS translation and keep sys.argv.

    textworld translates the game's PDDL at every reset (most of a reset's time); the result
    only depends on the domain and problem text, so it is cached per process (64 games). The
    translator also overwrites ``sys.argv``, which is put back afterwards.
    """
    import fast_downward

    original = fast_downward.pddl2sas
    argv = list(sys.argv)

    def cached(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        key = (domain, problem, bool(verbose), bool(optimize))
        hit = _TRANSLATIONS.get(key)
        if hit is None:
            hit = _TRANSLATIONS[key] = original(domain, problem, verbose=verbose, optimize=optimize)
            while len(_TRANSLATIONS) > _TRANSLATIONS_MAX:
                _TRANSLATIONS.popitem(last=False)
        else:
            _TRANSLATIONS.move_to_end(key)
        return hit

    fast_downward.pddl2sas = cached
    try:
        yield
    finally:
        fast_downward.pddl2sas = original
        sys.argv[:] = argv


def task_type_of(game: Path) -> str:
    """The short task type (``pick``, ``look``, ...) of a game, from the ``traj_data.json``
    beside it ("" when it has none)."""
    traj = game.parent / "traj_data.json"
    try:
        with open(traj) as f:
            long = json.load(f).get("task_type", "")
    except (OSError, ValueError):
        return ""
    return _LONG_TO_SHORT.get(long, long)


class ALFWorldEnv(TextEnv):
    """ALFWorld text games through textworld's ``PddlEnv`` (needs the ``[envs]`` extra).

    Args:
        data_dir: the ALFWorld data root (default ``$ALFWORLD_DATA``, else ``~/.cache/alfworld``).
        split: ``"train"``, ``"valid_seen"`` (in-distribution eval) or ``"valid_unseen"``
            (out-of-distribution eval); ALFWorld's ``eval_in_distribution`` /
            ``eval_out_of_distribution`` are accepted.
        task_types: any of ``pick``, ``look``, ``clean``, ``heat``, ``cool``, ``pick2`` (or 1-6,
            or ALFWorld's long names); default all six.
        games: explicit ``game.tw-pddl`` paths instead of scanning ``data_dir``.
        max_games: keep the first ``max_games`` games (like ALFWorld's ``num_train_games``).
        reward_mode: ``"sparse"`` or ``"dense"`` (the same here: the score is 1 on a win).
        render_mode: ``None``, ``"ansi"`` or ``"human"``.

    ``reset(options={"task_id": i})`` plays game i; ``options={"game": path}`` plays any file.
    """

    reset_option_keys = ("task_id", "game")
    refused_action_feedback = "Nothing happens."

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        split: str = "train",
        task_types: Iterable[str | int] | str | None = None,
        games: Sequence[str | os.PathLike[str]] | None = None,
        max_games: int | None = None,
        reward_mode: str = "sparse",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(reward_mode=reward_mode, render_mode=render_mode)
        self._tw_module: Any = require("textworld", "envs", "slea/ALFWorld-v0")
        require("fast_downward", "envs", "slea/ALFWorld-v0 (textworld[pddl])")
        if games is not None:
            self.games = [Path(g) for g in games]
            if not self.games:
                raise ValueError("games is empty")
            for g in self.games:
                if not g.is_file():
                    raise FileNotFoundError(f"games: no such game file: {g}")
        else:
            self.games = find_games(data_dir, split, task_types)
        if max_games is not None:
            if max_games < 1:
                raise ValueError(f"max_games must be >= 1, got {max_games}")
            self.games = self.games[:max_games]
        self.split = split
        self._index = {str(p.resolve()): i for i, p in enumerate(self.games)}
        self._env: Any = None
        self._game: Path | None = None
        self._names: dict[str, str] = {}
        self._task_type = ""
        self._admissible: frozenset[str] = frozenset()

    @property
    def num_tasks(self) -> int:
        return len(self.games)

    def _draw_task_id(self, options: dict[str, Any]) -> int:
        if "game" in options:
            return self._index.get(str(Path(options["game"]).resolve()), -1)
        return super()._draw_task_id(options)

    def _reset_task(self, task_id: int, options: dict[str, Any]) -> Transition:
        game = Path(options["game"]) if "game" in options else self.games[task_id]
        if not game.is_file():
            raise FileNotFoundError(f"options['game']: no such game file: {game}")
        self._load(game)
        try:
            with _pddl_calls():
                state = self._env.reset()
        except Exception as exc:
            # A PDDL text the planner cannot parse or translate leaves the planner unusable
            # (the next reset of any game fails the same way): start from a fresh one.
            self._env, self._game = None, None
            raise EnvError(
                f"game {game}: textworld cannot start it ({type(exc).__name__}: {exc})"
            ) from exc
        self.task_id = task_id
        text = str(state["feedback"]).replace(_WELCOME, "").strip()
        self.task = ""
        for line in text.splitlines():
            if line.startswith(_TASK_PREFIX):
                self.task = line[len(_TASK_PREFIX) :].strip()
        self.max_score = 1.0
        return self._transition(state, text, invalid=False)

    def _step_action(self, action: str) -> Transition:
        command = " ".join(action.split())
        invalid = normalize_command(command) not in self._admissible
        state, _, _ = self._env.step(command)
        return self._transition(state, str(state["feedback"]).strip(), invalid=invalid)

    def _transition(self, state: Any, text: str, *, invalid: bool) -> Transition:
        admissible = list(state["admissible_commands"] or [])
        self._admissible = admissible_set(admissible)
        won = bool(state["won"])
        return Transition(
            observation=text,
            score=1.0 if won else 0.0,
            won=won,
            invalid=invalid,
            admissible=admissible,
            state_key=state_key_from_facts(state["_facts"], self._names),
            extra={"game": str(self._game), "task_type": self._task_type},
        )

    def _load(self, game: Path) -> None:
        if self._game is not None and game == self._game:
            return
        if self._env is None:
            from textworld.envs import PddlEnv

            self._env = PddlEnv(self._tw_module.EnvInfos(admissible_commands=True, won=True))
        data = _read_json(game)
        missing = [k for k in _GAME_KEYS if not isinstance(data.get(k), str)]
        if missing:
            raise EnvError(
                f"game {game} is not an ALFWorld game (a .tw-pddl file): {missing} missing or "
                "not text"
            )
        try:
            with _pddl_calls():
                self._env.load(data)
        except Exception as exc:  # a parse error of the grammar or the PDDL text, ...
            self._env, self._game = None, None  # the planner holds a half-loaded game
            raise EnvError(
                f"game {game}: textworld cannot load it ({type(exc).__name__}: {exc})"
            ) from exc
        # Demangle the display names (textworld's PddlEnv shows raw PDDL ids).
        infos = self._env._entity_infos
        self._names = demangle_names(infos)
        for id_, info in infos.items():
            info.name = self._names[id_]
        walkthrough = data.get("walkthrough")
        self.walkthrough = list(walkthrough) if walkthrough else None
        self._task_type = task_type_of(game)
        self._game = game

    def close(self) -> None:
        """Release the planner library."""
        self._env = None
        self._game = None

    def __repr__(self) -> str:
        return f"ALFWorldEnv(split={self.split!r}, games=<{len(self.games)} games>)"
