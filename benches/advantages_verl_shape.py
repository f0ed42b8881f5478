"""Our restatement of the *shape* of verl-agent's GiGPO reference code (gigpo/core_gigpo.py), for
timing only: the same algorithmic structure, written by us.

- Discounted returns: for every trajectory uid, ``np.where(traj_uids == uid)`` and a Python loop
  backwards; then, to put returns back in batch order, ``np.where`` again for every row, so
  O(B^2) comparisons on an object array of uuid strings.
- Episode and step normalisation: Python loops over rows that index 0-d torch tensors, collect
  them in dicts of lists, build a tensor per group for torch.mean / torch.std, and write every
  row back with tensor arithmetic.
- Step groups: ``np.where(index == idx)`` per task group, a dict of identical keys, a uuid4 string
  per step group.

Rows must arrive episode-contiguous in step order, as in verl-agent's batches.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

import numpy as np


def _returns(rewards, traj_uids, gamma):
    by_traj = {}
    for uid in np.unique(traj_uids):
        rows = np.where(traj_uids == uid)[0]
        traj_rewards = rewards[rows]
        out = np.zeros_like(traj_rewards)
        running = 0.0
        for t in reversed(range(len(traj_rewards))):
            running = traj_rewards[t] + gamma * running
            out[t] = running
        by_traj[uid] = out
    all_returns = np.zeros_like(rewards)
    for i, uid in enumerate(traj_uids):
        rows = np.where(traj_uids == uid)[0]
        all_returns[i] = by_traj[uid][np.where(rows == i)[0][0]]
    return all_returns


def _norm_rows(torch, scores, index, remove_std, eps, singleton_raw):
    buckets = defaultdict(list)
    for i in range(scores.shape[0]):
        buckets[index[i]].append(scores[i])
    mean, std = {}, {}
    for idx, vals in buckets.items():
        if len(vals) == 1:
            mean[idx] = torch.tensor(0.0) if singleton_raw else torch.mean(torch.tensor(vals))
            std[idx] = torch.tensor(1.0)
        else:
            mean[idx] = torch.mean(torch.tensor(vals))
            std[idx] = torch.std(torch.tensor([vals]))
    for i in range(scores.shape[0]):
        if remove_std:
            scores[i] = scores[i] - mean[index[i]]
        else:
            scores[i] = (scores[i] - mean[index[i]]) / (std[index[i]] + eps)
    return scores


def _step_groups(anchor, index):
    uids = np.empty(len(anchor), dtype=object)
    for idx in np.unique(index):
        rows = np.where(index == idx)[0]
        clusters = defaultdict(list)
        for i, obs in enumerate(anchor[rows]):
            clusters[obs].append(rows[i])
        for members in clusters.values():
            uid = str(uuid.uuid4())
            for r in members:
                uids[r] = uid
    return uids


def gigpo_verl_shape(
    uid,
    traj_uid,
    reward,
    anchor,
    invalid,
    *,
    gamma=0.95,
    mode="mean_norm",
    step_weight=1.0,
    invalid_penalty=0.1,
    eps=1e-6,
    response_length=4,
):
    """GiGPO advantages, verl-agent style. ``uid``/``traj_uid``/``anchor`` are object arrays
    (uuid strings for the ids), ``reward`` float32, ``invalid`` bool. Returns a float32 tensor of
    shape (B, response_length)."""
    import torch

    n = len(uid)
    step_rewards = torch.tensor(_returns(reward, traj_uid, gamma), dtype=torch.float32)
    totals = defaultdict(float)
    for i in range(n):
        totals[traj_uid[i]] += float(reward[i])
    token_rewards = torch.zeros(n, response_length)
    token_rewards[:, -1] = torch.tensor([totals[t] for t in traj_uid], dtype=torch.float32)
    invalid_t = torch.tensor(invalid.astype(np.float32))
    for i in range(n):
        token_rewards[i, -1] -= invalid_penalty * invalid_t[i]
        step_rewards[i] -= invalid_penalty * invalid_t[i]
    mask = torch.ones(n, response_length)
    remove_std = mode == "mean_norm"
    with torch.no_grad():
        scores = _norm_rows(torch, token_rewards.sum(dim=-1), uid, remove_std, eps, True)
        episode_adv = scores.unsqueeze(-1).tile([1, response_length]) * mask
        groups = _step_groups(anchor, uid)
        steps = _norm_rows(torch, step_rewards.clone(), groups, remove_std, eps, False)
        step_adv = steps.unsqueeze(-1).tile([1, response_length]) * mask
    return episode_adv + step_weight * step_adv
