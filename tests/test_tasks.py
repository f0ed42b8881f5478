"""Task sources (slea.envs.tasks): the tasks of each split for every built-in env and for lists
given by the user, and the ConfigErrors that name the key to fix."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from conftest_envs import ALFWORLD_DATA
from hypothesis import given
from hypothesis import strategies as st

import slea.envs
from slea.envs.tasks import (
    ALFWorldTasks,
    ListedTasks,
    ScienceWorldTasks,
    SokobanTasks,
    Task,
    TextWorldTasks,
    as_task,
    task_source,
)
from slea.errors import ConfigError
from slea.train.config import EnvConfig, TrainConfig

gymnasium.register_envs(slea.envs)


def env_config(**kw: object) -> EnvConfig:
    overrides = [f"env.{k}={json.dumps(v)}" for k, v in kw.items()]
    return TrainConfig.from_dict({}, overrides).env


def alfworld(**kw: object) -> EnvConfig:
    return env_config(id="slea/ALFWorld-v0", data_root=str(ALFWORLD_DATA), **kw)


# ---------------------------------------------------------------------------- ALFWorld


needs_alfworld = pytest.mark.skipif(
    importlib.util.find_spec("fast_downward") is None,
    reason="the [envs] extra (textworld[pddl]) is not installed",
)


def test_alfworld_splits_follow_the_data_layout_with_types() -> None:
    source = task_source(alfworld())
    assert isinstance(source, ALFWorldTasks)
    train = source.tasks("train")
    assert [t.type for t in train] == ["pick", "cool", "heat", "pick2"]  # sorted by path
    assert [t.options for t in train] == [{"task_id": i} for i in range(4)]
    assert train[0].name == "pick_and_place_simple-Apple-None-Fridge-10/trial_T20260100_000000"
    assert [t.type for t in source.tasks("valid")] == ["clean"]  # valid_seen
    assert [t.type for t in source.tasks("test")] == ["look"]  # valid_unseen
    games = source.env_kwargs("test")["games"]
    assert len(games) == 1 and "/valid_unseen/" in games[0]


@needs_alfworld
def test_alfworld_task_i_of_a_split_is_its_game() -> None:
    source = task_source(alfworld(task_types=["heat", "cool"]))
    tasks = source.tasks("train")
    assert [t.type for t in tasks] == ["cool", "heat"]
    env = gymnasium.make("slea/ALFWorld-v0", **source.env_kwargs("train"))
    try:
        for task in tasks:
            _, info = env.reset(options=dict(task.options))
            assert info["task_type"] == task.type
            assert Path(info["game"]).parent.parent.name == task.name.split("/")[0]
    finally:
        env.close()


def test_alfworld_filters_and_caps() -> None:
    assert [t.type for t in task_source(alfworld(task_types=["pick"])).tasks("train")] == ["pick"]
    capped = task_source(alfworld(max_tasks_per_type=1))
    assert len(capped.tasks("train")) == 4  # one game of each type there
    assert task_source(alfworld(task_types=["pick"])).tasks("test") == []  # valid_unseen: look


def test_alfworld_bad_input_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        ConfigError, match=r"env\.data_root: no ALFWorld data at .*alfworld-download.*ALFWORLD_DATA"
    ):
        task_source(env_config(id="slea/ALFWorld-v0", data_root=str(tmp_path)))
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "none"))  # the default data root
    with pytest.raises(ConfigError, match=r"env\.data_root: .*\$ALFWORLD_DATA"):
        task_source(env_config(id="slea/ALFWorld-v0"))
    with pytest.raises(ConfigError, match=r"env\.task_types: \['look'\] matches no playable"):
        task_source(alfworld(task_types=["look"]))  # look is only in valid_unseen
    with pytest.raises(ConfigError, match=r"env\.task_types: .*unknown task type 'pik'"):
        task_source(alfworld(task_types=["pik"]))
    with pytest.raises(ConfigError, match=r"env\.kwargs: \['split'\] are set by .* env\.data_root"):
        task_source(alfworld(kwargs={"split": "train"}))
    with pytest.raises(ConfigError, match=r"env\.data_root: only slea/ALFWorld-v0"):
        task_source(env_config(id="slea/Sokoban-v0", data_root="x"))


# ---------------------------------------------------------------------------- Sokoban


def test_sokoban_levels_per_split_with_disjoint_seeds() -> None:
    source = task_source(
        env_config(id="slea/Sokoban-v0", games={"train": 3, "valid": 2, "test": 2, "seed": 5})
    )
    assert isinstance(source, SokobanTasks)
    assert [len(source.tasks(s)) for s in ("train", "valid", "test")] == [3, 2, 2]
    levels = {}
    for split in ("train", "test"):
        kw = source.env_kwargs(split)
        assert kw == {"split": split, "seed": 5, "num_levels": 2 if split == "test" else 3}
        env = gymnasium.make("slea/Sokoban-v0", width=6, height=6, num_boxes=1, **kw)
        levels[split] = [env.reset(options=dict(t.options))[0] for t in source.tasks(split)]
        assert env.unwrapped.split == split
    assert not set(levels["train"]) & set(levels["test"])

    from slea.envs.sokoban import level_seed

    seeds = {
        s: {level_seed(i, seed=5, split=s, params=(7, 7, 2, 50_000)) for i in range(100)}
        for s in ("train", "valid", "test")
    }
    assert not seeds["train"] & seeds["test"] and not seeds["train"] & seeds["valid"]


def test_sokoban_bad_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"env\.kwargs: width must be in \[5, 12\]"):
        task_source(env_config(id="slea/Sokoban-v0", kwargs={"width": 40}))
    with pytest.raises(ConfigError, match=r"env\.kwargs: num_boxes must be an int"):
        task_source(env_config(id="slea/Sokoban-v0", kwargs={"num_boxes": "two"}))
    with pytest.raises(ConfigError, match=r"env\.kwargs: \['num_levels'\] are set by"):
        task_source(env_config(id="slea/Sokoban-v0", kwargs={"num_levels": 3}))
    with pytest.raises(ConfigError, match=r"env\.task_types: slea/Sokoban-v0 has no task types"):
        task_source(env_config(id="slea/Sokoban-v0", task_types=["pick"]))
    with pytest.raises(ConfigError, match=r"env\.games\.compass_augment: only slea/TextWorld"):
        task_source(env_config(id="slea/Sokoban-v0", games={"compass_augment": True}))


def test_max_tasks_per_type_caps_an_untyped_source() -> None:
    source = task_source(env_config(id="slea/Sokoban-v0", max_tasks_per_type=2))
    assert [t.name for t in source.tasks("train")] == ["train-0000", "train-0001"]
    assert source.env_kwargs("train")["split"] == "train"


# ---------------------------------------------------------------------------- TextWorld


def test_textworld_valid_split_leaves_the_other_splits_alone() -> None:
    from slea.envs.textworld import game_seed

    train = [game_seed("coin", 3, 0, "train", i) for i in range(48)]
    valid = [game_seed("coin", 3, 0, "valid", i) for i in range(48)]
    assert not set(train) & set(valid)  # a game's seed depends on its split's name only
    source = TextWorldTasks({"train": ["a/train-0000.z8"], "valid": ["a/valid-0000.z8"]})
    assert source.tasks("valid") == [Task("valid-0000", {"task_id": 0})]
    assert source.env_kwargs("valid") == {"games": ["a/valid-0000.z8"]}
    assert source.tasks("test") == []


# ---------------------------------------------------------------------------- lists


def test_listed_tasks_from_lists_and_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text('{"task_id": 2}\n\n{"name": "far", "options": {"task_id": 3}, "type": "b"}\n')
    env = env_config(
        id="slea/Sokoban-v0",
        tasks={
            "train": [{"task_id": 0}, {"options": {"task_id": 1}, "type": "a"}],
            "test": str(path),
        },
    )
    source = task_source(env)
    assert isinstance(source, ListedTasks)
    assert source.tasks("train") == [
        Task("train-0", {"task_id": 0}),
        Task("train-1", {"task_id": 1}, "a"),
    ]
    assert source.tasks("test") == [
        Task("test-0", {"task_id": 2}),
        Task("far", {"task_id": 3}, "b"),
    ]
    assert source.tasks("valid") == [] and source.env_kwargs("train") == {}
    rng = np.random.default_rng(0)
    assert source.augment(source.tasks("train"), rng) == source.tasks("train")
    typed = task_source(env_config(id="slea/Sokoban-v0", task_types=["a"], tasks=env.tasks))
    assert [t.name for t in typed.tasks("train")] == ["train-1"]
    assert [t.name for t in typed.tasks("test")] == []


def test_listed_tasks_bad_input_names_the_key(tmp_path: Path) -> None:
    def source(tasks: object, **kw: object) -> object:
        return task_source(env_config(id="slea/Sokoban-v0", tasks=tasks, **kw))

    with pytest.raises(ConfigError, match=r"env\.tasks\.test: the split has no task"):
        source({"train": [{"task_id": 0}], "test": []})
    with pytest.raises(ConfigError, match=r"env\.tasks\.train: the env's task source gives no"):
        source({"test": [{"task_id": 0}]})
    with pytest.raises(ConfigError, match=r"env\.tasks\.tran: unknown split; use train, valid"):
        source({"tran": [{"task_id": 0}]})
    with pytest.raises(ConfigError, match=r"env\.tasks\.train\[1\]: a task is a mapping"):
        source({"train": [{"task_id": 0}, 3]})
    with pytest.raises(ConfigError, match=r"env\.tasks\.train: cannot read the task file"):
        source({"train": str(tmp_path / "missing.jsonl")})
    (tmp_path / "bad.jsonl").write_text('{"task_id": 0}\n{task_id: 1}\n')
    with pytest.raises(ConfigError, match=r"env\.tasks\.train: .*bad\.jsonl:2 is not JSON"):
        source({"train": str(tmp_path / "bad.jsonl")})
    with pytest.raises(ConfigError, match=r"env\.task_types: \['c'\] matches no training task"):
        source({"train": [{"task_id": 0}]}, task_types=["c"])


def test_an_env_without_a_task_list_names_env_tasks() -> None:
    gymnasium.register(id="slea-test/NoTasks-v0", entry_point="slea.envs.sokoban:SokobanEnv")
    try:
        with pytest.raises(
            ConfigError, match=r"env\.tasks: 'slea-test/NoTasks-v0' has no task list"
        ):
            task_source(env_config(id="slea-test/NoTasks-v0"))
    finally:
        del gymnasium.registry["slea-test/NoTasks-v0"]


options = st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3)


@given(
    st.one_of(
        options,
        st.fixed_dictionaries(
            {"options": options}, optional={"name": st.text(), "type": st.text()}
        ),
        st.integers(),
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.fixed_dictionaries({"options": st.integers()}),
        st.fixed_dictionaries({"options": options, "name": st.integers()}),
    )
)
def test_any_entry_is_a_task_or_a_config_error(entry: object) -> None:
    try:
        task = as_task(entry, key="env.tasks.train[0]", default_name="train-0")
    except ConfigError as exc:
        assert str(exc).startswith("env.tasks.train[0]")
    else:
        assert isinstance(task, Task) and isinstance(task.options, dict)
        assert task.options == (entry.get("options", entry) if isinstance(entry, dict) else None)


# ---------------------------------------------------------------------------- ScienceWorld


@pytest.mark.skipif(
    importlib.util.find_spec("scienceworld") is None or shutil.which("java") is None,
    reason="ScienceWorld needs the [envs] extra (scienceworld) and Java 17+ on PATH",
)
def test_scienceworld_names_times_its_own_variation_split() -> None:
    from slea.envs.scienceworld import variation_splits

    env = env_config(
        id="slea/ScienceWorld-v0", task_types=["find-living-thing", "1-1"], max_tasks_per_type=2
    )
    source = task_source(env)
    assert isinstance(source, ScienceWorldTasks)
    splits = variation_splits(["find-living-thing", "boil"])
    for split, sw in (("train", "train"), ("valid", "dev"), ("test", "test")):
        tasks = source.tasks(split)
        assert [t.type for t in tasks] == ["find-living-thing"] * 2 + ["boil"] * 2
        expected = [("find-living-thing", v) for v in splits["find-living-thing"][sw][:2]]
        expected += [("boil", v) for v in splits["boil"][sw][:2]]
        assert source.env_kwargs(split) == {"tasks": [list(p) for p in expected]}
        assert [t.name for t in tasks] == [f"{n}-{v}" for n, v in expected]
    assert not set(splits["boil"]["train"]) & set(splits["boil"]["test"])
    e = gymnasium.make("slea/ScienceWorld-v0", **source.env_kwargs("test"))
    try:
        _, info = e.reset(options={"task_id": 3})  # one env plays every task name
        assert (info["task_name"], info["variation"]) == ("boil", splits["boil"]["test"][1])
    finally:
        e.close()
    from slea.envs.scienceworld import ScienceWorldEnv

    for bad, error in (([], ValueError), ("boil", TypeError), ([("boil", "1")], TypeError)):
        with pytest.raises(error, match="tasks"):
            ScienceWorldEnv(tasks=bad)  # refused before the simulator starts
    with pytest.raises(ValueError, match=r"tasks: variation 999 of 'boil' not in \[0, 30\)"):
        ScienceWorldEnv(tasks=[("1-1", 0), ("boil", 999)])
    with pytest.raises(ConfigError, match=r"env\.task_types: unknown ScienceWorld task 'brew'"):
        task_source(env_config(id="slea/ScienceWorld-v0", task_types=["brew"]))
    with pytest.raises(ConfigError, match=r"env\.kwargs: \['variations'\] are set by"):
        task_source(env_config(id="slea/ScienceWorld-v0", kwargs={"variations": "dev"}))


# ---------------------------------------------------------------------------- per-type metrics


def test_eval_metrics_by_type_in_source_order() -> None:
    from slea.train.evaluation import by_type
    from slea.trajectory import Episode

    eps = [
        Episode(episode_id=i, group=0, task="", task_id="t", won=bool(won))
        for i, won in enumerate([1, 0, 1, 1])
    ]
    out = by_type(eps, ["pick", "pick", "look", "pick"])
    assert list(out) == ["pick", "look"]
    assert out["pick"]["episodes"] == 3 and out["pick"]["success"] == pytest.approx(2 / 3)
    assert out["look"] == {"success": 1.0, "return": 0.0, "episodes": 1}
