"""One policy update: PPO-clip + k3 KL over a rollout batch, with micro-batches and AdamW.

For each of ``epochs`` passes the batch (one row per decision step, in a seeded random order when
there is more than one mini-batch or pass) is split into ``minibatches``; each mini-batch is one
optimizer step. A mini-batch is cut into micro-batches of ``micro_batch_size`` rows whose
gradients are accumulated; every micro-batch loss is divided by the number of units in the whole
mini-batch, so the accumulated gradient equals that of the token-mean loss of the mini-batch.
Then the global gradient norm is clipped and AdamW steps.

Within a mini-batch the rows are processed in batch order (episode, then step), whatever the
shuffle that chose them: the steps of one episode then share a micro-batch and the packed forward
pass computes their common prompt prefix once.

Multi-process (``torchrun``): pass the model wrapped in ``DistributedDataParallel``; every rank gets
the same rows and takes a contiguous 1/world of each mini-batch (in batch order), gradients are
all-reduced once per mini-batch (``no_sync`` on the other micro-batches) and each rank's loss is
scaled by the world size, because DDP averages while the token-mean needs the sum over ranks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from slea.algo.loss import ppo_clip_loss
from slea.engine import ActionRecord, Learner
from slea.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class UpdateConfig:
    """PPO-clip + KL update (slea.algo.update)."""

    lr: float = 1e-3
    """AdamW learning rate (the peak, with a schedule)."""
    lr_schedule: str = "constant"
    """constant, linear or cosine: decay from ``lr`` at the first iteration to
    ``lr * lr_final_ratio`` at the end of the run: progress is the iteration's fraction of
    ``train.iterations`` or the env steps' fraction of ``train.max_env_steps``, whichever is
    further along (the run stops at whichever budget is spent first)."""
    lr_final_ratio: float = 0.1
    """Learning rate at the end of a linear or cosine schedule, as a fraction of ``lr``."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.999
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    clip_eps: float = 0.2
    """PPO clip range epsilon."""
    kl_beta: float = 0.01
    """Weight of the k3 KL to the frozen initial policy (0 = no reference model)."""
    epochs: int = 1
    """Passes over each rollout batch."""
    minibatches: int = 1
    """Optimizer steps per pass (the batch is split into this many mini-batches)."""
    micro_batch_size: int = 64
    """Steps per forward/backward (gradients are accumulated over micro-batches)."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, "update.lr", f"must be > 0, got {self.lr}")
        _check(
            self.lr_schedule in LR_SCHEDULES,
            "update.lr_schedule",
            f"must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}",
        )
        _check(0 <= self.lr_final_ratio <= 1, "update.lr_final_ratio", "must be in [0, 1]")
        _check(self.weight_decay >= 0, "update.weight_decay", "must be >= 0")
        _check(
            0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "update.beta1", "betas must be in [0, 1)"
        )
        _check(self.grad_clip >= 0, "update.grad_clip", "must be >= 0")
        _check(0 < self.clip_eps < 1, "update.clip_eps", f"must be in (0, 1), got {self.clip_eps}")
        _check(self.kl_beta >= 0, "update.kl_beta", "must be >= 0")
        _check(self.epochs >= 1, "update.epochs", "must be >= 1")
        _check(self.minibatches >= 1, "update.minibatches", "must be >= 1")
        _check(self.micro_batch_size >= 1, "update.micro_batch_size", "must be >= 1")


@dataclass(frozen=True)
class UpdateStats:
    """What one update did (means over units unless stated)."""

    loss: float
    """Mean loss (policy gradient + beta * KL) per unit."""
    pg_loss: float
    """Mean clipped policy-gradient term."""
    kl: float
    """Mean k3 KL to the reference policy."""
    clip_frac: float
    """Fraction of units whose ratio was clipped."""
    ratio: float
    """Mean probability ratio new/old."""
    approx_kl: float
    """Mean of old_logp - new_logp."""
    grad_norm: float
    """Global gradient norm before clipping (mean over optimizer steps)."""
    units: int
    """Units (log-probs) processed, summed over passes and ranks."""
    optimizer_steps: int
    """Optimizer steps taken."""

    def to_dict(self) -> dict[str, float]:
        """As a plain dict for the metrics."""
        return dict(self.__dict__)


def make_optimizer(params: Sequence[Any], cfg: UpdateConfig) -> torch.optim.Optimizer:
    """AdamW over ``params`` with the config's lr, betas and weight decay."""
    import torch

    params = list(params)
    if not params:
        raise ValueError("no trainable parameters (is everything frozen?)")
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
    )


