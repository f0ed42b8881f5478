"""Multi-turn rollouts: B tasks x G episodes in lock-step over a vector env, with per-step retrieval.

At every step, for every episode still running::

    cluster_id = clusterer.assign(observation)            # and the exact anchor hash (GiGPO key)
    experiences = library.retrieve(cluster_id, observation)   # only when retrieval is active
    prompt = [system(rules + experiences <= budget), user(task + history window + observation)]
    action = policy.act(prompt)                           # token ids and old log-probs kept
    observation, reward, ... = env.step(action)

One batched policy call per step covers all running episodes; finished episodes stop generating.
The same function runs evaluation (``greedy=True`` or sampled), so training and evaluation see
exactly the same prompts.

The vector env follows slea's ``SleaVectorEnv`` contract: no autoreset; ``reset(seed=...,
options={"env_options": [...]})`` sets each env's task; ``step`` ignores envs whose episode ended;
``info`` carries ``task``, ``admissible_actions``, ``won`` and ``invalid_action``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from slea.experience.prompt import Turn, build_prompt
from slea.trajectory import Episode, Step

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from slea.policy.hf import ActionRecord, HFPolicy


@dataclass(frozen=True)
class PromptSettings:
    """How prompts are built during a rollout (see slea.experience.prompt)."""

    rules: str
    """System-message rules."""
    history_window: int = 3
    """Recent turns shown."""
    history_chars: int = 120
    """Characters kept of each past observation."""
    mark_tried: bool = False
    """In the listed actions, mark with ``(tried)`` those this episode already took from the
    same observation cluster (needs ``show_admissible``)."""
    show_admissible: bool = False
    """List the admissible actions in the user message."""
    budget_tokens: int = 200
    """Token budget of the experiences."""
    max_prompt_tokens: int = 768
    """Longest prompt in tokens."""


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to play: its task group and the env's reset options."""

    group: int
    """Task group (the G episodes of one task share it)."""
    options: Mapping[str, Any]
    """Per-env reset options, e.g. ``{"task_id": 3}`` or ``{"game": path}``."""
    task_id: str = ""
    """Name of the task for the records."""


@dataclass
class Rollout:
    """What a rollout collected. Step rows are ordered by episode, then step.

    Attributes:
        episodes: finished episodes (slea.trajectory records, for evolution and reports).
        records: one token-exact action record per step row.
        group, episode, step: int64 columns (task group, episode id, step index).
        reward: float32 column, the env reward of the step.
        cluster: uint64 column, observation cluster of the step.
        anchor: uint64 column, exact structural hash of the observation (GiGPO anchor).
        action_key: uint64 column, hash of the action text (SALT's transition key).
        invalid: bool column, the action was not understood or could not be parsed.
        retrieved: per row, the ids of the experiences shown.
        timing: seconds spent per phase (generation, env, clustering, retrieval, prompt).
        cascade: self-consistency cascade counters (empty when it is off): ``checked`` steps,
            ``skipped`` retrievals (the k samples agreed), ``samples`` drawn, ``sample_prompt_tokens``
            (prompt tokens the k samples cost), ``saved_prompt_tokens`` (estimate of the experience
            tokens not put into prompts: skipped steps x the mean experience tokens of the steps
            that did retrieve).
    """

    episodes: list[Episode]
    records: list[ActionRecord]
    group: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    reward: np.ndarray
    cluster: np.ndarray
    anchor: np.ndarray
    action_key: np.ndarray
    invalid: np.ndarray
    retrieved: list[tuple[int, ...]]
    timing: dict[str, float] = field(default_factory=dict)
    cascade: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def success_rate(self) -> float:
        """Fraction of episodes won."""
        return float(np.mean([e.won for e in self.episodes])) if self.episodes else 0.0

    @property
    def mean_return(self) -> float:
        """Mean total reward per episode."""
        return float(np.mean([e.total_reward for e in self.episodes])) if self.episodes else 0.0

    def stats(self) -> dict[str, float]:
        """Summary numbers for the metrics."""
        n = max(len(self.records), 1)
        return {
            "episodes": len(self.episodes),
            "steps": len(self.records),
            "success": self.success_rate,
            "return": self.mean_return,
            "episode_length": float(np.mean([len(e) for e in self.episodes]))
            if self.episodes
            else 0.0,
            "invalid_fraction": float(self.invalid.sum()) / n,
            "retrieval_fraction": sum(1 for r in self.retrieved if r) / n,
            "experiences_per_step": sum(len(r) for r in self.retrieved) / n,
            **{f"cascade_{k}": v for k, v in self.cascade.items()},
        }


