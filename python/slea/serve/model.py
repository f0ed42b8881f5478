"""The model side of ``slea serve``: a local causal LM, its LoRA adapters, batched sampling.

:class:`ModelServer` holds one base model (a local Hugging Face directory) and the LoRA
adapters loaded at run time (peft), and samples with :func:`slea.policy.forward.sample_tokens`,
the very function :class:`~slea.policy.hf.HFPolicy` samples with, so a server answer and an
in-process answer come from the same maths. Every method that touches the model takes one lock:
an adapter never changes in the middle of a batch. Failures are :class:`ServeError` with the
HTTP status and message the app sends back (vLLM's wording where vLLM has one).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slea.errors import ConfigError, SleaError

GREEDY_BELOW = 1e-5
"""A temperature below this samples greedily (as vLLM does)."""


class ServeError(SleaError):
    """A request the server refuses: ``status`` is the HTTP status, ``kind`` vLLM's error type."""

    def __init__(self, status: int, message: str, kind: str = "BadRequestError", param: str = ""):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


@dataclass(frozen=True)
class Sampling:
    """The settings a batch shares (requests with equal settings are batched together)."""

    model: str
    """Base model name or adapter name."""
    max_tokens: int
    """Longest response in tokens."""
    temperature: float
    """Below :data:`GREEDY_BELOW` (e.g. 0): greedy, log-probs then at temperature 1."""
    top_p: float
    """Nucleus sampling (log-probs stay those of the temperature-scaled distribution)."""
    stop_ids: tuple[int, ...]
    """Tokens that end a response (included in it); the eos token is added unless ignore_eos."""


