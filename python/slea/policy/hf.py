"""A policy on any Hugging Face causal LM: choice mode and generate mode, with token-exact records.

Two ways to act:

``choice`` (for envs that list admissible actions)
    Every admissible action ``c`` is scored by the **mean** token log-prob of its tokens followed by
    an end-of-action token, given the prompt: ``s(c) = mean_j log p(c_j | prompt, c_<j)``
    (``action_score="sum"``: the summed log-prob). The policy is
    ``pi(c | prompt) = softmax_c(s(c) / T)``; the PPO ratio uses the same ``log pi(c | prompt)``.
    Length normalisation matters for an untrained model: with summed log-probs it picks one-word
    actions almost always. The prompt is encoded once; its cached keys/values are
    expanded to all actions, which are scored in one batched forward pass.

``generate``
    The action text is sampled token by token (``max_new_tokens``, ``temperature``, ``top_p``) and
    parsed by a parser (``tag`` takes the last ``<action>...</action>``, ``last_line``,
    ``first_line``, or any callable ``str -> str | None``); an unparsable response is an invalid
    action. Log-probs are those of the temperature-scaled distribution (top-p only restricts what
    is sampled), as in verl.

:class:`HFPolicy` is both the engine and the learner of :mod:`slea.engine`: it acts with the
weights the update changes, so :meth:`HFPolicy.sync` only records the policy version.

Token-exact records: :class:`~slea.engine.ActionRecord` keeps the prompt ids, the response ids and the old
log-probs from the very forward pass that sampled them; the update recomputes log-probs from those
ids (:meth:`HFPolicy.unit_logprobs`) and never re-tokenises text.

Prompts are rendered with the tokenizer's chat template when it has one (with the assistant
turn opened: ``add_generation_prompt=True``); otherwise with :data:`DEFAULT_CHAT_FORMAT`. The
token contract (what carries the loss, history, long prompts, old log-probs) is docs/TOKENS.md. The model is always kept in eval mode (no dropout), so that the ratio
of an unchanged policy is exactly 1.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slea.engine import MODES, ActionRecord, Learner
from slea.errors import ConfigError
from slea.policy.forward import (
    REDUCTIONS,
    candidate_scores,
    packed_candidate_scores,
    sample_tokens,
    sequence_logprobs,
    update_candidate_scores,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_CHAT_FORMAT = {
    "system": "### System\n{}\n",
    "user": "### User\n{}\n",
    "assistant": "### Assistant\n",
}
"""Rendering used when the tokenizer has no chat template: each message as ``### Role`` then its
text, followed by ``### Assistant`` and a newline, after which the action is scored or generated."""


# --------------------------------------------------------------------------------------------
# parsers (generate mode)

ActionParser = Callable[[str], "str | None"]

_TAG = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)


def parse_tag(text: str) -> str | None:
    """The last ``<action>...</action>`` span, stripped; None when there is none or it is empty."""
    found = _TAG.findall(text)
    if not found:
        return None
    action = found[-1].strip()
    return action or None


def parse_last_line(text: str) -> str | None:
    """The last non-empty line, stripped; None for an empty response."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


def parse_first_line(text: str) -> str | None:
    """The first non-empty line, stripped; None for an empty response."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else None


PARSERS: dict[str, ActionParser] = {
    "tag": parse_tag,
    "last_line": parse_last_line,
    "first_line": parse_first_line,
}


def get_parser(parser: str | ActionParser) -> ActionParser:
    """A parser by name (``tag``, ``last_line``, ``first_line``) or the callable itself."""
    if callable(parser):
        return parser
    try:
        return PARSERS[parser]
    except KeyError:
        raise ConfigError(
            f"policy.parser: unknown parser {parser!r}; choose one of {sorted(PARSERS)}"
        ) from None


# --------------------------------------------------------------------------------------------
# the policy


def _temperature(value: float) -> float:
    """A sampling temperature given per call: a finite number > 0."""
    t = float(value)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"temperature: must be a finite number > 0, got {value!r}")
    return t


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapter settings (peft); the base weights stay frozen."""

    r: int = 8
    """Rank of the adapter matrices."""
    alpha: int = 16
    """Scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the adapter input (kept 0 so that an unchanged policy has ratio 1)."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Names of the linear layers that get adapters."""


