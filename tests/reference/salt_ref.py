"""Plain-loop reference of the SALT-style estimator (our own definition, see below).

Within a task group, the steps form a graph of transitions state -> action, with state =
(group, key) and action = action_key. Every episode has one outcome: its score, the undiscounted
sum of its rewards (the same score as the episode level uses, before per-row penalties).

For a row in state s taking action a:
    V(s)    = mean outcome of the distinct episodes of the group that visited s,
    Q(s, a) = mean outcome of the distinct episodes of the group that took a in s,
(an episode counts once, however many times it repeats the state or the state-action pair), and
    step_advantage = Q(s, a) - V(s)                                   (mean_norm)
    step_advantage = (Q(s, a) - V(s)) / (std + eps)                   (mean_std_norm)
with std the unbiased (n - 1) standard deviation of the outcomes of the episodes behind V(s), and
1 when only one episode visited s; then an invalid row gets invalid_penalty subtracted (after
normalising, so the penalty keeps its size when all outcomes agree). The episode level, the
returns and the sum are those of gigpo_ref:
    advantage = episode_advantage + step_weight * step_advantage.
"""

import math

from reference.gigpo_ref import episode_rows, gigpo_ref


def salt_ref(group, episode, step, reward, key, invalid, action_key, *, gamma=0.95,
             mode="mean_norm", step_weight=1.0, invalid_penalty=0.1, eps=1e-6):
    n = len(group)
    if invalid is None:
        invalid = [False] * n
    base = gigpo_ref(group, episode, step, reward, key, invalid, estimator="grpo", gamma=gamma,
                     mode=mode, invalid_penalty=invalid_penalty, eps=eps)
    outcome = {}
    for e, rows in episode_rows(episode, step).items():
        total = 0.0
        for r in rows:
            total = total + reward[r]
        outcome[e] = total
    visitors = {}
    takers = {}
    for r in range(n):
        visitors.setdefault((group[r], key[r]), set()).add(episode[r])
        takers.setdefault((group[r], key[r], action_key[r]), set()).add(episode[r])

    def mean(episodes):
        return sum(outcome[e] for e in episodes) / len(episodes)

    step_adv = []
    for r in range(n):
        visited = visitors[(group[r], key[r])]
        took = takers[(group[r], key[r], action_key[r])]
        v = mean(visited)
        diff = mean(took) - v
        if mode == "mean_std_norm":
            if len(visited) > 1:
                squares = sum((outcome[e] - v) * (outcome[e] - v) for e in visited)
                std = math.sqrt(squares / (len(visited) - 1))
            else:
                std = 1.0
            diff = diff / (std + eps)
        penalty = invalid_penalty if invalid[r] else 0.0
        step_adv.append(diff - penalty)
    episode_adv = base["episode_advantage"]
    return {
        "advantage": [episode_adv[r] + step_weight * step_adv[r] for r in range(n)],
        "episode_advantage": episode_adv,
        "step_advantage": step_adv,
        "step_return": base["step_return"],
    }
