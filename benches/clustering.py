"""Observation clustering on TextWorld: slea vs the released SLEA-RL clustering and the paper's.

``python -m benches clustering [--small] [--paper-sample 1000] [--repeat 5]``

Data: agent-visible text from random-policy episodes on generated TextWorld games, with the
ground-truth local state of each observation (benches/tw_data.py: about 9k observations from 16
games; ``--small``: about 1.3k from 8). Two forms of each observation: the state text alone (room
description and inventory), and the same text with a status line (moves, score) and the last
action's feedback in front.

Methods, all measured in this run on the same observations in the same order:

- slea: ``ObservationClusterer(threshold=0.85)`` with ``CanonSpec.textworld()`` and with
  ``CanonSpec.generic()``, one ``assign_batch`` call (a fresh clusterer per repetition; best
  of ``--repeat``), and the same with one ``assign`` call per observation;
- released: tests/reference/slea_ref_cluster.py ``ReleasedClusterer`` (signature = first 300
  characters, difflib ratio on the first 500 characters >= 0.85 within the signature bucket,
  first fit), unbounded as the issue describes it (the ratios are against this one), and with the
  released code's bound of 500 clusters (least-used eviction, an O(|C|) scan per eviction); best
  of ``--repeat`` too, so the ratios do not gain from a slow single run of the reference;
- paper: ``PaperClusterer`` (the same ratio against every prototype, first fit), O(|C|) per
  observation, so it runs on an evenly spaced subsample of ``--paper-sample`` observations; slea
  is timed on that subsample too, for a ratio on the same data.

Reported per method: time per observation (thread CPU time, which the other processes on a
shared machine do not inflate, and wall time), number of clusters made, purity (the share of
observations whose cluster's majority true state is theirs) and clusters per true state
(clusters made / distinct true states).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import slea
from benches import tw_data
from benches.common import machine, table, write_json
from tests.reference.slea_ref_cluster import PaperClusterer, ReleasedClusterer

COLUMNS = [
    "form",
    "method",
    "observations",
    "us/obs (CPU)",
    "us/obs (wall)",
    "clusters",
    "purity",
    "clusters/state",
    "x faster than released",
    "x faster than paper",
]


def quality(ids: Sequence[int], truths: Sequence[str]) -> dict[str, float]:
    """Purity and clusters per true state of an assignment."""
    by_cluster: dict[int, Counter[str]] = defaultdict(Counter)
    for c, t in zip(ids, truths, strict=True):
        by_cluster[c][t] += 1
    majority = sum(c.most_common(1)[0][1] for c in by_cluster.values())
    n_states = len(set(truths))
    return {
        "clusters": len(by_cluster),
        "purity": majority / len(ids),
        "clusters/state": len(by_cluster) / n_states,
    }


def timed(run: Callable[[], list[int]], repeat: int) -> tuple[list[int], float, float]:
    """(ids, best CPU seconds, best wall seconds) over ``repeat`` runs of ``run``."""
    best_cpu = best_wall = float("inf")
    ids: list[int] = []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.thread_time()
        ids = run()
        best_cpu = min(best_cpu, time.thread_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return ids, best_cpu, best_wall


def slea_batch(texts: list[str], spec: slea.CanonSpec) -> Callable[[], list[int]]:
    def run() -> list[int]:
        c = slea.ObservationClusterer(threshold=0.85, canon=spec)
        return [int(i) for i in c.assign_batch(texts)]

    return run


def slea_single(texts: list[str], spec: slea.CanonSpec) -> Callable[[], list[int]]:
    def run() -> list[int]:
        c = slea.ObservationClusterer(threshold=0.85, canon=spec)
        return [c.assign(t) for t in texts]

    return run


def reference(cls: Callable[[], Any], texts: list[str]) -> Callable[[], list[int]]:
    def run() -> list[int]:
        c = cls()
        return [c.assign(t) for t in texts]

    return run


def measure(
    form: str, texts: list[str], truths: list[str], sample: int, repeat: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(method: str, n: int, ids: list[int], cpu: float, wall: float, t: list[str]) -> None:
        rows.append(
            {
                "form": form,
                "method": method,
                "observations": n,
                "us/obs (CPU)": cpu / n * 1e6,
                "us/obs (wall)": wall / n * 1e6,
                **quality(ids, t),
            }
        )

    tw, gen = slea.CanonSpec.textworld(), slea.CanonSpec.generic()
    for name, run in [
        ("slea textworld (batch)", slea_batch(texts, tw)),
        ("slea textworld (per call)", slea_single(texts, tw)),
        ("slea generic (batch)", slea_batch(texts, gen)),
    ]:
        ids, cpu, wall = timed(run, repeat)
        row(name, len(texts), ids, cpu, wall, truths)
    ids, cpu, wall = timed(reference(ReleasedClusterer, texts), repeat)
    row("released SLEA-RL with its 500-cluster cap", len(texts), ids, cpu, wall, truths)
    ids, cpu, wall = timed(reference(lambda: ReleasedClusterer(max_clusters=None), texts), repeat)
    row("released SLEA-RL", len(texts), ids, cpu, wall, truths)
    released_cpu = rows[-1]["us/obs (CPU)"]
    for r in rows:
        r["x faster than released"] = released_cpu / r["us/obs (CPU)"]

    step = max(1, len(texts) // sample)
    sub, sub_truths = texts[::step][:sample], truths[::step][:sample]
    n = len(sub)
    ids, cpu, wall = timed(slea_batch(sub, tw), repeat)
    row(f"slea textworld (batch), subsample 1/{step}", n, ids, cpu, wall, sub_truths)
    slea_sub = rows[-1]
    ids, cpu, wall = timed(reference(PaperClusterer, sub), 1)
    row(f"paper O(|C|), subsample 1/{step}", n, ids, cpu, wall, sub_truths)
    paper_cpu = rows[-1]["us/obs (CPU)"]
    slea_sub["x faster than paper"] = paper_cpu / slea_sub["us/obs (CPU)"]
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches clustering", description=__doc__)
    parser.add_argument("--small", action="store_true", help="8 games, 4 episodes each")
    parser.add_argument("--paper-sample", type=int, default=1000, help="observations for paper")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of the slea runs")
    args = parser.parse_args(argv)
    data = tw_data.load(1, 4, 49) if args.small else tw_data.load()
    truths = [o.truth for o in data]
    print(f"{machine()}")
    print(f"{len(data)} observations, {len(set(truths))} true states")
    rows: list[dict[str, Any]] = []
    for form in ("state", "full"):
        texts = [getattr(o, form) for o in data]
        rows.extend(measure(form, texts, truths, args.paper_sample, args.repeat))
        print(table([r for r in rows if r["form"] == form], COLUMNS), flush=True)
    path = write_json(
        "clustering" + ("_small" if args.small else ""),
        {
            "command": "python -m benches clustering " + " ".join(argv),
            "observations": len(data),
            "true_states": len(set(truths)),
            "rows": rows,
        },
    )
    print(f"\n{table(rows, COLUMNS)}\n\nwritten to {path}")
    return 0
