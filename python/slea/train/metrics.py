"""The records a training run logs, assembled in one place.

A ``train`` record per iteration (:func:`iteration_record`), an ``eval`` record per evaluation
(:mod:`slea.train.evaluation`), both with the library's state (:class:`LibraryStats`), and the
run's summary (:func:`summary`) read back from ``metrics.jsonl``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from slea.algo.advantages import Advantages
from slea.experience.library import ExperienceLibrary
from slea.rollout import Rollout
from slea.rundir import METRICS, REPORT, SUCCESS_KEYS, read_metrics

TIMING_KEYS = (
    "rollout",
    "generation",
    "env",
    "clustering",
    "retrieval",
    "prompt",
    "advantages",
    "update",
    "evolution",
    "iteration",
)
"""Phases timed in every train record's ``timing`` (seconds)."""

ROLLOUT_PHASES = ("generation", "env", "clustering", "retrieval", "prompt")


class LibraryStats:
    """Library size per zone and level, and its retrieval counters since the previous call.

    ``counters`` (cumulative hits and fallbacks at the previous call) is part of a checkpoint,
    so a resumed run reports the same per-iteration deltas.
    """

    def __init__(self, counters: tuple[int, int] = (0, 0)) -> None:
        self.counters = (int(counters[0]), int(counters[1]))

    def __call__(self, library: ExperienceLibrary) -> dict[str, Any]:
        raw = library.stats()
        ret = raw.get("retrieval", {})
        hits, fallbacks = int(ret.get("hits", 0)), int(ret.get("fallbacks", 0))
        last_hits, last_fb = self.counters
        self.counters = (hits, fallbacks)
        d_hits, d_fb = hits - last_hits, fallbacks - last_fb
        return {
            "size": len(library),
            "by_zone_level": {
                f"{zone}.{level}": int(n)
                for zone, levels in raw.get("sizes", {}).items()
                for level, n in levels.items()
            },
            "linked_clusters": int(raw.get("clusters", 0)),
            "links": int(raw.get("links", 0)),
            "hits": d_hits,
            "fallbacks": d_fb,
            "hit_rate": d_hits / (d_hits + d_fb) if d_hits + d_fb else 0.0,
            "hit_rate_total": float(ret.get("hit_rate", 0.0)),
            "evicted": int(raw.get("evicted", 0)),
        }


def timing(rollout: Rollout, marks: dict[str, float]) -> dict[str, float]:
    """Seconds per phase: the rollout's own phases, then ``marks`` (phase -> end time, in order,
    starting with ``start``), and the share of the iteration spent on slea's own machinery."""
    out = {key: rollout.timing.get(key, 0.0) for key in ROLLOUT_PHASES}
    names = list(marks)
    for before, after in itertools.pairwise(names):
        out[after] = marks[after] - marks[before]
    out["iteration"] = marks[names[-1]] - marks[names[0]]
    out["overhead_fraction"] = (out["clustering"] + out["retrieval"] + out["advantages"]) / max(
        out["iteration"], 1e-9
    )
    return out


def iteration_record(
    *,
    iteration: int,
    env_steps: int,
    episodes: int,
    retrieval_active: bool,
    rollout: Rollout,
    advantages: Advantages,
    update: dict[str, float],
    library: dict[str, Any],
    clusters: int,
    evolution: dict[str, Any],
    timing: dict[str, float],
    elapsed_s: float,
) -> dict[str, Any]:
    """The ``train`` record of one iteration."""
    adv = advantages.advantage
    n = len(rollout)
    return {
        "kind": "train",
        "iteration": iteration,
        "env_steps": env_steps,
        "episodes": episodes,
        "retrieval_active": retrieval_active,
        "rollout": rollout.stats(),
        "advantage": {
            "mean": float(np.mean(adv)) if n else 0.0,
            "abs_mean": float(np.mean(np.abs(adv))) if n else 0.0,
            "nonzero_fraction": float(np.mean(adv != 0)) if n else 0.0,
        },
        "update": update,
        "library": library,
        "clusters": clusters,
        "evolution": evolution,
        "timing": timing,
        "steps_per_s": n / max(timing["iteration"], 1e-9),
        "elapsed_s": elapsed_s,
    }


def summary(run_dir: Path, *, iterations: int, env_steps: int, elapsed_s: float) -> dict[str, Any]:
    """Untrained (the evaluation at iteration 0, when there is one) vs trained (last) success, read
    back from the metrics."""
    evals = [r for r in read_metrics(run_dir / METRICS) if r.get("kind") == "eval"]
    first = evals[0] if evals and evals[0].get("iteration") == 0 else {}  # eval.before=false
    last = evals[-1] if evals else {}
    rows = {}
    for key in SUCCESS_KEYS:
        if key in first or key in last:
            rows[key] = {"untrained": first.get(key), "trained": last.get(key)}
    return {
        "run_dir": str(run_dir),
        "iterations": iterations,
        "env_steps": env_steps,
        "train_time_s": elapsed_s,
        "success": rows,
        "report": str(run_dir / REPORT / "index.html"),
    }


__all__ = ["TIMING_KEYS", "LibraryStats", "iteration_record", "summary", "timing"]