_DTYPES = ("float32", "bfloat16", "float16")


class HFPolicy:
    """A transformers causal LM acting in ``choice`` or ``generate`` mode with token-exact records.

    The in-process :class:`~slea.engine.Engine` and :class:`~slea.engine.Learner`.

    Args:
        model: a ``transformers`` causal LM (or a peft model wrapping one).
        tokenizer: its tokenizer; needs a pad token or an eos token (used for padding).
        mode: ``choice`` or ``generate``.
        temperature: softmax temperature over action scores (choice) or over tokens (generate).
        top_p: nucleus sampling in generate mode (1.0 = off).
        max_new_tokens: generate mode: longest response in tokens.
        parser: generate mode: parser name or callable ``str -> str | None``.
        end_of_action: token appended to every action in choice mode and used as a stop token in
            generate mode; default the tokenizer's eos token.
        score_chunk: choice mode: prompts scored per forward pass (bounds memory).
        action_score: choice mode: ``mean`` (length-normalised, the default) or ``sum`` of an
            action's token log-probs (end-of-action token included) as its score.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        mode: str = "choice",
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 32,
        parser: str | ActionParser = "tag",
        end_of_action: str | None = None,
        score_chunk: int = 64,
        action_score: str = "mean",
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"policy.mode: must be one of {MODES}, got {mode!r}")
        if not temperature > 0:
            raise ConfigError(f"policy.temperature: must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ConfigError(f"policy.top_p: must be in (0, 1], got {top_p}")
        if max_new_tokens < 1 or score_chunk < 1:
            raise ConfigError("policy.max_new_tokens and policy.score_chunk must be >= 1")
        if action_score not in REDUCTIONS:
            raise ConfigError(
                f"policy.action_score: must be one of {REDUCTIONS}, got {action_score!r}"
            )
        self.action_score = action_score
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.mode = mode
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.parser = get_parser(parser)
        self.score_chunk = int(score_chunk)
        eoa = end_of_action or tokenizer.eos_token
        if eoa is None:
            raise ConfigError("policy.end_of_action: the tokenizer has no eos token; name one")
        eoa_id = tokenizer.convert_tokens_to_ids(eoa)
        if eoa_id is None or eoa_id == tokenizer.unk_token_id:
            raise ConfigError(f"policy.end_of_action: {eoa!r} is not a token of this tokenizer")
        self.end_of_action_id = int(eoa_id)
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.pad_id = int(pad if pad is not None else self.end_of_action_id)
        self.stop_ids = sorted({self.end_of_action_id} | ({tokenizer.eos_token_id} - {None}))
        self._action_ids: dict[str, tuple[int, ...]] = {}
        self._reference: Any = None
        self._version = 0

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        dtype: str = "float32",
        device: str = "cpu",
        lora: LoraSpec | None = None,
        **kwargs: Any,
    ) -> HFPolicy:
        """Load a local model directory (no hub download) and wrap it; kwargs go to ``__init__``."""
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        p = Path(path)
        if not (p / "config.json").is_file():
            raise ConfigError(
                f"model.path: {str(path)!r} is not a model directory (no config.json); give a local "
                "Hugging Face model directory, or leave model.path empty to build a tiny model offline"
            )
        if dtype not in _DTYPES:
            raise ConfigError(f"model.dtype: must be one of {_DTYPES}, got {dtype!r}")
        tokenizer = load_tokenizer(p)
        model: Any = AutoModelForCausalLM.from_pretrained(
            p, dtype=getattr(torch, dtype), local_files_only=True
        )
        model = model.to(device)
        if lora is not None:
            model = apply_lora(model, lora)
        return cls(model, tokenizer, **kwargs)

    # ---------------------------------------------------------------- prompts
    def encode_prompt(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a chat prompt (``[{"role", "content"}, ...]``) ready for the assistant turn."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
            )
        else:
            text = "".join(DEFAULT_CHAT_FORMAT[m["role"]].format(m["content"]) for m in messages)
            text += DEFAULT_CHAT_FORMAT["assistant"]
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` under the policy tokenizer (no special tokens)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def action_ids(self, action: str) -> tuple[int, ...]:
        """Token ids of an action followed by the end-of-action token (cached)."""
        ids = self._action_ids.get(action)
        if ids is None:
            if len(self._action_ids) > 200_000:
                self._action_ids.clear()
            ids = (*self.tokenizer.encode(action, add_special_tokens=False), self.end_of_action_id)
            self._action_ids[action] = ids
        return ids

    # ---------------------------------------------------------------- acting
    def act(
        self,
        prompts: Sequence[Sequence[int]],
        admissible: Sequence[Sequence[str]] | None = None,
        *,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
    ) -> list[ActionRecord]:
        """One action per prompt (choice mode needs ``admissible``); no gradients.
        ``temperature`` (> 0) replaces ``self.temperature`` for this call."""
        t = self.temperature if temperature is None else _temperature(temperature)
        if self.mode == "choice":
            if admissible is None:
                raise ValueError("choice mode needs the admissible actions of every prompt")
            return self.choose(
                prompts, admissible, greedy=greedy, generator=generator, temperature=t
            )
        return self.generate(prompts, greedy=greedy, generator=generator, temperature=t)

    def choose(
        self,
        prompts: Sequence[Sequence[int]],
        admissible: Sequence[Sequence[str]],
        *,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
    ) -> list[ActionRecord]:
        """Choice mode: sample (or argmax) one admissible action per prompt."""
        import torch

        t = self.temperature if temperature is None else _temperature(temperature)

        if len(prompts) != len(admissible):
            raise ValueError("prompts and admissible differ in length")
        records: list[ActionRecord] = []
        with torch.no_grad():
            for lo in range(0, len(prompts), self.score_chunk):
                ps = prompts[lo : lo + self.score_chunk]
                acts = admissible[lo : lo + self.score_chunk]
                cands = [[self.action_ids(a) for a in row] for row in acts]
                scores = candidate_scores(
                    self.model, ps, cands, self.pad_id, reduce=self.action_score
                )
                offset = 0
                for p, row, cs in zip(ps, acts, cands, strict=True):
                    logp = torch.log_softmax(scores[offset : offset + len(cs)] / t, 0)
                    offset += len(cs)
                    if greedy:
                        k = int(logp.argmax())
                    else:
                        k = int(torch.multinomial(logp.exp(), 1, generator=generator))
                    records.append(
                        ActionRecord(
                            prompt_ids=tuple(p),
                            response_ids=cs[k],
                            logprobs=(float(logp[k]),),
                            candidates=tuple(cs),
                            index=k,
                            text=row[k],
                        )
                    )
        return records

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
    ) -> list[ActionRecord]:
        """Generate mode: sample a response per prompt and parse it into an action."""
        sampled = sample_tokens(
            self.model,
            prompts,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature if temperature is None else _temperature(temperature),
            top_p=self.top_p,
            stop_ids=self.stop_ids,
            pad_id=self.pad_id,
            generator=generator,
            greedy=greedy,
        )
        records = []
        for p, (ids, lps) in zip(prompts, sampled, strict=True):
            raw = self.tokenizer.decode(ids, skip_special_tokens=True)
            action = self.parser(raw)
            records.append(
                ActionRecord(
                    prompt_ids=tuple(p),
                    response_ids=tuple(ids),
                    logprobs=tuple(lps),
                    text=action or "",
                    raw_text=raw,
                    valid=action is not None,
                )
            )
        return records

    @property
    def version(self) -> int:
        """The policy version this engine acts with (set by :meth:`sync`)."""
        return self._version

    def sync(self, learner: Learner, version: int) -> None:
        """Record that the weights are now policy ``version``; ``learner`` must be this policy
        (in process, the update changes the very weights that act)."""
        if learner is not self:
            raise ValueError(
                "learner: an HFPolicy acts with its own weights; sync it with itself "
                "(use a server engine to act with another learner's weights)"
            )
        if version < self._version:
            raise ValueError(f"version: {version} is older than the current {self._version}")
        self._version = int(version)

    # ---------------------------------------------------------------- update side
    def unit_logprobs(self, records: Sequence[ActionRecord], *, model: Any = None) -> torch.Tensor:
        """Recompute the records' log-probs (flat, ``[sum num_units]``) with gradients if enabled.

        ``model`` defaults to the policy's own model; pass the reference model (or a DDP wrapper)
        to score the same records under other weights.
        """
        import torch

        model = self.model if model is None else model
        if not records:
            return torch.zeros(0)
        if records[0].candidates:
            scores = update_candidate_scores(
                model,
                [r.prompt_ids for r in records],
                [r.candidates for r in records],
                self.pad_id,
                reduce=self.action_score,
            )
            out, offset = [], 0
            for r in records:
                n = len(r.candidates)
                out.append(
                    torch.log_softmax(scores[offset : offset + n] / self.temperature, 0)[r.index]
                )
                offset += n
            return torch.stack(out)
        return sequence_logprobs(
            model,
            [r.prompt_ids for r in records],
            [r.response_ids for r in records],
            self.pad_id,
            self.temperature,
        )

    def set_reference(self, model: Any) -> None:
        """Use ``model`` (frozen, eval mode) as the KL reference policy."""
        for p in model.parameters():
            p.requires_grad_(False)
        self._reference = model.eval()

    def reference_logprobs(self, records: Sequence[ActionRecord]) -> torch.Tensor:
        """Log-probs of the records under the reference policy (no gradients).

        The reference is the model given to :meth:`set_reference`, or, for a peft model without
        one, the same model with its adapters disabled.
        """
        import torch

        with torch.no_grad():
            if self._reference is not None:
                return self.unit_logprobs(records, model=self._reference)
            if hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():
                    return self.unit_logprobs(records)
        raise RuntimeError("no reference policy: call set_reference(model) or use a LoRA model")

    def trainable_parameters(self) -> list[Any]:
        """The parameters the optimizer updates (all, or only the adapters with LoRA)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def __repr__(self) -> str:
        name = type(self.model).__name__
        n = sum(p.numel() for p in self.model.parameters())
        return f"HFPolicy({name}, {n / 1e6:.2f}M params, mode={self.mode!r}, T={self.temperature})"


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """Load a local tokenizer exactly as saved.

    A plain ``tokenizers`` tokenizer (``tokenizer_class`` ``TokenizersBackend``, as the tiny models
    save) is loaded as such: ``AutoTokenizer`` would pick the architecture's tokenizer class from
    ``config.json`` and replace its normaliser and pre-tokeniser.
    """
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = Path(path)
    cfg = p / "tokenizer_config.json"
    if cfg.is_file():
        try:
            cls = json.loads(cfg.read_text()).get("tokenizer_class")
        except ValueError:
            cls = None
        if cls in ("TokenizersBackend", "PreTrainedTokenizerFast"):
            return PreTrainedTokenizerFast.from_pretrained(p, local_files_only=True)
    return AutoTokenizer.from_pretrained(p, local_files_only=True)


