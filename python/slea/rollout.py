"""Multi-turn rollouts: B tasks x G episodes in lock-step over a vector env, with per-step retrieval.

At every step, for every episode still running::

    cluster_id = clusterer.assign(observation)            # and the exact anchor hash (GiGPO key)
    experiences = library.retrieve(cluster_id, observation)   # only when retrieval is active
    prompt = [system(rules + experiences <= budget), user(task + history window + observation)]
    action = policy.act(prompt)                           # token ids and old log-probs kept
    observation, reward, ... = env.step(action)

One batched engine call per step covers all running episodes; finished episodes stop acting.
The same function runs evaluation (``greedy=True`` or sampled), so training and evaluation see
exactly the same prompts. The policy is any :class:`slea.engine.Engine`.

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

from slea.algo.advantages import StepBatch
from slea.engine import ActionRecord, Engine
from slea.envs.vector import unbatch_infos
from slea.experience.prompt import Prompt, Turn, build_prompt
from slea.trajectory import Episode, Step

if TYPE_CHECKING:  # pragma: no cover
    from slea.clustering import ObservationClusterer
    from slea.envs.vector import SleaVectorEnv

Retrieve = Callable[[Sequence[int], Sequence[str]], Sequence[Sequence[Any]]]
"""``(cluster_ids, observations) -> experiences per step`` (e.g. ``library.retrieve_batch``)."""


@dataclass(frozen=True)
class PromptSettings:
    """How prompts are built during a rollout (see slea.experience.prompt)."""

    rules: str
    """System-message rules."""
    history_window: int = 3
    """Recent turns shown."""
    history_chars: int = 120
    """Characters kept of each past observation."""
    show_admissible: bool = False
    """List the admissible actions in the user message."""
    budget_tokens: int = 200
    """Token budget of the experiences."""
    max_prompt_tokens: int = 768
    """Longest prompt in tokens."""
    history_format: str = "lines"
    """Past turns in the user message (lines) or as chat turns (chat); see slea.experience.prompt."""
    example: tuple[str, ...] = ()
    """A worked exchange (user, assistant, ...) placed after the system message."""


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
        episodes: finished episodes (slea.trajectory records, for evolution and reports); an
            episode cut short by a failure (dead env worker, engine error) carries ``error``.
        records: one token-exact action record per step row.
        group, episode, step: int64 columns (task group, episode id, step index).
        reward: float32 column, the env reward of the step.
        cluster: uint64 column, observation cluster of the step.
        anchor: uint64 column, exact structural hash of the observation (GiGPO anchor).
        action_key: uint64 column, hash of the action text (SALT's transition key).
        invalid: bool column, the action was not understood or could not be parsed.
        retrieved: per row, the ids of the experiences shown.
        timing: seconds spent per phase (generation, env, clustering, retrieval, prompt).
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

    def step_batch(self, key: str = "cluster") -> StepBatch:
        """The step rows as the advantage estimators take them, grouped by ``key``: ``cluster``
        (observation clusters, SLEA's step groups) or ``anchor`` (exact states, GiGPO's)."""
        if key not in ("cluster", "anchor"):
            raise ValueError(f"key must be 'cluster' or 'anchor', got {key!r}")
        return StepBatch(
            self.group,
            self.episode,
            self.step,
            self.reward,
            self.cluster if key == "cluster" else self.anchor,
            invalid=self.invalid,
            action_key=self.action_key,
        )

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
            "failed_episodes": sum(1 for e in self.episodes if e.error),
            "retrieval_fraction": sum(1 for r in self.retrieved if r) / n,
            "experiences_per_step": sum(len(r) for r in self.retrieved) / n,
        }


class _Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)

    def add(self, key: str, since: float) -> float:
        now = time.perf_counter()
        self.totals[key] += now - since
        return now


@dataclass
class _Episodes:
    """What a rollout tracks per episode while the episodes run (index ``i`` = episode ``i``)."""

    observation: list[str]
    task: list[str]
    admissible: list[list[str]]
    alive: list[bool]
    won: list[bool]
    truncated: list[bool]
    error: list[str]
    history: list[list[Turn]]
    steps: list[list[tuple[Step, ActionRecord]]]
    fixed: dict[int, Sequence[Any]] = field(default_factory=dict)
    """Task-level retrieval: the experiences retrieved at each episode's first step."""

    @classmethod
    def start(cls, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]) -> _Episodes:
        n = len(observations)
        return cls(
            observation=list(observations),
            task=[str(info.get("task", "")) for info in infos],
            admissible=[list(info.get("admissible_actions", ())) for info in infos],
            alive=[True] * n,
            won=[False] * n,
            truncated=[False] * n,
            error=[""] * n,
            history=[[] for _ in range(n)],
            steps=[[] for _ in range(n)],
        )

    def active(self, choice: bool) -> list[int]:
        """Episodes still running; in choice mode one with no admissible action ends, truncated."""
        if choice:
            for i, alive in enumerate(self.alive):
                if alive and not self.admissible[i]:
                    self.alive[i], self.truncated[i] = False, True
        return [i for i, alive in enumerate(self.alive) if alive]


