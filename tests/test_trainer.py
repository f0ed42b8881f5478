"""Trainer end to end on a tiny config: run layout, metrics, CLI, report, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slea

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")

from conftest_envs import games_cache

from slea.errors import ConfigError, EnvError, SleaError, SnapshotError
from slea.rundir import read_metrics
from slea.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "configs" / "textworld_tiny_test.yaml"
VOLATILE = {"timing", "steps_per_s", "elapsed_s", "eval_s"}


def tiny_overrides(run_dir: Path, *extra: str) -> list[str]:
    return [f"run.dir={run_dir}", f"env.games.cache_dir={games_cache()}", *extra]


def tiny_config(run_dir: Path, *extra: str) -> TrainConfig:
    return TrainConfig.from_yaml(TINY, tiny_overrides(run_dir, *extra))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(slea.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    env["OMP_NUM_THREADS"] = "1"
    return env


def _stable(records: list[dict]) -> list[dict]:
    def strip(x):
        if isinstance(x, dict):
            return {
                k: strip(v)
                for k, v in x.items()
                if k not in VOLATILE and not k.startswith("seconds/")  # wall-clock timings
            }
        return x

    return [strip(r) for r in records]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny run through the CLI (train, then report), shared by the read-only tests."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    args = ["--config", str(TINY)]
    for o in tiny_overrides(run_dir):
        args += ["--set", o]
    proc = subprocess.run(
        [sys.executable, "-m", "slea", "train", *args, "--quiet"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir / "stdout.txt").write_text(proc.stdout)
    return run_dir


def test_run_directory_layout(trained: Path) -> None:
    assert (trained / "config.yaml").is_file() and (trained / "metrics.jsonl").is_file()
    assert (trained / "model_init" / "tokenizer.json").is_file()
    ckpts = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert ckpts == ["iter_2", "iter_4"]
    files = {p.name for p in (trained / "checkpoints" / "iter_4").iterdir()}
    assert {
        "model",
        "optimizer.pt",
        "library.snap",
        "clusterer.snap",
        "rng.json",
        "state.json",
        "manifest.json",
    } <= files
    assert (
        json.loads((trained / "checkpoints" / "iter_4" / "state.json").read_text())["iteration"]
        == 4
    )
    cfg = TrainConfig.from_yaml(trained / "config.yaml")
    assert cfg.train.iterations == 4 and cfg.rollout.group_size == 3


def test_metrics_have_the_timing_breakdown_and_evals(trained: Path) -> None:
    records = read_metrics(trained / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["iteration"] for r in train] == [1, 2, 3, 4]
    assert [r["iteration"] for r in evals] == [0, 4]
    for r in train:
        t = r["timing"]
        for key in (
            "rollout",
            "generation",
            "env",
            "clustering",
            "retrieval",
            "advantages",
            "update",
            "evolution",
            "iteration",
        ):
            assert t[key] >= 0.0
        assert (
            t["rollout"] + t["advantages"] + t["update"] + t["evolution"] <= t["iteration"] * 1.001
        )
        assert 0 <= t["overhead_fraction"] < 1
        assert r["update"]["units"] > 0 and r["rollout"]["steps"] > 0
    # the linear schedule of the tiny config: 1e-3 at the first update, 1e-4 at the last
    assert [r["update"]["lr"] for r in train] == pytest.approx([1e-3, 7e-4, 4e-4, 1e-4])
    assert evals[0]["test_sampled"]["episodes"] == 1 and evals[-1]["test_greedy"]["episodes"] == 1


def test_cli_prints_the_table_and_report(trained: Path) -> None:
    out = (trained / "stdout.txt").read_text()
    assert "held-out games, sampled" in out and "held-out games, greedy" in out
    assert "(1 episodes)" in out
    assert f"report: {trained / 'report' / 'index.html'}" in out
    page = (trained / "report" / "index.html").read_text()
    assert "Untrained vs trained" in page and "success.png" in page and "timing.png" in page
    for png in ("success.png", "timing.png", "clusters.png"):
        assert (trained / "report" / png).stat().st_size > 1000
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["iterations"] == 4 and "test_sampled" in summary["success"]


def test_every_trainable_parameter_changed(trained: Path) -> None:
    from safetensors.torch import load_file

    train = [r for r in read_metrics(trained / "metrics.jsonl") if r["kind"] == "train"]
    assert any(r["rollout"]["success"] > 0 for r in train)  # the tiny config has a learning signal
    init = load_file(str(trained / "model_init" / "model.safetensors"))
    final = load_file(str(trained / "checkpoints" / "iter_4" / "model" / "model.safetensors"))
    assert init.keys() == final.keys()
    same = [k for k in init if bool((init[k] == final[k]).all())]
    assert not same, f"unchanged: {same}"


def test_eval_and_report_commands(trained: Path, tmp_path: Path, capsys) -> None:
    from slea.cli import main

    run_dir = tmp_path / "copy"
    shutil.copytree(trained, run_dir)
    before = (run_dir / "metrics.jsonl").read_bytes()
    assert main(["eval", "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "checkpoint iteration 4" in out and "greedy:" in out
    assert (run_dir / "eval" / "test_iter_4.json").is_file()
    assert (run_dir / "metrics.jsonl").read_bytes() == before  # eval changes nothing else
    assert main(["report", "--run", str(run_dir)]) == 0
    assert "index.html" in capsys.readouterr().out


def test_eval_with_and_without_the_library(trained: Path, tmp_path: Path, capsys) -> None:
    from slea.cli import main
    from slea.train.trainer import Trainer

    run_dir = tmp_path / "copy"
    shutil.copytree(trained, run_dir)
    for how in ("none", "task", "step"):
        assert main(["eval", "--run", str(run_dir), "--retrieval", how, "--no-greedy"]) == 0
        out = capsys.readouterr().out
        assert "greedy:" not in out
        assert ("without the library" in out) == (how == "none")
    res = {
        how: json.loads((run_dir / "eval" / f"test_iter_4_{how}.json").read_text())
        for how in ("none", "task", "step")
    }
    assert not (run_dir / "eval" / "test_iter_4.json").exists()
    none, task, step = res["none"], res["task"], res["step"]
    assert none["success_greedy"] is None and none["greedy"] is None and none["retrieval"] == "none"
    assert not none["library_in_prompts"] and none["sampled"]["retrieval_fraction"] == 0.0
    assert task["library_in_prompts"] and step["library_in_prompts"]
    assert task["sampled"]["retrieval_fraction"] > 0 and step["sampled"]["retrieval_fraction"] > 0
    with Trainer.load(run_dir) as trainer:
        with pytest.raises(ValueError, match="retrieval: must be one of none, step, task"):
            trainer.evaluate("test", retrieval="always")
        # a reader holds no KL reference model and no optimizer state (the tiny run has both)
        assert trainer.reader and trainer.policy._reference is None
        assert not trainer.optimizer.state
        with pytest.raises(SleaError, match=r"fit: this Trainer was opened with Trainer\.load"):
            trainer.fit()
        assert trainer.evaluate("test", retrieval="none")["success"] == none["success_sampled"]


def test_play_keeps_nothing_and_is_seeded(trained: Path) -> None:
    """``Trainer.play`` plays a batch (or given episodes, on any split) with the current policy:
    the same seed gives the same rollout, and the run's clusterer, library, counters and weights
    stay as they were; the library reaches the prompts only when asked."""
    from slea.rollout import EpisodeSpec
    from slea.train.trainer import Trainer

    with Trainer.load(trained) as trainer:
        state = (trainer.iteration, trainer.env_steps, trainer.next_episode_id)
        clusters, entries = len(trainer.clusterer), len(trainer.library)
        version = int(trainer.library.version)
        weights = {k: v.clone() for k, v in trainer.policy.model.state_dict().items()}
        r = trainer.config.rollout

        a, b = trainer.play(seed=5), trainer.play(seed=5)
        assert len(a.episodes) == r.tasks_per_iteration * r.group_size
        assert [x.response_ids for x in a.records] == [x.response_ids for x in b.records]
        assert not any(a.retrieved)  # default: the policy alone
        step = trainer.play(seed=5, retrieval="step")
        assert any(step.retrieved) and entries > 0

        task = trainer.tasks.tasks("test")[0]
        held = trainer.play(
            [EpisodeSpec(group=0, options=task.options, task_id=task.name)] * 2,
            split="test",
            greedy=True,
        )
        assert [e.task_id for e in held.episodes] == [task.name] * 2
        assert [s.action for s in held.episodes[0].steps] == [
            s.action for s in held.episodes[1].steps
        ]

        assert (trainer.iteration, trainer.env_steps, trainer.next_episode_id) == state
        assert (len(trainer.clusterer), len(trainer.library)) == (clusters, entries)
        assert int(trainer.library.version) == version
        after = trainer.policy.model.state_dict()
        assert all(bool((after[k] == v).all()) for k, v in weights.items())

        with pytest.raises(ValueError, match="retrieval: must be one of"):
            trainer.play(retrieval="always")
        with pytest.raises(ValueError, match="split: must be train, valid or test"):
            trainer.play(split="dev")
        with pytest.raises(ValueError, match="specs: no episodes"):
            trainer.play([])
        too_many = [EpisodeSpec(group=0, options=task.options, task_id=task.name)] * 1000
        with pytest.raises(ValueError, match="specs: 1000 episodes"):
            trainer.play(too_many, split="test")


def test_evaluate_all_reports_each_pass(trained: Path) -> None:
    """The training bar hears how far an evaluation is: each pass from 0 to all its episodes."""
    from slea.train.trainer import Trainer

    texts: list[str] = []
    with Trainer.load(trained) as trainer:
        record = trainer.evaluate_all(final=False, report=texts.append)
    n = record["test_sampled"]["episodes"]
    g = record["test_greedy"]["episodes"]
    assert texts[0] == f"eval test sampled 0/{n}" and f"eval test sampled {n}/{n}" in texts
    assert texts[-1] == f"eval test greedy {g}/{g}"


def test_corrupted_checkpoint_is_refused_and_kept(trained: Path, tmp_path: Path) -> None:
    from slea.train.trainer import Trainer

    run_dir = tmp_path / "corrupt"
    shutil.copytree(trained, run_dir)
    victim = run_dir / "checkpoints" / "iter_4" / "optimizer.pt"
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    snapshot = {p: p.read_bytes() for p in (run_dir / "checkpoints").rglob("*") if p.is_file()}
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    with pytest.raises(SnapshotError, match=r"optimizer\.pt is corrupted.*delete .*iter_4"):
        Trainer.resume(run_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "slea", "train", "--resume", str(run_dir)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "corrupted" in proc.stderr
    after = {p: p.read_bytes() for p in (run_dir / "checkpoints").rglob("*") if p.is_file()}
    assert after == snapshot and (run_dir / "metrics.jsonl").read_bytes() == metrics


def test_env_step_budget_stops_the_run_and_drives_the_lr_schedule(tmp_path: Path) -> None:
    """With max_env_steps far below the iteration budget, the run stops once the env steps are
    spent, and the linear schedule decays by the env steps' fraction (the one further along)."""
    from slea.train.trainer import Trainer

    run_dir = tmp_path / "budget"
    cfg = tiny_config(run_dir, "train.iterations=1000", "train.max_env_steps=70")
    Trainer(cfg).fit()
    train = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
    steps = [r["env_steps"] for r in train]
    assert len(train) >= 2 and steps[-1] >= 70 and all(s < 70 for s in steps[:-1])
    expected = [1e-3 + (1e-4 - 1e-3) * min(s / 70, 1.0) for s in steps]
    assert [r["update"]["lr"] for r in train] == pytest.approx(expected)
    assert train[-1]["update"]["lr"] == pytest.approx(1e-4)  # not 1e-3: iterations barely moved


