"""Plain-loop reference of the GRPO / GiGPO / SLEA advantages (our own restatement).

It restates, in the simplest loops we could write, the semantics of verl-agent's GiGPO
(``gigpo/core_gigpo.py``: ``compute_step_discounted_returns``, ``episode_norm_reward`` with
``compute_mean_std_cross_steps=True``, ``build_step_group`` with exact keys, ``step_norm_reward``,
``compute_gigpo_outcome_advantage``) together with the trainer's ``apply_invalid_action_penalty``
(the penalty is subtracted from the row's episode score and from its already-discounted return)
and the rollout loop's episode score (the undiscounted sum of the episode's rewards, written on
every step row). The Rust kernel is tested against this file; nothing here is optimised.

Inputs are plain sequences, one entry per row, in any order. Returns a dict of four lists of
floats: advantage, episode_advantage, step_advantage, step_return.
"""

import math


def episode_rows(episode, step):
    """episode id -> its row indices sorted by step."""
    rows_of = {}
    for r in range(len(episode)):
        rows_of.setdefault(episode[r], []).append(r)
    for rows in rows_of.values():
        rows.sort(key=lambda r: step[r])
    return rows_of


def returns_and_scores(episode, step, reward, invalid, gamma, invalid_penalty):
    """Per row: discounted return minus penalty, and episode score minus penalty."""
    n = len(episode)
    step_return = [0.0] * n
    score = [0.0] * n
    for rows in episode_rows(episode, step).values():
        total = 0.0
        for r in rows:
            total = total + reward[r]
        running = 0.0
        for r in reversed(rows):
            running = reward[r] + gamma * running
            penalty = invalid_penalty if invalid[r] else 0.0
            step_return[r] = running - penalty
            score[r] = total - penalty
    return step_return, score


def normalise(values, group_of, singleton_passes_raw, mode, eps):
    """Normalise values[r] within the rows r sharing group_of[r].

    A group of one row: mean 0 and std 1 if singleton_passes_raw (episode level), else mean =
    the value and std 1 (step level, giving 0).
    """
    n = len(values)
    members = {}
    for r in range(n):
        members.setdefault(group_of[r], []).append(values[r])
    stats = {}
    for g, vals in members.items():
        if len(vals) == 1:
            stats[g] = (None, 1.0)
            continue
        total = 0.0
        for v in vals:
            total = total + v
        mean = total / len(vals)
        squares = 0.0
        for v in vals:
            squares = squares + (v - mean) * (v - mean)
        stats[g] = (mean, math.sqrt(squares / (len(vals) - 1)))
    out = []
    for r in range(n):
        mean, std = stats[group_of[r]]
        if mean is None:
            mean = 0.0 if singleton_passes_raw else values[r]
        if mode == "mean_norm":
            out.append(values[r] - mean)
        elif mode == "mean_std_norm":
            out.append((values[r] - mean) / (std + eps))
        else:
            raise ValueError(mode)
    return out


def gigpo_ref(group, episode, step, reward, key, invalid=None, *, estimator="gigpo",
              gamma=0.95, mode="mean_norm", step_weight=1.0, invalid_penalty=0.1, eps=1e-6):
    """Advantages of the estimator grpo, gigpo or slea (slea = gigpo with cluster-id keys)."""
    n = len(group)
    if invalid is None:
        invalid = [False] * n
    step_return, score = returns_and_scores(episode, step, reward, invalid, gamma, invalid_penalty)
    episode_adv = normalise(score, list(group), True, mode, eps)
    if estimator == "grpo":
        step_adv = [0.0] * n
        weight = 0.0
    elif estimator in ("gigpo", "slea"):
        step_groups = [(group[r], key[r]) for r in range(n)]
        step_adv = normalise(step_return, step_groups, False, mode, eps)
        weight = step_weight
    else:
        raise ValueError(estimator)
    advantage = [episode_adv[r] + weight * step_adv[r] for r in range(n)]
    return {
        "advantage": advantage,
        "episode_advantage": episode_adv,
        "step_advantage": step_adv,
        "step_return": step_return,
    }
