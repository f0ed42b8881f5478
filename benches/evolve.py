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
replace the lowest), on the same batches. Goal: slea < 10 ms per step for 128 episodes.
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

from benches.common import machine, table, write_json

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "distill"


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
        t0 = time.perf_counter()
        report = evolve_library(lib, batch, distiller=distiller, iteration=it, config=config)
        runs.append((time.perf_counter() - t0, report))
    return [t for t, _ in runs], min(runs, key=lambda r: r[0])[1]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benches evolve", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--warmup", type=int, default=20, help="evolution steps before measuring")
    p.add_argument("--steps", type=int, default=10, help="measured steps (distinct batches)")
    p.add_argument("--reps", type=int, default=5, help="repetitions per measured step")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import slea
    from slea.experience.distill import LLMDistiller
    from slea.experience.evolve import EvolutionConfig, evolve_library
    from slea.experience.rules import RuleDistiller

    n_eps = args.tasks * args.group
    batches = _batches(args.warmup + args.steps, args.tasks, args.group, args.seed)
    config = EvolutionConfig(distiller="rule", eta=0.5)
    rule = RuleDistiller()
    llm = LLMDistiller(_replayer(), fallback=rule, rules=config.validation)
    lib = slea.ExperienceLibrary(slea.LibraryConfig())
    ref = ReleasedStyleEvolver()
    for it, batch in enumerate(batches[: args.warmup]):
        evolve_library(lib, batch, distiller=rule, iteration=it, config=config)
        ref.step(batch)
    rows: dict[str, list[float]] = {"slea rule": [], "slea llm-path": [], "released-style": []}
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, batch in enumerate(batches[args.warmup :]):
            it = args.warmup + k
            snap = Path(tmp) / f"lib{k}.slea"
            lib.save(snap)
            times, report = _time_step(snap, batch, rule, config, it, args.reps)
            rows["slea rule"].append(min(times))
            for name, sec in report.seconds.items():
                phases.setdefault(name, []).append(sec)
            rows["slea llm-path"].append(
                min(_time_step(snap, batch, llm, config, it, args.reps)[0])
            )
            ref_times = []
            for _ in range(max(1, args.reps // 2)):
                clone = ReleasedStyleEvolver()
                clone.zones = {
                    z: {lv: list(v) for lv, v in d.items()} for z, d in ref.zones.items()
                }
                t0 = time.perf_counter()
                clone.step(batch)
                ref_times.append(time.perf_counter() - t0)
            rows["released-style"].append(min(ref_times))
            evolve_library(lib, batch, distiller=rule, iteration=it, config=config)
            ref.step(batch)
    med = {k: statistics.median(v) for k, v in rows.items()}
    ref_med = med["released-style"]
    table_rows = [
        {
            "step": k,
            "median ms": med[k] * 1e3,
            "best ms": min(v) * 1e3,
            "ratio (reference / this)": ref_med / med[k],
        }
        for k, v in rows.items()
    ]
    phase_rows = [{"phase": k, "median ms": statistics.median(v) * 1e3} for k, v in phases.items()]
    print(f"machine: {machine()}")
    print(f"{n_eps} episodes per step, library {len(lib)} entries (reference {ref.size()}), "
          f"{args.steps} steps x best of {args.reps}")  # fmt: skip
    print(table(table_rows, ["step", "median ms", "best ms", "ratio (reference / this)"]))
    print(table(phase_rows, ["phase", "median ms"]))
    goal = med["slea rule"] * 1e3 < 10.0
    print(f"goal < 10 ms per step for {n_eps} episodes: {'met' if goal else 'NOT met'}")
    path = write_json("evolve", {
        "episodes": n_eps, "library_entries": len(lib), "reference_entries": ref.size(),
        "median_seconds": med, "best_seconds": {k: min(v) for k, v in rows.items()},
        "phases_median_seconds": {k: statistics.median(v) for k, v in phases.items()},
        "goal_met": goal, "args": vars(args),
    })  # fmt: skip
    print(f"wrote {path}")
    return 0
