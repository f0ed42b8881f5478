"""Utility credit: which experiences an episode was shown, and whether the episode succeeded.

Beyond the paper. Every retrieval is recorded with its step (``Step.retrieved``, filled by the
rollout) or, for rollouts that keep no step records, in a :class:`RetrievalLog`. At episode end
each retrieved entry is credited through ``library.record_outcome``: one retrieval per occurrence,
one success or one failure per episode. The library turns this into per-entry utility (``slea
library stats``, the report) and, when its ``ema_alpha`` is set (off by default, as in the paper),
moves the entry's score towards the episode's reward, so that entries that stop helping sink.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slea.experience.library import SCORE_LIMIT
from slea.trajectory import Episode


def retrieved_ids(episode: Episode) -> list[int]:
    """Every experience id shown during ``episode``, one per step occurrence, in step order
    (values that cannot be library ids, outside [0, 2**64), are skipped)."""
    return [int(i) for step in episode.steps for i in step.retrieved if 0 <= i < 1 << 64]


def is_success(episode: Episode, *, success: str = "won", eta: float | None = None) -> bool:
    """Did the episode succeed? ``success="won"``: the env said so; ``"eta"``: its reward is
    strictly above ``eta`` (the evolution partition rule)."""
    if success == "won":
        return bool(episode.won)
    if success == "eta":
        if eta is None or not math.isfinite(eta):
            raise ValueError("success='eta' needs a finite eta")
        return episode.total_reward > eta
    raise ValueError(f"success must be 'won' or 'eta', got {success!r}")


@dataclass(frozen=True)
class CreditReport:
    """What :func:`credit_episodes` did.

    Attributes:
        episodes: episodes that had retrieved at least one entry.
        successes: of those, successful ones.
        failures: of those, failed ones.
        retrievals: retrieval occurrences reported.
        credited: (episode, entry) pairs credited (entries evicted since are skipped).
    """

    episodes: int = 0
    successes: int = 0
    failures: int = 0
    retrievals: int = 0
    credited: int = 0

    def metrics(self, prefix: str = "credit/") -> dict[str, float]:
        """The counts as a flat metrics dict."""
        return {f"{prefix}{k}": float(v) for k, v in self.__dict__.items()}


def credit_episodes(
    library: Any,
    episodes: Iterable[Episode],
    *,
    success: str = "won",
    eta: float | None = None,
) -> CreditReport:
    """Credit every entry each episode retrieved with the episode's outcome.

    Calls ``library.record_outcome(ids, success, reward=episode_reward, ignore_missing=True)``
    once per episode that retrieved anything (ids evicted since the retrieval are skipped).
    The reward is the target of the library's optional score EMA: a non-finite reward is left
    out (the default target is used) and one beyond ``SCORE_LIMIT`` is clamped to it, so that no
    env reward can fail the step. Returns the counts.
    """
    n = wins = fails = shown = credited = 0
    for episode in episodes:
        ids = retrieved_ids(episode)
        if not ids:
            continue
        ok = is_success(episode, success=success, eta=eta)
        reward = float(episode.total_reward)
        target = min(max(reward, -SCORE_LIMIT), SCORE_LIMIT) if math.isfinite(reward) else None
        credited += int(library.record_outcome(ids, ok, reward=target, ignore_missing=True))
        n += 1
        wins += ok
        fails += not ok
        shown += len(ids)
    return CreditReport(n, wins, fails, shown, credited)


class RetrievalLog:
    """Retrievals per episode for rollouts that do not keep ``Step.retrieved``.

    ``record(episode_id, ids)`` at every step; ``finish(episode_id, success, library)`` at episode
    end credits the entries and forgets the episode.
    """

    def __init__(self) -> None:
        self._shown: dict[int, list[int]] = {}

    def record(self, episode_id: int, ids: Sequence[int]) -> None:
        """Note that ``ids`` were shown at one step of ``episode_id``."""
        self._shown.setdefault(int(episode_id), []).extend(int(i) for i in ids)

    def shown(self, episode_id: int) -> list[int]:
        """Ids shown so far in ``episode_id`` (one per occurrence)."""
        return list(self._shown.get(int(episode_id), ()))

    def finish(
        self, episode_id: int, success: bool, library: Any, *, reward: float | None = None
    ) -> int:
        """Credit the entries ``episode_id`` was shown and forget it; returns how many distinct
        entries were credited (0 if it retrieved nothing)."""
        ids = self._shown.pop(int(episode_id), [])
        if not ids:
            return 0
        return int(library.record_outcome(ids, bool(success), reward=reward, ignore_missing=True))

    def __len__(self) -> int:
        return len(self._shown)


__all__ = ["CreditReport", "RetrievalLog", "credit_episodes", "is_success", "retrieved_ids"]
