"""A vectorised NumPy version of the GiGPO advantages (the benchmark's middle reference).

Same semantics as tests/reference/gigpo_ref.py and the Rust kernel, written with array
operations: one lexsort by (episode, step), discounted returns by a backward loop over step
positions (vectorised across episodes, so O(max episode length) NumPy calls), bincount for the
group statistics and np.unique for the (group, key) step groups.
"""

from __future__ import annotations

import numpy as np


def _normalise(values, ids, n_ids, singleton_raw, mode, eps):
    count = np.bincount(ids, minlength=n_ids)
    mean = np.bincount(ids, weights=values, minlength=n_ids) / np.maximum(count, 1)
    std = np.ones(n_ids)
    if mode == "mean_std_norm":
        dev = values - mean[ids]
        m2 = np.bincount(ids, weights=dev * dev, minlength=n_ids)
        many = count > 1
        std[many] = np.sqrt(m2[many] / (count[many] - 1))
    centre = mean[ids]
    single = count[ids] == 1
    centre[single] = 0.0 if singleton_raw else values[single]
    out = values - centre
    if mode == "mean_std_norm":
        out = out / (std[ids] + eps)
    return out


def gigpo_numpy(
    group,
    episode,
    step,
    reward,
    key,
    invalid,
    *,
    estimator="gigpo",
    gamma=0.95,
    mode="mean_norm",
    step_weight=1.0,
    invalid_penalty=0.1,
    eps=1e-6,
):
    """Per-row (advantage, episode_advantage, step_advantage, step_return) as float32 arrays."""
    n = len(group)
    order = np.lexsort((step, episode))
    ep_sorted = episode[order]
    new_ep = np.ones(n, dtype=bool)
    new_ep[1:] = ep_sorted[1:] != ep_sorted[:-1]
    ep_idx = np.cumsum(new_ep) - 1
    starts = np.flatnonzero(new_ep)
    pos = np.arange(n) - starts[ep_idx]
    n_ep = len(starts)
    max_len = int(pos.max()) + 1 if n else 0
    padded = np.zeros((n_ep, max_len + 1))
    padded[ep_idx, pos] = reward[order]
    returns = np.zeros_like(padded)
    for t in range(max_len - 1, -1, -1):
        returns[:, t] = padded[:, t] + gamma * returns[:, t + 1]
    penalty = np.where(invalid, invalid_penalty, 0.0)
    step_return = np.empty(n)
    step_return[order] = returns[ep_idx, pos]
    step_return -= penalty
    ep_total = np.bincount(ep_idx, weights=reward[order], minlength=n_ep)
    score = np.empty(n)
    score[order] = ep_total[ep_idx]
    score -= penalty

    _, gid = np.unique(group, return_inverse=True)
    episode_adv = _normalise(score, gid, int(gid.max()) + 1 if n else 0, True, mode, eps)
    if estimator == "grpo":
        step_adv = np.zeros(n)
        step_weight = 0.0
    else:
        pairs = np.stack([gid.astype(np.uint64), key.astype(np.uint64)], axis=1)
        _, sid = np.unique(pairs, axis=0, return_inverse=True)
        sid = sid.reshape(-1)
        step_adv = _normalise(step_return, sid, int(sid.max()) + 1 if n else 0, False, mode, eps)
    advantage = episode_adv + step_weight * step_adv
    return tuple(x.astype(np.float32) for x in (advantage, episode_adv, step_adv, step_return))