def test_eval_before_false_skips_the_initial_evaluation(tmp_path: Path) -> None:
    """eval.before=false: no iteration-0 evaluation, and the summary's untrained cells stay empty
    instead of repeating the trained numbers."""
    from slea.train.trainer import Trainer

    run_dir = tmp_path / "no_before"
    trainer = Trainer(tiny_config(run_dir, "train.iterations=1", "eval.before=false"))
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["iteration"] for r in evals] == [1]
    row = summary["success"]["test_sampled"]
    assert row["untrained"] is None and row["trained"]["episodes"] > 0


def test_bad_input_errors_name_the_fix(trained: Path, tmp_path: Path) -> None:
    from slea.train.trainer import Trainer

    with pytest.raises(
        EnvError, match=r"env\.id: 'slea/Nope-v0' is not a registered .*slea envs list"
    ):
        Trainer(tiny_config(tmp_path / "a", "env.id=slea/Nope-v0"))
    with pytest.raises(ConfigError, match=r"model\.path: .* is not a model directory"):
        Trainer(tiny_config(tmp_path / "b", f"model.path={tmp_path / 'no-model'}"))
    with pytest.raises(ConfigError, match=r"env\.games: level for kind='coin' must be"):
        Trainer(tiny_config(tmp_path / "c", "env.games.level=1000"))
    with pytest.raises(ConfigError, match=r"env\.games\.compass_augment: only slea/TextWorld-v0"):
        Trainer(
            tiny_config(tmp_path / "d", "env.id=slea/Sokoban-v0", "env.games.compass_augment=true")
        )
    with pytest.raises(ConfigError, match=r"env\.tasks\.train: the split has no task"):
        Trainer(tiny_config(tmp_path / "e", "env.id=slea/Sokoban-v0", "env.tasks.train=[]"))
    with pytest.raises(
        ConfigError, match=r"model\.preset: unknown model preset 'nope'; known presets: smollm2"
    ):
        Trainer(tiny_config(tmp_path / "f", "model.preset=nope"))
    with pytest.raises(ConfigError, match=r"model\.preset: give model\.path or model\.preset"):
        Trainer(tiny_config(tmp_path / "g", "model.preset=smollm2-135m-instruct", "model.path=x"))
    with pytest.MonkeyPatch.context() as mp:  # an empty model cache
        mp.setenv("SLEA_CACHE", str(tmp_path / "empty-cache"))
        with pytest.raises(
            ConfigError, match=r"model\.preset: .*slea models fetch smollm2-135m-instruct"
        ):
            Trainer(tiny_config(tmp_path / "h", "model.preset=smollm2-135m-instruct"))
    # a failed start leaves no half-made run behind
    assert not any((tmp_path / name).exists() for name in "abcdefgh")
    with pytest.raises(
        ConfigError, match=r"already holds a run; resume it with `slea train --resume"
    ):
        Trainer(tiny_config(trained, "run.overwrite=false"))
    with pytest.raises(SleaError, match="is not a run directory"):
        Trainer.resume(tmp_path)
    with pytest.raises(SleaError, match="is not a run directory"):
        from slea.report.html import write_report

        write_report(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "slea", "train", "--config", str(TINY), "--set", "update.lr=-1"],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "update.lr: must be > 0" in proc.stderr


