"""``slea eval --config`` (the initial policy, no run directory), validation splits during
training (``eval.splits``) and the evaluation temperature (``eval.temperature``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")

from conftest_envs import games_cache

from slea.cli import main
from slea.errors import ConfigError
from slea.rundir import read_metrics
from slea.train.config import TrainConfig
from slea.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "configs" / "textworld_tiny_test.yaml"
SETS = [f"env.games.cache_dir={games_cache()}", "env.games.valid=2"]


def _sets(*extra: str) -> list[str]:
    out: list[str] = []
    for item in [*SETS, *extra]:
        out += ["--set", item]
    return out


def test_eval_config_scores_the_initial_policy_without_a_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    from slea.train import setup

    references: list[bool] = []
    make_policy = setup.make_policy

    def recording(*a, reference: bool = True, **kw):  # type: ignore[no-untyped-def]
        references.append(reference)
        return make_policy(*a, reference=reference, **kw)

    monkeypatch.setattr(setup, "make_policy", recording)
    args = ["eval", "--config", str(TINY), *_sets(), "--split", "valid", "--episodes", "3"]
    assert main([*args, "--out", "result.json"]) == 0
    assert references == [False]  # it only evaluates: no KL reference model is built
    monkeypatch.setattr(setup, "make_policy", make_policy)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["split"] == "valid" and result["iteration"] == 0
    assert result["episodes"] == 6 and result["episodes_greedy"] == 2  # 2 valid games
    assert 0.0 <= result["success_sampled"] <= 1.0 and 0.0 <= result["success_greedy"] <= 1.0
    assert result["sampled"]["split"] == "valid" and result["overrides"] == SETS
    assert "initial policy of" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()  # the config's run.dir is never written
    assert not list(scratch.glob("slea-*"))  # the throwaway run directory is gone
    # the same numbers as the initial policy evaluated in process
    cfg = TrainConfig.from_yaml(TINY, [*SETS, f"run.dir={tmp_path / 'ref'}"])
    calls: list[tuple[int, int]] = []
    with Trainer(cfg) as trainer:
        sampled = trainer.evaluate(
            "valid", episodes_per_task=3, progress=lambda done, total: calls.append((done, total))
        )
        greedy = trainer.evaluate("valid", greedy=True)
    assert result["success_sampled"] == sampled["success"]
    assert result["success_greedy"] == greedy["success"]
    # progress hears of every wave: from 0 to all 6 episodes, never backwards
    assert calls[0] == (0, 6) and calls[-1] == (6, 6) and len(calls) >= 2
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # the CLI draws a bar per pass when the config asks for progress
    assert main([*args[:-2], "--episodes", "1", "--set", "logging.progress=true"]) == 0
    out = capsys.readouterr().out
    assert "valid sampled" in out and "valid greedy" in out and "2/2" in out


def test_eval_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["eval", "--run", str(tmp_path), "--set", "train.seed=1"], "--set goes with --config"),
        (["eval", "--config", str(TINY), "--out", str(tmp_path)], "is a directory"),
        (["eval", "--config", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["eval", "--config", str(TINY), "--set", "eval.splits=[train]"], "eval.splits"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--config", str(TINY), "--split", "bogus"])
    assert exc.value.code == 2


def test_config_checks_splits_and_temperature() -> None:
    for bad, key in [
        ("eval.splits=[valid, valid]", "eval.splits"),
        ("eval.splits=[train]", "eval.splits"),
        ("eval.temperature=-1", "eval.temperature"),
        ("eval.temperature=.inf", "eval.temperature"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            TrainConfig.from_yaml(TINY, [bad])
    assert TrainConfig.from_yaml(TINY, ["eval.splits=valid"]).eval.splits == ("valid",)


def test_training_evaluates_valid_and_test_at_the_eval_temperature(tmp_path: Path) -> None:
    cfg = TrainConfig.from_yaml(
        TINY,
        [
            *SETS,
            f"run.dir={tmp_path / 'run'}",
            "train.iterations=1",
            "eval.splits=[valid, test]",
            "eval.temperature=0.4",
            "eval.train_tasks=0",
        ],
    )
    with Trainer(cfg) as trainer:
        summary = trainer.fit()
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["iteration"] for r in evals] == [0, 1]
    for record in evals:
        assert record["valid_sampled"]["episodes"] == 2 and record["test_sampled"]["episodes"] == 1
        assert record["valid_sampled"]["temperature"] == 0.4
        assert record["valid_greedy"]["temperature"] is None
    assert set(summary["success"]) == {
        "valid_sampled",
        "valid_greedy",
        "test_sampled",
        "test_greedy",
    }


def test_eval_temperature_changes_the_sampling(tmp_path: Path) -> None:
    """A near-zero evaluation temperature samples the greedy choice; T=1 does not always."""
    base = [*SETS, "eval.episodes_per_task=8", "eval.greedy=false"]
    results = {}
    for t in ("0.001", "0"):
        cfg = TrainConfig.from_yaml(
            TINY, [*base, f"eval.temperature={t}", f"run.dir={tmp_path / t}"]
        )
        with Trainer(cfg) as trainer:
            sampled = trainer.evaluate("valid", episodes_per_task=8)
            greedy = trainer.evaluate("valid", greedy=True)
        results[t] = (sampled, greedy)
    cold, greedy = results["0.001"]
    assert cold["success"] == greedy["success"]
    assert cold["episode_length"] == greedy["episode_length"]
    assert cold["temperature"] == 0.001 and results["0"][0]["temperature"] == 1.0


def test_eval_iteration_picks_a_kept_checkpoint_and_says_its_env_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``slea eval --run DIR --iteration N``: the checkpoint of iteration N, not the latest, with
    the training env steps it had seen (runs compared at equal env steps); a checkpoint that was
    not kept, or ``--iteration`` without a run, is a one-line error."""
    run = tmp_path / "run"
    cfg = TrainConfig.from_yaml(
        TINY,
        [*SETS, f"run.dir={run}", "train.iterations=2", "checkpoint.every=1", "eval.every=0"],
    )
    with Trainer(cfg) as trainer:
        trainer.fit()
    steps = {
        r["iteration"]: r["env_steps"]
        for r in read_metrics(run / "metrics.jsonl")
        if r["kind"] == "train"
    }
    assert steps[1] < steps[2]
    base = ["eval", "--run", str(run), "--split", "valid", "--no-greedy", "--episodes", "2"]
    assert main([*base, "--iteration", "1"]) == 0
    first = json.loads((run / "eval" / "valid_iter_1.json").read_text())
    assert first["iteration"] == 1 and first["env_steps"] == steps[1]
    assert main(base) == 0
    latest = json.loads((run / "eval" / "valid_iter_2.json").read_text())
    assert latest["iteration"] == 2 and latest["env_steps"] == steps[2]
    with Trainer.load(run, iteration=1) as trainer:
        again = trainer.evaluate("valid", episodes_per_task=2)
    assert again["success"] == first["success_sampled"]
    capsys.readouterr()
    for argv, needle in [
        ([*base, "--iteration", "7"], "has no checkpoint of iteration 7 (kept: 1, 2)"),
        (["eval", "--config", str(TINY), "--iteration", "1"], "--iteration goes with --run"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