class _Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)

    def add(self, key: str, since: float) -> float:
        now = time.perf_counter()
        self.totals[key] += now - since
        return now


def _unbatch(infos: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """gymnasium's dict-of-arrays infos (with ``_key`` masks) -> one dict per env."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, values in infos.items():
        if key.startswith("_"):
            continue
        if isinstance(values, Mapping):
            for i, d in enumerate(_unbatch(values, n)):
                if d:
                    out[i][key] = d
            continue
        mask = infos.get(f"_{key}")
        for i in range(n):
            if mask is None or bool(mask[i]):
                out[i][key] = values[i]
    return out


class _Cascade:
    """Self-consistency cascade: skip retrieval where the policy is already sure.

    ``check`` samples ``k`` actions per step on the prompt without experiences (one batched
    ``act`` call); the steps whose ``k`` actions all agree keep that prompt and the first sample
    (its record is token-exact for that prompt) and skip retrieval. ``measure`` records how many
    prompt tokens the experiences added where retrieval did happen, to estimate what the skipped
    steps saved.
    """

    def __init__(self) -> None:
        self.checked = self.skipped = self.samples = self.sample_tokens = 0
        self.exp_tokens = self.exp_steps = 0

    def check(
        self,
        policy: HFPolicy,
        plain: Sequence[Any],
        admissible: Sequence[Sequence[str]] | None,
        k: int,
        generator: torch.Generator | None,
    ) -> dict[int, tuple[Any, ActionRecord]]:
        m = len(plain)
        recs = policy.act(
            [p.ids for p in plain] * k,
            list(admissible) * k if admissible is not None else None,
            greedy=False,
            generator=generator,
        )
        self.checked += m
        self.samples += m * k
        self.sample_tokens += k * sum(len(p.ids) for p in plain)
        out = {}
        for j in range(m):
            if len({recs[r * m + j].text for r in range(k)}) == 1:
                out[j] = (plain[j], recs[j])
        self.skipped += len(out)
        return out

    def measure(self, prompts: Sequence[Any], plain: Sequence[Any]) -> None:
        """Prompt-length differences of the steps that retrieved (with vs without experiences)."""
        for p, q in zip(prompts, plain, strict=True):
            self.exp_tokens += max(0, len(p.ids) - len(q.ids))
            self.exp_steps += 1

    def summary(self) -> dict[str, float]:
        mean = self.exp_tokens / self.exp_steps if self.exp_steps else 0.0
        return {
            "checked": float(self.checked),
            "skipped": float(self.skipped),
            "samples": float(self.samples),
            "sample_prompt_tokens": float(self.sample_tokens),
            "saved_prompt_tokens": self.skipped * mean,
        }


def collect(
    policy: HFPolicy,
    venv: Any,
    specs: Sequence[EpisodeSpec],
    *,
    max_steps: int,
    prompt: PromptSettings,
    clusterer: Any,
    anchor_fn: Callable[[str], int],
    action_key_fn: Callable[[str], int],
    retrieve: Callable[[Sequence[int], Sequence[str]], list[list[Any]]] | None = None,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    iteration: int = 0,
    first_episode_id: int = 0,
    seed: int | None = None,
    consistency_k: int = 0,
) -> Rollout:
    """Play ``specs`` (at most ``venv.num_envs`` episodes) in lock-step; return the rollout.

    Args:
        policy: acts on the prompts (choice mode uses the env's admissible actions).
        venv: a slea vector env with at least ``len(specs)`` envs (extra envs stay idle).
        specs: the episodes: task group and reset options of each.
        max_steps: step limit per episode (an episode cut here is marked truncated).
        prompt: prompt layout.
        clusterer: has ``assign_batch(list[str]) -> array of cluster ids``.
        anchor_fn: exact key of an observation (e.g. ``slea.structural_hash``).
        action_key_fn: key of an action text (SALT transitions).
        retrieve: ``(cluster_ids, observations) -> experiences per step``; None = no retrieval.
        generator: torch RNG for action sampling.
        greedy: take the most likely action instead of sampling.
        iteration: recorded in the episodes.
        first_episode_id: id of the first episode; the others follow.
        seed: reset seed of the vector env (env i gets ``seed + i``).
        consistency_k: self-consistency cascade (0 or 1 = off; sampled rollouts only): sample
            ``k`` actions on the prompt without experiences; where all ``k`` agree, take the first
            and skip retrieval for that step; elsewhere retrieve and act as usual.
    """
    n_env = int(venv.num_envs)
    n = len(specs)
    if not 0 < n <= n_env:
        raise ValueError(f"need between 1 and {n_env} episodes for this vector env, got {n}")
    timer = _Timer()
    t = time.perf_counter()
    options = [dict(s.options) for s in specs] + [None] * (n_env - n)
    reset_opts: dict[str, Any] = {"env_options": options}
    if n < n_env:  # envs without an episode stay idle: not reset, not stepped
        reset_opts["reset_mask"] = np.arange(n_env) < n
        venv.set_idle(range(n, n_env))
    obs_t, infos = venv.reset(seed=seed, options=reset_opts)
    info = _unbatch(infos, n_env)
    t = timer.add("env", t)
    obs = [str(o) for o in obs_t]
    tasks = [str(info[i].get("task", "")) for i in range(n)]
    admissible = [list(info[i].get("admissible_actions", ())) for i in range(n)]
    alive = [True] * n
    won = [False] * n
    truncated = [False] * n
    history: list[list[Turn]] = [[] for _ in range(n)]
    tried: list[dict[int, set[str]]] = [{} for _ in range(n)]
    steps: list[list[tuple[Step, ActionRecord]]] = [[] for _ in range(n)]
    choice = policy.mode == "choice"
    cascade = _Cascade()
    for step_index in range(max_steps):
        if choice:  # an episode with no admissible action cannot act: it ends, truncated
            for i in range(n):
                if alive[i] and not admissible[i]:
                    alive[i], truncated[i] = False, True
        active = [i for i in range(n) if alive[i]]
        if not active:
            break
        t = time.perf_counter()
        texts = [obs[i] for i in active]
        clusters = [int(c) for c in clusterer.assign_batch(texts)]
        anchors = [int(anchor_fn(x)) for x in texts]
        t = timer.add("clustering", t)

        def make_prompt(i: int, cluster: int, experiences: Sequence[Any]) -> Any:
            return build_prompt(
                policy.encode_prompt,
                policy.count_tokens,
                rules=prompt.rules,
                experiences=experiences,
                task=tasks[i],
                history=history[i],
                observation=obs[i],
                admissible=_shown_actions(admissible[i], tried[i].get(cluster))
                if prompt.show_admissible
                else None,
                history_window=prompt.history_window,
                history_chars=prompt.history_chars,
                budget_tokens=prompt.budget_tokens,
                max_prompt_tokens=prompt.max_prompt_tokens,
            )

        agreed: dict[int, tuple[Any, ActionRecord]] = {}
        plain: list[Any] = []
        if retrieve is not None and consistency_k > 1 and not greedy:
            plain = [make_prompt(i, clusters[k], ()) for k, i in enumerate(active)]
            adm = [admissible[i] for i in active] if choice else None
            agreed = cascade.check(policy, plain, adm, consistency_k, generator)
            t = timer.add("generation", t)
        ask = [k for k in range(len(active)) if k not in agreed]
        found: list[Sequence[Any]] = [[] for _ in active]
        if retrieve is not None and ask:
            for k, got in zip(
                ask, retrieve([clusters[k] for k in ask], [texts[k] for k in ask]), strict=True
            ):
                found[k] = got
        t = timer.add("retrieval", t)
        prompts = [
            agreed[k][0] if k in agreed else make_prompt(i, clusters[k], found[k])
            for k, i in enumerate(active)
        ]
        if plain:
            used = [k for k in ask if found[k]]
            cascade.measure([prompts[k] for k in used], [plain[k] for k in used])
        t = timer.add("prompt", t)
        acted = (
            policy.act(
                [prompts[k].ids for k in ask],
                [admissible[active[k]] for k in ask] if choice else None,
                greedy=greedy,
                generator=generator,
            )
            if ask
            else []
        )
        by_k = dict(zip(ask, acted, strict=True))
        records = [agreed[k][1] if k in agreed else by_k[k] for k in range(len(active))]
        t = timer.add("generation", t)
        actions = [""] * n_env
        for k, i in enumerate(active):
            actions[i] = records[k].text
        obs_t, rewards, terms, truncs, infos = venv.step(actions)
        info = _unbatch(infos, n_env)
        timer.add("env", t)
        for k, i in enumerate(active):
            rec = records[k]
            inf = info[i]
            invalid = (not rec.valid) or bool(inf.get("invalid_action", False))
            steps[i].append(
                (
                    Step(
                        observation=obs[i],
                        action=rec.text,
                        reward=float(rewards[i]),
                        cluster_id=clusters[k],
                        anchor=anchors[k],
                        invalid=invalid,
                        retrieved=prompts[k].experience_ids,
                        admissible=tuple(admissible[i]),
                    ),
                    rec,
                )
            )
            obs[i] = str(obs_t[i])
            history[i].append(Turn(rec.text, obs[i]))
            if prompt.mark_tried:
                tried[i].setdefault(clusters[k], set()).add(rec.text)
            admissible[i] = list(inf.get("admissible_actions", admissible[i]))
            won[i] = won[i] or bool(inf.get("won", False))
            if bool(terms[i]) or bool(truncs[i]):
                alive[i] = False
                truncated[i] = bool(truncs[i]) or "env_error" in inf
            elif step_index == max_steps - 1:
                alive[i] = False
                truncated[i] = True
    out = _assemble(
        specs, tasks, steps, won, truncated, iteration, first_episode_id, action_key_fn, timer
    )
    if retrieve is not None and consistency_k > 1 and not greedy:
        out.cascade = cascade.summary()
    return out


def _shown_actions(admissible: Sequence[str], tried: set[str] | None) -> Sequence[str]:
    """The actions as listed in the prompt: those in ``tried`` get a ``(tried)`` mark."""
    if not tried:
        return admissible
    return [f"{a} (tried)" if a in tried else a for a in admissible]


def _assemble(
    specs: Sequence[EpisodeSpec],
    tasks: Sequence[str],
    steps: Sequence[Sequence[tuple[Step, ActionRecord]]],
    won: Sequence[bool],
    truncated: Sequence[bool],
    iteration: int,
    first_episode_id: int,
    action_key_fn: Callable[[str], int],
    timer: _Timer,
) -> Rollout:
    episodes, records, retrieved = [], [], []
    cols: dict[str, list[Any]] = defaultdict(list)
    for i, spec in enumerate(specs):
        eid = first_episode_id + i
        episodes.append(
            Episode(
                episode_id=eid,
                group=spec.group,
                task=tasks[i],
                task_id=spec.task_id,
                steps=tuple(s for s, _ in steps[i]),
                won=won[i],
                truncated=truncated[i],
                iteration=iteration,
            )
        )
        for j, (s, rec) in enumerate(steps[i]):
            records.append(rec)
            retrieved.append(s.retrieved)
            cols["group"].append(spec.group)
            cols["episode"].append(eid)
            cols["step"].append(j)
            cols["reward"].append(s.reward)
            cols["cluster"].append(s.cluster_id)
            cols["anchor"].append(s.anchor)
            cols["action_key"].append(action_key_fn(s.action))
            cols["invalid"].append(s.invalid)
    return Rollout(
        episodes=episodes,
        records=records,
        group=np.asarray(cols["group"], dtype=np.int64),
        episode=np.asarray(cols["episode"], dtype=np.int64),
        step=np.asarray(cols["step"], dtype=np.int64),
        reward=np.asarray(cols["reward"], dtype=np.float32),
        cluster=np.asarray(cols["cluster"], dtype=np.uint64),
        anchor=np.asarray(cols["anchor"], dtype=np.uint64),
        action_key=np.asarray(cols["action_key"], dtype=np.uint64),
        invalid=np.asarray(cols["invalid"], dtype=bool),
        retrieved=retrieved,
        timing=dict(timer.totals),
    )


__all__ = ["EpisodeSpec", "PromptSettings", "Rollout", "collect"]
