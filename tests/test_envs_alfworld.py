"""slea/ALFWorld-v0 on the small ALFWorld-format games committed under tests/data/alfworld/.

The games (a kitchen and a study, written for slea; see tests/data/alfworld/build_games.py)
follow the ALFWorld data layout: json_2.1.1/<split>/<task>/<trial>/{traj_data.json,
game.tw-pddl}, including one unsolvable game and one movable-receptacle game the loader skips.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import gymnasium
import pytest
from conftest_envs import ALFWORLD_DATA, play

pytest.importorskip("fast_downward", reason="the [envs] extra (textworld[pddl]) is not installed")

from slea.envs.alfworld import (
    TASK_TYPES,
    ALFWorldEnv,
    demangle_names,
    find_games,
    normalize_task_types,
)
from slea.errors import EnvError


def test_find_games_follows_alfworld_rules() -> None:
    train = find_games(ALFWORLD_DATA, "train")
    names = [g.parent.parent.name for g in train]
    assert names == sorted(names) and len(names) == 4
    assert not any("movable" in n for n in names)  # movable receptacles are skipped
    assert "pick_and_place_simple-Mug-None-Fridge-11" not in names  # unsolvable: skipped
    assert [g.parent.parent.name for g in find_games(ALFWORLD_DATA, "valid_seen")] == [
        "pick_clean_then_place_in_recep-Mug-None-CounterTop-10"
    ]
    ood = find_games(ALFWORLD_DATA, "eval_out_of_distribution")
    assert ood == find_games(ALFWORLD_DATA, "valid_unseen")


def test_task_type_filter() -> None:
    heat = find_games(ALFWORLD_DATA, "train", ["heat"])
    assert [g.parent.parent.name.split("-")[0] for g in heat] == [TASK_TYPES["heat"]]
    both = find_games(ALFWORLD_DATA, "train", ["pick", 6])
    assert {g.parent.parent.name.split("-")[0] for g in both} == {
        "pick_and_place_simple",
        "pick_two_obj_and_place",
    }
    assert normalize_task_types("pick_cool_then_place_in_recep") == (TASK_TYPES["cool"],)
    with pytest.raises(ValueError, match="unknown task type"):
        normalize_task_types(["boil"])
    with pytest.raises(EnvError, match="no solvable ALFWorld games"):
        find_games(ALFWORLD_DATA, "valid_seen", ["look"])


def test_missing_data_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EnvError, match="alfworld-download") as err:
        ALFWorldEnv(tmp_path / "nowhere")
    assert "ALFWORLD_DATA" in str(err.value)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    with pytest.raises(EnvError, match="alfworld-download"):
        gymnasium.make("slea/ALFWorld-v0")
    monkeypatch.setenv("ALFWORLD_DATA", str(ALFWORLD_DATA))
    env = gymnasium.make("slea/ALFWorld-v0", split="valid_unseen")
    assert env.unwrapped.num_tasks == 1
    with pytest.raises(ValueError, match="split"):
        ALFWorldEnv(ALFWORLD_DATA, split="test")


def test_every_game_is_won_by_its_walkthrough() -> None:
    for split in ("train", "valid_seen", "valid_unseen"):
        env = ALFWorldEnv(ALFWORLD_DATA, split=split)
        for task_id in range(env.num_tasks):
            _, info = env.reset(options={"task_id": task_id})
            assert info["task_type"] in TASK_TYPES
            total, terminated, last = play(env, info["walkthrough"])
            assert terminated and last["won"] and total == 1.0, (split, task_id)


def test_observations_follow_alfworld_conventions() -> None:
    env = ALFWorldEnv(ALFWORLD_DATA, split="train", task_types=["pick"])
    obs, info = env.reset(options={"task_id": 0})
    assert obs.startswith("You are in the middle of a room. Looking quickly around you, you see")
    assert obs.endswith("Your task is to: put some apple in fridge.")
    assert "Welcome to TextWorld" not in obs
    assert info["task"] == "put some apple in fridge."
    assert "go to fridge 1" in info["admissible_actions"]
    assert info["state_key"] == "at: middle of room | sees: nothing | carries: nothing"
    obs, _, _, _, info = env.step("go to fridge 1")
    assert obs == "You arrive at fridge 1. The fridge 1 is closed."
    assert info["state_key"] == "at: fridge 1(closed) | sees: nothing | carries: nothing"
    obs, _, _, _, info = env.step("take apple 1 from countertop 1")
    assert obs == "Nothing happens." and info["invalid_action"]


def test_state_key_shows_object_states() -> None:
    env = ALFWorldEnv(ALFWORLD_DATA, split="train", task_types=["heat"])
    _, info = env.reset(options={"task_id": 0})
    keys = [info["state_key"]]
    for action in info["walkthrough"]:
        keys.append(env.step(action)[4]["state_key"])
    assert "at: cabinet 1(open) | sees: mug 1 | carries: nothing" in keys
    assert "carries: mug 1(hot)" in keys[-2]
    assert keys[-1] == "at: countertop 1 | sees: apple 1, mug 1(hot) | carries: nothing"


def test_reset_to_game_path_and_explicit_games(tmp_path: Path) -> None:
    games = find_games(ALFWORLD_DATA, "train")
    env = ALFWorldEnv(games=games[:2])
    assert env.num_tasks == 2
    _, a = env.reset(options={"game": games[1]})
    assert a["task_id"] == 1
    _, b = env.reset(options={"game": games[3]})
    assert b["task_id"] == -1 and b["task_type"] == "pick2"
    with pytest.raises(FileNotFoundError):
        ALFWorldEnv(games=[tmp_path / "game.tw-pddl"])
    assert ALFWorldEnv(ALFWORLD_DATA, max_games=1).num_tasks == 1


def _mangled(game: Path, what: str) -> bytes:
    data = json.loads(game.read_text())
    if what == "garbage domain":
        data["pddl_domain"] = "garbage ( (("
    elif what == "half problem":
        data["pddl_problem"] = data["pddl_problem"][: len(data["pddl_problem"]) // 2]
    elif what == "garbage grammar":
        data["grammar"] = "garbage ( (("
    else:
        raise ValueError(what)
    return json.dumps(data).encode()


# Before: JSONDecodeError, UnicodeDecodeError, KeyError: 'pddl_domain', AttributeError, or a
# ParseError that also broke the env for the next reset of a good game.
@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not json", "is not readable JSON"),
        (b"\xff\xfe", "is not readable JSON"),
        (b"[1]", "holds a JSON list, not an object"),
        (b"{}", r"is not an ALFWorld game .*\['pddl_domain', 'pddl_problem', 'grammar'\]"),
        (b'{"pddl_domain": 3, "pddl_problem": "", "grammar": ""}', r"\['pddl_domain'\] missing"),
        ("garbage domain", r"textworld cannot load it \(ParseError"),
        ("half problem", r"textworld cannot load it \(ParseError"),
        ("garbage grammar", "textworld cannot load it"),
    ],
)
def test_damaged_game_file_is_an_env_error_and_the_env_goes_on(
    tmp_path: Path, content: bytes | str, match: str
) -> None:
    good = find_games(ALFWORLD_DATA, "train")[0]
    bad = tmp_path / "game.tw-pddl"
    bad.write_bytes(content if isinstance(content, bytes) else _mangled(good, content))
    env = ALFWorldEnv(games=[good, bad])
    _, info = env.reset(options={"task_id": 0})
    with pytest.raises(EnvError, match=re.escape(str(bad)) + ".*" + match):
        env.reset(options={"task_id": 1})
    _, again = env.reset(options={"task_id": 0})
    assert again["state_key"] == info["state_key"]
    total, terminated, _ = play(env, again["walkthrough"])
    assert terminated and total == 1.0


@pytest.mark.parametrize("name", ["traj_data.json", "game.tw-pddl"])
def test_damaged_json_in_the_data_is_an_env_error_naming_it(tmp_path: Path, name: str) -> None:
    shutil.copytree(ALFWORLD_DATA / "json_2.1.1" / "valid_seen", tmp_path / "valid_seen")
    damaged = next((tmp_path / "valid_seen").rglob(name))
    damaged.write_text('{"task_type": ')
    with pytest.raises(EnvError, match=re.escape(str(damaged)) + " is not readable JSON"):
        find_games(tmp_path, "valid_seen")
    damaged.write_text("[]")
    with pytest.raises(EnvError, match="holds a JSON list"):
        find_games(tmp_path, "valid_seen")


def test_data_dir_may_point_at_json_folder(tmp_path: Path) -> None:
    shutil.copytree(ALFWORLD_DATA / "json_2.1.1" / "valid_seen", tmp_path / "valid_seen")
    assert len(find_games(tmp_path, "valid_seen")) == 1
    game = next((tmp_path / "valid_seen").rglob("game.tw-pddl"))
    data = json.loads(game.read_text())
    data["solvable"] = False
    game.write_text(json.dumps(data))
    from slea.envs import alfworld

    alfworld._scan.cache_clear()  # the scan is cached per process
    with pytest.raises(EnvError, match="no solvable"):
        find_games(tmp_path, "valid_seen")


def test_resets_reuse_the_translation_and_keep_sys_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import fast_downward

    calls = []
    original = fast_downward.pddl2sas
    monkeypatch.setattr(
        fast_downward, "pddl2sas", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    monkeypatch.setattr(sys, "argv", ["my-program", "--flag"])
    from slea.envs import alfworld

    alfworld._TRANSLATIONS.clear()
    env = ALFWorldEnv(ALFWORLD_DATA, split="valid_seen")
    first = env.reset(options={"task_id": 0})
    n = len(calls)
    assert n > 0
    for _ in range(3):
        assert env.reset(options={"task_id": 0}) == first  # same episode start, no translation
    assert len(calls) == n
    assert sys.argv == ["my-program", "--flag"]  # the PDDL translator rewrites it; we restore it


def test_demangle_matches_alfworld_numbering() -> None:
    ids = [
        "apple_bar__plus_00_dot_21_bar__plus_00_dot_40",
        "apple_bar__minus_01_dot_75_bar__plus_00_dot_97",
        "sink_bar__plus_01_dot_38_bar_sinkbasin",
        "agent1",
        "loc_bar_1_bar_2",
    ]
    names = demangle_names(ids)
    # ALFWorld numbers instances in reverse sorted-id order.
    assert names["apple_bar__minus_01_dot_75_bar__plus_00_dot_97"] == "apple 2"
    assert names["apple_bar__plus_00_dot_21_bar__plus_00_dot_40"] == "apple 1"
    assert names["sink_bar__plus_01_dot_38_bar_sinkbasin"] == "sinkbasin 1"
    assert names["agent1"] == "agent1" and names["loc_bar_1_bar_2"] == "loc 1"


def test_agrees_with_alfworld_demangler_when_installed() -> None:
    misc = pytest.importorskip("alfworld.agents.utils.misc")
    from types import SimpleNamespace

    ids = ["apple_bar_1", "apple_bar_2", "apple_bar_3", "mug_bar_9", "sink_bar_x_bar_sinkbasin"]
    infos = {i: SimpleNamespace(id=i) for i in ids}
    theirs = misc.Demangler(game_infos=infos)
    ours = demangle_names(ids)
    assert {i: theirs.demangle_alfred_name(i).strip() for i in ids} == ours