def scheduled_lr(cfg: UpdateConfig, progress: float) -> float:
    """Learning rate of ``cfg.lr_schedule`` at ``progress`` in [0, 1] (0 = first update)."""
    p = min(max(float(progress), 0.0), 1.0)
    final = cfg.lr * cfg.lr_final_ratio
    if cfg.lr_schedule == "linear":
        return cfg.lr + (final - cfg.lr) * p
    if cfg.lr_schedule == "cosine":
        return final + (cfg.lr - final) * 0.5 * (1.0 + math.cos(math.pi * p))
    return cfg.lr


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _minibatches(n: int, cfg: UpdateConfig, generator: torch.Generator | None) -> list[list[int]]:
    import torch

    out: list[list[int]] = []
    for _ in range(cfg.epochs):
        if cfg.minibatches > 1 or cfg.epochs > 1:
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        size = -(-n // cfg.minibatches)
        # each mini-batch in batch order: consecutive rows are the steps of one episode, whose
        # prompts share a prefix that the packed pass computes once per micro-batch
        out.extend(sorted(order[i : i + size]) for i in range(0, n, size))
    return [mb for mb in out if mb]


def update_policy(
    policy: Learner,
    optimizer: torch.optim.Optimizer,
    records: Sequence[ActionRecord],
    advantages: np.ndarray,
    cfg: UpdateConfig,
    *,
    model: Any = None,
    generator: torch.Generator | None = None,
) -> UpdateStats:
    """Run the PPO update of ``cfg`` on ``records`` (one per step) with per-step ``advantages``.

    Args:
        policy: the policy whose model is updated (its reference model gives the KL term).
        optimizer: e.g. from :func:`make_optimizer` over ``policy.trainable_parameters()``.
        records: token-exact action records from the rollout, one per step.
        advantages: float array ``[len(records)]``; each unit of a record gets its row's value.
        cfg: update hyper-parameters.
        model: the module to run forward/backward through (a DDP wrapper under torchrun);
            defaults to ``policy.model``.
        generator: torch RNG for the mini-batch order (only used with several mini-batches/passes).
    """
    import torch

    adv = np.asarray(advantages, dtype=np.float32)
    if adv.shape != (len(records),):
        raise ValueError(f"advantages must have shape ({len(records)},), got {adv.shape}")
    if not np.isfinite(adv).all():
        raise ValueError("advantages contain NaN or inf")
    rank, world = _world()
    net: Any = policy.model if model is None else model  # a DDP wrapper has no_sync()
    params = policy.trainable_parameters()
    use_kl = cfg.kl_beta > 0
    sums = np.zeros(6)  # loss, pg, kl, clipped, ratio, approx_kl
    units_total = 0
    norms = []
    for mb in _minibatches(len(records), cfg, generator):
        normalizer = float(sum(records[i].num_units for i in mb))
        size = -(-len(mb) // world)  # a contiguous share per rank keeps episodes together
        shard, weight = mb[rank * size : (rank + 1) * size], 1.0
        if not shard:  # fewer rows than ranks: join the all-reduce with a zero-weight row
            shard, weight = mb[:1], 0.0
        optimizer.zero_grad(set_to_none=True)
        chunks = [
            shard[i : i + cfg.micro_batch_size] for i in range(0, len(shard), cfg.micro_batch_size)
        ]
        for c, chunk in enumerate(chunks):
            recs = [records[i] for i in chunk]
            old = torch.tensor([lp for r in recs for lp in r.logprobs])
            a = torch.tensor(np.repeat(adv[chunk], [r.num_units for r in recs]))
            ref = policy.reference_logprobs(recs) if use_kl else None
            sync = c == len(chunks) - 1 or not hasattr(net, "no_sync")
            with contextlib.nullcontext() if sync else net.no_sync():
                logp = policy.unit_logprobs(recs, model=net)
                parts = ppo_clip_loss(
                    logp,
                    old.to(logp.device),
                    a.to(logp.device),
                    normalizer=normalizer,
                    clip_eps=cfg.clip_eps,
                    ref_logp=None if ref is None else ref.to(logp.device),
                    kl_beta=cfg.kl_beta,
                )
                (parts.loss * (weight * world)).backward()
            if weight:
                sums += [
                    float(parts.loss.detach()) * normalizer,
                    parts.pg_sum,
                    parts.kl_sum,
                    parts.clipped,
                    parts.ratio_sum,
                    parts.approx_kl_sum,
                ]
                units_total += parts.units
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in params if p.grad is not None])
            )
        norms.append(float(norm))
        optimizer.step()
    sums, units_total = _all_reduce_sums(sums, units_total, world)
    n = max(units_total, 1)
    return UpdateStats(
        loss=float(sums[0] / n),
        pg_loss=float(sums[1] / n),
        kl=float(sums[2] / n),
        clip_frac=float(sums[3] / n),
        ratio=float(sums[4] / n),
        approx_kl=float(sums[5] / n),
        grad_norm=float(np.mean(norms)) if norms else 0.0,
        units=units_total,
        optimizer_steps=len(norms),
    )


