"""Bringing your own env: slea.envs.check_contract, the ``module:EnvId`` form, and the errors a
run gets for bad tasks or envs, all raised before any run directory is written."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import gymnasium
import pytest
from conftest_envs import ALFWORLD_DATA

import slea
from slea.envs.check import check_contract, resolve_env_id
from slea.errors import ConfigError, EnvError
from slea.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SOKOBAN = ROOT / "examples" / "configs" / "sokoban_cpu.yaml"


class Toy(gymnasium.Env[str, str]):
    """A contract-following toy env; ``drop`` removes info keys, ``bad`` sets wrong values."""

    def __init__(self, drop: tuple[str, ...] = (), bad: dict[str, Any] | None = None) -> None:
        self.drop, self.bad = drop, dict(bad or {})

    def _info(self) -> dict[str, Any]:
        info = {"task": "win", "admissible_actions": ["win", "wait"], "won": False, "score": 0.0}
        info.update(self.bad)
        return {k: v for k, v in info.items() if k not in self.drop}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if options and set(options) - {"level"}:
            raise ValueError(f"unknown options {sorted(set(options) - {'level'})}")
        return "start", self._info()

    def step(self, action: str) -> Any:
        return "done", 1.0, True, False, {**self._info(), "won": action == "win"}


def test_a_contract_following_env_has_no_problems() -> None:
    assert check_contract(Toy()) == []
    assert check_contract(gymnasium.make("slea/Sokoban-v0"), {"task_id": 0}) == []


def test_every_problem_is_listed() -> None:
    problems = check_contract(Toy(drop=("task", "won"), bad={"admissible_actions": "win"}))
    # task, won and admissible_actions at reset; task and admissible_actions after the step
    assert len(problems) == 5, problems
    assert "reset(seed=0, options={}): info lacks 'task' (str)" in problems[0]
    assert any("info['admissible_actions'] must be a list of str" in p for p in problems)
    assert any(p.startswith("step('look'): info lacks 'task'") for p in problems)
    with pytest.raises(EnvError) as exc:
        check_contract(Toy(drop=("task",)), raises=True)
    assert "does not follow slea's env contract" in str(exc.value)
    assert str(exc.value).count("info lacks 'task'") == 2  # at reset and after the step
    bad_types = check_contract(Toy(bad={"won": 1, "score": float("nan"), "task": 3}))
    assert {p.split(": ", 1)[1].split(" must")[0] for p in bad_types} == {
        "info['won']",
        "info['score']",
        "info['task']",
    }
    empty = check_contract(Toy(bad={"admissible_actions": []}))
    assert any("admissible_actions is empty" in p for p in empty)
    assert check_contract(Toy(bad={"admissible_actions": []}), require_actions=False) == []


def test_broken_reset_and_step_are_problems_not_crashes() -> None:
    class NoStep:
        def reset(self, **kw: Any) -> Any:
            return "x", {}

    class Raises(Toy):
        def step(self, action: str) -> Any:
            raise RuntimeError("boom")

    class Short(Toy):
        def reset(self, **kw: Any) -> Any:
            return "x"

    assert check_contract(NoStep()) == [
        "the env has no step() method (a gymnasium.Env has reset and step)"
    ]
    assert check_contract(Raises())[-1] == "step('win') raised RuntimeError: boom"
    assert "must return (observation, info)" in check_contract(Short())[0]
    assert "raised ValueError: unknown options ['x']" in check_contract(Toy(), {"x": 1})[0]


MODULE = """
import gymnasium
gymnasium.register(id="slea-test/Toy-v0", entry_point="{module}:Toy")

class Toy(gymnasium.Env):
    def __init__(self, drop=()):
        from slea.envs.base import TextSpace
        self.observation_space, self.action_space, self.drop = TextSpace(64), TextSpace(64), drop
    def _info(self, won=False):
        info = {{"task": "say win", "admissible_actions": ["win", "wait"], "won": won}}
        return {{k: v for k, v in info.items() if k not in self.drop}}
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if set(options or {{}}) - {{"level"}}:
            raise ValueError("unknown reset options")
        return "say win", self._info()
    def step(self, action):
        won = action == "win"
        return ("yes" if won else "no"), float(won), won, False, self._info(won)