def enable_gradient_checkpointing(model: Any) -> int:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them
    (less memory for the update, about one more forward of compute); returns how many layers.

    The policy's model stays in eval mode (no dropout: log-probs are exact and equal between
    rollout and update); only the decoder layers' own ``training`` flag is set, which is what
    transformers' checkpoint wrapper reads, and the wrapper only checkpoints when gradients are
    on, so scoring and generation (under ``no_grad``) run as before, KV cache included.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"model.gradient_checkpointing: {type(base).__name__} does not support it; set it false"
        )
    kwargs = {"use_reentrant": False}  # reentrant checkpoints drop LoRA gradients (frozen inputs)
    if hasattr(base, "activation_checkpointing_enable"):
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers before the rename
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    layers = [m for m in base.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.training = True  # this module's flag only: its children stay in eval mode
    return len(layers)


def apply_lora(model: Any, spec: LoraSpec) -> Any:
    """Wrap ``model`` with LoRA adapters (needs peft; the base weights are frozen)."""
    from slea.errors import require

    peft: Any = require("peft", "train", "LoRA")
    config = peft.LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft reads model.is_gradient_checkpointing, which transformers 5 deprecates: not ours
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        return peft.get_peft_model(model, config)


__all__ = [
    "DEFAULT_CHAT_FORMAT",
    "PARSERS",
    "HFPolicy",
    "LoraSpec",
    "apply_lora",
    "candidate_scores",
    "enable_gradient_checkpointing",
    "get_parser",
    "load_tokenizer",
    "packed_candidate_scores",
    "parse_first_line",
    "parse_last_line",
    "parse_tag",
    "sample_tokens",
    "sequence_logprobs",
    "update_candidate_scores",
]
