"""``slea train`` and ``slea eval`` on every built-in env and on a custom one (examples/), each a
2-iteration tiny-model run with its evaluations, in a subprocess as a user would run it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest_envs import ALFWORLD_DATA

import slea
from slea.rundir import read_metrics

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
#: Smaller batches and evaluations than the example configs: a smoke test, not a demo.
SMALL = [
    "train.iterations=2",
    "rollout.tasks_per_iteration=2",
    "rollout.group_size=2",
    "model.tokenizer_corpus_episodes=1",
    "eval.episodes_per_task=1",
    "eval.train_tasks=2",
    "logging.progress=false",
]


def _env(pythonpath: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(Path(slea.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(([str(pythonpath)] if pythonpath else []) + paths)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, *args],
        env=_env(pythonpath),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def train_and_eval(
    config: str, run_dir: Path, *overrides: str, pythonpath: Path | None = None
) -> dict:
    """Train 2 iterations with the CLI, evaluate the checkpoint with the CLI; the last eval."""
    args = ["-m", "slea", "train", "--config", str(CONFIGS / config), "--quiet"]
    for o in [*SMALL, f"run.dir={run_dir}", *overrides]:
        args += ["--set", o]
    out = _run(*args, pythonpath=pythonpath).stdout
    assert "held-out games, sampled" in out and "2 iterations" in out
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["iteration"] for r in evals] == [0, 2]
    trains = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert len(trains) == 2 and all(r["rollout"]["episodes"] == 4 for r in trains)
    ev = _run("-m", "slea", "eval", "--run", str(run_dir), "--episodes", "1", pythonpath=pythonpath)
    ev = ev.stdout
    assert "checkpoint iteration 2, split test" in ev
    result = json.loads((run_dir / "eval" / "test_iter_2.json").read_text())
    assert result["sampled"]["episodes"] == evals[-1]["test_sampled"]["episodes"]  # 1 per task
    return {"last": evals[-1], "eval_cli": result}


@pytest.mark.slow  # about 1.5 min on 2 busy cores
def test_sokoban(tmp_path: Path) -> None:
    got = train_and_eval("sokoban_cpu.yaml", tmp_path / "run")
    assert got["last"]["test_sampled"]["episodes"] == 4  # 4 held-out levels x 1 episode
    assert got["eval_cli"]["greedy"]["episodes"] == 4


@pytest.mark.slow  # about 2 min: ALFWorld's planner makes each step slow
def test_alfworld(tmp_path: Path) -> None:
    pytest.importorskip(
        "fast_downward", reason="the [envs] extra (textworld[pddl]) is not installed"
    )
    got = train_and_eval(
        "alfworld_cpu.yaml",
        tmp_path / "run",
        f"env.data_root={ALFWORLD_DATA}",
        "rollout.max_steps=6",
    )
    last = got["last"]
    assert last["test_sampled"]["by_type"] == {
        "look": {
            "success": last["test_sampled"]["success"],
            "return": last["test_sampled"]["return"],
            "episodes": 1,
        }
    }
    assert set(last["train_sampled"]["by_type"]) == {"pick", "cool"}  # the first 2 training games
    assert got["eval_cli"]["sampled"]["by_type"]["look"]["episodes"] == 1


@pytest.mark.slow  # several minutes: a JVM per env, ~115 commands scored per step
def test_scienceworld(tmp_path: Path) -> None:
    if importlib.util.find_spec("scienceworld") is None or shutil.which("java") is None:
        pytest.skip("ScienceWorld needs the [envs] extra (scienceworld) and Java 17+ on PATH")
    got = train_and_eval(
        "scienceworld_cpu.yaml",
        tmp_path / "run",
        "rollout.max_steps=3",
        "env.max_tasks_per_type=2",
        "eval.greedy=false",
    )
    assert got["last"]["test_sampled"]["by_type"]["find-living-thing"]["episodes"] == 2


@pytest.mark.slow  # about two minutes: the example from Python, then the YAML config
def test_custom_env_example_and_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "lights"
    out = _run(
        str(ROOT / "examples" / "custom_env.py"), "train.iterations=2", f"run.dir={run_dir}"
    ).stdout
    assert "held-out games, sampled" in out and "2 iterations" in out
    saved = (run_dir / "config.yaml").read_text()
    assert "room: kitchen" in saved and "start: garden" in saved  # the tasks are in the config
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert evals[-1]["test_sampled"]["episodes"] == 4
    # the same env from a YAML config through the CLI (train and eval), as module:EnvId
    got = train_and_eval("custom_lights.yaml", tmp_path / "yaml", pythonpath=ROOT / "examples")
    assert got["last"]["test_sampled"]["episodes"] == 2  # the 2 listed held-out tasks


def test_trainer_takes_task_lists_from_python_and_keeps_them(tmp_path: Path) -> None:
    """The fast end-to-end check on a non-TextWorld env: Sokoban levels given as reset options
    from Python (no YAML task list), 2 iterations in process, then a resume plays the same."""
    from slea.train.config import TrainConfig
    from slea.train.trainer import Trainer

    tiny = ["model.tiny.hidden_size=32", "model.tiny.intermediate_size=64"]
    tiny += ["model.tiny.num_layers=1", "model.tiny.vocab_size=400", "eval.greedy=false"]
    cfg = TrainConfig.from_yaml(
        CONFIGS / "sokoban_cpu.yaml", [*SMALL, *tiny, f"run.dir={tmp_path / 'run'}"]
    )
    tasks = {
        "train": [{"task_id": 0}, {"task_id": 1}, {"task_id": 2}],
        "test": [slea.envs.Task("drawn", {"level": "#####\n#@$.#\n#####"}, "drawn")],
    }
    with Trainer(cfg, tasks=tasks) as trainer:
        summary = trainer.fit()
    trained = summary["success"]["test_sampled"]["trained"]
    assert trained["episodes"] == 1 and trained["by_type"]["drawn"]["episodes"] == 1
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["iteration"] for r in evals] == [0, 2]
    with Trainer.resume(tmp_path / "run") as again:  # the lists are in the run's config.yaml
        assert [t.options for t in again.tasks.tasks("train")] == tasks["train"]
        assert again.tasks.tasks("test")[0].name == "drawn" and again.iteration == 2
