"""Cost of one evolution step without the LLM call: ``python -m benches evolve``.

A batch of 128 episodes (16 tasks x 8, a coin-collector toy world with TextWorld-like text) goes
through :func:`slea.experience.evolve.evolve_library` on a library warmed up by earlier steps:
utility credit, partition, top/bottom-5 selection, compression, distillation, validation,
admission (embedding, novelty, rate limit, score floor, cluster links). Measured with the rule
distiller and with the LLM distiller whose generator replays recorded answers instantly (prompt
building, parsing, validation and fallback included; the generation itself excluded).

Reference, same run: a plain-Python restatement of the released SLEA-RL evolution step
(``ExperienceEvolver`` at commit d247621: fixed 0.5 threshold, regex extraction from the episode
text, novelty by difflib ratio and word Jaccard against every entry of the zone, append or
replace the lowest), on the same batches, written by us (not the released code). Every side is
the best of ``--reps`` runs per batch. Goal: slea < 10 ms per step for 128 episodes.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, ClassVar

from benches.common import load_average, machine, table, write_json

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "distill"
REFERENCE = "our restatement of released SLEA-RL"


# --- reference: the released code's evolution step, restated ----------------------------------


class ReleasedStyleEvolver:
    """Our restatement of the released ExperienceEvolver's work per step (not its code)."""

    ACTION: ClassVar[list[re.Pattern[str]]] = [
        re.compile(p, re.I) for p in (r"Action:\s*(.+?)(?:\n|$)", r">\s*(.+?)(?:\n|$)")
    ]
    DECISION: ClassVar[list[re.Pattern[str]]] = [re.compile(p, re.I) for p in (
        r"I (?:should|need to|will)\s+(.+?)(?:\.|$)", r"(?:Therefore|So|Thus),?\s+(.+?)(?:\.|$)")]  # fmt: skip
    CAPACITY: ClassVar[dict[str, int]] = {"strategy": 100, "warning": 50}

    def __init__(self) -> None:
        self.zones: dict[str, dict[str, list[tuple[str, float]]]] = {
            z: {} for z in ("strategy", "warning")
        }

    def size(self) -> int:
        return sum(len(v) for z in self.zones.values() for v in z.values())

    @staticmethod
    def text(episode: Any) -> str:
        return "\n".join(f"Observation: {s.observation}\nAction: {s.action}" for s in episode.steps)

    def actions(self, text: str) -> list[str]:
        return [m.strip() for rx in self.ACTION for m in rx.findall(text) if m.strip()]

    def extract(self, text: str, score: float, success: bool) -> list[tuple[str, str, float]]:
        acts = self.actions(text)
        out: list[tuple[str, str, float]] = []
        if success:
            if acts:
                out.append(
                    (
                        f"Action sequence that led to success: {' -> '.join(acts[:5])}",
                        "method",
                        score,
                    )
                )
            for rx in self.DECISION:
                out += [
                    (f"Key decision: {m}", "example", 0.8 * score)
                    for m in rx.findall(text)[:2]
                    if len(m) > 10
                ]
            if score >= 0.8 and "go to" in text.lower():
                out.append(
                    (
                        "Navigate to the correct location before performing actions",
                        "principle",
                        score,
                    )
                )
            return out
        if acts:
            out.append(
                (f"Avoid this action pattern: {' -> '.join(acts[-3:])}", "mistake", abs(score))
            )
        for a, b, c in zip(acts, acts[1:], acts[2:], strict=False):
            if a == b == c:
                out.append(
                    (f"Avoid repeating the same action '{a}' multiple times", "pattern", 0.5)
                )
                break
        if "invalid" in text.lower():
            out.append(("Avoid invalid actions - check available options first", "pattern", 0.5))
        out.append(
            ("Task failed - review the approach and try alternative strategies", "diagnostic", 0.3)
        )
        return out

    def novel(self, zone: str, content: str, score: float) -> bool:
        low = content.lower().strip()
        words = set(low.split())
        for level in self.zones[zone].values():
            for i, (old, s) in enumerate(level):
                o = old.lower().strip()
                ow = set(o.split())
                jac = len(words & ow) / len(words | ow) if words and ow else 0.0
                if SequenceMatcher(None, low[:300], o[:300]).ratio() > 0.85 or jac > 0.85:
                    if score > s:
                        level[i] = (old, score)
                    return False
        return True

    def step(self, episodes: list[Any]) -> int:
        scored = [(e.total_reward, e) for e in episodes]
        wins = sorted([x for x in scored if x[0] >= 0.5], key=lambda x: -x[0])[:5]
        losses = sorted([x for x in scored if x[0] < 0.5], key=lambda x: x[0])[:5]
        added = 0
        for zone, chosen, limit in (("strategy", wins, 10), ("warning", losses, 5)):
            n = 0
            for score, e in chosen:
                if n >= limit:
                    break
                for content, level, s in self.extract(self.text(e), score, zone == "strategy"):
                    if self.novel(zone, content, s):
                        bucket = self.zones[zone].setdefault(level, [])
                        if len(bucket) < self.CAPACITY[zone]:
                            bucket.append((content, s))
                        else:
                            low = min(range(len(bucket)), key=lambda i: bucket[i][1])
                            if s <= bucket[low][1]:
                                continue
                            bucket[low] = (content, s)
                        n += 1
                        added += 1
        return added


