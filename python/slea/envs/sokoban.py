"""``slea/Sokoban-v0``: text Sokoban in pure Python, with a seeded generator of solvable levels.

Levels are made by *reverse play*: carve a random room, put the boxes on their targets, then
search backwards from the solved state, the player pulling boxes instead of pushing them. Every
pull undone in forward order is a push, so the level is solvable by construction; the farthest
state found becomes the level and the search path back to the solved state, a shortest
solution, its walkthrough. Level ``task_id`` is a pure function of the generator settings and ``task_id``, so
the G rollouts of a task all see the same level.

Symbols: ``#`` wall, `` `` floor, ``.`` target, ``$`` box, ``*`` box on a target, ``@`` player,
``+`` player on a target. Actions: ``up``, ``down``, ``left``, ``right`` (``u``/``d``/``l``/``r``,
``north``/``south``/``east``/``west`` and a leading ``move``/``push``/``go`` are understood
too). A move into a wall, or a push against a wall or another box, changes nothing and is an
invalid action. ``score`` is the number of boxes on targets, ``max_score`` the number of boxes.

Bounds (``ValueError`` naming the argument outside them): generated rooms are ``MIN_SIZE``-
``MAX_SIZE`` (5-12) cells wide and high, outer wall included, with 1-``MAX_BOXES`` (4) boxes and
at least ``3 * num_boxes + 3`` interior cells; the generator's effort ``max_states`` is
``MIN_STATES``-``MAX_STATES`` (100-100,000). A level takes at most a few seconds to generate
within them (12x12 with 4 boxes and ``max_states=100_000``: 1.2-1.4 s on average and 3 s at
worst over 20 seeds, one core, and about 30 MB of memory). A level drawn in text
(``options={"level": text}``) may have up to ``MAX_LEVEL_TEXT_SIZE`` (64) rows and columns. Cells
outside the grid count as walls, so a level drawn without an outer wall is still safe to play.

``env.clone_state()`` returns an immutable snapshot (level and positions) that
``env.restore_state(snapshot)`` puts back, in this env or another one, for branching rollouts.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from slea.envs.base import TextEnv, Transition

DIRECTIONS: dict[str, tuple[int, int]] = {
    "up": (-1, 0),
    "down": (1, 0),
    "left": (0, -1),
    "right": (0, 1),
}
_ALIASES = {
    "u": "up",
    "d": "down",
    "l": "left",
    "r": "right",
    "north": "up",
    "south": "down",
    "west": "left",
    "east": "right",
}
_VERBS = ("move", "push", "go", "walk")

#: Width and height of a generated room, outer wall included (inclusive bounds).
MIN_SIZE, MAX_SIZE = 5, 12
#: Most boxes in a generated level.
MAX_BOXES = 4
#: Bounds of ``max_states``, the generator's effort (states searched per attempt).
MIN_STATES, MAX_STATES = 100, 100_000
#: Most rows and most columns of a level drawn in text.
MAX_LEVEL_TEXT_SIZE = 64
TASK = (
    "Push every box ($) onto a target (.). # is a wall, @ is you (+ when you stand on a target) "
    "and * is a box on a target. Move with up, down, left or right; you can push one box at a "
    "time and cannot pull."
)


def parse_action(text: str) -> str | None:
    """The direction an action names (``"up"``...), or None when it names none."""
    words = text.lower().split()
    if len(words) == 2 and words[0] in _VERBS:
        words = words[1:]
    if len(words) != 1:
        return None
    word = _ALIASES.get(words[0], words[0])
    return word if word in DIRECTIONS else None


@dataclass(frozen=True)
class Level:
    """A Sokoban level: size, walls, targets, initial boxes and player, and a winning walk."""

    height: int
    width: int
    walls: frozenset[tuple[int, int]]
    targets: frozenset[tuple[int, int]]
    boxes: frozenset[tuple[int, int]]
    player: tuple[int, int]
    solution: tuple[str, ...] = ()

    @cached_property
    def _background(self) -> tuple[tuple[str, ...], ...]:
        """Walls, targets and floor, one tuple of characters per row."""
        return tuple(
            tuple(
                "#" if (r, c) in self.walls else "." if (r, c) in self.targets else " "
                for c in range(self.width)
            )
            for r in range(self.height)
        )

    def render(self, boxes: frozenset[tuple[int, int]], player: tuple[int, int]) -> str:
        """The grid as text, one line per row."""
        grid = [list(row) for row in self._background]
        for r, c in boxes:
            grid[r][c] = "*" if grid[r][c] == "." else "$"
        r, c = player
        grid[r][c] = "+" if grid[r][c] == "." else "@"
        return "\n".join(map("".join, grid))

    @classmethod
    def parse(cls, text: str) -> Level:
        """Read a level drawn with the standard symbols (see the module docstring)."""
        lines = [ln.rstrip("\n") for ln in text.strip("\n").splitlines()]
        if not lines:
            raise ValueError("level text is empty")
        height, width = len(lines), max(len(ln) for ln in lines)
        if height > MAX_LEVEL_TEXT_SIZE or width > MAX_LEVEL_TEXT_SIZE:
            raise ValueError(
                f"level text has {height} rows and {width} columns; at most "
                f"{MAX_LEVEL_TEXT_SIZE} of each"
            )
        walls, targets, boxes, players = set(), set(), set(), []
        for r, line in enumerate(lines):
            for c, ch in enumerate(line.ljust(width)):
                p = (r, c)
                if ch == "#":
                    walls.add(p)
                elif ch in ".*+":
                    targets.add(p)
                if ch in "$*":
                    boxes.add(p)
                elif ch in "@+":
                    players.append(p)
                elif ch not in "#. ":
                    raise ValueError(f"level text: unknown symbol {ch!r} at row {r}, column {c}")
        if len(players) != 1:
            raise ValueError(f"level text must have exactly one player, found {len(players)}")
        if not boxes or len(boxes) != len(targets):
            raise ValueError(
                f"level text needs as many boxes as targets (>= 1), got {len(boxes)} boxes and "
                f"{len(targets)} targets"
            )
        return cls(
            height, width, frozenset(walls), frozenset(targets), frozenset(boxes), players[0]
        )


@dataclass(frozen=True)
class SokobanState:
    """An immutable snapshot of a Sokoban episode (see ``SokobanEnv.clone_state``)."""

    level: Level
    boxes: frozenset[tuple[int, int]]
    player: tuple[int, int]
    task_id: int


def move(
    level: Level, boxes: frozenset[tuple[int, int]], player: tuple[int, int], direction: str
) -> tuple[frozenset[tuple[int, int]], tuple[int, int], str]:
    """Apply one move. Returns ``(boxes, player, outcome)``; outcome is ``"moved"``,
    ``"pushed"``, ``"wall"`` or ``"blocked"`` (nothing changes for the last two)."""
    dr, dc = DIRECTIONS[direction]
    nxt = (player[0] + dr, player[1] + dc)
    if nxt in level.walls or not _inside(level, nxt):
        return boxes, player, "wall"
    if nxt in boxes:
        beyond = (nxt[0] + dr, nxt[1] + dc)
        if beyond in level.walls or beyond in boxes or not _inside(level, beyond):
            return boxes, player, "blocked"
        return (boxes - {nxt}) | {beyond}, nxt, "pushed"
    return boxes, nxt, "moved"


def _inside(level: Level, cell: tuple[int, int]) -> bool:
    return 0 <= cell[0] < level.height and 0 <= cell[1] < level.width


# ---------------------------------------------------------------------------------------------
# generator
# ---------------------------------------------------------------------------------------------
def level_seed(task_id: int, *, seed: int, split: str, params: Sequence[int]) -> int:
    """Seed of level ``task_id``: a hash of the generator settings, so splits never share one."""
    text = "|".join(map(str, (seed, split, *params, task_id)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def check_level_params(width: int, height: int, num_boxes: int, max_states: int) -> None:
    """Raise ``TypeError`` / ``ValueError`` naming the argument when a generator setting is not
    an int within its bounds (see the module docstring) or the room is too small for the boxes."""
    bounds = {
        "width": (MIN_SIZE, MAX_SIZE),
        "height": (MIN_SIZE, MAX_SIZE),
        "num_boxes": (1, MAX_BOXES),
        "max_states": (MIN_STATES, MAX_STATES),
    }
    values = {"width": width, "height": height, "num_boxes": num_boxes, "max_states": max_states}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        lo, hi = bounds[name]
        if not lo <= value <= hi:
            what = (
                " (width and height include the outer wall)" if name in ("width", "height") else ""
            )
            raise ValueError(f"{name} must be in [{lo}, {hi}]{what}, got {value}")
    if (width - 2) * (height - 2) < 3 * num_boxes + 3:
        raise ValueError(
            f"a {width}x{height} room is too small for {num_boxes} boxes: num_boxes needs at "
            "least 3 * num_boxes + 3 interior cells, (width - 2) * (height - 2)"
        )


def generate_level(
    seed: int,
    *,
    width: int = 7,
    height: int = 7,
    num_boxes: int = 2,
    max_states: int = 50_000,
) -> Level:
    """Generate a solvable level from ``seed`` by reverse play (deterministic in all arguments).

    Carve a random room inside the outer wall and put the boxes on their targets. Then search
    backwards, breadth first, from every solved state (player anywhere): a backward move walks
    the player one cell and may pull the box behind it. The level is the farthest state found
    with every box off its target (up to ``max_states`` states), so its walkthrough, read off the
    search tree, is a shortest solution in moves. ``width``/``height`` include the outer wall.
    Raises ``ValueError`` naming the argument for a setting out of bounds (see the module
    docstring) or a room too small for the boxes.
    """
    check_level_params(width, height, num_boxes, max_states)
    rng = random.Random(seed)
    for _ in range(1000):
        floor = _carve(rng, height, width, min_floor=2 * num_boxes + 4)
        walls = frozenset(
            (r, c) for r in range(height) for c in range(width) if (r, c) not in floor
        )
        targets = frozenset(rng.sample(sorted(floor), num_boxes))
        found = _reverse_search(walls, targets, floor, max_states, rng)
        if found is not None:
            boxes, player, solution = found
            return Level(height, width, walls, targets, boxes, player, solution)
    raise ValueError(
        f"no level found for seed {seed} in 1000 tries: raise max_states (now {max_states}) or "
        "use fewer boxes or a smaller room"
    )


def _carve(rng: random.Random, height: int, width: int, *, min_floor: int) -> set[tuple[int, int]]:
    """A connected floor area made by a random walk inside the outer wall."""
    target = max(min_floor, int(0.6 * (height - 2) * (width - 2)))
    pos = (rng.randrange(1, height - 1), rng.randrange(1, width - 1))
    floor = {pos}
    dirs = list(DIRECTIONS.values())
    d = rng.choice(dirs)
    while len(floor) < target:
        if rng.random() < 0.35:
            d = rng.choice(dirs)
        nxt = (pos[0] + d[0], pos[1] + d[1])
        if not (1 <= nxt[0] < height - 1 and 1 <= nxt[1] < width - 1):
            d = rng.choice(dirs)
            continue
        pos = nxt
        floor.add(pos)
        if rng.random() < 0.5:  # widen the corridor by one cell beside the walk
            side = (
                (pos[0] + d[1], pos[1] + d[0])
                if rng.random() < 0.5
                else (pos[0] - d[1], pos[1] - d[0])
            )
            if 1 <= side[0] < height - 1 and 1 <= side[1] < width - 1:
                floor.add(side)
    return floor


_OPPOSITE = {"up": "down", "down": "up", "left": "right", "right": "left"}
_State = tuple[tuple[int, int], frozenset[tuple[int, int]]]


def _reverse_search(
    walls: frozenset[tuple[int, int]],
    targets: frozenset[tuple[int, int]],
    floor: set[tuple[int, int]],
    max_states: int,
    rng: random.Random,
) -> tuple[frozenset[tuple[int, int]], tuple[int, int], tuple[str, ...]] | None:
    """Breadth-first backward search from the solved states; returns (boxes, player, solution)
    of the farthest state with no box on a target, or None when there is none."""
    from collections import deque

    parent: dict[_State, tuple[_State, str] | None] = {}
    queue: deque[tuple[_State, int]] = deque()
    for p in sorted(floor - targets):
        parent[(p, targets)] = None
        queue.append(((p, targets), 0))
    best: list[_State] = []
    best_depth = 0
    while queue and len(parent) < max_states:
        state, depth = queue.popleft()
        player, boxes = state
        if depth > 0 and not (boxes & targets):
            if depth > best_depth:
                best, best_depth = [state], depth
            elif depth == best_depth:
                best.append(state)
        for name, (dr, dc) in DIRECTIONS.items():
            nxt = (player[0] + dr, player[1] + dc)
            if nxt in walls or nxt in boxes:
                continue
            behind = (player[0] - dr, player[1] - dc)
            successors = [(nxt, boxes)]
            if behind in boxes:
                successors.append((nxt, (boxes - {behind}) | {player}))
            for succ in successors:
                if succ not in parent:
                    parent[succ] = (state, _OPPOSITE[name])
                    queue.append((succ, depth + 1))
    if not best:
        return None
    start = best[rng.randrange(len(best))] if len(best) > 1 else best[0]
    solution: list[str] = []
    link = parent[start]
    while link is not None:
        prev, forward = link
        solution.append(forward)
        link = parent[prev]
    return start[1], start[0], tuple(solution)


_FEEDBACK = {
    outcome: {d: text.format(d=d) for d in DIRECTIONS}
    for outcome, text in (
        ("moved", "You move {d}."),
        ("pushed", "You push the box {d}."),
        ("wall", "You can't move {d}: a wall is in the way."),
        ("blocked", "The box won't move {d}: something is behind it."),
    )
}
_NO_MOVE = ("wall", "blocked")
_NOT_A_MOVE = "That is not a move: use up, down, left or right."


# ---------------------------------------------------------------------------------------------
# the env
# ---------------------------------------------------------------------------------------------
class SokobanEnv(TextEnv):
    """Text Sokoban on generated levels (pure Python, no extra needed).

    Args:
        width, height: room size including the outer wall (``MIN_SIZE``-``MAX_SIZE``, 5-12).
        num_boxes: boxes (and targets) per level (1-``MAX_BOXES``, 1-4, and at most
            ``((width - 2) * (height - 2) - 3) // 3``).
        num_levels: how many levels ``task_id`` ranges over (``0 <= task_id < num_levels``).
        seed: base seed of the level set; ``split`` (``"train"``/``"test"``, any str) salts it
            so train and test levels differ.
        max_states: generator effort: states searched per level (see :func:`generate_level`;
            ``MIN_STATES``-``MAX_STATES``, 100-100,000).
        reward_mode: ``"sparse"`` (1.0 when every box is on a target) or ``"dense"``
            (change in boxes-on-targets / number of boxes).
        render_mode: ``None``, ``"ansi"`` or ``"human"``.

    ``reset(options={"task_id": i})`` plays level i; ``options={"level": text}`` plays a level
    drawn in text (``task_id`` -1).
    """

    reset_option_keys = ("task_id", "level")
    refused_action_feedback = _NOT_A_MOVE

    def __init__(
        self,
        *,
        width: int = 7,
        height: int = 7,
        num_boxes: int = 2,
        num_levels: int = 10_000,
        seed: int = 0,
        split: str = "train",
        max_states: int = 50_000,
        reward_mode: str = "sparse",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(reward_mode=reward_mode, render_mode=render_mode)
        if isinstance(num_levels, bool) or not isinstance(num_levels, int):
            raise TypeError(f"num_levels must be an int, got {type(num_levels).__name__}")
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        check_level_params(width, height, num_boxes, max_states)
        self._params = (width, height, num_boxes, max_states)
        self.num_levels = int(num_levels)
        self.level_set_seed = int(seed)
        self.split = str(split)
        self.level: Level | None = None
        self._boxes: frozenset[tuple[int, int]] = frozenset()
        self._player = (0, 0)
        self._levels: dict[int, Level] = {}

    @property
    def num_tasks(self) -> int:
        return self.num_levels

    def _draw_task_id(self, options: dict[str, Any]) -> int:
        return -1 if "level" in options else super()._draw_task_id(options)

    def level_for(self, task_id: int) -> Level:
        """The level of ``task_id`` (generated once, then cached)."""
        level = self._levels.get(task_id)
        if level is None:
            width, height, num_boxes, max_states = self._params
            seed = level_seed(
                task_id, seed=self.level_set_seed, split=self.split, params=self._params
            )
            level = generate_level(
                seed, width=width, height=height, num_boxes=num_boxes, max_states=max_states
            )
            if len(self._levels) >= 4096:
                self._levels.clear()
            self._levels[task_id] = level
        return level

    def _reset_task(self, task_id: int, options: dict[str, Any]) -> Transition:
        if "level" in options:
            level = options["level"]
            if not isinstance(level, Level | str):
                raise TypeError(
                    f"options['level'] must be a level drawn in text (str) or a Level, got "
                    f"{type(level).__name__}"
                )
            if isinstance(level, str):
                try:
                    level = Level.parse(level)
                except ValueError as exc:
                    raise ValueError(f"options['level']: {exc}") from exc
        else:
            level = self.level_for(task_id)
        self.level = level
        self.task_id = task_id
        self.task = TASK
        self.max_score = float(len(level.targets))
        self.walkthrough = list(level.solution) if level.solution else None
        self._boxes, self._player = level.boxes, level.player
        return self._transition(TASK, invalid=False)

    def _step_action(self, action: str) -> Transition:
        assert self.level is not None
        direction = parse_action(action)
        if direction is None:
            return self._transition(
                f"'{action.strip()[:40]}' is not a move: use up, down, left or right.",
                invalid=True,
            )
        self._boxes, self._player, outcome = move(self.level, self._boxes, self._player, direction)
        return self._transition(_FEEDBACK[outcome][direction], invalid=outcome in _NO_MOVE)

    def _refuse_action(self, action: str) -> Transition:
        """A refused action leaves the level as it is; the grid is shown as after any move."""
        return self._transition(self.refused_action_feedback, invalid=True)

    def _transition(self, feedback: str, *, invalid: bool) -> Transition:
        assert self.level is not None
        grid = self.level.render(self._boxes, self._player)
        on = len(self._boxes & self.level.targets)
        n = len(self.level.targets)
        admissible = [
            d
            for d in DIRECTIONS
            if move(self.level, self._boxes, self._player, d)[2] in ("moved", "pushed")
        ]
        won = on == n
        tail = "All boxes are on targets. You win!" if won else f"Boxes on targets: {on}/{n}."
        return Transition(
            observation=f"{feedback}\n\n{grid}\n\n{tail}",
            score=float(on),
            won=won,
            invalid=invalid,
            admissible=admissible,
            state_key=grid.replace("\n", "/"),
        )

    # -- branching -----------------------------------------------------------------------------
    def clone_state(self) -> SokobanState:
        """An immutable snapshot of the current episode (level, boxes, player, task id)."""
        if self.level is None:
            raise RuntimeError("clone_state() needs a started episode: call reset() first")
        return SokobanState(self.level, self._boxes, self._player, self.task_id)

    def restore_state(self, state: SokobanState) -> tuple[str, dict[str, Any]]:
        """Continue from ``state`` (from ``clone_state``, in any SokobanEnv).

        Returns ``(observation, info)`` as ``reset`` does. An episode that was already won
        stays over (step raises until the next reset). gymnasium's ``TimeLimit`` keeps its own
        step count: restore into an env whose step budget suits the branch.
        """
        if not isinstance(state, SokobanState):
            raise TypeError(f"state must be a SokobanState, got {type(state).__name__}")
        self.level = state.level
        self.task_id = state.task_id
        self.task = TASK
        self.max_score = float(len(state.level.targets))
        self.walkthrough = list(state.level.solution) if state.level.solution else None
        self._boxes, self._player = state.boxes, state.player
        t = self._transition("The game continues from a saved state.", invalid=False)
        self._last = t
        self._done = t.won
        return t.observation, self._info(t, invalid=False)

    def __repr__(self) -> str:
        w, h, b, _ = self._params
        return f"SokobanEnv({w}x{h}, num_boxes={b}, num_levels={self.num_levels}, split={self.split!r})"
