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
    MAX_BOXES,
    MAX_LEVEL_TEXT_SIZE,
    MAX_SIZE,
    MAX_STATES,
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


# Before the bounds, width=height=10000 ran for minutes and took gigabytes (60x60: 16 s a level).
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"width": 10_000, "height": 10_000}, ValueError, r"width must be in \[5, 12\]"),
        ({"width": 60, "height": 60}, ValueError, r"width must be in \[5, 12\].*got 60"),
        ({"height": MAX_SIZE + 1}, ValueError, r"height must be in \[5, 12\]"),
        ({"height": -3}, ValueError, "height"),
        ({"num_boxes": MAX_BOXES + 1, "width": 12, "height": 12}, ValueError, "num_boxes"),
        ({"num_boxes": 0}, ValueError, "num_boxes"),
        ({"num_boxes": 4, "width": 5, "height": 6}, ValueError, "too small for 4 boxes"),
        ({"max_states": MAX_STATES + 1}, ValueError, r"max_states must be in \[100, 100000\]"),
        ({"max_states": 99}, ValueError, "max_states"),
        ({"max_states": 1e9}, TypeError, "max_states must be an int"),
        ({"num_levels": 0}, ValueError, "num_levels"),
        ({"num_levels": 2.5}, TypeError, "num_levels must be an int"),
        ({"width": True}, TypeError, "width must be an int"),
    ],
)
def test_generator_settings_are_bounded(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SokobanEnv(**kwargs)
    with pytest.raises(error, match=match):
        gymnasium.make("slea/Sokoban-v0", **kwargs)
    level_kwargs = {k: v for k, v in kwargs.items() if k != "num_levels"}
    if level_kwargs:
        with pytest.raises(error, match=match):
            generate_level(0, **level_kwargs)


@given(
    width=st.integers(-(2**40), 2**40),
    height=st.integers(-(2**40), 2**40),
    num_boxes=st.integers(-5, 50),
    max_states=st.integers(-(2**40), 2**40),
)
def test_out_of_bounds_settings_name_the_argument(
    width: int, height: int, num_boxes: int, max_states: int
) -> None:
    try:
        SokobanEnv(width=width, height=height, num_boxes=num_boxes, max_states=max_states)
    except ValueError as exc:
        assert any(name in str(exc) for name in ("width", "height", "num_boxes", "max_states"))
        return
    assert 5 <= width <= MAX_SIZE and 5 <= height <= MAX_SIZE
    assert 1 <= num_boxes <= MAX_BOXES and 100 <= max_states <= MAX_STATES


def test_level_at_the_max_bounds_generates() -> None:
    level = generate_level(0, width=MAX_SIZE, height=MAX_SIZE, num_boxes=MAX_BOXES)
    assert len(level.boxes) == MAX_BOXES and level.solution
    with pytest.raises(ValueError, match="raise max_states"):  # too little effort: said so
        generate_level(0, width=MAX_SIZE, height=MAX_SIZE, num_boxes=MAX_BOXES, max_states=100)


def test_level_option_is_bounded_and_checked() -> None:
    env = SokobanEnv()
    n = MAX_LEVEL_TEXT_SIZE + 1
    big = "\n".join(["@$." + " " * (n - 3)] + ["#" * n] * (n - 1))
    with pytest.raises(ValueError, match=r"options\['level'\]: level text has 65 rows"):
        env.reset(options={"level": big})
    with pytest.raises(ValueError, match=r"options\['level'\].*unknown symbol"):
        env.reset(options={"level": "#@$.X"})
    with pytest.raises(TypeError, match=r"options\['level'\] must be"):
        env.reset(options={"level": 5})
    edge = "\n".join(["@$." + " " * 61] + ["#" * 64] * 63)
    assert env.reset(options={"level": edge})[1]["task_id"] == -1  # 64 x 64 is fine


def test_a_level_without_outer_wall_keeps_the_player_inside() -> None:
    """Cells outside the grid are walls: stepping off an open level raised IndexError (down) or
    wrapped around to the other side (up, left)."""
    env = SokobanEnv()
    env.reset(options={"level": "@$."})
    for action in ("down", "up", "left"):
        obs, reward, terminated, _, info = env.step(action)
        assert info["invalid_action"] and "wall" in obs and reward == 0.0 and not terminated
        assert info["state_key"] == "@$."
    level = Level.parse(" $.\n@$.")
    _, _, outcome = move(level, level.boxes, (0, 0), "right")  # a box pushed off the edge
    assert outcome == "pushed"
    _, _, outcome = move(level, frozenset({(0, 2)}), (0, 1), "right")
    assert outcome == "blocked"
    assert env.step("right")[4]["won"]


_CELLS = st.sampled_from(list("#. $*@+"))


@given(
    rows=st.lists(st.lists(_CELLS, min_size=1, max_size=6).map("".join), min_size=1, max_size=5),
    moves=st.lists(st.sampled_from(list(DIRECTIONS)), max_size=30),
)
def test_any_drawn_level_plays_without_errors(rows: list[str], moves: list[str]) -> None:
    env = SokobanEnv()
    try:
        env.reset(options={"level": "\n".join(rows)})
    except ValueError:
        return  # not one player, or boxes != targets
    assert env.level is not None
    for action in moves:
        _, _, terminated, _, _ = env.step(action)
        state = env.clone_state()
        assert 0 <= state.player[0] < env.level.height and 0 <= state.player[1] < env.level.width
        assert all(0 <= r < env.level.height and 0 <= c < env.level.width for r, c in state.boxes)
        if terminated:
            break


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
