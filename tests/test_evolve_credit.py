"""Utility credit: retrievals recorded per episode and credited at episode end."""

from __future__ import annotations

from typing import Any

import pytest

from slea.experience.credit import (
    CreditReport,
    RetrievalLog,
    credit_episodes,
    is_success,
    retrieved_ids,
)
from slea.trajectory import Episode, Step


class Recorder:
    """Stands in for ``ExperienceLibrary.record_outcome`` (same contract: ids that no longer
    exist are skipped with ignore_missing=True; returns the distinct ids credited)."""

    def __init__(self, known: set[int]) -> None:
        self.known = known
        self.calls: list[tuple[list[int], bool, Any]] = []

    def record_outcome(
        self, ids: list[int], success: bool, *, reward: Any = None, ignore_missing: bool = False
    ) -> int:
        assert ignore_missing
        self.calls.append((list(ids), success, reward))
        return len({i for i in ids if i in self.known})


def episode(eid: int, retrieved: list[tuple[int, ...]], won: bool, reward: float = 0.0) -> Episode:
    steps = tuple(
        Step("o", "a", reward if i == len(retrieved) - 1 else 0.0, retrieved=r)
        for i, r in enumerate(retrieved)
    )
    return Episode(eid, 0, "t", "t", steps, won=won)


def test_every_occurrence_is_reported_once_per_episode() -> None:
    lib = Recorder({1, 2, 3})
    eps = [episode(1, [(1, 2), (1,), ()], won=True, reward=1.0), episode(2, [(), ()], won=False),
           episode(3, [(3, 9)], won=False, reward=-0.5)]  # fmt: skip
    report = credit_episodes(lib, eps)
    assert lib.calls == [([1, 2, 1], True, 1.0), ([3, 9], False, -0.5)]
    assert report == CreditReport(episodes=2, successes=1, failures=1, retrievals=5, credited=3)
    assert report.metrics()["credit/credited"] == 3.0


def test_success_by_eta() -> None:
    e = episode(1, [(1,)], won=False, reward=0.7)
    assert not is_success(e) and is_success(e, success="eta", eta=0.5)
    with pytest.raises(ValueError, match="eta"):
        is_success(e, success="eta")
    with pytest.raises(ValueError, match="success"):
        is_success(e, success="sometimes")
    lib = Recorder({1})
    credit_episodes(lib, [e], success="eta", eta=0.5)
    assert lib.calls[0][1] is True


def test_retrieval_log() -> None:
    log = RetrievalLog()
    log.record(7, [1, 2])
    log.record(7, [2])
    log.record(8, [])
    assert log.shown(7) == [1, 2, 2] and len(log) == 2
    lib = Recorder({1, 2})
    assert log.finish(7, True, lib, reward=1.0) == 2
    assert lib.calls == [([1, 2, 2], True, 1.0)]
    assert log.finish(8, False, lib) == 0 and log.finish(99, False, lib) == 0
    assert len(log) == 0 and retrieved_ids(episode(1, [(4,), (4, 5)], won=True)) == [4, 4, 5]