def recompute_old_logprobs(
    learner: Learner, records: Sequence[ActionRecord], *, batch_size: int = 64
) -> tuple[list[ActionRecord], dict[str, float]]:
    """The records with the learner's log-probs as their old log-probs, and the gap to the engine's.

    An engine that samples elsewhere (a generation server: other kernels, batching and dtype)
    reports log-probs that differ from the learner's for the very same weights; the PPO ratio
    must compare the learner with itself, so the old log-probs are recomputed here, without
    gradients, ``batch_size`` records per pass (as verl does). Records without units are kept.

    Returns:
        ``(records, gap)``: new records (the engine's log-probs replaced) and
        ``{"server_logprob_gap_mean", "server_logprob_gap_max"}``, the mean and largest
        ``|engine - learner|`` over the units (nats), plus ``"server_logprob_nonfinite"``, the
        units whose engine log-prob was not finite (left out of the gap).
    """
    import dataclasses

    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = list(records)
    rows = [i for i, r in enumerate(records) if r.num_units]
    gaps: list[float] = []
    nonfinite = 0
    with torch.no_grad():
        for lo in range(0, len(rows), batch_size):
            chunk = rows[lo : lo + batch_size]
            values = learner.unit_logprobs([records[i] for i in chunk]).float().cpu().tolist()
            offset = 0
            for i in chunk:
                n = records[i].num_units
                new = tuple(float(v) for v in values[offset : offset + n])
                offset += n
                for old, now in zip(records[i].logprobs, new, strict=True):
                    if math.isfinite(old):
                        gaps.append(abs(old - now))
                    else:
                        nonfinite += 1
                out[i] = dataclasses.replace(records[i], logprobs=new)
    return out, {
        "server_logprob_gap_mean": float(np.mean(gaps)) if gaps else 0.0,
        "server_logprob_gap_max": float(np.max(gaps)) if gaps else 0.0,
        "server_logprob_nonfinite": float(nonfinite),
    }


def _all_reduce_sums(sums: np.ndarray, units: int, world: int) -> tuple[np.ndarray, int]:
    if world == 1:
        return sums, units
    import torch
    import torch.distributed as dist

    t = torch.tensor([*sums.tolist(), float(units)], dtype=torch.float64)
    dist.all_reduce(t)
    return t[:-1].numpy(), int(t[-1])


__all__ = [
    "LR_SCHEDULES",
    "UpdateConfig",
    "UpdateStats",
    "make_optimizer",
    "recompute_old_logprobs",
    "scheduled_lr",
    "update_policy",
]
