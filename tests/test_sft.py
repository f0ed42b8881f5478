"""SFT warm start on walkthroughs (slea.train.sft, `slea sft`) on the tiny config: the pairs are
the rollout's prompts, the loss falls, the walkthrough becomes likelier, the saved model loads,
and bad input gets one line and exit 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import slea

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")

import torch
from conftest_envs import games_cache

from slea.errors import ConfigError
from slea.policy.forward import candidate_scores
from slea.policy.hf import HFPolicy
from slea.train import setup
from slea.train.config import SftConfig, TrainConfig
from slea.train.sft import (
    EXHAUSTED,
    SFT_MODEL,
    collect_walkthroughs,
    mean_loss,
    replay,
    save_model,
    target_ids,
    train_sft,
)
from slea.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "configs" / "textworld_tiny_test.yaml"
LIGHTS = ROOT / "examples" / "configs" / "custom_lights.yaml"


def tiny_config(run_dir: Path, *extra: str) -> TrainConfig:
    return TrainConfig.from_yaml(
        TINY, [f"run.dir={run_dir}", f"env.games.cache_dir={games_cache()}", *extra]
    )


def _collect(trainer: Trainer):
    return collect_walkthroughs(
        trainer.policy,
        trainer.venv,
        trainer.tasks.tasks("train"),
        prompt=trainer.prompt,
        max_steps=trainer.config.rollout.max_steps,
        make_clusterer=lambda: setup.make_clusterer(trainer.config),
        canon=trainer.canon,
    )


def _greedy_agreement(policy: HFPolicy, records) -> float:
    """Fraction of walkthrough decisions where choice mode's greedy pick is the walkthrough's."""
    with torch.no_grad():
        scores = candidate_scores(
            policy.model,
            [r.prompt_ids for r in records],
            [list(r.candidates) for r in records],
            policy.pad_id,
        )
    hits, offset = 0, 0
    for r in records:
        n = len(r.candidates)
        hits += int(scores[offset : offset + n].argmax()) == r.index
        offset += n
    return hits / len(records)


@pytest.mark.parametrize("show_admissible", [False, True])
def test_pairs_are_the_rollout_prompts(tmp_path, show_admissible):
    """Differential: the policy plays a training game through the trainer's rollout; replaying
    its actions through the SFT path gives the same prompt ids, action ids and candidates."""
    flag = f"prompt.show_admissible={str(show_admissible).lower()}"
    with Trainer(tiny_config(tmp_path / "run", flag)) as trainer:
        task = trainer.tasks.tasks("train")[0]
        from slea.rollout import EpisodeSpec

        rollout = trainer.play(
            [EpisodeSpec(group=0, options=task.options, task_id=task.name)],
            generator=torch.Generator().manual_seed(3),
            seed=11,
        )
        played = rollout.records
        assert played
        again = replay(
            trainer.policy,
            trainer.venv,
            task,
            [r.text for r in played],
            prompt=trainer.prompt,
            max_steps=trainer.config.rollout.max_steps,
            clusterer=setup.make_clusterer(trainer.config),
            canon=trainer.canon,
            seed=11,
        )
        assert [r.prompt_ids for r in again.records] == [r.prompt_ids for r in played]
        assert [r.response_ids for r in again.records] == [r.response_ids for r in played]
        assert [r.candidates for r in again.records] == [r.candidates for r in played]
        assert [r.index for r in again.records] == [r.index for r in played]
        assert [s.observation for s in again.episodes[0].steps] == [
            s.observation for s in rollout.episodes[0].steps
        ]
        if "Actions" in trainer.policy.tokenizer.decode(played[0].prompt_ids):
            assert show_admissible
        # the walkthrough pairs: choice mode's scored sequence, end-of-action token last
        records, data = _collect(trainer)
        assert data == {
            "tasks": 2,
            "used": 2,
            "decisions": len(records),
            "skipped": {
                "no walkthrough": 0,
                "walkthrough did not win": 0,
                "action not admissible": 0,
            },
        }
        for r in records:
            assert r.response_ids == trainer.policy.action_ids(r.text)
            assert r.response_ids[-1] == trainer.policy.end_of_action_id
            assert r.candidates[r.index] == r.response_ids
        # a walkthrough cut short ends the episode without a step for the missing action
        short = replay(
            trainer.policy,
            trainer.venv,
            task,
            [records[0].text],
            prompt=trainer.prompt,
            max_steps=8,
            clusterer=setup.make_clusterer(trainer.config),
            canon=trainer.canon,
        )
        assert len(short.records) == 1 and short.episodes[0].error == EXHAUSTED


def test_loss_falls_and_walkthrough_becomes_likelier(tmp_path):
    with Trainer(tiny_config(tmp_path / "run")) as trainer:
        records, _ = _collect(trainer)
        policy = trainer.policy
        before_loss = mean_loss(policy, records, 4)
        before_greedy = _greedy_agreement(policy, records)
        losses = train_sft(policy, records, SftConfig(epochs=6, lr=1e-2, batch_size=2))
        assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
        assert losses[-1] < losses[0]
        after_loss = mean_loss(policy, records, 4)
        assert after_loss < before_loss - 0.5
        after_greedy = _greedy_agreement(policy, records)
        print(f"greedy agreement {before_greedy:.2f} -> {after_greedy:.2f}")
        assert after_greedy > before_greedy
        # the saved model is the trained one, with a tokenizer that encodes prompts the same way
        out = save_model(policy, tmp_path / SFT_MODEL)
        loaded = HFPolicy.from_pretrained(out)
        assert loaded.encode_prompt([{"role": "user", "content": "Now: a room"}]) == (
            policy.encode_prompt([{"role": "user", "content": "Now: a room"}])
        )
        assert mean_loss(loaded, records, 4) == pytest.approx(after_loss, abs=1e-5)


def test_lora_sft_is_merged_into_the_saved_model(tmp_path):
    pytest.importorskip("peft")
    with Trainer(tiny_config(tmp_path / "run", "model.lora_r=4")) as trainer:
        records, _ = _collect(trainer)
        policy = trainer.policy
        frozen = {n: p.clone() for n, p in policy.model.named_parameters() if not p.requires_grad}
        before = mean_loss(policy, records, 4)
        train_sft(policy, records, SftConfig(epochs=4, lr=2e-2, batch_size=2))
        after = mean_loss(policy, records, 4)
        assert after < before
        for n, p in policy.model.named_parameters():  # only the adapters moved
            if n in frozen:
                assert torch.equal(p, frozen[n])
        out = save_model(policy, tmp_path / SFT_MODEL)
        assert not (out / "adapter_config.json").exists()
        assert mean_loss(HFPolicy.from_pretrained(out), records, 4) == pytest.approx(
            after, abs=1e-4
        )


def test_generate_mode_target_is_what_the_parser_reads(tmp_path):
    with Trainer(tiny_config(tmp_path / "run", "policy.mode=generate")) as trainer:
        policy = trainer.policy
        ids = target_ids(policy, "go east")
        assert ids[-1] == policy.end_of_action_id
        text = policy.tokenizer.decode(ids[:-1])
        assert policy.parser(text) == "go east"


# ---------------------------------------------------------------------------- config and CLI


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("sft.epochs=0", "sft.epochs"),
        ("sft.lr=nan", "sft.lr"),
        ("sft.lr=0", "sft.lr"),
        ("sft.batch_size=0", "sft.batch_size"),
        ("sft.eval_split=dev", "sft.eval_split"),
        ("sft.epoch=2", "sft.epoch"),
    ],
)
def test_bad_sft_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_dict({}, [override])


def test_sft_config_direct_construction_checks_lr():
    with pytest.raises(ConfigError, match=r"sft\.lr"):
        SftConfig(lr=float("inf"))


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(slea.__file__).resolve().parents[1]), *map(str, paths)]
    )
    env["OMP_NUM_THREADS"] = "1"
    return env


def _sft(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slea", "sft", *args, "--quiet"],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("override", "key"), [("sft.epochs=0", "sft.epochs"), ("sft.lr=.nan", "sft.lr")]
)
def test_cli_bad_values_one_line_exit_2(tmp_path, override, key):
    proc = _sft("--config", str(TINY), "--set", f"run.dir={tmp_path / 'r'}", "--set", override)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()


def test_cli_env_without_walkthroughs(tmp_path):
    run_dir = tmp_path / "lights"
    proc = _sft(
        "--config",
        str(LIGHTS),
        "--set",
        f"run.dir={run_dir}",
        "--set",
        "train.threads=1",
        env=_env(ROOT / "examples"),
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "env.id" in lines[0] and "custom/Lights-v0" in lines[0] and "walkthrough" in lines[0]
    assert not run_dir.exists()  # a failed run leaves nothing behind


def test_cli_trains_evaluates_and_saves(tmp_path):
    run_dir = tmp_path / "sft"
    args = ["--config", str(TINY), "--set", f"run.dir={run_dir}"]
    for o in (f"env.games.cache_dir={games_cache()}", "sft.eval_split=test", "sft.lr=0.01"):
        args += ["--set", o]
    proc = _sft(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "walkthroughs: 2 of 2 training tasks" in proc.stdout
    assert "test, greedy" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["loss"]) == 2 and summary["before"]["sampled"]["episodes"] == 1
    kinds = [json.loads(x)["kind"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert kinds == ["sft_data", "eval", "sft", "sft", "eval"]
    # a later run starts from the saved model through model.path
    cfg = tiny_config(tmp_path / "rl", f"model.path={run_dir / SFT_MODEL}", "train.iterations=1")
    with Trainer(cfg) as trainer:
        assert trainer.model_dir == run_dir / SFT_MODEL
        trainer.train_iteration()