# --- measurement ------------------------------------------------------------------------------


def _batches(n: int, tasks: int, group: int, seed: int) -> list[list[Any]]:
    sys.path.insert(0, str(FIXTURES))
    import toyworld

    return [toyworld.batch(tasks, group, seed=seed + i, skill=0.45) for i in range(n)]


def _replayer() -> Callable[[Any], list[str]]:
    names = ["valid.txt", "garbage_tiny.txt", "fenced.txt", "injection.txt", "truncated.txt"]
    answers = [(FIXTURES / "outputs" / n).read_text() for n in names]
    return lambda chats: [answers[i % len(answers)] for i in range(len(chats))]


def _time_step(
    snapshot: Path, batch: list[Any], distiller: Any, config: Any, it: int, reps: int
) -> tuple[list[float], Any]:
    import slea
    from slea.experience.evolve import evolve_library

    runs = []
    for _ in range(reps):
        lib = slea.ExperienceLibrary.load(snapshot)
        c0, t0 = time.thread_time(), time.perf_counter()
        report = evolve_library(lib, batch, distiller=distiller, iteration=it, config=config)
        runs.append((time.perf_counter() - t0, time.thread_time() - c0, report))
    best = min(runs, key=lambda r: r[0])
    return [t for t, _, _ in runs], [c for _, c, _ in runs], best[2]


def _time_reference(ref: ReleasedStyleEvolver, batch: list[Any], reps: int) -> tuple[float, float]:
    """Best wall and CPU seconds of the reference step on copies of its library."""
    walls, cpus = [], []
    for _ in range(reps):
        clone = ReleasedStyleEvolver()
        clone.zones = {z: {lv: list(v) for lv, v in d.items()} for z, d in ref.zones.items()}
        c0, t0 = time.thread_time(), time.perf_counter()
        clone.step(batch)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
    return min(walls), min(cpus)


def _prefill(lib: Any, ref: ReleasedStyleEvolver, n: int, seed: int) -> int:
    """Add ``n`` distinct synthetic lessons to both libraries (half strategies, half warnings),
    10 per evolution step from step 0 (the rate limit); returns the next free step."""
    import random

    import slea

    rng = random.Random(seed)
    words = "north south east west coin key door room hall take open go look kitchen attic".split()
    cands = []
    for i in range(n):
        zone = "strategy" if i % 2 == 0 else "warning"
        level = ("principle", "pattern", "example")[i % 3]
        text = f"Lesson {i}: " + " ".join(
            rng.choice(words) + str(rng.randrange(1000)) for _ in range(8)
        )
        cands.append(slea.Candidate(text, zone, level, score=rng.random()))
        ref.zones[zone].setdefault(level, []).append((text, cands[-1].score))
    for step, lo in enumerate(range(0, n, 10)):
        lib.admit(cands[lo : lo + 10], iteration=step)
    return (n + 9) // 10


