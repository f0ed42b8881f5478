"""``slea train --dry-run``: every example config resolves without loading weights or writing a
run directory; the presets against the project's ALFWorld games and config-only model dirs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest_envs import ALFWORLD_DATA, games_cache

import slea
from slea.train.config import TrainConfig
from slea.train.preflight import count_parameters, dry_run, format_plan, update_memory

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
PRESETS = {"alfworld_qwen2.5_1.5b.yaml": "1.5b", "alfworld_qwen2.5_7b.yaml": "7b"}
#: The sizes in Qwen2.5-{1.5B,7B}-Instruct's config.json (nothing else is needed to count).
QWEN = {
    "1.5b": {
        "model_type": "qwen2",
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "7b": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
}
GIB = 2**30


def model_dir(tmp_path: Path, size: str) -> Path:
    d = tmp_path / f"qwen2.5-{size}"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(QWEN[size]))
    return d


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(slea.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    return env


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slea", "train", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_dry_run_on_the_project_games(name: str, tmp_path: Path) -> None:
    size = PRESETS[name]
    run_dir = tmp_path / "run"
    cfg = TrainConfig.from_yaml(
        CONFIGS / name,
        [
            f"model.path={model_dir(tmp_path, size)}",
            f"env.data_root={ALFWORLD_DATA}",
            f"run.dir={run_dir}",
        ],
    )
    plan = dry_run(cfg)
    assert plan["tasks"] == {
        "train": {"cool": 1, "heat": 1, "pick": 1, "pick2": 1},
        "valid": {"clean": 1},
        "test": {"look": 1},
    }
    assert plan["episodes_per_iteration"] == 128 and plan["max_steps_per_iteration"] == 6400
    assert (plan["prompt_tokens"], plan["response_tokens"], plan["mode"]) == (2048, 512, "generate")
    total = plan["parameters"]["total"]
    assert total == pytest.approx(1.54e9 if size == "1.5b" else 7.62e9, rel=0.01)
    mem = plan["memory"]
    if size == "7b":  # LoRA: no reference copy, adapters only in the optimizer
        assert plan["parameters"]["trainable"] < 0.05 * total and mem["reference"] == 0
    else:
        assert mem["reference"] == mem["weights"] == pytest.approx(2 * total)
    assert mem["total"] < 80 * GIB  # fits one 80 GB GPU, as the presets say
    assert not run_dir.exists()  # nothing written
    text = format_plan(plan)
    assert "an estimate" in text and "train 4 (cool 1, heat 1, pick 1, pick2 1)" in text


def test_a_full_7b_update_does_not_fit_one_gpu_with_its_reference() -> None:
    """Why the 7B preset uses LoRA: the estimate of a full bf16 fine-tune with the KL reference."""
    cfg = TrainConfig.from_yaml(CONFIGS / "alfworld_qwen2.5_7b.yaml", ["model.lora_r=0"])
    mem = update_memory(cfg, QWEN["7b"])
    state = mem["weights"] + mem["gradients"] + mem["adamw"] + mem["reference"]
    # 76e9 bytes before any activation; with gradient checkpointing about 79.7 GiB in all, more
    # than the about 78 GiB an 80 GB H100 leaves to programs (without it, about 122 GiB)
    assert state > 70 * GIB and mem["total"] > 78 * GIB
    lora = count_parameters(QWEN["7b"], lora_r=64, lora_targets=("q_proj", "v_proj"))
    # r * (in + out) per adapted matrix, per layer: q 3584+3584, v 3584+512
    assert lora["trainable"] == 28 * 64 * (3584 + 3584 + 3584 + 512)


def test_cli_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _cli(
        "--config",
        str(CONFIGS / "alfworld_qwen2.5_1.5b.yaml"),
        "--dry-run",
        "--set",
        f"model.path={model_dir(tmp_path, '1.5b')}",
        "--set",
        f"env.data_root={ALFWORLD_DATA}",
        "--set",
        f"run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1.54 B parameters" in proc.stdout and "memory     update on one GPU" in proc.stdout
    assert not run_dir.exists()
    missing = _cli("--config", str(CONFIGS / "alfworld_qwen2.5_7b.yaml"), "--dry-run")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: model.path: 'models/Qwen2.5-7B-Instruct' is not a")
    assert len(missing.stderr.strip().splitlines()) == 1
    resume = _cli("--resume", str(tmp_path), "--dry-run")
    assert resume.returncode == 2 and "--dry-run goes with --config FILE" in resume.stderr


CPU = [
    "alfworld_cpu.yaml",
    "sokoban_cpu.yaml",
    "textworld_tiny_test.yaml",
    "scienceworld_cpu.yaml",
    "custom_lights.yaml",
]


@pytest.mark.parametrize("name", CPU)
def test_cpu_configs_dry_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # custom_lights names custom_env:...
    if name.startswith("scienceworld") and (
        importlib.util.find_spec("scienceworld") is None or shutil.which("java") is None
    ):
        pytest.skip("ScienceWorld needs the [envs] extra (scienceworld) and Java 17+ on PATH")
    if name.startswith(("alfworld", "textworld")) and importlib.util.find_spec("textworld") is None:
        pytest.skip("the [envs] extra (textworld) is not installed")
    overrides = [f"run.dir={tmp_path / 'run'}"]
    if name.startswith("alfworld"):
        overrides.append(f"env.data_root={ALFWORLD_DATA}")
    if name.startswith("textworld"):
        overrides.append(f"env.games.cache_dir={games_cache()}")
    plan = dry_run(TrainConfig.from_yaml(CONFIGS / name, overrides))
    assert all(plan["tasks"][s] for s in ("train", "test"))
    assert plan["model"].startswith("tiny") and plan["memory"]["total"] < 2 * GIB
    # a CPU run's RAM: the update's estimate plus about 1 GiB the process holds besides (the
    # tiny test config peaked at 1.10 GiB RSS for a 172 MiB estimate)
    assert plan["cpu_ram"] == plan["memory"]["total"] + GIB
    assert "on CPU, the whole process: about" in format_plan(plan)
    assert not (tmp_path / "run").exists()


def test_gradient_checkpointing_lowers_only_the_activation_estimate() -> None:
    on = TrainConfig.from_yaml(CONFIGS / "alfworld_qwen2.5_1.5b.yaml")
    assert on.model.gradient_checkpointing and on.eval.temperature == 0.4
    off = on.replace("model.gradient_checkpointing=false")
    mem_on, mem_off = update_memory(on, QWEN["1.5b"]), update_memory(off, QWEN["1.5b"])
    assert mem_on["activations"] < 0.75 * mem_off["activations"]
    assert {k: v for k, v in mem_on.items() if k not in ("activations", "total")} == {
        k: v for k, v in mem_off.items() if k not in ("activations", "total")
    }


#: What benches/RESULTS.md's recipe B sets on top of textworld_smollm2.yaml (the recipe bench's
#: own keys, seeds, threads and valid games aside).
RECIPE_B = [
    "train.iterations=10",
    "eval.every=0",
    "eval.greedy=false",
    "eval.train_tasks=0",
    "eval.episodes_per_task=4",
    "checkpoint.every=2",
    "update.lr=0.001",
    "update.kl_beta=0",
    "rollout.tasks_per_iteration=2",
    "rollout.group_size=4",
]


def test_the_smollm2_rl_config_is_the_measured_recipe_b() -> None:
    """textworld_smollm2_rl.yaml is the recipe measured in RESULTS (recipe B), no more: the
    zero-shot config with recipe B's overrides and its own run directory."""
    rl = TrainConfig.from_yaml(CONFIGS / "textworld_smollm2_rl.yaml")
    base = TrainConfig.from_yaml(
        CONFIGS / "textworld_smollm2.yaml", [*RECIPE_B, "run.dir=runs/textworld_smollm2_rl"]
    )
    assert rl == base
    assert rl != TrainConfig.from_yaml(CONFIGS / "textworld_smollm2.yaml", [RECIPE_B[0]])
