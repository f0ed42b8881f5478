"""The common env contract, checked on every env, plus registration, the CLI and missing extras.

ScienceWorld (a JVM per env) has its own module, tests/test_envs_scienceworld.py.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import gymnasium
import pytest
from conftest_envs import ALFWORLD_DATA, CONTRACT_KEYS, coin_games, play
from gymnasium.utils.env_checker import check_env

import slea
from slea.envs import ENVS, missing_requirements, register_envs
from slea.envs.base import TextSpace
from slea.errors import EnvError, MissingExtraError

ENV_NAMES = ["sokoban", "textworld", "alfworld"]


def make_env(name: str, request: pytest.FixtureRequest, **kwargs: Any) -> Any:
    """A raw (unwrapped) env of the named kind."""
    if name == "sokoban":
        from slea.envs.sokoban import SokobanEnv

        return SokobanEnv(num_levels=50, **kwargs)
    if name == "textworld":
        from slea.envs.textworld import TextWorldEnv

        return TextWorldEnv(coin_games()["train"], **kwargs)
    if name == "alfworld":
        pytest.importorskip("fast_downward")
        from slea.envs.alfworld import ALFWorldEnv

        return ALFWorldEnv(ALFWORLD_DATA, split="train", **kwargs)
    raise ValueError(name)


@pytest.fixture(params=ENV_NAMES)
def env(request: pytest.FixtureRequest) -> Any:
    e = make_env(request.param, request)
    yield e
    e.close()


# -- contract -----------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*alternative render modes")
def test_check_env_passes(request: pytest.FixtureRequest) -> None:
    for name in ENV_NAMES:
        e = make_env(name, request, render_mode="ansi")
        check_env(e)  # raises on any API violation (render included)
        assert isinstance(e.render(), str)
        e.close()


def test_info_contract_at_reset_and_step(env: Any) -> None:
    obs, info = env.reset(seed=0)
    assert isinstance(obs, str) and obs
    assert CONTRACT_KEYS <= set(info)
    assert isinstance(info["admissible_actions"], list) and info["admissible_actions"]
    assert all(isinstance(a, str) for a in info["admissible_actions"])
    assert info["won"] is False and info["invalid_action"] is False
    assert isinstance(info["state_key"], str) and info["state_key"]
    assert 0 <= info["task_id"] < env.num_tasks
    assert info["task"]
    assert isinstance(info["walkthrough"], list) and info["walkthrough"]
    obs, reward, terminated, truncated, info = env.step(info["admissible_actions"][0])
    assert isinstance(obs, str) and isinstance(reward, float)
    assert isinstance(terminated, bool) and truncated is False
    assert CONTRACT_KEYS <= set(info)
    assert info["invalid_action"] is False


def test_invalid_action_is_feedback_not_exception(env: Any) -> None:
    _, info = env.reset(seed=1)
    before = info["state_key"]
    obs, reward, terminated, truncated, info = env.step("xyzzy plugh frobnicate")
    assert info["invalid_action"] is True
    assert isinstance(obs, str) and obs
    assert reward == 0.0 and not terminated and not truncated
    assert info["state_key"] == before


@pytest.mark.parametrize("bad", [None, 3, b"up", ["up"]])
def test_non_str_action_is_type_error(env: Any, bad: Any) -> None:
    env.reset(seed=0)
    with pytest.raises(TypeError, match="action must be a str"):
        env.step(bad)


def test_walkthrough_wins_with_sparse_reward(env: Any) -> None:
    for task_id in range(min(env.num_tasks, 3)):
        _, info = env.reset(options={"task_id": task_id})
        assert info["task_id"] == task_id
        total, terminated, last = play(env, info["walkthrough"])
        assert terminated and last["won"] and total == 1.0
        assert last["score"] == last["max_score"]


def test_seeding_is_reproducible(env: Any) -> None:
    def rollout(seed: int) -> list[Any]:
        obs, info = env.reset(seed=seed)
        trace = [obs, info["task_id"], info["state_key"]]
        for i in range(4):
            acts = info["admissible_actions"]
            obs, reward, terminated, _, info = env.step(acts[i % len(acts)])
            trace += [obs, reward, info["state_key"]]
            if terminated:
                break
        return trace

    assert rollout(7) == rollout(7)
    tasks = {env.reset(seed=s)[1]["task_id"] for s in range(12)}
    assert len(tasks) > 1, "different seeds should pick different tasks"


def test_step_after_end_or_before_reset_raises(env: Any) -> None:
    with pytest.raises(EnvError, match="reset"):
        env.step("look")
    _, info = env.reset(options={"task_id": 0})
    play(env, info["walkthrough"])
    with pytest.raises(EnvError, match="episode is over"):
        env.step(info["walkthrough"][0])


def test_bad_reset_options(env: Any) -> None:
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"taks_id": 1})
    with pytest.raises(ValueError, match="task_id"):
        env.reset(options={"task_id": env.num_tasks})
    with pytest.raises(TypeError, match="task_id"):
        env.reset(options={"task_id": "0"})


def test_bad_reward_mode() -> None:
    from slea.envs.sokoban import SokobanEnv

    with pytest.raises(ValueError, match="reward_mode"):
        SokobanEnv(reward_mode="shaped")
    with pytest.raises(ValueError, match="render_mode"):
        SokobanEnv(render_mode="rgb_array")


def test_time_limit_truncates() -> None:
    env = gymnasium.make("slea/Sokoban-v0", max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step("xyzzy")[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_dense_reward_sums_to_one_and_gives_partial_credit() -> None:
    from slea.envs.sokoban import SokobanEnv

    env = SokobanEnv(num_boxes=2, reward_mode="dense")
    for task_id in range(5):
        _, info = env.reset(options={"task_id": task_id})
        rewards = [env.step(a)[1] for a in info["walkthrough"]]
        assert sum(rewards) == pytest.approx(1.0)
        assert 0.5 in rewards  # the first box on a target earns half the return
        assert set(rewards) <= {0.0, 0.5, -0.5}


def test_text_space_accepts_any_string() -> None:
    space = TextSpace(10)
    assert space.contains("héllo 日本\n")
    assert space.contains("")
    assert not space.contains("x" * 11)
    assert not space.contains(3)
    assert all(space.contains(space.sample()) for _ in range(20))


# -- registration, CLI, extras ------------------------------------------------------------------
def test_ids_registered_and_make_works() -> None:
    register_envs()
    for env_id, entry in ENVS.items():
        spec = gymnasium.spec(env_id)
        assert spec.entry_point == entry.entry_point
        assert spec.max_episode_steps == entry.max_episode_steps
    env = gymnasium.make("slea/Sokoban-v0", num_boxes=1)
    obs, _ = env.reset(seed=0)
    assert "#" in obs and "$" in obs


@pytest.mark.parametrize("first", ["slea", "gymnasium"])
def test_ids_registered_whichever_is_imported_first(first: str) -> None:
    second = "gymnasium" if first == "slea" else "slea"
    code = (
        f"import sys, {first}\n"
        "heavy = [m for m in ('textworld', 'scienceworld', 'fast_downward', 'torch') "
        "if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
        f"import {second}, gymnasium\n"
        "env = gymnasium.make('slea/Sokoban-v0')\n"
        "print(sorted(k for k in gymnasium.registry if k.startswith('slea/')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(sorted(ENVS)), out.stderr


def test_import_slea_registers_the_ids_plainly_and_stays_light() -> None:
    """``import slea`` registers the ids with gymnasium.register (no import hook left in
    sys.meta_path) and imports neither torch nor an env package."""
    code = (
        "import sys, slea\n"
        "heavy = [m for m in ('torch', 'transformers', 'textworld', 'scienceworld', "
        "'fast_downward', 'slea.envs.sokoban') if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
        "finders = [type(f).__module__ for f in sys.meta_path]\n"
        "assert not any(m.startswith('slea') for m in finders), finders\n"
        "import gymnasium\n"
        "print(sorted(k for k in gymnasium.registry if k.startswith('slea/')))\n"
        "env = gymnasium.make('slea/Sokoban-v0', num_boxes=1)\n"
        "assert '$' in env.reset(seed=0)[0]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(ENVS))


def test_gymnasium_register_envs_idiom() -> None:
    code = (
        "import gymnasium\n"
        "import slea.envs\n"
        "gymnasium.register_envs(slea.envs)\n"
        "env = gymnasium.make('slea/Sokoban-v0', max_episode_steps=3)\n"
        "env.reset(seed=0)\n"
        "print([env.step('xyzzy')[3] for _ in range(3)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[False, False, True]"


def test_register_envs_is_idempotent_and_restores_a_removed_id() -> None:
    spec = gymnasium.spec("slea/Sokoban-v0")
    register_envs()
    register_envs()
    assert gymnasium.spec("slea/Sokoban-v0") is spec  # registered ids are left alone
    del gymnasium.registry["slea/Sokoban-v0"]
    try:
        register_envs()
        again = gymnasium.spec("slea/Sokoban-v0")
        assert again.entry_point == spec.entry_point
        assert again.max_episode_steps == spec.max_episode_steps
    finally:
        gymnasium.registry.setdefault("slea/Sokoban-v0", spec)


def test_cli_envs_list(capsys: pytest.CaptureFixture[str]) -> None:
    from slea.cli import main

    assert main(["envs", "list"]) == 0
    out = capsys.readouterr().out
    for env_id, entry in ENVS.items():
        assert env_id in out
        assert entry.description[:30] in out


def test_cli_envs_list_names_missing_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "scienceworld" else real(name, *a),
    )
    assert missing_requirements("slea/ScienceWorld-v0") == ["scienceworld"]
    from slea.cli import main

    assert main(["envs", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "ScienceWorld" in x)
    assert "slea-rl[envs]" in line


@pytest.mark.parametrize(
    ("module", "missing", "build"),
    [
        ("textworld", "textworld", lambda: _tw_env()),
        ("alfworld", "fast_downward", lambda: _alf_env()),
        ("scienceworld", "scienceworld", lambda: _sw_env()),
    ],
)
def test_missing_extra_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, missing: str, build: Any
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` fail
    with pytest.raises(MissingExtraError, match=r"slea-rl\[envs\]") as err:
        build()
    assert missing in str(err.value)
    assert isinstance(err.value, ImportError)


def _tw_env() -> Any:
    from slea.envs.textworld import TextWorldEnv

    return TextWorldEnv(["nonexistent.z8"])


def _alf_env() -> Any:
    from slea.envs.alfworld import ALFWorldEnv

    return ALFWorldEnv(ALFWORLD_DATA)


def _sw_env() -> Any:
    from slea.envs.scienceworld import ScienceWorldEnv

    return ScienceWorldEnv("boil")


def test_slea_namespace_has_no_env_side_effects() -> None:
    assert "slea.envs" in sys.modules
    assert slea.EnvError is EnvError