def textworld_loop(iterations: int, games_dir: str, seed: int) -> dict[str, Any]:
    """Library mechanics on real TextWorld coin-collector games without a trainer: a random
    policy plays 8 of 16 games x 4 episodes per iteration; observations are clustered with the
    real clusterer; after a warm-up of 2 iterations (and more than 10 entries) every step
    retrieves; the rule distiller evolves the library after each batch. Reports per iteration
    the hit rate (cluster pool) vs the semantic fallback, library size and evolution time."""
    import random

    import gymnasium

    import slea
    from slea.envs.textworld import make_games
    from slea.experience.evolve import EvolutionConfig, evolve_library
    from slea.experience.rules import RuleDistiller
    from slea.trajectory import Episode, Step

    games = make_games(games_dir, 16, seed=seed, kind="coin", level=3, split="train")
    env = gymnasium.make("slea/TextWorld-v0", games=games, max_episode_steps=12)
    clusterer = slea.ObservationClusterer(threshold=0.85, canon=slea.CanonSpec.textworld())
    lib = slea.ExperienceLibrary(slea.LibraryConfig())
    config = EvolutionConfig(distiller="rule", eta=0.5)
    rng = random.Random(seed)
    rows, eid = [], 0
    for it in range(iterations):
        active = it >= 2 and len(lib) > 10
        before = lib.stats()["retrieval"]
        episodes, t_retrieve, n_steps = [], 0.0, 0
        for game in rng.sample(range(16), 8):
            for g in range(4):
                obs, info = env.reset(seed=it * 1000 + game * 10 + g, options={"task_id": game})
                steps, won = [], False
                for _ in range(12):
                    admissible = list(info["admissible_actions"])
                    cid = int(clusterer.assign(obs))
                    shown: tuple[int, ...] = ()
                    if active:
                        t0 = time.perf_counter()
                        shown = tuple(e.id for e in lib.retrieve(cid, obs))
                        t_retrieve += time.perf_counter() - t0
                    action = rng.choice(admissible)
                    nxt, reward, term, trunc, info = env.step(action)
                    steps.append(Step(obs, action, float(reward), cluster_id=cid,
                                      invalid=bool(info["invalid_action"]), retrieved=shown,
                                      admissible=tuple(admissible)))  # fmt: skip
                    obs, n_steps = nxt, n_steps + 1
                    if term or trunc:
                        won = bool(info["won"])
                        break
                episodes.append(Episode(eid, game, info["task"], f"g{game}", tuple(steps),
                                        won=won, truncated=not won, iteration=it))  # fmt: skip
                eid += 1
        after = lib.stats()["retrieval"]
        hits, fallbacks = after["hits"] - before["hits"], after["fallbacks"] - before["fallbacks"]
        report = evolve_library(
            lib, episodes, distiller=RuleDistiller(), iteration=it, config=config
        )
        rows.append({
            "iteration": it, "success": sum(e.won for e in episodes) / len(episodes),
            "hits": hits, "fallbacks": fallbacks,
            "hit rate": hits / (hits + fallbacks) if hits + fallbacks else float("nan"),
            "library": len(lib), "admitted": report.outcomes["admitted"],
            "duplicates": report.outcomes["duplicate"], "evolve ms": report.seconds["total"] * 1e3,
            "retrieve us/step": 1e6 * t_retrieve / max(1, n_steps) if active else float("nan"),
        })  # fmt: skip
    print(table(rows, list(rows[0])))
    stats = lib.stats()
    linked = sum(1 for e in lib.entries() if lib.linked_clusters(e.id))
    print(f"sizes {stats['sizes']}; pools {stats['clusters']}, links {stats['links']}; entries "
          f"linked to a cluster: {linked} of {len(lib)}")  # fmt: skip
    for e in sorted(lib.entries(), key=lambda e: -e.retrieved)[:8]:
        demo = f"  [worked step: {e.action!r}]" if e.action else ""
        print(f"  {e.zone}/{e.level}, shown {e.retrieved}x, {len(lib.linked_clusters(e.id))} "
              f"clusters: {e.text}{demo}")  # fmt: skip
    return {"rows": rows, "linked": linked, "entries": len(lib), "stats": {
        k: stats[k] for k in ("sizes", "clusters", "links", "retrieval")}}  # fmt: skip


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benches evolve", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--warmup", type=int, default=20, help="evolution steps before measuring")
    p.add_argument("--steps", type=int, default=10, help="measured steps (distinct batches)")
    p.add_argument("--reps", type=int, default=5, help="repetitions per measured step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prefill", type=int, default=0, help="extra distinct entries per library")
    p.add_argument(
        "--textworld-loop",
        type=int,
        default=0,
        metavar="N",
        help="instead: N iterations of the real-TextWorld retrieval/evolution loop",
    )
    p.add_argument("--games", default=None, help="game cache directory for --textworld-loop")
    args = p.parse_args(argv)
    if args.textworld_loop:
        games = args.games or str(Path(tempfile.gettempdir()) / "slea-bench-games")
        print(f"machine: {machine()}")
        out = textworld_loop(args.textworld_loop, games, args.seed)
        print(f"wrote {write_json('evolve_textworld_loop', out)}")
        return 0

    import slea
    from slea.experience.distill import LLMDistiller
    from slea.experience.evolve import EvolutionConfig, evolve_library
    from slea.experience.rules import RuleDistiller

    load0 = load_average()
    n_eps = args.tasks * args.group
    batches = _batches(args.warmup + args.steps, args.tasks, args.group, args.seed)
    config = EvolutionConfig(distiller="rule", eta=0.5)
    rule = RuleDistiller()
    llm = LLMDistiller(_replayer(), fallback=rule, rules=config.validation)
    lib = slea.ExperienceLibrary(slea.LibraryConfig())
    ref = ReleasedStyleEvolver()
    base = _prefill(lib, ref, args.prefill, args.seed) if args.prefill else 0
    for it, batch in enumerate(batches[: args.warmup]):
        evolve_library(lib, batch, distiller=rule, iteration=base + it, config=config)
        ref.step(batch)
    names = ("slea rule", "slea llm-path", REFERENCE)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, batch in enumerate(batches[args.warmup :]):
            it = base + args.warmup + k
            snap = Path(tmp) / f"lib{k}.slea"
            lib.save(snap)
            for name, distiller in (("slea rule", rule), ("slea llm-path", llm)):
                w, c, report = _time_step(snap, batch, distiller, config, it, args.reps)
                wall[name].append(min(w))
                cpu[name].append(min(c))
                if name == "slea rule":
                    for phase, sec in report.seconds.items():
                        phases.setdefault(phase, []).append(sec)
            w, c = _time_reference(ref, batch, args.reps)  # the same repetitions as slea
            wall[REFERENCE].append(w)
            cpu[REFERENCE].append(c)
            evolve_library(lib, batch, distiller=rule, iteration=it, config=config)
            ref.step(batch)
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    med_c = {k: statistics.median(v) for k, v in cpu.items()}
    rows = [
        {
            "step": k,
            "wall ms": med_w[k] * 1e3,
            "CPU ms": med_c[k] * 1e3,
            "ratio wall (reference / this)": med_w[REFERENCE] / med_w[k],
            "ratio CPU (reference / this)": med_c[REFERENCE] / med_c[k],
        }
        for k in names
    ]
    columns = [
        "step",
        "wall ms",
        "CPU ms",
        "ratio wall (reference / this)",
        "ratio CPU (reference / this)",
    ]
    phase_rows = [{"phase": k, "wall ms": statistics.median(v) * 1e3} for k, v in phases.items()]
    print(f"machine: {machine()}; load average {load0} at the start, {load_average()} at the end")
    print(f"{n_eps} episodes per step, library {len(lib)} entries (reference {ref.size()}), "
          f"{args.steps} steps, each the best of {args.reps} runs; medians over steps")  # fmt: skip
    print(table(rows, columns))
    print(table(phase_rows, ["phase", "wall ms"]))
    goal_w, goal_c = med_w["slea rule"] * 1e3 < 10.0, med_c["slea rule"] * 1e3 < 10.0
    print(f"goal < 10 ms per step for {n_eps} episodes: wall {'met' if goal_w else 'NOT met'}, "
          f"CPU {'met' if goal_c else 'NOT met'}")  # fmt: skip
    path = write_json(f"evolve{'_prefill' if args.prefill else ''}", {
        "episodes": n_eps, "library_entries": len(lib), "reference_entries": ref.size(),
        "median_wall_seconds": med_w, "median_cpu_seconds": med_c,
        "phases_median_wall_seconds": {k: statistics.median(v) for k, v in phases.items()},
        "goal_met_wall": goal_w, "goal_met_cpu": goal_c, "args": vars(args),
        "command": "python -m benches evolve " + " ".join(argv), "load_average_at_start": load0,
    })  # fmt: skip
    print(f"wrote {path}")
    return 0
