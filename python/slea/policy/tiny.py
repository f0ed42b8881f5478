"""Tiny offline causal LMs for CPU runs: a byte-level BPE tokenizer and a random-initialised model.

Nothing here downloads anything. :func:`build_tiny` trains a byte-level BPE tokenizer on texts you
give it (observations, goals and actions gathered from the environment), builds a small Qwen2- or
Llama-architecture causal LM with random weights, and saves both as an ordinary Hugging Face model
directory, so that :meth:`slea.policy.hf.HFPolicy.from_pretrained` loads it like any other model::

    from slea.policy.tiny import TinyModelSpec, build_tiny
    path = build_tiny(run_dir / "model_init", texts, TinyModelSpec(), seed=0)
    policy = HFPolicy.from_pretrained(path, mode="choice")

The tokenizer has three special tokens: ``<|pad|>`` (padding), ``<|end|>`` (end of an action and
end of sequence) and ``<|sep|>`` (reserved). It lower-cases its input (TextWorld is
case-insensitive) and, being byte-level, never maps a word to an unknown token.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slea.rundir import install_dir, staging_dir

PAD_TOKEN = "<|pad|>"
END_TOKEN = "<|end|>"
SEP_TOKEN = "<|sep|>"
SPECIAL_TOKENS = (PAD_TOKEN, END_TOKEN, SEP_TOKEN)


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny random-initialised causal LM and its tokenizer."""

    arch: str = "qwen2"
    """Architecture: ``qwen2`` or ``llama``."""
    vocab_size: int = 1024
    """Target BPE vocabulary size (special tokens and the 256 byte symbols included)."""
    hidden_size: int = 128
    """Width of the residual stream."""
    intermediate_size: int = 256
    """Width of the MLP."""
    num_layers: int = 2
    """Number of transformer blocks."""
    num_heads: int = 4
    """Attention heads (key/value heads are the same number)."""
    max_positions: int = 1024
    """Longest sequence in tokens (prompt plus action)."""

    def __post_init__(self) -> None:
        if self.arch not in ("qwen2", "llama"):
            raise ValueError(f"arch must be 'qwen2' or 'llama', got {self.arch!r}")
        if self.vocab_size < 300:
            raise ValueError(
                f"vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size}"
            )
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "max_positions",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})"
            )


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):  # type: ignore[no-untyped-def]
    """Train a lower-casing byte-level BPE tokenizer on ``texts``.

    Returns a ``transformers.PreTrainedTokenizerFast`` with ``<|pad|>`` as pad token and
    ``<|end|>`` as eos token. Deterministic for the same texts in the same order.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((t for t in texts if t), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD_TOKEN, eos_token=END_TOKEN, sep_token=SEP_TOKEN
    )


def build_model(spec: TinyModelSpec, vocab_size: int, pad_id: int, eos_id: int, seed: int):  # type: ignore[no-untyped-def]
    """A random-initialised causal LM of the given shape (fp32, sdpa attention, tied embeddings)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    cls: Any = Qwen2ForCausalLM if spec.arch == "qwen2" else LlamaForCausalLM
    config: Any = Qwen2Config(**common) if spec.arch == "qwen2" else LlamaConfig(**common)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the global RNG
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


def build_tiny(
    out_dir: str | os.PathLike[str],
    texts: Iterable[str],
    spec: TinyModelSpec | None = None,
    *,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on ``texts``, build a random model, save both in ``out_dir``; return it.

    The directory is written atomically (a temporary sibling renamed into place), so a crash
    never leaves a half-written model behind. An existing ``out_dir`` is replaced.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    spec = spec or TinyModelSpec()
    out = Path(out_dir)
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    vocab = len(tokenizer)
    model = build_model(spec, vocab, tokenizer.pad_token_id, tokenizer.eos_token_id, seed)
    tmp = staging_dir(out)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        install_dir(tmp, out, replace=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def tiny_policy(
    texts: Iterable[str], spec: TinyModelSpec | None = None, *, seed: int = 0, **kwargs: object
):  # type: ignore[no-untyped-def]
    """An in-memory :class:`~slea.policy.hf.HFPolicy` on a fresh tiny model (nothing saved).

    ``kwargs`` go to ``HFPolicy`` (mode, temperature, ...). Handy for tests and notebooks.
    """
    from slea.policy.hf import HFPolicy

    spec = spec or TinyModelSpec()
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, seed)
    return HFPolicy(model, tokenizer, **kwargs)  # type: ignore[arg-type]


__all__ = [
    "END_TOKEN",
    "PAD_TOKEN",
    "TinyModelSpec",
    "build_model",
    "build_tiny",
    "tiny_policy",
    "train_tokenizer",
]