class ModelServer:
    """A causal LM with run-time LoRA adapters, sampling batches of token-id prompts.

    Args:
        model_dir: local Hugging Face model directory (config.json + weights).
        name: served name of the base model (default: ``model_dir`` as given).
        tokenizer_dir: directory of the tokenizer (default: ``model_dir``).
        dtype: float32, bfloat16 or float16.
        device: torch device.
        max_model_len: longest prompt + response (default: the model's max_position_embeddings).
        max_lora_rank: largest adapter rank accepted (vLLM's ``--max-lora-rank``).
        max_loras: most adapters held at once.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        name: str = "",
        tokenizer_dir: str | os.PathLike[str] | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        max_model_len: int = 0,
        max_lora_rank: int = 16,
        max_loras: int = 4,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        from slea.policy.hf import load_tokenizer

        hf_logging.disable_progress_bar()
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"model: {str(model_dir)!r} is not a model directory (no config.json); give a "
                "local Hugging Face model directory or a run directory"
            )
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"--dtype: must be float32, bfloat16 or float16, got {dtype!r}")
        if max_lora_rank < 1 or max_loras < 1 or max_model_len < 0:
            raise ConfigError("--max-lora-rank and --max-loras must be >= 1, --max-model-len >= 0")
        self.tokenizer = load_tokenizer(tokenizer_dir or path)
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), local_files_only=True
        )
        self.base: Any = loaded.to(device).eval()
        config = self.base.config
        positions = int(getattr(config, "max_position_embeddings", 0) or 0)
        if max_model_len and positions and max_model_len > positions:
            raise ConfigError(
                f"--max-model-len: {max_model_len} is above the model's {positions} positions"
            )
        self.max_model_len = max_model_len or positions or 2048
        self.name = name or str(model_dir)
        self.root = str(path)
        self.vocab_size = int(self.base.get_input_embeddings().weight.shape[0])
        eos = (
            config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        )
        self.eos_ids = tuple(sorted({int(x) for x in (eos if isinstance(eos, list) else [eos])}))
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_ids[0] if self.eos_ids else 0)
        self.max_lora_rank, self.max_loras = max_lora_rank, max_loras
        self.adapters: dict[str, str] = {}  # name -> path
        self._peft: Any = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- models
    def models(self) -> list[dict[str, Any]]:
        """The model cards of ``GET /v1/models``: the base model, then the adapters."""
        base = {
            "id": self.name,
            "root": self.root,
            "parent": None,
            "max_model_len": self.max_model_len,
        }
        cards = [base] + [
            {"id": n, "root": p, "parent": self.name, "max_model_len": self.max_model_len}
            for n, p in self.adapters.items()
        ]
        return [{"object": "model", "owned_by": "slea", "permission": [], **c} for c in cards]

    def check_model(self, name: str | None) -> str:
        """The model a request names (None = the base model); 404 for one not served."""
        if name is None or name == self.name:
            return self.name
        if name not in self.adapters:
            raise ServeError(404, f"The model `{name}` does not exist.", "NotFoundError", "model")
        return name

    # ---------------------------------------------------------------- adapters
    def load_adapter(self, name: str, path: str, *, inplace: bool = False) -> None:
        """Load the LoRA adapter at ``path`` as ``name`` (checked first; changes nothing on error)."""
        if not name or not path:
            raise ServeError(400, "Both 'lora_name' and 'lora_path' must be provided.")
        if name == self.name:
            raise ServeError(400, f"'{name}' is the base model's name; choose another lora_name.")
        with self._lock:
            if name in self.adapters and not inplace:
                raise ServeError(
                    400,
                    f"The lora adapter '{name}' has already been loaded. If you want to load the "
                    "adapter in place, set 'load_inplace' to True.",
                )
            self._check_adapter(name, path)
            if name not in self.adapters and len(self.adapters) >= self.max_loras:
                raise ServeError(
                    400,
                    f"Loading lora {name} failed: {len(self.adapters)} adapters are loaded "
                    f"(--max-loras {self.max_loras}); unload one first.",
                )
            if name in self.adapters:
                self._delete(name)
                del self.adapters[name]
            try:
                self._attach(name, path)
            except (ValueError, KeyError, RuntimeError, OSError) as exc:
                raise ServeError(400, f"Loading lora {name} failed: {exc}") from None
            self.adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        """Unload adapter ``name``; 404 when it is not loaded."""
        if not name:
            raise ServeError(400, "'lora_name' needs to be provided to unload a LoRA adapter.")
        with self._lock:
            if name not in self.adapters:
                raise ServeError(
                    404, f"The lora adapter '{name}' cannot be found.", "NotFoundError", "lora_name"
                )
            self._delete(name)
            del self.adapters[name]

    def _check_adapter(self, name: str, path: str) -> None:
        """What vLLM refuses too: no adapter at ``path``, not LoRA, rank above the limit,
        DoRA, ``modules_to_save``, bias terms."""
        cfg_path = Path(path) / "adapter_config.json"
        if not cfg_path.is_file():
            raise ServeError(
                404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError"
            )
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as exc:
            raise ServeError(400, f"Loading lora {name} failed: {exc}") from None
        if not isinstance(cfg, dict) or str(cfg.get("peft_type", "")).upper() != "LORA":
            raise ServeError(400, f"Loading lora {name} failed: not a LoRA adapter ({cfg_path}).")
        rank = cfg.get("r")
        if not isinstance(rank, int) or not 1 <= rank <= self.max_lora_rank:
            raise ServeError(
                400, f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}."
            )
        for key in ("use_dora", "modules_to_save", "lora_bias"):
            if cfg.get(key):
                raise ServeError(400, f"Loading lora {name} failed: {key} is not supported.")
        if cfg.get("bias", "none") != "none":
            raise ServeError(
                400, f"Loading lora {name} failed: bias={cfg['bias']!r} is not supported."
            )

    def _attach(self, name: str, path: str) -> None:
        from peft import PeftModel

        with warnings.catch_warnings():  # peft reads a property transformers 5 deprecates
            warnings.filterwarnings("ignore", category=FutureWarning)
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(
                    self.base, path, adapter_name=name, is_trainable=False
                ).eval()
            else:
                self._peft.load_adapter(path, adapter_name=name, is_trainable=False)

    def _delete(self, name: str) -> None:
        if len(self.adapters) == 1:  # the last one: back to the plain base model
            self.base = self._peft.unload().eval()
            self._peft = None
        else:
            if self._peft.active_adapter == name:
                self._peft.set_adapter(next(n for n in self.adapters if n != name))
            self._peft.delete_adapter(name)

    # ---------------------------------------------------------------- sampling
    def check_prompt(self, prompt: Sequence[int], max_tokens: int) -> None:
        """400 for an empty prompt, an id outside the vocabulary, or one too long for the context."""
        if not prompt:
            raise ServeError(400, "The prompt is empty.", param="prompt")
        bad = next((t for t in prompt if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise ServeError(400, f"Token id {bad} is out of vocabulary.", param="prompt")
        if len(prompt) + max_tokens > self.max_model_len:
            raise ServeError(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"you requested {len(prompt) + max_tokens} tokens ({len(prompt)} in the prompt, "
                f"{max_tokens} in the completion). Please reduce the length of the prompt or "
                "completion.",
                param="prompt",
            )

    def generate(
        self, sampling: Sampling, prompts: Sequence[Sequence[int]], seeds: Sequence[int | None]
    ) -> list[tuple[list[int], list[float]]]:
        """Sample one response per prompt: ``(token ids, log-probs)`` each, stop token included.

        One generator serves the batch: seeded with the request's seed alone for a batch of one
        (as vLLM seeds each request), with a hash of all the seeds for a larger batch, unseeded
        when no request gave one.
        """
        import torch

        from slea.policy.forward import sample_tokens

        given = [s for s in seeds if s is not None]
        generator = None
        if given:
            seed = given[0] % 2**63 if len(seeds) == 1 else _mix(given)
            generator = torch.Generator(device=self.base.device).manual_seed(seed)
        greedy = sampling.temperature < GREEDY_BELOW
        with self._lock:
            model = self._peft if self._peft is not None else self.base
            kwargs = dict(
                max_new_tokens=sampling.max_tokens,
                temperature=1.0 if greedy else sampling.temperature,
                top_p=sampling.top_p,
                stop_ids=sampling.stop_ids,
                pad_id=self.pad_id,
                generator=generator,
                greedy=greedy,
            )
            if sampling.model == self.name and self._peft is not None:
                with self._peft.disable_adapter():
                    return sample_tokens(model, prompts, **kwargs)  # type: ignore[arg-type]
            if sampling.model != self.name:
                if sampling.model not in self.adapters:  # unloaded while the request waited
                    raise ServeError(
                        404,
                        f"The model `{sampling.model}` does not exist.",
                        "NotFoundError",
                        "model",
                    )
                self._peft.set_adapter(sampling.model)
            return sample_tokens(model, prompts, **kwargs)  # type: ignore[arg-type]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def __repr__(self) -> str:
        return f"ModelServer({self.name!r}, max_model_len={self.max_model_len}, adapters={list(self.adapters)})"


def _mix(seeds: Sequence[int]) -> int:
    digest = hashlib.sha256(",".join(map(str, seeds)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


__all__ = ["GREEDY_BELOW", "ModelServer", "Sampling", "ServeError"]