RESUME_SCRIPT = """
import sys
from slea.train.config import TrainConfig
from slea.train.trainer import Trainer
if sys.argv[1] == "resume":
    t = Trainer.resume(sys.argv[2])
else:
    t = Trainer(TrainConfig.from_yaml(sys.argv[3], sys.argv[4:]))
with t:
    t.fit()
"""


@pytest.mark.slow  # about a minute and a half on 2 busy cores: two more tiny runs in subprocesses
def test_resume_after_sigkill_gives_the_same_metrics(trained: Path, tmp_path: Path) -> None:
    """Kill a run with SIGKILL during iteration 4 (after iter_2's checkpoint), resume it: the
    metrics equal those of the uninterrupted run (the ``trained`` fixture, same config)."""
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    killed = tmp_path / "killed"
    args = [sys.executable, str(script), "new", str(killed), str(TINY), *tiny_overrides(killed)]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline:
        iters = [
            r["iteration"] for r in read_metrics(killed / "metrics.jsonl") if r["kind"] == "train"
        ]
        if iters and iters[-1] >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    ckpts = sorted(p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith("iter_"))
    assert ckpts == ["iter_2"]  # work after the checkpoint is lost and must be redone
    resumed = subprocess.run(
        [sys.executable, str(script), "resume", str(killed)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = _stable(read_metrics(trained / "metrics.jsonl"))
    b = _stable(read_metrics(killed / "metrics.jsonl"))
    assert [r["iteration"] for r in b if r["kind"] == "train"] == [1, 2, 3, 4]
    assert a == b


def test_compass_augment_draws_one_symmetry_per_group() -> None:
    import numpy as np

    from slea.envs.tasks import TextWorldTasks
    from slea.train.trainer import sample_episodes

    games = {"train": [Path(f"train-{i:04d}.z8") for i in range(5)]}
    seen = set()
    for augment in (False, True):
        tasks = TextWorldTasks(games, compass_augment=augment)
        for seed in range(10):
            specs = sample_episodes(tasks, 4, 3, np.random.default_rng(seed))
            assert len(specs) == 12
            for g in range(4):
                group = specs[3 * g : 3 * g + 3]
                assert len({s.task_id for s in group}) == 1
                assert len({tuple(sorted(s.options.items())) for s in group}) == 1
                opts = group[0].options
                assert 0 <= opts["task_id"] < 5
                if augment:
                    k = opts["compass"]
                    assert group[0].task_id.endswith(f"@compass{k}")
                    seen.add(k)
                else:
                    assert "compass" not in opts and "@" not in group[0].task_id
    assert seen == set(range(8))
