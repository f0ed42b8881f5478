"""A policy on any Hugging Face causal LM: choice mode and generate mode, with token-exact records.

Two ways to act:

``choice`` (for envs that list admissible actions)
    Every admissible action ``c`` is scored by the **mean** token log-prob of its tokens followed by
    an end-of-action token, given the prompt: ``s(c) = mean_j log p(c_j | prompt, c_<j)``. The
    policy is ``pi(c | prompt) = softmax_c(s(c) / T)``; the PPO ratio uses the same
    ``log pi(c | prompt)``. Length normalisation matters: with summed log-probs an untrained model
    picks one-word actions almost always. The prompt is encoded once; its cached keys/values are
    expanded to all actions, which are scored in one batched forward pass.

``generate``
    The action text is sampled token by token (``max_new_tokens``, ``temperature``, ``top_p``) and
    parsed by a parser (``tag`` takes the last ``<action>...</action>``, ``last_line``,
    ``first_line``, or any callable ``str -> str | None``); an unparsable response is an invalid
    action. Log-probs are those of the temperature-scaled distribution (top-p only restricts what
    is sampled), as in verl.

Token-exact records: :class:`ActionRecord` keeps the prompt ids, the response ids and the old
log-probs from the very forward pass that sampled them; the update recomputes log-probs from those
ids (:meth:`HFPolicy.unit_logprobs`) and never re-tokenises text.

Prompts are rendered with the tokenizer's chat template when it has one; otherwise with
:data:`DEFAULT_CHAT_FORMAT`. The model is always kept in eval mode (no dropout), so that the ratio
of an unchanged policy is exactly 1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slea.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

MODES = ("choice", "generate")

DEFAULT_CHAT_FORMAT = {
    "system": "### System\n{}\n",
    "user": "### User\n{}\n",
    "assistant": "### Assistant\n",
}
"""Rendering used when the tokenizer has no chat template: each message as ``### Role`` then its
text, followed by ``### Assistant`` and a newline, after which the action is scored or generated."""


# --------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class ActionRecord:
    """What the policy did at one decision step, token-exact.

    Attributes:
        prompt_ids: token ids of the rendered prompt.
        response_ids: choice mode: the chosen action's ids (with the end-of-action token);
            generate mode: the sampled tokens (with the stop token when one was sampled).
        logprobs: the old log-probs (the PPO "units"): choice mode has one, ``log pi(action)``;
            generate mode has one per response token.
        candidates: choice mode: every admissible action's ids (with the end-of-action token).
        index: choice mode: index of the chosen action in ``candidates``; -1 in generate mode.
        text: the action text sent to the environment ("" when invalid in generate mode).
        raw_text: generate mode: the decoded response before parsing.
        valid: False when the parser could not find an action in the response.
    """

    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    candidates: tuple[tuple[int, ...], ...] = ()
    index: int = -1
    text: str = ""
    raw_text: str = ""
    valid: bool = True

    @property
    def num_units(self) -> int:
        """Number of loss units (log-probs) this record contributes to the update."""
        return len(self.logprobs)


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
# batched forward passes (free functions: the maths, shared by rollout and update)


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: Any):  # type: ignore[no-untyped-def]
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in seqs], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def _prompt_pass(model: Any, ids: Any, mask: Any, pos: Any) -> Any:
    """Forward over left-padded prompts, caching keys/values; only the last position's logits
    are computed when the model supports ``logits_to_keep``."""
    try:
        return model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1
        )
    except TypeError:  # a model without logits_to_keep
        return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)


def _packed_candidates(
    candidates: Sequence[Sequence[Sequence[int]]], pad_id: int
) -> tuple[list[list[int]], list[list[int]], list[list[int]], list[list[int]]]:
    """Per prompt, its candidates' input tokens packed in one row (every token but each
    candidate's last), with each position's candidate index (-1 = padding), offset within the
    candidate, and the token it must predict."""
    rows, owner, offset, target = [], [], [], []
    for cands in candidates:
        r, o, f, t = [], [], [], []
        for j, c in enumerate(cands):
            for k in range(len(c) - 1):
                r.append(c[k])
                o.append(j)
                f.append(k)
                t.append(c[k + 1])
        rows.append(r)
        owner.append(o)
        offset.append(f)
        target.append(t)
    width = max((len(r) for r in rows), default=0)
    for r, o, f, t in zip(rows, owner, offset, target, strict=True):
        pad = width - len(r)
        r.extend([pad_id] * pad)
        o.extend([-1] * pad)
        f.extend([0] * pad)
        t.extend([pad_id] * pad)
    return rows, owner, offset, target


