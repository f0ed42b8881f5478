"""Plain records of what happened in an episode, shared by rollouts, evolution and reports.

These carry no tensors: token-level records for the policy update live in the rollout module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One decision step of an episode.

    Attributes:
        observation: the env observation the agent saw at this step (raw text, not the prompt).
        action: the action text sent to the env.
        reward: the env reward received after the action.
        cluster_id: observation cluster of ``observation`` (uint64 as int).
        anchor: exact-match anchor hash of the observation (GiGPO grouping key, uint64 as int).
        invalid: the env did not understand or accept the action.
        retrieved: ids of the experiences shown in the system message at this step.
        admissible: the admissible actions offered at this step (empty when the env gives none).
    """

    observation: str
    action: str
    reward: float
    cluster_id: int = 0
    anchor: int = 0
    invalid: bool = False
    retrieved: tuple[int, ...] = ()
    admissible: tuple[str, ...] = ()


@dataclass(frozen=True)
class Episode:
    """One finished episode.

    Attributes:
        episode_id: unique id within the run.
        group: id of the task group (the G rollouts of one task) within the batch.
        task: the goal text shown to the agent.
        task_id: identifier of the task (e.g. a game file name).
        steps: the steps in order.
        won: the env reported success.
        truncated: the episode ended by the step limit or an env error.
        iteration: training iteration that produced it.
        error: why the episode was cut short by a failure, not by the game (a dead env worker,
            a generation server that stayed unreachable); empty otherwise. Such an episode is
            also ``truncated``; the trainer keeps it out of the library's evolution.
    """

    episode_id: int
    group: int
    task: str
    task_id: str
    steps: Sequence[Step] = field(default_factory=tuple)
    won: bool = False
    truncated: bool = False
    iteration: int = 0
    error: str = ""

    @property
    def total_reward(self) -> float:
        """Sum of the step rewards (the episode's score)."""
        return float(sum(s.reward for s in self.steps))

    def __len__(self) -> int:
        return len(self.steps)
