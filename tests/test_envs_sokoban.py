"""slea/Sokoban-v0: the level generator (solvable, optimal walkthroughs), moves, clone/restore.

The generator is checked against a plain breadth-first solver written here (``_bfs_*``).
"""

from __future__ import annotations

from collections import deque

import gymnasium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slea.envs.sokoban import (
    DIRECTIONS,
    Level,
    SokobanEnv,
    SokobanState,
    generate_level,
    move,
    parse_action,
)

# -- reference: obviously-correct breadth-first solver on the text grid ---------------------------
_MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def _bfs_parse(grid: str) -> tuple[set, set, tuple, tuple]:
    walls, targets, boxes, player = set(), set(), set(), None
    for r, line in enumerate(grid.splitlines()):
        for c, ch in enumerate(line):
            if ch == "#":
                walls.add((r, c))
            if ch in ".*+":
                targets.add((r, c))
            if ch in "$*":
                boxes.add((r, c))
            if ch in "@+":
                player = (r, c)
    return walls, targets, tuple(sorted(boxes)), player


def _bfs_step(walls: set, p: tuple, bs: list, action: str) -> tuple[tuple, list] | None:
    dr, dc = _MOVES[action]
    q = (p[0] + dr, p[1] + dc)
    if q in walls:
        return None
    bs = list(bs)
    if q in bs:
        beyond = (q[0] + dr, q[1] + dc)
        if beyond in walls or beyond in bs:
            return None
        bs[bs.index(q)] = beyond
    return q, bs


def _bfs_shortest(grid: str, limit: int = 300_000) -> int | None:
    walls, targets, boxes, player = _bfs_parse(grid)
    seen = {(player, boxes)}
    queue = deque([((player, boxes), 0)])
    while queue and len(seen) < limit:
        (p, bs), depth = queue.popleft()
        if set(bs) == targets:
            return depth
        for action in _MOVES:
            nxt = _bfs_step(walls, p, list(bs), action)
            if nxt is not None:
                state = (nxt[0], tuple(sorted(nxt[1])))
                if state not in seen:
                    seen.add(state)
                    queue.append((state, depth + 1))
    return None


def _bfs_play(grid: str, actions: list[str]) -> bool:
    walls, targets, boxes, p = _bfs_parse(grid)
    bs = list(boxes)
    for action in actions:
        nxt = _bfs_step(walls, p, bs, action)
        if nxt is not None:
            p, bs = nxt
    return set(bs) == targets


# -- generator ------------------------------------------------------------------------------------
level_args = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**63),
        "width": st.integers(5, 8),
        "height": st.integers(5, 8),
        "num_boxes": st.integers(1, 2),
    }
)


@given(level_args)
def test_generated_levels_are_solved_by_their_walkthrough(args: dict) -> None:
    level = generate_level(**args)
    grid = level.render(level.boxes, level.player)
    assert len(level.boxes) == len(level.targets) == args["num_boxes"]
    assert not level.boxes & level.targets  # every box starts off its target
    assert level.player not in level.walls and not level.boxes & level.walls
    assert len(level.solution) >= 1
    assert _bfs_play(grid, list(level.solution))  # the reference agrees it solves the level
    assert not _bfs_play(grid, list(level.solution)[:-1])  # and no prefix does


@settings(max_examples=25)
@given(level_args)
def test_walkthrough_is_a_shortest_solution(args: dict) -> None:
    level = generate_level(**args)
    grid = level.render(level.boxes, level.player)
    assert _bfs_shortest(grid) == len(level.solution)


@given(level_args)
def test_generator_is_deterministic_and_grid_round_trips(args: dict) -> None:
    a, b = generate_level(**args), generate_level(**args)
    assert a == b
    parsed = Level.parse(a.render(a.boxes, a.player))
    assert (parsed.walls, parsed.targets, parsed.boxes, parsed.player) == (
        a.walls,
        a.targets,
        a.boxes,
        a.player,
    )


def test_generator_validates_arguments() -> None:
    with pytest.raises(ValueError, match="width and height"):
        generate_level(0, width=4)
    with pytest.raises(ValueError, match="num_boxes"):
        generate_level(0, num_boxes=0)
    with pytest.raises(ValueError, match="too small"):
        generate_level(0, width=5, height=5, num_boxes=3)
    with pytest.raises(TypeError, match="width"):
        SokobanEnv(width=7.5)  # type: ignore[arg-type]


