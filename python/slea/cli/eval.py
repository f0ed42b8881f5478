"""``slea eval --run DIR [--split test]``: evaluate a run's latest checkpoint.

Plays every game of the split with the run's prompts (library included), sampled and greedy, and
prints the success rates; the result is also written to ``DIR/eval/<split>_iter_<N>.json``.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slea eval``."""
    parser.add_argument("--run", required=True, metavar="DIR", help="run directory")
    parser.add_argument("--split", default="test", choices=["test", "train"], help="which games")
    parser.add_argument(
        "--episodes",
        type=int,
        default=0,
        metavar="N",
        help="sampled episodes per game (default: the run's eval.episodes_per_task)",
    )
    parser.add_argument("--max-tasks", type=int, default=0, metavar="N", help="at most N games")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print sampled and greedy success."""
    from slea.rundir import atomic_write_text
    from slea.train.trainer import Trainer

    if args.episodes < 0 or args.max_tasks < 0:
        raise ValueError("--episodes and --max-tasks must be >= 0")
    with Trainer.load(args.run) as trainer:
        n = args.episodes or trainer.config.eval.episodes_per_task
        sampled = trainer.evaluate(args.split, episodes_per_task=n, max_tasks=args.max_tasks)
        greedy = trainer.evaluate(args.split, greedy=True, max_tasks=args.max_tasks)
        result = {"iteration": trainer.iteration, "sampled": sampled, "greedy": greedy}
        out = trainer.run_dir / "eval" / f"{args.split}_iter_{trainer.iteration}.json"
        atomic_write_text(out, json.dumps(result, indent=1))
    print(f"checkpoint iteration {result['iteration']}, split {args.split}")
    print(f"  sampled: success {sampled['success']:.2f} over {sampled['episodes']} episodes")
    print(f"  greedy:  success {greedy['success']:.2f} over {greedy['episodes']} episodes")
    print(f"written: {out}")
    return 0
