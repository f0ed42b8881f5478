"""slea/ScienceWorld-v0 on one real task (find-non-living-thing, training variation 0).

One simulator (a JVM) is shared by the module: starting it and loading the task take ~5-8 s on
2 cores, each step 0.05-0.5 s. Only the walkthrough test runs by default; the others are slow.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from conftest_envs import CONTRACT_KEYS, play

pytest.importorskip("scienceworld", reason="the [envs] extra (scienceworld) is not installed")
if shutil.which("java") is None:
    pytest.skip("ScienceWorld needs a Java runtime (java on PATH)", allow_module_level=True)

from slea.envs.scienceworld import ScienceWorldEnv

TASK = "find-non-living-thing"


@pytest.fixture(scope="module")
def env() -> Any:
    e = ScienceWorldEnv(TASK, variations=[0, 1])
    yield e
    e.close()


def test_walkthrough_wins_with_contract_info(env: ScienceWorldEnv) -> None:
    """The default-run ScienceWorld test: one reset, one invalid action, the gold path."""
    obs, info = env.reset(options={"task_id": 0})
    assert CONTRACT_KEYS <= set(info)
    assert info["task"].startswith("Your task is to find a(n) non-living thing")
    assert obs.startswith(info["task"]) and "This room is called" in obs
    assert info["variation"] == 0 and info["task_name"] == TASK
    assert info["max_score"] == 100.0 and info["score"] == 0.0
    assert len(info["admissible_actions"]) > 10
    assert info["state_key"].startswith("This room is called")
    obs, reward, terminated, _, bad = env.step("dance a jig")
    assert bad["invalid_action"] and "No known action" in obs and reward == 0.0
    assert bad["state_key"] == info["state_key"] and not terminated
    total, terminated, last = play(env, info["walkthrough"])
    assert terminated and last["won"] and total == 1.0 and last["score"] == 100.0
    assert not last["invalid_action"]


@pytest.mark.timeout(300, method="thread")
def test_control_characters_never_reach_the_simulator(env: ScienceWorldEnv) -> None:
    _, info = env.reset(options={"task_id": 0})
    for action in ("look\x00around", "look around\x11", "\x7f", "go\tto hallway", "x\ud800"):
        obs, reward, terminated, _, bad = env.step(action)
        assert bad["invalid_action"] and obs == "No known action matches that input."
        assert bad["state_key"] == info["state_key"] and reward == 0.0 and not terminated
    *_, ok = env.step("  look around\n")  # surrounding whitespace is stripped, not refused
    assert not ok["invalid_action"]


@pytest.mark.slow
def test_dense_reward_is_score_increments(env: ScienceWorldEnv) -> None:
    env.reward_mode = "dense"
    try:
        _, info = env.reset(options={"task_id": 0})
        rewards = [env.step(a)[1] for a in info["walkthrough"]]
    finally:
        env.reward_mode = "sparse"
    assert sum(rewards) == pytest.approx(1.0)
    assert sum(r > 0 for r in rewards) >= 3  # partial credit along the way


@pytest.mark.slow
def test_same_variation_same_observations(env: ScienceWorldEnv) -> None:
    def trace() -> list[str]:
        obs, info = env.reset(options={"task_id": 0})
        out = [obs]
        for action in info["walkthrough"][:3]:
            out.append(env.step(action)[0])
        return out

    assert trace() == trace()
    assert env.reset(seed=4)[1]["task_id"] == env.reset(seed=4)[1]["task_id"]


@pytest.mark.slow
def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="variations"):
        ScienceWorldEnv(TASK, variations="validation")
    with pytest.raises(ValueError, match="task_name"):
        ScienceWorldEnv("make-coffee")
    one = ScienceWorldEnv(TASK, variation=3)
    try:
        assert one.num_tasks == 1 and one.reset()[1]["variation"] == 3
    finally:
        one.close()


@pytest.mark.slow
def test_check_env(env: ScienceWorldEnv) -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(env, skip_close_check=True, skip_render_check=True)