def candidate_scores(
    model: Any,
    prompts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
) -> torch.Tensor:
    """Mean token log-prob of every candidate given its prompt; shape ``[sum_i len(candidates[i])]``.

    Two forward passes whatever the number of candidates: one over the left-padded prompts (its
    keys/values are cached), then one over all candidates, packed per prompt into one row that
    attends to that prompt's cached keys/values. A 4D attention mask keeps the candidates of a
    row apart (each token sees the prompt and the earlier tokens of its own candidate) and
    position ids restart after the prompt for every candidate, so each candidate is scored
    exactly as if it alone followed the prompt, without copying the cache per candidate. The
    result keeps the autograd graph when gradients are enabled. Needs an attention
    implementation that takes a 4D mask (``eager`` or ``sdpa``).
    """
    import torch

    if len(prompts) != len(candidates):
        raise ValueError(
            f"prompts and candidates differ in length: {len(prompts)} != {len(candidates)}"
        )
    if any(len(c) < 1 for c in candidates) or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token and at least one candidate")
    if any(len(c) < 1 for cs in candidates for c in cs):
        raise ValueError("every candidate needs at least one token")
    device = next(model.parameters()).device
    ids, mask, pos = _left_pad(prompts, pad_id, device)
    out = _prompt_pass(model, ids, mask, pos)
    first_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [B, V]
    counts = [len(c) for c in candidates]
    flat = [c for cs in candidates for c in cs]
    prompt_of = torch.repeat_interleave(
        torch.arange(len(prompts), device=device), torch.tensor(counts, device=device)
    )
    first = torch.tensor([c[0] for c in flat], device=device)
    sums = first_logp[prompt_of, first]  # log p(c_0 | prompt), [N]
    rows, owner, offset, target = _packed_candidates(candidates, pad_id)
    if rows and rows[0]:
        inp = torch.tensor(rows, device=device)
        own = torch.tensor(owner, device=device)
        off = torch.tensor(offset, device=device)
        valid = own >= 0
        same = (own[:, :, None] == own[:, None, :]) & (off[:, None, :] <= off[:, :, None])
        same &= valid[:, :, None] & valid[:, None, :]
        seen = mask.bool()[:, None, :].expand(-1, inp.shape[1], -1)
        allowed = torch.cat([seen, same], dim=2)[:, None]  # [B, 1, C, P + C]
        dtype = next(model.parameters()).dtype
        mask4d = torch.zeros(allowed.shape, dtype=dtype, device=device)
        mask4d.masked_fill_(~allowed, torch.finfo(dtype).min)
        cout = model(
            input_ids=inp,
            attention_mask=mask4d,
            position_ids=mask.sum(-1, keepdim=True) + off,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        tgt = torch.tensor(target, device=device)
        lp = torch.log_softmax(cout.logits.float(), dim=-1).gather(2, tgt[..., None])[..., 0]
        start = torch.tensor([0, *counts[:-1]], device=device).cumsum(0)  # first flat index per row
        flat_index = (start[:, None] + own.clamp(min=0))[valid]
        sums = sums.index_add(0, flat_index, lp[valid])
    lengths = torch.tensor([len(c) for c in flat], device=device, dtype=sums.dtype)
    return sums / lengths


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _prefix_groups(
    prompts: Sequence[Sequence[int]],
    cand_tokens: Sequence[int],
    min_shared: int,
    max_row_tokens: int,
) -> list[tuple[int, list[int]]]:
    """Group consecutive prompts that share a prefix: ``[(prefix_len, member indices)]``.

    A group's row holds the prefix once, then each member's suffix (at least one token) and its
    packed candidate tokens; a prompt joins the previous group while the shared prefix stays at
    least ``min_shared`` tokens and the row at most ``max_row_tokens``.
    """
    groups: list[tuple[int, list[int]]] = []
    for i, p in enumerate(prompts):
        if groups:
            prefix, members = groups[-1]
            shared = min(prefix, _lcp(prompts[members[0]], p), len(p) - 1)
            row = shared + sum(len(prompts[m]) - shared + cand_tokens[m] for m in [*members, i])
            if shared >= min_shared and row <= max_row_tokens:
                groups[-1] = (shared, [*members, i])
                continue
        groups.append((len(p) - 1, [i]))
    return groups


def packed_candidate_scores(
    model: Any,
    prompts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    *,
    min_shared: int = 16,
    max_row_tokens: int = 1024,
) -> torch.Tensor:
    """:func:`candidate_scores` for many prompts that share prefixes (the steps of an episode).

    Consecutive prompts sharing a prefix are packed into one row: the prefix once, then per
    prompt its suffix and its candidates, with a 4D mask so that every token sees exactly what it
    would see alone after its own prompt, and position ids as if it were alone. One forward pass
    (no cache) scores everything; the shared prefix is computed once per row, which makes the
    update's forward and backward passes several times cheaper. Same values as
    :func:`candidate_scores` up to float rounding.
    """
    import torch

    if len(prompts) != len(candidates):
        raise ValueError("prompts and candidates differ in length")
    if any(len(c) < 1 for c in candidates) or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token and at least one candidate")
    device = next(model.parameters()).device
    cand_tokens = [sum(len(c) - 1 for c in cs) for cs in candidates]
    starts = [0]
    for cs in candidates:
        starts.append(starts[-1] + len(cs))
    tokens: list[list[int]] = []
    member: list[list[int]] = []  # -1 prefix, -2 padding, else prompt index
    cand: list[list[int]] = []  # candidate index within its prompt, -1 for prompt tokens
    pos: list[list[int]] = []
    reads: list[tuple[int, int, int, int]] = []  # (row, position, target token, flat candidate)
    for r, (prefix, members) in enumerate(
        _prefix_groups(prompts, cand_tokens, min_shared, max_row_tokens)
    ):
        first = prompts[members[0]]
        tok, mem, cnd, ps = list(first[:prefix]), [-1] * prefix, [-1] * prefix, list(range(prefix))
        for m in members:
            suffix = prompts[m][prefix:]
            tok += suffix
            mem += [m] * len(suffix)
            cnd += [-1] * len(suffix)
            ps += range(prefix, len(prompts[m]))
            last = len(tok) - 1
            for j, c in enumerate(candidates[m]):
                reads.append((r, last, c[0], starts[m] + j))
                for k in range(len(c) - 1):
                    reads.append((r, len(tok), c[k + 1], starts[m] + j))
                    tok.append(c[k])
                    mem.append(m)
                    cnd.append(j)
                    ps.append(len(prompts[m]) + k)
        tokens.append(tok)
        member.append(mem)
        cand.append(cnd)
        pos.append(ps)
    width = max(len(t) for t in tokens)
    for row_t, row_m, row_c, row_p in zip(tokens, member, cand, pos, strict=True):
        pad = width - len(row_t)
        row_t.extend([pad_id] * pad)
        row_m.extend([-2] * pad)
        row_c.extend([-1] * pad)
        row_p.extend([0] * pad)
    ids = torch.tensor(tokens, device=device)
    mem_t = torch.tensor(member, device=device)
    cnd_t = torch.tensor(cand, device=device)
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    same = (mem_t[:, :, None] == mem_t[:, None, :]) & (
        (cnd_t[:, None, :] == -1) | (cnd_t[:, None, :] == cnd_t[:, :, None])
    )
    allowed = causal[None] & ((mem_t[:, None, :] == -1) | same) & (mem_t[:, None, :] != -2)
    dtype = next(model.parameters()).dtype
    mask4d = torch.zeros((len(tokens), 1, width, width), dtype=dtype, device=device)
    mask4d.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    position_ids = torch.tensor(pos, device=device)
    rows, where, target, flat = (torch.tensor(x, device=device) for x in zip(*reads, strict=True))
    out = model(
        input_ids=ids,
        attention_mask=mask4d,
        position_ids=position_ids,
        output_hidden_states=True,
        logits_to_keep=1,
        use_cache=False,
    )
    head = _unwrap(model).get_output_embeddings()
    hidden = out.hidden_states[-1]
    probe = head(hidden[:, -1])
    if torch.allclose(probe.float(), out.logits[:, -1].float(), atol=1e-4, rtol=1e-4):
        logits = head(hidden[rows, where]).float()  # only the positions that are read
    else:  # an architecture whose last hidden state is not the head's input: all logits
        full = model(
            input_ids=ids, attention_mask=mask4d, position_ids=position_ids, use_cache=False
        ).logits
        logits = full[rows, where].float()
    lp = torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
    total = torch.zeros(starts[-1], dtype=lp.dtype, device=device).index_add(0, flat, lp)
    lengths = torch.tensor([len(c) for cs in candidates for c in cs], device=device)
    return total / lengths.to(total.dtype)


def _unwrap(model: Any) -> Any:
    """The module under a DDP wrapper."""
    return getattr(model, "module", model)


def sequence_logprobs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log-prob of each response token given its prompt and earlier tokens, at ``temperature``.

    Returns a flat tensor of shape ``[sum_i len(responses[i])]`` in row order. One forward pass
    over ``prompt + response`` rows, left-padded.
    """
    import torch

    seqs = [list(p) + list(r) for p, r in zip(prompts, responses, strict=True)]
    device = next(model.parameters()).device
    ids, mask, pos = _left_pad(seqs, pad_id, device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    width = ids.shape[1]
    pieces = []
    for i, r in enumerate(responses):
        if not r:
            continue
        start = width - len(r)
        rows = logits[i, start - 1 : width - 1].float() / temperature
        pieces.append(torch.log_softmax(rows, dim=-1).gather(1, ids[i, start:, None])[:, 0])
    if not pieces:
        return torch.zeros(0, device=device)
    return torch.cat(pieces)


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    import torch

    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    keep = (sorted_p.cumsum(-1) - sorted_p) < top_p
    sorted_p = sorted_p * keep
    out = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return out / out.sum(-1, keepdim=True)


def sample_tokens(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop_ids: Sequence[int],
    pad_id: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
) -> list[tuple[list[int], list[float]]]:
    """Sample up to ``max_new_tokens`` per prompt with a KV cache; finished rows leave the batch.

    Returns, per prompt, the sampled ids (the stop token included when sampled) and their
    log-probs under ``log_softmax(logits / temperature)`` from the same forward pass.
    """
    import torch

    device = next(model.parameters()).device
    ids, mask, pos = _left_pad(prompts, pad_id, device)
    stop = torch.tensor(sorted(set(stop_ids)), device=device)
    out_ids: list[list[int]] = [[] for _ in prompts]
    out_lp: list[list[float]] = [[] for _ in prompts]
    active = torch.arange(len(prompts), device=device)
    with torch.no_grad():
        out = _prompt_pass(model, ids, mask, pos)
        cache, logits = out.past_key_values, out.logits[:, -1]
        next_pos = mask.sum(-1)
        for _ in range(max_new_tokens):
            logp = torch.log_softmax(logits.float() / temperature, dim=-1)
            if greedy:
                tok = logp.argmax(-1)
            else:
                probs = _top_p_filter(logp.exp(), top_p)
                tok = torch.multinomial(probs, 1, generator=generator)[:, 0]
            chosen = logp.gather(1, tok[:, None])[:, 0]
            for row, t, lp in zip(active.tolist(), tok.tolist(), chosen.tolist(), strict=True):
                out_ids[row].append(t)
                out_lp[row].append(lp)
            alive = ~torch.isin(tok, stop)
            if not bool(alive.any()):
                break
            keep = alive.nonzero()[:, 0]
            if len(keep) < len(active):
                cache.batch_select_indices(keep)
                active, tok, mask, next_pos = active[keep], tok[keep], mask[keep], next_pos[keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(
                input_ids=tok[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1]
            next_pos = next_pos + 1
    return list(zip(out_ids, out_lp, strict=True))


# --------------------------------------------------------------------------------------------
# the policy


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
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"policy.mode: must be one of {MODES}, got {mode!r}")
        if not temperature > 0:
            raise ConfigError(f"policy.temperature: must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ConfigError(f"policy.top_p: must be in (0, 1], got {top_p}")
        if max_new_tokens < 1 or score_chunk < 1:
            raise ConfigError("policy.max_new_tokens and policy.score_chunk must be >= 1")
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
    ) -> list[ActionRecord]:
        """One action per prompt (choice mode needs ``admissible``); no gradients."""
        if self.mode == "choice":
            if admissible is None:
                raise ValueError("choice mode needs the admissible actions of every prompt")
            return self.choose(prompts, admissible, greedy=greedy, generator=generator)
        return self.generate(prompts, greedy=greedy, generator=generator)

    def choose(
        self,
        prompts: Sequence[Sequence[int]],
        admissible: Sequence[Sequence[str]],
        *,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> list[ActionRecord]:
        """Choice mode: sample (or argmax) one admissible action per prompt."""
        import torch

        if len(prompts) != len(admissible):
            raise ValueError("prompts and admissible differ in length")
        records: list[ActionRecord] = []
        with torch.no_grad():
            for lo in range(0, len(prompts), self.score_chunk):
                ps = prompts[lo : lo + self.score_chunk]
                acts = admissible[lo : lo + self.score_chunk]
                cands = [[self.action_ids(a) for a in row] for row in acts]
                scores = candidate_scores(self.model, ps, cands, self.pad_id)
                offset = 0
                for p, row, cs in zip(ps, acts, cands, strict=True):
                    logp = torch.log_softmax(
                        scores[offset : offset + len(cs)] / self.temperature, 0
                    )
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
    ) -> list[ActionRecord]:
        """Generate mode: sample a response per prompt and parse it into an action."""
        sampled = sample_tokens(
            self.model,
            prompts,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
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
            scores = packed_candidate_scores(
                model, [r.prompt_ids for r in records], [r.candidates for r in records], self.pad_id
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
    return peft.get_peft_model(model, config)


__all__ = [
    "DEFAULT_CHAT_FORMAT",
    "MODES",
    "PARSERS",
    "ActionRecord",
    "HFPolicy",
    "LoraSpec",
    "apply_lora",
    "candidate_scores",
    "get_parser",
    "load_tokenizer",
    "packed_candidate_scores",
    "parse_first_line",
    "parse_last_line",
    "parse_tag",
    "sample_tokens",
    "sequence_logprobs",
]
