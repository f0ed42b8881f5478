"""make_vec / SleaVectorEnv: lock-step semantics, per-env tasks, and crash recovery.

Worker processes are killed with SIGKILL, made to raise, and made to hang; the run must go on.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from conftest_envs import coin_games
from gymnasium.vector import AutoresetMode, VectorEnv

from slea.envs import make_vec
from slea.envs.vector import EnvFactory, SleaVectorEnv, unbatch_infos
from slea.errors import EnvError


class Faulty(gymnasium.Wrapper):
    """Sokoban whose step raises on "crash", calls sys.exit on "exit", hangs on "hang" and kills
    itself on "die"; ``reset(options={"crash": path, ...})`` raises while the file ``path``
    exists and deletes it (a crash that a rebuilt env does not repeat), or always for "always".
    """

    def reset(self, *, seed: Any = None, options: Any = None) -> Any:
        options = dict(options or {})
        token = options.pop("crash", None)
        if token == "always" or (token is not None and os.path.exists(token)):
            if token != "always":
                os.unlink(token)
            raise RuntimeError("boom: the simulator crashed in reset")
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        if action == "crash":
            raise RuntimeError("boom: the simulator crashed")
        if action == "exit":
            sys.exit(3)
        if action == "hang":
            time.sleep(60)
        if action == "die":
            os._exit(3)
        return self.env.step(action)


def faulty_sokoban() -> gymnasium.Env:
    from slea.envs.sokoban import SokobanEnv

    return Faulty(SokobanEnv(num_levels=20))


def tasks(*ids: int) -> dict[str, Any]:
    return {"env_options": [{"task_id": i} for i in ids]}


def play_walkthroughs(venv: SleaVectorEnv, infos: dict[str, Any]) -> np.ndarray:
    """Step every env along its walkthrough in lock-step; returns the total reward per env."""
    walks = [info["walkthrough"] for info in unbatch_infos(infos, venv.num_envs)]
    totals = np.zeros(venv.num_envs)
    t = 0
    while venv.active.any():
        actions = [walks[i][t] if venv.active[i] else "" for i in range(venv.num_envs)]
        _, rewards, _, _, _ = venv.step(actions)
        totals += rewards
        t += 1
    return totals


# First in the module: the forkserver then preloads textworld, and every later worker
# forks with it already imported.
def test_textworld_vector_per_worker_games() -> None:
    games = coin_games()["train"]
    venv = make_vec("slea/TextWorld-v0", 4, games=games, max_episode_steps=10)
    try:
        obs, infos = venv.reset(options=tasks(0, 0, 1, 1))
        per_env = unbatch_infos(infos, 4)
        assert [i["game"] for i in per_env] == [
            str(g) for g in (games[0], games[0], games[1], games[1])
        ]
        assert obs[0] == obs[1] != obs[2] == obs[3]
        assert isinstance(per_env[0]["admissible_actions"], list)
        assert (play_walkthroughs(venv, infos) == 1.0).all()
    finally:
        venv.close()


@pytest.fixture(scope="module")
def sokoban_vec() -> SleaVectorEnv:
    venv = make_vec("slea/Sokoban-v0", 4, mode="async", max_episode_steps=60, num_levels=20)
    yield venv
    venv.close()


def test_is_a_gymnasium_vector_env_without_autoreset(sokoban_vec: SleaVectorEnv) -> None:
    assert isinstance(sokoban_vec, VectorEnv)
    assert sokoban_vec.metadata["autoreset_mode"] is AutoresetMode.DISABLED
    assert sokoban_vec.num_envs == 4
    obs, infos = sokoban_vec.reset(seed=0)
    assert sokoban_vec.observation_space.contains(obs)
    assert infos["_task_id"].all() and infos["won"].dtype == bool
    assert all(isinstance(p, int) for p in sokoban_vec.worker_pids)
    assert len(set(sokoban_vec.worker_pids)) == 4


def test_per_env_tasks_and_lockstep_until_all_done(sokoban_vec: SleaVectorEnv) -> None:
    obs, infos = sokoban_vec.reset(options=tasks(3, 3, 7, 7))
    per_env = unbatch_infos(infos, 4)
    assert [i["task_id"] for i in per_env] == [3, 3, 7, 7]
    assert obs[0] == obs[1] and obs[2] == obs[3] and obs[0] != obs[2]
    assert (play_walkthroughs(sokoban_vec, infos) == 1.0).all()
    assert not sokoban_vec.active.any()


def test_ended_episodes_are_skipped(sokoban_vec: SleaVectorEnv) -> None:
    _, infos = sokoban_vec.reset(options=tasks(0, 1, 2, 3))
    walk = unbatch_infos(infos, 4)[0]["walkthrough"]
    for _t, action in enumerate(walk):
        actions = [action, "xyzzy", "xyzzy", "xyzzy"]
        obs, rewards, terminated, truncated, infos = sokoban_vec.step(actions)
    assert terminated[0] and not truncated[0] and rewards[0] == 1.0
    assert list(sokoban_vec.active) == [False, True, True, True]
    last_obs = obs[0]
    obs, rewards, terminated, truncated, infos = sokoban_vec.step([None, "up", "up", "up"])
    assert obs[0] == last_obs and rewards[0] == 0.0  # the ended env is not stepped
    assert not terminated[0] and not truncated[0]
    assert not infos["_won"][0] and infos["_won"][1:].all()


def test_set_idle_skips_envs_until_reset(sokoban_vec: SleaVectorEnv) -> None:
    sokoban_vec.reset(options=tasks(0, 1, 2, 3))
    with pytest.raises(IndexError, match="out of range"):
        sokoban_vec.set_idle([1, 4])
    assert sokoban_vec.active.all()  # the failed call changed nothing
    sokoban_vec.set_idle([1, 3])
    assert list(sokoban_vec.active) == [True, False, True, False]
    obs0 = sokoban_vec.step(["up"] * 4)[0]
    obs, rewards, terminated, truncated, infos = sokoban_vec.step(["down"] * 4)
    assert obs[1] == obs0[1] and obs[3] == obs0[3] and not infos["_won"][1]
    assert rewards[1] == 0.0 and not terminated[1] and not truncated[1]
    sokoban_vec.reset(options=tasks(0, 1, 2, 3))
    assert sokoban_vec.active.all()


def test_reset_mask_resets_only_selected_envs(sokoban_vec: SleaVectorEnv) -> None:
    _obs, _ = sokoban_vec.reset(options=tasks(0, 1, 2, 3))
    sokoban_vec.step(["up", "up", "up", "up"])
    before = sokoban_vec.step(["down"] * 4)[0]
    mask = np.array([False, True, False, False])
    obs2, infos = sokoban_vec.reset(options={"reset_mask": mask, **tasks(0, 9, 0, 0)})
    assert obs2[0] == before[0] and obs2[2] == before[2]
    assert infos["_task_id"].tolist() == [False, True, False, False]
    assert infos["task_id"][1] == 9


def test_seeds_per_env_are_reproducible(sokoban_vec: SleaVectorEnv) -> None:
    a = sokoban_vec.reset(seed=11)[0]
    b = sokoban_vec.reset(seed=[11, 12, 13, 14])[0]
    assert a == b  # int seed s gives env i the seed s + i
    with pytest.raises(ValueError, match="seed"):
        sokoban_vec.reset(seed=[1, 2])


def test_bad_input(sokoban_vec: SleaVectorEnv) -> None:
    sokoban_vec.reset(seed=0)
    with pytest.raises(TypeError, match="action 2 must be a str"):
        sokoban_vec.step(["up", "up", 3, "up"])
    with pytest.raises(ValueError, match="4 actions"):
        sokoban_vec.step(["up"])
    with pytest.raises(ValueError, match="task_id"):  # raised in the worker, re-raised here
        sokoban_vec.reset(options=tasks(0, 0, 0, 99))
    with pytest.raises(ValueError, match="env_options"):
        sokoban_vec.reset(options={"env_options": [{}]})
    with pytest.raises(EnvError, match="not registered"):
        make_vec("slea/Nope-v0", 2)
    with pytest.raises(ValueError, match="num_envs"):
        make_vec("slea/Sokoban-v0", 0)
    with pytest.raises(ValueError, match="mode"):
        make_vec("slea/Sokoban-v0", 1, mode="threads")


def test_sigkill_a_worker_truncates_its_episode_and_the_run_goes_on(
    sokoban_vec: SleaVectorEnv,
) -> None:
    _, infos = sokoban_vec.reset(options=tasks(5, 5, 5, 5))
    walk = unbatch_infos(infos, 4)[0]["walkthrough"]
    sokoban_vec.step([walk[0]] * 4)
    victim = sokoban_vec.worker_pids[2]
    os.kill(victim, signal.SIGKILL)
    obs, rewards, terminated, truncated, infos = sokoban_vec.step([walk[1]] * 4)
    assert truncated.tolist() == [False, False, True, False]
    assert not terminated.any() and rewards[2] == 0.0
    errors = unbatch_infos(infos, 4)
    assert "signal 9" in errors[2]["env_error"] and "restarted" in errors[2]["env_error"]
    assert all("env_error" not in errors[i] for i in (0, 1, 3))
    assert errors[2]["won"] is False and errors[2]["task_id"] == 5
    assert sokoban_vec.worker_pids[2] != victim and sokoban_vec.restarts[2] >= 1
    assert obs[0] == obs[1] == obs[3]  # the others stepped normally
    # the surviving episodes still win; the restarted env resets and wins too
    for action in walk[2:]:
        sokoban_vec.step([action] * 4)
    _, infos = sokoban_vec.reset(options=tasks(5, 5, 5, 5))
    assert (play_walkthroughs(sokoban_vec, infos) == 1.0).all()


def test_idle_worker_killed_between_calls(sokoban_vec: SleaVectorEnv) -> None:
    sokoban_vec.reset(options=tasks(1, 1, 1, 1))
    os.kill(sokoban_vec.worker_pids[0], signal.SIGKILL)
    time.sleep(0.2)
    obs, infos = sokoban_vec.reset(options=tasks(1, 1, 1, 1))  # reset restarts and retries
    assert len(set(obs)) == 1 and infos["_task_id"].all()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_env_exception_truncates_and_restarts(mode: str) -> None:
    venv = SleaVectorEnv([faulty_sokoban] * 3, mode=mode)
    try:
        _, infos = venv.reset(options=tasks(2, 2, 2))
        _, _, terminated, truncated, infos = venv.step(["up", "crash", "up"])
        assert truncated.tolist() == [False, True, False] and not terminated.any()
        error = unbatch_infos(infos, 3)[1]["env_error"]
        assert "RuntimeError: boom" in error
        assert venv.restarts == [0, 1, 0]
        assert list(venv.active) == [True, False, True]
        _, infos = venv.reset(options=tasks(2, 2, 2))
        assert (play_walkthroughs(venv, infos) == 1.0).all()
    finally:
        venv.close()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_sys_exit_in_step_truncates_and_restarts(mode: str) -> None:
    venv = SleaVectorEnv([faulty_sokoban] * 2, mode=mode)
    try:
        venv.reset(options=tasks(2, 2))
        _, _, terminated, truncated, infos = venv.step(["exit", "up"])
        assert truncated.tolist() == [True, False] and not terminated.any()
        assert "SystemExit: 3" in unbatch_infos(infos, 2)[0]["env_error"]
        assert venv.restarts == [1, 0] and list(venv.active) == [False, True]
        _, infos = venv.reset(options=tasks(2, 2))
        assert (play_walkthroughs(venv, infos) == 1.0).all()
    finally:
        venv.close()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_env_exception_in_reset_rebuilds_and_retries(mode: str, tmp_path: Path) -> None:
    token = tmp_path / "crash-once"
    token.touch()
    venv = SleaVectorEnv([faulty_sokoban] * 2, mode=mode)
    try:
        options = {"env_options": [{"task_id": 4}, {"task_id": 4, "crash": str(token)}]}
        obs, infos = venv.reset(options=options)
        assert not token.exists()  # env 1 did crash once
        assert venv.restarts == [0, 1] and venv.active.all()
        assert obs[0] == obs[1] and infos["task_id"].tolist() == [4, 4]
        assert (play_walkthroughs(venv, infos) == 1.0).all()
        # a crash the rebuilt env repeats is raised (with its type); the env is rebuilt again
        options = {"env_options": [{"task_id": 4}, {"task_id": 4, "crash": "always"}]}
        with pytest.raises(RuntimeError, match="crashed in reset"):
            venv.reset(options=options)
        assert venv.restarts == [0, 3] and list(venv.active) == [True, False]
        # an argument mistake is raised at once: no restart
        with pytest.raises(ValueError, match="task_id"):
            venv.reset(options=tasks(0, 99))
        assert venv.restarts == [0, 3]
        _, infos = venv.reset(options=tasks(4, 4))
        assert (play_walkthroughs(venv, infos) == 1.0).all()
    finally:
        venv.close()


def test_worker_exit_and_hang_are_recovered() -> None:
    venv = SleaVectorEnv([faulty_sokoban] * 2, mode="async", step_timeout=2.0)
    try:
        venv.reset(options=tasks(0, 0))
        _, _, _, truncated, infos = venv.step(["die", "up"])
        assert truncated.tolist() == [True, False]
        assert "exited (code 3)" in unbatch_infos(infos, 2)[0]["env_error"]
        venv.reset(options=tasks(0, 0))
        start = time.monotonic()
        _, _, _, truncated, infos = venv.step(["up", "hang"])
        assert time.monotonic() - start < 20
        assert truncated.tolist() == [False, True]
        assert "no reply within 2.0 s" in unbatch_infos(infos, 2)[1]["env_error"]
    finally:
        venv.close()


def test_restart_budget_is_enforced() -> None:
    venv = SleaVectorEnv([faulty_sokoban], mode="sync", max_restarts=1)
    try:
        venv.reset(options=tasks(0))
        venv.step(["crash"])
        venv.reset(options=tasks(0))
        with pytest.raises(EnvError, match="max_restarts=1"):
            venv.step(["crash"])
    finally:
        venv.close()


def test_build_failure_is_raised_with_its_type() -> None:
    with pytest.raises(ValueError, match="reward_mode"):
        make_vec("slea/Sokoban-v0", 2, mode="async", reward_mode="shaped")


def test_call_and_branching_with_clone_restore() -> None:
    venv = make_vec("slea/Sokoban-v0", 2, mode="sync", num_levels=20)
    try:
        _, infos = venv.reset(options=tasks(4, 4))
        walk = unbatch_infos(infos, 2)[0]["walkthrough"]
        venv.step([walk[0], walk[0]])
        state = venv.call_at(0, "clone_state")
        venv.step(["left", "right"])
        _obs, info = venv.restore_state(1, state)
        assert venv.active[1] and info["task_id"] == 4
        rewards = 0.0
        for action in walk[1:]:
            rewards += venv.step(["xyzzy", action])[1][1]
        assert rewards == 1.0
        assert venv.get_attr("num_levels") == (20, 20)
        assert len(venv.call("render")) == 2
    finally:
        venv.close()


def test_env_factory_is_picklable() -> None:
    import pickle

    factory = EnvFactory("slea/Sokoban-v0", {"num_boxes": 1})
    env = pickle.loads(pickle.dumps(factory))()
    key = env.reset(seed=0)[1]["state_key"]
    assert key.count("$") + key.count("*") == 1
