"""Run a benchmark: ``python -m benches <name> [options]`` (``python -m benches --list``).

Every benchmark measures slea against a reference in the same run and reports ratios. Raw
results are written as JSON under ``benches/out/``; the figures we keep go to benches/RESULTS.md
with the command and the machine.
"""

from __future__ import annotations

import importlib
import sys

BENCHES: dict[str, tuple[str, str]] = {
    "quick": (
        "benches.quick",
        "a one-minute tour: canon, clustering and advantages at small sizes",
    ),
    "canon": ("benches.canon", "canonicalise+hash throughput (MB/s) vs a plain-Python version"),
    "clustering": (
        "benches.clustering",
        "clustering on TextWorld observations vs our restatement of released SLEA-RL "
        "(--upstream DIR: the released code) and the paper",
    ),
    "advantages": (
        "benches.advantages",
        "GiGPO/SLEA advantages vs the Python reference, NumPy and our restatement of "
        "verl-agent's code (--upstream DIR: its core_gigpo.py)",
    ),
    "hnsw": ("benches.hnsw", "HNSW recall/QPS/build vs hnswlib (--hnswlib-path: a given build)"),
    "library": (
        "benches.library",
        "experience-library retrieval latency, admission throughput and memory",
    ),
    "envs": ("benches.envs", "environment steps per second, single and vectorised"),
    "learning": ("benches.learning", "grpo vs gigpo vs slea learning curves on TextWorld"),
    "probe": (
        "benches.probe",
        "supervised probe: can the demo model learn coin collector's middle-room decision?",
    ),
    "evolve": ("benches.evolve", "cost of one evolution step (without the LLM call)"),
    "serve": ("benches.serve", "latency the HTTP path adds: server engine vs in-process engine"),
    "layouts": (
        "benches.layouts",
        "the demo's held-out coin-collector games vs its training games: layouts, room names",
    ),
    "checkpointing": (
        "benches.checkpointing",
        "one PPO update with and without gradient checkpointing: added peak memory and time",
    ),
    "distill_llm": (
        "benches.distill_llm",
        "the LLM distiller with a real model (SmolLM2): JSON validity, lessons, fallbacks",
    ),
    "recipe": (
        "benches.recipe",
        "a training recipe over seeds: chosen on the valid split, the test split played once",
    ),
    "library_worth": (
        "benches.library_worth",
        "frozen weights: held-out success with an evolved library vs none, step vs task level",
    ),
    "zero_shot": (
        "benches.zero_shot",
        "zero-shot success of a configured (pretrained) policy vs uniform random, same games",
    ),
    "update_order": (
        "benches.update_order",
        "the PPO update with micro-batches in episode order vs shuffled rows (packed prefixes)",
    ),
    "greedy": (
        "benches.greedy",
        "greedy play of a trained run with every action's probability (diagnostics)",
    ),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(__doc__)
        for name, (_, help_text) in BENCHES.items():
            print(f"  {name:12s} {help_text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHES:
        print(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHES[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
