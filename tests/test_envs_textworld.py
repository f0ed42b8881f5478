"""slea/TextWorld-v0 and the game generator (games are generated once per machine, then cached)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium
import hypothesis.strategies as st
import pytest
from conftest_envs import coin_games, games_cache, play, treasure_game
from hypothesis import given

pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")

from slea.envs.textworld import (
    COMPASS,
    TextWorldEnv,
    compass_inverse,
    compass_map,
    game_seed,
    make_games,
    resolve_games,
    state_key_from_facts,
)
from slea.errors import EnvError


@pytest.fixture(scope="module")
def tw_games() -> dict[str, list[Path]]:
    return coin_games()


@pytest.fixture(scope="module")
def tw_treasure_game() -> Path:
    return treasure_game()


# -- generation and cache -------------------------------------------------------------------------
def test_make_games_reuses_the_cache(tw_games: dict[str, list[Path]]) -> None:
    train = tw_games["train"]
    assert [p.name for p in train] == ["train-0000.z8", "train-0001.z8"]
    assert all(p.is_file() and p.with_suffix(".json").is_file() for p in train)
    stamps = [p.stat().st_mtime_ns for p in train]
    again = make_games(games_cache(), 2, seed=0, kind="coin", level=3, split="train")
    assert again == train
    assert [p.stat().st_mtime_ns for p in train] == stamps  # nothing was regenerated
    assert (train[0].parent / "params.json").is_file()


def test_make_games_prefix_is_stable(tw_games: dict[str, list[Path]]) -> None:
    one = make_games(games_cache(), 1, seed=0, kind="coin", level=3, split="train")
    assert one == tw_games["train"][:1]
    assert make_games(games_cache(), 0, seed=0) == []


def test_split_seeds_are_disjoint() -> None:
    seeds = {
        split: {game_seed("coin", 3, 0, split, i) for i in range(2000)}
        for split in ("train", "valid", "test")
    }
    assert all(len(s) == 2000 for s in seeds.values())
    assert not seeds["train"] & seeds["test"]
    assert not seeds["train"] & seeds["valid"]
    assert game_seed("coin", 3, 0, "train", 5) == game_seed("coin", 3, 0, "train", 5)
    assert game_seed("coin", 3, 0, "train", 5) != game_seed("coin", 3, 1, "train", 5)


def test_train_and_test_games_differ(tw_games: dict[str, list[Path]]) -> None:
    objectives = set()
    for path in tw_games["train"] + tw_games["test"]:
        env = TextWorldEnv([path])
        objectives.add(env.reset(options={"task_id": 0})[1]["task"])
        env.close()
    assert len(objectives) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "zork"}, "kind"),
        ({"level": 0}, "level"),
        ({"kind": "treasure", "level": 31}, "level"),
        ({"split": "dev"}, "split"),
        ({"n": -1}, "n must be"),
        ({"settings": {"go": 6}}, "settings are only used"),
        ({"kind": "cooking", "level": 1, "settings": {"speed": 2}}, "unknown cooking settings"),
        ({"workers": 0}, "workers"),
    ],
)
def test_make_games_validates(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"n": 1, "seed": 0, **kwargs}
    n = args.pop("n")
    with pytest.raises(ValueError, match=match):
        make_games(tmp_path, n, **args)
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_make_textworld_uses_cache(
    tw_games: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    from slea.cli import main

    argv = ["envs", "make-textworld", "--out", str(games_cache()), "--n", "2", "--n-test", "1"]
    assert main([*argv, "--seed", "0", "--kind", "coin", "--difficulty", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(p) for p in tw_games["train"] + tw_games["test"]]


def test_cli_make_textworld_rejects_bad_level(tmp_path: Path) -> None:
    from slea.cli import main

    assert main(["envs", "make-textworld", "--out", str(tmp_path), "--n", "1", "--level", "0"]) == 2


def test_resolve_games_errors(tmp_path: Path, tw_games: dict[str, list[Path]]) -> None:
    with pytest.raises(FileNotFoundError, match="no such game"):
        resolve_games([tmp_path / "missing.z8"])
    with pytest.raises(ValueError, match="empty"):
        resolve_games(tmp_path)
    lone = tmp_path / "lone.z8"
    shutil.copy(tw_games["train"][0], lone)
    with pytest.raises(EnvError, match="sidecar"):
        resolve_games([lone])
    with pytest.raises(TypeError, match="games must be"):
        resolve_games(3)  # type: ignore[arg-type]
    assert set(tw_games["train"]) <= set(resolve_games(tw_games["train"][0].parent))


# -- damaged game files -----------------------------------------------------------------------------
def _copy_game(
    tmp_path: Path, game: Path, name: str, z8: bytes | None = None, sidecar: bytes | None = None
) -> Path:
    """A copy of ``game`` as ``tmp_path/name.z8`` (+ .json), with its bytes replaced if given."""
    out = tmp_path / f"{name}.z8"
    out.write_bytes(game.read_bytes() if z8 is None else z8)
    out.with_suffix(".json").write_bytes(
        game.with_suffix(".json").read_bytes() if sidecar is None else sidecar
    )
    return out


_RANDOM = bytes(range(7, 256)) * 16  # not a story: its first byte is 0x07


@pytest.mark.parametrize(
    ("z8", "match"),
    [
        (lambda g: _RANDOM, "not a Z-machine version 8 story file"),
        (lambda g: b"", "0 bytes is too short"),
        (lambda g: g[:40], "40 bytes is too short"),
        (lambda g: g[:64], "truncated or damaged story file .* the file has 64"),
        (lambda g: g[: len(g) // 2], "truncated or damaged story file"),
    ],
)
def test_damaged_story_file_is_an_env_error_at_construction(
    tmp_path: Path, tw_games: dict[str, list[Path]], z8: Any, match: str
) -> None:
    """Before, these reached the interpreter, which exited the process ("Fatal error: Story
    file read error") at the first reset."""
    game = tw_games["train"][0]
    bad = _copy_game(tmp_path, game, "bad", z8=z8(game.read_bytes()))
    with pytest.raises(EnvError, match=f"game {re.escape(str(bad))}: {match}"):
        TextWorldEnv([bad])
    with pytest.raises(EnvError, match=match):
        TextWorldEnv([game, bad])


@given(cut=st.integers(0, 382_000))
def test_any_truncated_story_is_refused(tmp_path_factory: Any, cut: int) -> None:
    game = coin_games()["train"][0]
    data = game.read_bytes()
    bad = _copy_game(
        tmp_path_factory.mktemp("cut"), game, "cut", z8=data[: min(cut, len(data) - 1)]
    )
    with pytest.raises(EnvError, match="story"):
        resolve_games([bad])


# The case: a random-bytes .z8 with a `{}` sidecar gave KeyError: 'KB'.
@pytest.mark.parametrize(
    ("z8", "sidecar", "match"),
    [
        (_RANDOM, b"{}", "not a Z-machine version 8 story file"),
        (None, b"{}", r"is not a TextWorld game description \(KeyError: 'KB'\)"),
        (None, b"not json {", "is not readable JSON"),
        (None, b"", "is not readable JSON"),
        (None, b"\xff\xfe garbage", "is not readable JSON"),
        (None, b"[1, 2]", "is not a TextWorld game description"),
        (None, b'{"KB": 3}', "is not a TextWorld game description"),
    ],
)
def test_damaged_sidecar_is_an_env_error_that_changes_nothing(
    tmp_path: Path, tw_games: dict[str, list[Path]], z8: bytes | None, sidecar: bytes, match: str
) -> None:
    game = tw_games["train"][0]
    bad = _copy_game(tmp_path, game, "bad", z8=z8, sidecar=sidecar)
    with pytest.raises(EnvError, match=re.escape(str(bad)) + ".*" + match):
        TextWorldEnv([bad]).reset(options={"task_id": 0})
    env = TextWorldEnv([game])  # an ad-hoc damaged game fails the same way, leaving env as is
    _, info = env.reset(options={"task_id": 0})
    with pytest.raises(EnvError, match=match):
        env.reset(options={"game": bad})
    _, again = env.reset(options={"task_id": 0})
    assert again["game"] == info["game"] and again["state_key"] == info["state_key"]
    total, terminated, _ = play(env, again["walkthrough"])
    assert terminated and total == 1.0


def test_damaged_story_body_is_refused_before_the_interpreter(
    tmp_path: Path, tw_games: dict[str, list[Path]]
) -> None:
    """A changed byte past the header: its checksum no longer matches (reset raises)."""
    game = tw_games["train"][0]
    data = bytearray(game.read_bytes())
    data[len(data) // 3] ^= 0x5A
    bad = _copy_game(tmp_path, game, "flipped", z8=bytes(data))
    env = TextWorldEnv([bad])
    with pytest.raises(EnvError, match=r"damaged story file .*checksum"):
        env.reset(options={"task_id": 0})


# -- playing --------------------------------------------------------------------------------------
def test_observations_are_clean(tw_games: dict[str, list[Path]]) -> None:
    env = TextWorldEnv(tw_games["train"])
    obs, info = env.reset(options={"task_id": 0})
    assert obs.startswith(info["task"])  # objective first, ASCII-art banner dropped
    assert "$$$$" not in obs and "\n>" not in obs and "\n\n\n" not in obs
    assert "-= " in obs  # the first room
    assert len(info["walkthrough"]) == 3  # coin collector level 3
    assert info["game"] == str(tw_games["train"][0])
    obs, *_ = env.step("inventory")
    assert obs.startswith("You are carrying")
    assert obs.count("-= ") == 1  # the room description was appended, once
    obs, *_ = env.step("look")
    assert obs.count("-= ") == 1  # look shows the room: not appended again
    env.close()


def test_description_and_inventory_options(tw_games: dict[str, list[Path]]) -> None:
    plain = TextWorldEnv(tw_games["train"], include_description=False)
    plain.reset(options={"task_id": 0})
    obs, *_ = plain.step("inventory")
    assert "-= " not in obs
    inv = TextWorldEnv(tw_games["train"], include_inventory=True)
    obs, info = inv.reset(options={"task_id": 0})
    assert "You are carrying nothing." in obs
    _, info = inv.reset(options={"task_id": 0})
    for action in info["walkthrough"][:-1]:
        obs, *_ = inv.step(action)
    assert obs.endswith("You are carrying nothing.")


def test_state_key_tracks_room_and_inventory(tw_games: dict[str, list[Path]]) -> None:
    env = TextWorldEnv(tw_games["train"])
    _, info = env.reset(options={"task_id": 0})
    keys = [info["state_key"]]
    for action in info["walkthrough"]:
        keys.append(env.step(action)[4]["state_key"])
    assert len(set(keys)) == len(keys)  # every step of the walkthrough changes the state
    assert all(k.startswith("room: ") for k in keys)
    assert "sees: coin" in keys[-2] and keys[-1].endswith("carries: coin")
    assert env.reset(options={"task_id": 0})[1]["state_key"] == keys[0]


def test_reset_by_game_path_and_switching(tw_games: dict[str, list[Path]]) -> None:
    env = TextWorldEnv(tw_games["train"])
    a = env.reset(options={"task_id": 1})
    b = env.reset(options={"game": tw_games["train"][1]})
    assert a[0] == b[0] and b[1]["task_id"] == 1
    c = env.reset(options={"game": tw_games["test"][0]})
    assert c[1]["task_id"] == -1 and c[0] != a[0]
    total, terminated, _ = play(env, c[1]["walkthrough"])
    assert terminated and total == 1.0
    d = env.reset(options={"task_id": 1})
    assert d[0] == a[0]


# -- compass symmetries --------------------------------------------------------------------------
def test_compass_maps_are_the_eight_symmetries() -> None:
    images = {tuple(compass_map(" ".join(COMPASS), k).split()) for k in range(8)}
    assert len(images) == 8  # all distinct permutations
    assert compass_map("north east south west", 1) == "east south west north"  # a quarter turn
    assert compass_map("north east south west", 4) == "north west south east"  # east <-> west
    for k in range(8):  # opposite directions stay opposite: the map is a symmetry of the compass
        for i, d in enumerate(COMPASS):
            back = COMPASS[(i + 2) % 4]
            assert compass_map(back, k) == COMPASS[(COMPASS.index(compass_map(d, k)) + 2) % 4]
        for j in range(8):  # closed under composition
            composed = compass_map(compass_map(" ".join(COMPASS), k), j)
            assert tuple(composed.split()) in images


def test_compass_map_keeps_case_and_other_words() -> None:
    text = "Go East. NORTH exit; the northern wing, westward, Western; north-east"
    assert (
        compass_map(text, 1)
        == "Go South. EAST exit; the northern wing, westward, Western; east-south"
    )
    assert compass_map(text, 0) is text


@given(
    st.text(alphabet=st.sampled_from(list("northeswNORTHESW -.,\n\u00e9")), max_size=60),
    st.integers(0, 7),
)
def test_compass_inverse_undoes_the_map(text: str, k: int) -> None:
    assert compass_map(compass_map(text, k), compass_inverse(k)) == text
    assert compass_inverse(compass_inverse(k)) == k


def test_compass_option_maps_the_texts_and_the_actions(tw_games: dict[str, list[Path]]) -> None:
    env = TextWorldEnv(tw_games["train"])
    obs0, info0 = env.reset(options={"task_id": 1})
    assert info0["compass"] == 0
    for k in range(1, 8):
        obs, info = env.reset(options={"task_id": 1, "compass": k})
        assert info["compass"] == k
        assert obs == compass_map(obs0, k) and info["task"] == compass_map(info0["task"], k)
        assert info["walkthrough"] == [compass_map(a, k) for a in info0["walkthrough"]]
        assert info["admissible_actions"] == [
            compass_map(a, k) for a in info0["admissible_actions"]
        ]
        assert info["state_key"] == info0["state_key"]  # the same game underneath
        first = info["walkthrough"][0]
        if first != info0["walkthrough"][0]:  # the unmapped move is not the way out any more
            _, _, _, _, bad = env.step(info0["walkthrough"][0])
            assert bad["invalid_action"] and bad["state_key"] == info0["state_key"]
        total, terminated, _ = play(env, info["walkthrough"])
        assert terminated and total == 1.0
    obs, info = env.reset(options={"task_id": 1})  # the next reset plays the game as it is
    assert obs == obs0 and info["compass"] == 0


@pytest.mark.parametrize(
    ("bad", "error"),
    [(-1, ValueError), (8, ValueError), (1.0, TypeError), (True, TypeError), ("1", TypeError)],
)
def test_compass_option_validates(
    tw_games: dict[str, list[Path]], bad: object, error: type[Exception]
) -> None:
    env = TextWorldEnv(tw_games["train"])
    with pytest.raises(error, match="compass"):
        env.reset(options={"task_id": 0, "compass": bad})
    _, info = env.reset(options={"task_id": 0})  # the failed reset left the env usable
    assert info["compass"] == 0


# A line starting with a backslash is a dumb-frotz command; sent to the game it hung the env (a
# sampled action did in check_env). The thread method kills the run instead of hanging CI.
@pytest.mark.timeout(300, method="thread")
def test_interpreter_commands_are_refused(tw_games: dict[str, list[Path]]) -> None:
    env = TextWorldEnv(tw_games["train"])
    _, info = env.reset(options={"task_id": 0})
    start = info["state_key"]
    bad_commands = ("restart", "save", "undo", "quit", "go south. go east", "look then look")
    for bad in (*bad_commands, "\\help", "\\i%Fq#IF`sWcp", " \\x", "go \\south"):
        obs, reward, terminated, _, info = env.step(bad)
        assert info["invalid_action"] and reward == 0.0 and not terminated
        assert info["state_key"] == start and "not available" in obs
    total, terminated, _ = play(env, info["walkthrough"])  # the game still works
    assert terminated and total == 1.0


def test_odd_text_actions_do_not_break_the_game(tw_games: dict[str, list[Path]]) -> None:
    env = TextWorldEnv(tw_games["train"])
    _, info = env.reset(options={"task_id": 0})
    for odd in ("", "   ", "é ü 日本", "x" * 5000, "go\nsouth"):
        obs, *_ = env.step(odd)
        assert isinstance(obs, str)
    total, terminated, _ = play(env, info["walkthrough"])
    assert terminated and total == 1.0


def test_dense_equals_sparse_on_coin_collector(tw_games: dict[str, list[Path]]) -> None:
    env = TextWorldEnv(tw_games["train"], reward_mode="dense")
    _, info = env.reset(options={"task_id": 0})
    assert play(env, info["walkthrough"])[0] == 1.0


def test_treasure_hunter_walkthrough(tw_treasure_game: Path) -> None:
    env = gymnasium.make("slea/TextWorld-v0", games=[tw_treasure_game], max_episode_steps=50)
    _, info = env.reset(seed=0)
    assert info["walkthrough"] and "room: " in info["state_key"]
    total, terminated, last = play(env, info["walkthrough"])
    assert terminated and total == 1.0 and last["won"]


def _fact(name: str, *args: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, arguments=[SimpleNamespace(name=a) for a in args])


def test_state_key_from_facts_visibility() -> None:
    names = {"r_0": "kitchen", "r_1": "hall", "c_0": "chest", "c_1": "box", "s_0": "table",
             "o_0": "apple", "o_1": "key", "o_2": "coin", "d_0": "door", "o_3": "pen"}  # fmt: skip
    facts = [
        _fact("at", "P", "r_0"),
        _fact("at", "c_0", "r_0"),
        _fact("at", "c_1", "r_0"),
        _fact("at", "s_0", "r_0"),
        _fact("closed", "c_0"),
        _fact("open", "c_1"),
        _fact("in", "o_0", "c_0"),  # hidden: chest closed
        _fact("in", "o_1", "c_1"),  # visible: box open
        _fact("on", "o_2", "s_0"),  # visible: on the table
        _fact("at", "o_3", "r_1"),  # other room
        _fact("link", "r_0", "d_0", "r_1"),
        _fact("locked", "d_0"),
        _fact("in", "o_3", "I"),
        _fact("north_of", "r_1", "r_0"),
    ]
    key = state_key_from_facts(facts, names)
    assert key == (
        "room: kitchen | sees: box(open), chest(closed), coin, door(locked), key, table"
        " | carries: pen"
    )
    assert state_key_from_facts(list(reversed(facts)), names) == key  # order-independent


def test_env_needs_textworld_games(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TextWorldEnv([tmp_path / "nope.z8"])
    with pytest.raises(ValueError, match="empty"):
        TextWorldEnv([])


def test_generation_retries_seeds_the_quest_does_not_fit() -> None:
    """TextWorld raises QuestGenerationError when the map it drew cannot hold the quest (treasure
    hunter level 8 at some seeds): the next derived seed is tried, deterministically, and the
    first seed is kept when it works, so existing game caches stay valid."""
    from textworld.generator.chaining import QuestGenerationError

    from slea.envs import textworld as tw

    class Options:
        seeds = None

    tried: list[int] = []

    def make(settings, options):
        tried.append(options.seeds)
        if len(tried) < 3:
            raise QuestGenerationError("Current map configuration doesn't permit quest")
        return ("game", options.seeds)

    game = tw._make_with_retries(make, {"level": 8}, Options(), 1234)
    assert tried[0] == 1234 and len(set(tried)) == 3
    assert game == ("game", tw.retry_seed(1234, 2))
    assert tw.retry_seed(1234, 0) == 1234 and tw.retry_seed(1234, 2) == tried[2]
    tried.clear()
    assert tw._make_with_retries(make, {}, Options(), 1234) == game  # the same seeds again

    def never(settings, options):
        raise QuestGenerationError("no")

    with pytest.raises(EnvError, match=r"could not generate this game at 16 seeds"):
        tw._make_with_retries(never, {"level": 8}, Options(), 7)