def collect(
    engine: Engine,
    venv: SleaVectorEnv,
    specs: Sequence[EpisodeSpec],
    *,
    max_steps: int,
    prompt: PromptSettings,
    clusterer: ObservationClusterer,
    anchor_fn: Callable[[str], int],
    action_key_fn: Callable[[str], int],
    retrieve: Retrieve | None = None,
    retrieve_once: bool = False,
    generator: Any = None,
    greedy: bool = False,
    temperature: float | None = None,
    iteration: int = 0,
    first_episode_id: int = 0,
    seed: int | None = None,
) -> Rollout:
    """Play ``specs`` (at most ``venv.num_envs`` episodes) in lock-step; return the rollout.

    Every step has five phases, timed separately: observe (cluster ids and exact anchors),
    retrieve (experiences per cluster), prompt (render within the budgets), act (one batched
    engine call for all running episodes) and env (one vector-env step).

    Args:
        engine: acts on the prompts (choice mode uses the env's admissible actions).
        venv: a slea vector env with at least ``len(specs)`` envs (extra envs stay idle).
        specs: the episodes: task group and reset options of each.
        max_steps: step limit per episode (an episode cut here is marked truncated).
        prompt: prompt layout.
        clusterer: assigns observation cluster ids (``assign_batch``).
        anchor_fn: exact key of an observation (e.g. ``slea.structural_hash``).
        action_key_fn: key of an action text (SALT transitions).
        retrieve: experiences per step from cluster ids and observations; None = no retrieval.
        retrieve_once: retrieve once per episode, from its first observation, and show those
            experiences at every step (task-level retrieval) instead of at every step.
        generator: the engine's random source (a ``torch.Generator`` in process).
        greedy: take the most likely action instead of sampling.
        temperature: sample at this temperature instead of the engine's own (None = its own).
        iteration: recorded in the episodes.
        first_episode_id: id of the first episode; the others follow.
        seed: reset seed of the vector env (env i gets ``seed + i``).
    """
    # an engine written before act() took a temperature still works where none is asked for
    sampling = {} if temperature is None else {"temperature": temperature}
    n_env = int(venv.num_envs)
    if not 0 < len(specs) <= n_env:
        raise ValueError(
            f"need between 1 and {n_env} episodes for this vector env, got {len(specs)}"
        )
    timer = _Timer()
    t = time.perf_counter()
    state = _reset(venv, specs, seed)
    timer.add("env", t)
    choice = engine.mode == "choice"
    for step_index in range(max_steps):
        active = state.active(choice)
        if not active:
            break
        # observe: cluster ids (retrieval, SLEA step groups) and exact anchors (GiGPO)
        t = time.perf_counter()
        texts = [state.observation[i] for i in active]
        clusters = [int(c) for c in clusterer.assign_batch(texts)]
        anchors = [int(anchor_fn(x)) for x in texts]
        t = timer.add("clustering", t)
        # retrieve: the experiences of each step's cluster
        found = _retrieved(retrieve, retrieve_once, state, active, clusters, texts)
        t = timer.add("retrieval", t)
        # prompt: rules + experiences, task, history window, observation
        prompts = [_prompt(engine, state, i, found[k], prompt) for k, i in enumerate(active)]
        t = timer.add("prompt", t)
        # act: one batched engine call
        records = engine.act(
            [p.ids for p in prompts],
            [state.admissible[i] for i in active] if choice else None,
            greedy=greedy,
            generator=generator,
            **sampling,
        )
        t = timer.add("generation", t)
        # an engine that could not act ends those episodes here (truncated, marked)
        active, records, prompts, clusters, anchors = _drop_failed(
            state, active, records, prompts, clusters, anchors
        )
        # env: one vector step; the step limit ends what is still running
        if active:
            _step_envs(venv, state, active, records, prompts, clusters, anchors)
        if step_index == max_steps - 1:
            for i in active:
                if state.alive[i]:
                    state.alive[i], state.truncated[i] = False, True
        timer.add("env", t)
    return _assemble(specs, state, iteration, first_episode_id, action_key_fn, timer)


def _retrieved(
    retrieve: Retrieve | None,
    once: bool,
    state: _Episodes,
    active: list[int],
    clusters: list[int],
    texts: list[str],
) -> Sequence[Sequence[Any]]:
    """The experiences of each active episode's step: retrieved now (step level), or retrieved at
    the episode's first step and kept (task level)."""
    if retrieve is None:
        return [()] * len(active)
    if not once:
        return retrieve(clusters, texts)
    new = [k for k, i in enumerate(active) if i not in state.fixed]
    if new:
        got = retrieve([clusters[k] for k in new], [texts[k] for k in new])
        for k, experiences in zip(new, got, strict=True):
            state.fixed[active[k]] = experiences
    return [state.fixed[i] for i in active]


