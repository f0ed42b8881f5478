"""PPO-clip policy loss with a k3 KL penalty to a frozen reference policy, token-mean reduced.

The maths, on flat per-unit tensors (a *unit* is one log-prob the update scores: one response token
in generate mode, one action in choice mode)::

    ratio  = exp(logp - old_logp)
    pg     = max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))
    kl_k3  = exp(ref_logp - logp) - (ref_logp - logp) - 1          # >= 0, unbiased for KL(pi || ref)
    loss   = sum(pg + beta * kl_k3) / normalizer

``normalizer`` is the number of units in the whole mini-batch (over all micro-batches and all
processes), so that accumulating micro-batch gradients gives exactly the gradient of the
token-mean loss of the mini-batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-unit k3 estimator of KL(pi || ref): ``exp(r) - r - 1`` with ``r = ref_logp - logp``."""
    import torch

    r = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(r) - r - 1.0


@dataclass(frozen=True)
class LossParts:
    """The loss of one micro-batch and its diagnostics (sums over units, not yet averaged)."""

    loss: torch.Tensor
    """Scalar to call ``backward()`` on: sum over units divided by the mini-batch normalizer."""
    pg_sum: float
    """Sum of the clipped policy-gradient terms."""
    kl_sum: float
    """Sum of the k3 KL terms (before multiplying by beta)."""
    clipped: int
    """Units whose ratio was clipped (the clipped branch was taken)."""
    ratio_sum: float
    """Sum of the ratios (mean ratio = ratio_sum / units)."""
    approx_kl_sum: float
    """Sum of ``old_logp - logp`` (a KL(old || new) estimate)."""
    units: int
    """Number of units in this micro-batch."""


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    normalizer: float,
    clip_eps: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    kl_beta: float = 0.01,
) -> LossParts:
    """PPO-clip + beta * k3 KL, summed over units and divided by ``normalizer``.

    Args:
        logp: current log-probs, shape ``[n]`` (with gradients).
        old_logp: log-probs of the policy that sampled the units, shape ``[n]``.
        advantages: per-unit advantages, shape ``[n]``.
        normalizer: units in the whole mini-batch (> 0).
        clip_eps: PPO clip range epsilon.
        ref_logp: reference-policy log-probs, shape ``[n]``; None (or ``kl_beta == 0``) drops the KL.
        kl_beta: weight of the KL penalty.
    """
    import torch

    if not normalizer > 0:
        raise ValueError(f"normalizer must be > 0, got {normalizer}")
    if not (logp.shape == old_logp.shape == advantages.shape):
        raise ValueError(
            f"shape mismatch: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
            f"advantages {tuple(advantages.shape)}"
        )
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    pg = torch.maximum(unclipped, clipped)
    total = pg
    kl_sum = 0.0
    if ref_logp is not None and kl_beta > 0:
        kl = k3_kl(logp, ref_logp)
        total = total + kl_beta * kl
        kl_sum = float(kl.detach().sum())
    return LossParts(
        loss=total.sum() / normalizer,
        pg_sum=float(pg.detach().sum()),
        kl_sum=kl_sum,
        clipped=int((clipped > unclipped).sum()),
        ratio_sum=float(ratio.detach().sum()),
        approx_kl_sum=float((-log_ratio).detach().sum()),
        units=int(logp.numel()),
    )


__all__ = ["LossParts", "k3_kl", "ppo_clip_loss"]