def test_level_parse_errors() -> None:
    with pytest.raises(ValueError, match="one player"):
        Level.parse("#####\n#$. #\n#####")
    with pytest.raises(ValueError, match="as many boxes"):
        Level.parse("#####\n#@$ #\n#####")
    with pytest.raises(ValueError, match="unknown symbol"):
        Level.parse("#####\n#@$.X\n#####")


# -- moves and the env ----------------------------------------------------------------------------
def test_moves_push_and_block() -> None:
    level = Level.parse("#######\n#@$ $.#\n#    .#\n#######")
    boxes, player, outcome = move(level, level.boxes, level.player, "right")
    assert outcome == "pushed" and player == (1, 2) and (1, 3) in boxes
    boxes, player, outcome = move(level, boxes, player, "right")
    assert outcome == "blocked" and player == (1, 2)  # two boxes in a row do not move
    _, _, outcome = move(level, level.boxes, level.player, "up")
    assert outcome == "wall"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("up", "up"),
        ("  Right ", "right"),
        ("move left", "left"),
        ("push down", "down"),
        ("u", "up"),
        ("east", "right"),
        ("jump", None),
        ("up up", None),
        ("", None),
    ],
)
def test_parse_action(text: str, expected: str | None) -> None:
    assert parse_action(text) == expected


def test_env_observation_admissible_and_invalid_moves() -> None:
    env = SokobanEnv()
    level_text = "#######\n#@$ $.#\n#    .#\n#######"
    obs, info = env.reset(options={"level": level_text})
    assert info["task_id"] == -1 and "Boxes on targets: 0/2." in obs
    assert level_text in obs and info["state_key"] == level_text.replace("\n", "/")
    assert info["admissible_actions"] == ["down", "right"]
    obs, reward, _, _, info = env.step("up")
    assert info["invalid_action"] and "wall" in obs and reward == 0.0
    _, _, _, _, info = env.step("move right")
    assert not info["invalid_action"] and info["admissible_actions"] == ["down", "left"]


def test_levels_depend_on_task_id_and_split_only() -> None:
    a, b = SokobanEnv(seed=3), SokobanEnv(seed=3)
    assert a.reset(options={"task_id": 9})[0] == b.reset(options={"task_id": 9})[0]
    assert a.reset(options={"task_id": 9})[0] != a.reset(options={"task_id": 10})[0]
    test = SokobanEnv(seed=3, split="test")
    train_levels = {
        a.level_for(i).render(a.level_for(i).boxes, a.level_for(i).player) for i in range(30)
    }
    test_levels = {
        test.level_for(i).render(test.level_for(i).boxes, test.level_for(i).player)
        for i in range(30)
    }
    assert not train_levels & test_levels


def _key(state: SokobanState) -> str:
    return state.level.render(state.boxes, state.player).replace("\n", "/")


def test_clone_and_restore_state_branches() -> None:
    env = SokobanEnv(num_boxes=2)
    _, info = env.reset(options={"task_id": 4})
    walk = info["walkthrough"]
    half = len(walk) // 2
    for action in walk[:half]:
        env.step(action)
    snapshot = env.clone_state()
    assert isinstance(snapshot, SokobanState)
    key = env.clone_state()
    assert key == snapshot  # snapshots are values
    for action in ("left", "up", "right", "down"):
        env.step(action)  # wander off
    other = SokobanEnv(num_boxes=2)
    _, info = other.restore_state(snapshot)
    assert info["task_id"] == 4 and info["state_key"] == _key(snapshot)
    total = sum(other.step(a)[1] for a in walk[half:])
    assert total == 1.0 and other.clone_state().boxes == snapshot.level.targets
    env.restore_state(snapshot)  # the same env rewinds too
    assert sum(env.step(a)[1] for a in walk[half:]) == 1.0


def test_restore_needs_a_state() -> None:
    env = SokobanEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.clone_state()
    with pytest.raises(TypeError, match="SokobanState"):
        env.restore_state("#@$.#")  # type: ignore[arg-type]


def test_restore_works_through_gymnasium_wrappers() -> None:
    env = gymnasium.make("slea/Sokoban-v0", max_episode_steps=50)
    env.reset(options={"task_id": 1})
    state = env.get_wrapper_attr("clone_state")()
    env.step("up")
    _, info = env.get_wrapper_attr("restore_state")(state)
    assert info["state_key"] == _key(state)
    assert set(DIRECTIONS) >= set(info["admissible_actions"])
