"""Batched forward passes of a causal LM, shared by rollouts and updates (the maths of the policy).

- :func:`candidate_scores`: mean (or summed) token log-prob of every candidate action after its prompt; one
  pass over the prompts (cached keys/values), one pass over all candidates packed per prompt.
- :func:`packed_candidate_scores`: the same for many prompts that share prefixes (the steps of
  an episode), packed into rows with a 4D attention mask; one pass.
- :func:`update_candidate_scores`: what the update calls; picks the cheaper of the two above
  from a cost estimate (packing pays when prompts share long prefixes, and costs when they
  do not, e.g. when retrieved experiences in the system message differ from step to step).
- :func:`sequence_logprobs`: per-token log-probs of responses (generate mode).
- :func:`sample_tokens`: KV-cached sampling with per-token log-probs from the same pass.

Every function takes token ids (no text), so what is scored is exactly what was sampled.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: Any):  # type: ignore[no-untyped-def]
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in seqs], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


@functools.cache
def _cache_name() -> str:
    """The name of the key/value cache argument and output field: ``cache`` from transformers
    5.24 on (``past_key_values`` still works there, with a deprecation warning per call)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
    return "cache" if "cache" in fields else "past_key_values"


def _cache_of(out: Any) -> Any:
    """The key/value cache a forward pass returned."""
    return getattr(out, _cache_name())


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
    *,
    reduce: str = "mean",
) -> torch.Tensor:
    """Mean token log-prob of every candidate given its prompt; shape ``[sum_i len(candidates[i])]``.

    ``reduce="sum"`` gives the summed log-prob instead (the candidate's sequence log-prob).

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

    _check_reduce(reduce)
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
            use_cache=True,
            **{_cache_name(): _cache_of(out)},
        )
        tgt = torch.tensor(target, device=device)
        lp = torch.log_softmax(cout.logits.float(), dim=-1).gather(2, tgt[..., None])[..., 0]
        start = torch.tensor([0, *counts[:-1]], device=device).cumsum(0)  # first flat index per row
        flat_index = (start[:, None] + own.clamp(min=0))[valid]
        sums = sums.index_add(0, flat_index, lp[valid])
    if reduce == "sum":
        return sums
    lengths = torch.tensor([len(c) for c in flat], device=device, dtype=sums.dtype)
    return sums / lengths


REDUCTIONS = ("mean", "sum")
"""How a candidate's token log-probs become its score: their mean (length-normalised) or sum."""


def _check_reduce(reduce: str) -> None:
    if reduce not in REDUCTIONS:
        raise ValueError(f"policy.action_score: must be one of {REDUCTIONS}, got {reduce!r}")


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
    reduce: str = "mean",
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

    _check_reduce(reduce)
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
    if reduce == "sum":
        return total
    lengths = torch.tensor([len(c) for cs in candidates for c in cs], device=device)
    return total / lengths.to(total.dtype)


def _attention_pairs(lengths: Sequence[int]) -> int:
    """Query-key pairs of a left-padded batch of rows of these lengths (all padded to the widest)."""
    return len(lengths) * max(lengths, default=0) ** 2


def packing_costs(
    prompts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    hidden_size: int,
    *,
    min_shared: int = 16,
    max_row_tokens: int = 1024,
) -> tuple[float, float]:
    """Estimated work (multiply-adds per layer, up to a constant) of scoring these prompts and
    candidates with :func:`candidate_scores` and with :func:`packed_candidate_scores`.

    Per token the projections and MLP cost about ``10 * hidden^2``; per query-key pair the
    attention costs about ``2 * hidden`` (scores and weighted values), and both passes
    materialise their masks over all pairs of a padded batch. Returns ``(cached, packed)``.
    """
    cand_tokens = [sum(len(c) - 1 for c in cs) for cs in candidates]
    per_token, per_pair = 10.0 * hidden_size**2, 2.0 * hidden_size
    # cached: one padded prompt pass, then one packed-candidates pass attending to the prompts
    prompt_w = max((len(p) for p in prompts), default=0)
    cand_w = max(cand_tokens, default=0)
    cached = per_token * (len(prompts) * prompt_w + len(prompts) * cand_w) + per_pair * (
        _attention_pairs([len(p) for p in prompts]) + len(prompts) * cand_w * (prompt_w + cand_w)
    )
    groups = _prefix_groups(prompts, cand_tokens, min_shared, max_row_tokens)
    rows = [
        prefix + sum(len(prompts[m]) - prefix + cand_tokens[m] for m in members)
        for prefix, members in groups
    ]
    packed = per_token * len(rows) * max(rows, default=0) + per_pair * _attention_pairs(rows)
    return cached, packed


def update_candidate_scores(
    model: Any,
    prompts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    *,
    reduce: str = "mean",
) -> torch.Tensor:
    """Score of every candidate (as :func:`candidate_scores`, ``reduce`` alike), by whichever of
    the cached and the packed pass :func:`packing_costs` estimates to be cheaper; both give the
    same values up to float rounding.

    A ``DistributedDataParallel`` wrapper always gets the packed pass: DDP needs one forward
    call per backward, and every rank must make the same collective calls (each forward
    broadcasts buffers), while the ranks' shards could make different choices. So does a model
    with gradient checkpointing: a checkpointed layer keeps no KV cache for the second pass.
    """
    if _unwrap(model) is not model or _checkpointed(model):
        return packed_candidate_scores(model, prompts, candidates, pad_id, reduce=reduce)
    config = getattr(model, "config", None)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    if hidden > 0 and len(prompts) > 1:
        cached, packed = packing_costs(prompts, candidates, hidden)
        if packed < cached:
            return packed_candidate_scores(model, prompts, candidates, pad_id, reduce=reduce)
    return candidate_scores(model, prompts, candidates, pad_id, reduce=reduce)


def _checkpointed(model: Any) -> bool:
    """Whether a layer of ``model`` recomputes its activations in the backward pass
    (:func:`slea.policy.hf.enable_gradient_checkpointing`)."""
    import torch

    return torch.is_grad_enabled() and any(
        getattr(m, "gradient_checkpointing", False) is True and m.training for m in model.modules()
    )


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
        cache, logits = _cache_of(out), out.logits[:, -1]
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
                use_cache=True,
                **{_cache_name(): cache},
            )
            cache, logits = _cache_of(out), out.logits[:, -1]
            next_pos = next_pos + 1
    return list(zip(out_ids, out_lp, strict=True))


__all__ = [
    "REDUCTIONS",
    "candidate_scores",
    "packed_candidate_scores",
    "sample_tokens",
    "sequence_logprobs",
]