"""


@pytest.fixture
def toy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "slea_test_toy_env"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE.format(module=name)))
    (tmp_path / "slea_test_broken.py").write_text("raise RuntimeError('broken on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    gymnasium.registry.pop("slea-test/Toy-v0", None)
    sys.modules.pop(name, None)


def test_module_colon_id_imports_the_module_first(toy_module: str) -> None:
    assert "slea-test/Toy-v0" not in gymnasium.registry
    assert resolve_env_id(f"{toy_module}:slea-test/Toy-v0") == "slea-test/Toy-v0"
    with pytest.raises(
        EnvError,
        match=r"env\.id: 'slea_test_broken:X-v0': module 'slea_test_broken' could not be imported \(RuntimeError: broken on import\)",
    ):
        resolve_env_id("slea_test_broken:X-v0", key="env.id")
    with pytest.raises(
        EnvError, match=r"env_id: 'no_such_module_x:X-v0': module .*ModuleNotFoundError"
    ):
        resolve_env_id("no_such_module_x:X-v0")
    with pytest.raises(
        EnvError,
        match=r"'slea_test_toy_env:Nope-v0' is not a registered environment \(importing 'slea_test_toy_env' did not register it\)",
    ):
        resolve_env_id(f"{toy_module}:Nope-v0")
    venv = slea.envs.make_vec(f"{toy_module}:slea-test/Toy-v0", 2, mode="sync")
    try:
        obs, _ = venv.reset(seed=0)
        assert list(obs) == ["say win", "say win"]
    finally:
        venv.close()


# ---------------------------------------------------------------------------- before the run dir


def _config(run_dir: Path, *overrides: str) -> TrainConfig:
    return TrainConfig.from_yaml(SOKOBAN, [f"run.dir={run_dir}", *overrides])


def test_bad_runs_fail_before_any_run_directory(toy_module: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from slea.train.trainer import Trainer

    toy = f"env.id={toy_module}:slea-test/Toy-v0"
    cases = [
        (EnvError, r"env\.id: 'slea/Nope-v0' is not a registered", ["env.id=slea/Nope-v0"]),
        (
            EnvError,
            r"env\.id: .*module 'slea_test_broken' could not be imported",
            ["env.id=slea_test_broken:X-v0"],
        ),
        (
            ConfigError,
            r"env\.data_root: no ALFWorld data at .*alfworld-download",
            ["env.id=slea/ALFWorld-v0", f"env.data_root={tmp_path / 'none'}", "env.kwargs={}"],
        ),
        (
            ConfigError,
            r"env\.tasks\.test: the split has no task",
            ["env.tasks={train: [{task_id: 0}], test: []}"],
        ),
        (
            ConfigError,
            r"env\.task_types: \['look'\] matches no playable ALFWorld training game",
            [
                "env.id=slea/ALFWorld-v0",
                f"env.data_root={ALFWORLD_DATA}",
                "env.kwargs={}",
                "env.task_types=[look]",
            ],
        ),
        (
            EnvError,
            r"env\.tasks\.train: the env rejects task 'train-1' \(options \{'task_id': 10000\}\): ValueError",
            ["env.tasks={train: [{task_id: 0}, {task_id: 10000}]}"],
        ),
        (
            EnvError,
            r"env\.tasks\.train: the env rejects task 'train-0' \(options \{'levle': 'x'\}\)",
            [toy, "env.tasks={train: [{levle: x}]}", "env.kwargs={}"],
        ),
        (
            ConfigError,
            r"env\.tasks: '.*:slea-test/Toy-v0' has no task list",
            [toy, "env.kwargs={}"],
        ),
        (
            ConfigError,
            r"model\.path: .*no-model.* is not a model directory",
            [f"model.path={tmp_path / 'no-model'}"],
        ),
    ]
    for i, (error, pattern, overrides) in enumerate(cases):
        with pytest.raises(error, match=pattern):
            Trainer(_config(tmp_path / f"run{i}", *overrides))
    assert not any(tmp_path.glob("run*")), "a failed start left a run directory"


def test_a_custom_env_missing_a_contract_field(toy_module: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from slea.train.trainer import Trainer

    gymnasium.register(
        id="slea-test/ToyNoWon-v0", entry_point=f"{toy_module}:Toy", kwargs={"drop": ("won",)}
    )
    try:
        cfg = _config(tmp_path / "run", "env.id=slea-test/ToyNoWon-v0", "env.kwargs={}")
        with pytest.raises(
            EnvError, match=r"(?s)does not follow slea's env contract.*info lacks 'won'"
        ):
            Trainer(cfg, tasks={"train": [{}]})
    finally:
        del gymnasium.registry["slea-test/ToyNoWon-v0"]
    assert not (tmp_path / "run").exists()
    with pytest.raises(TypeError, match="tasks must be a TaskSource or a mapping"):
        Trainer(_config(tmp_path / "run"), tasks=[{"task_id": 0}])  # type: ignore[arg-type]