def _reset(venv: SleaVectorEnv, specs: Sequence[EpisodeSpec], seed: int | None) -> _Episodes:
    """Reset the first ``len(specs)`` envs with the episodes' options; the rest stay idle."""
    n_env, n = int(venv.num_envs), len(specs)
    options = [dict(s.options) for s in specs] + [None] * (n_env - n)
    reset_opts: dict[str, Any] = {"env_options": options}
    if n < n_env:  # envs without an episode stay idle: not reset, not stepped
        reset_opts["reset_mask"] = np.arange(n_env) < n
        venv.set_idle(range(n, n_env))
    obs, infos = venv.reset(seed=seed, options=reset_opts)
    info = unbatch_infos(infos, n_env)
    return _Episodes.start([str(o) for o in obs[:n]], info[:n])


def _prompt(
    engine: Engine, state: _Episodes, i: int, experiences: Sequence[Any], settings: PromptSettings
) -> Prompt:
    """Episode ``i``'s prompt within the experience and prompt token budgets."""
    return build_prompt(
        engine.encode_prompt,
        engine.count_tokens,
        rules=settings.rules,
        experiences=experiences,
        task=state.task[i],
        history=state.history[i],
        observation=state.observation[i],
        admissible=state.admissible[i] if settings.show_admissible else None,
        history_window=settings.history_window,
        history_chars=settings.history_chars,
        budget_tokens=settings.budget_tokens,
        max_prompt_tokens=settings.max_prompt_tokens,
        history_format=settings.history_format,
        example=settings.example,
    )


def _drop_failed(
    state: _Episodes,
    active: list[int],
    records: Sequence[ActionRecord],
    prompts: Sequence[Prompt],
    clusters: Sequence[int],
    anchors: Sequence[int],
) -> tuple[list[int], list[ActionRecord], list[Prompt], list[int], list[int]]:
    """End the episodes whose record carries an engine error (truncated, with the error kept on
    the episode) and return the columns of the others; no step is recorded for a failed act."""
    keep = [k for k, rec in enumerate(records) if not rec.error]
    for k, rec in enumerate(records):
        if rec.error:
            i = active[k]
            state.alive[i], state.truncated[i], state.error[i] = False, True, rec.error
    return (
        [active[k] for k in keep],
        [records[k] for k in keep],
        [prompts[k] for k in keep],
        [clusters[k] for k in keep],
        [anchors[k] for k in keep],
    )


def _step_envs(
    venv: SleaVectorEnv,
    state: _Episodes,
    active: Sequence[int],
    records: Sequence[ActionRecord],
    prompts: Sequence[Prompt],
    clusters: Sequence[int],
    anchors: Sequence[int],
) -> None:
    """Send the running episodes' actions to the envs and record each step."""
    n_env = int(venv.num_envs)
    actions = [""] * n_env
    for k, i in enumerate(active):
        actions[i] = records[k].text
    obs, rewards, terms, truncs, infos = venv.step(actions)
    info = unbatch_infos(infos, n_env)
    for k, i in enumerate(active):
        rec, inf = records[k], info[i]
        step = Step(
            observation=state.observation[i],
            action=rec.text,
            reward=float(rewards[i]),
            cluster_id=clusters[k],
            anchor=anchors[k],
            invalid=(not rec.valid) or bool(inf.get("invalid_action", False)),
            retrieved=prompts[k].experience_ids,
            admissible=tuple(state.admissible[i]),
        )
        state.steps[i].append((step, rec))
        state.observation[i] = str(obs[i])
        state.history[i].append(Turn(rec.text, state.observation[i]))
        state.admissible[i] = list(inf.get("admissible_actions", state.admissible[i]))
        state.won[i] = state.won[i] or bool(inf.get("won", False))
        if bool(terms[i]) or bool(truncs[i]):
            state.alive[i] = False
            state.truncated[i] = bool(truncs[i]) or "env_error" in inf
            state.error[i] = str(inf.get("env_error", ""))


def _assemble(
    specs: Sequence[EpisodeSpec],
    state: _Episodes,
    iteration: int,
    first_episode_id: int,
    action_key_fn: Callable[[str], int],
    timer: _Timer,
) -> Rollout:
    """The finished episodes and the columnar step rows, ordered by episode then step."""
    episodes, records, retrieved = [], [], []
    cols: dict[str, list[Any]] = defaultdict(list)
    for i, spec in enumerate(specs):
        eid = first_episode_id + i
        episodes.append(
            Episode(
                episode_id=eid,
                group=spec.group,
                task=state.task[i],
                task_id=spec.task_id,
                steps=tuple(s for s, _ in state.steps[i]),
                won=state.won[i],
                truncated=state.truncated[i],
                iteration=iteration,
                error=state.error[i],
            )
        )
        for j, (s, rec) in enumerate(state.steps[i]):
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
