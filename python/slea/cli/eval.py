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
        type=_positive,
        default=None,
        metavar="N",
        help="sampled episodes per game, >= 1 (default: the run's eval.episodes_per_task)",
    )
    parser.add_argument(
        "--max-tasks", type=_positive, default=None, metavar="N", help="at most N games (>= 1)"
    )


def _positive(text: str) -> int:
    """An argparse type: an integer >= 1 (argparse turns the error into one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Evaluate and print sampled and greedy success."""
    from slea.rundir import atomic_write_text
    from slea.train.trainer import Trainer

    with Trainer.load(args.run) as trainer:
        n = args.episodes or trainer.config.eval.episodes_per_task
        limit = args.max_tasks or 0
        sampled = trainer.evaluate(args.split, episodes_per_task=n, max_tasks=limit)
        greedy = trainer.evaluate(args.split, greedy=True, max_tasks=limit)
        result = {"iteration": trainer.iteration, "sampled": sampled, "greedy": greedy}
        out = trainer.run_dir / "eval" / f"{args.split}_iter_{trainer.iteration}.json"
        atomic_write_text(out, json.dumps(result, indent=1))
    print(f"checkpoint iteration {result['iteration']}, split {args.split}")
    print(f"  sampled: success {sampled['success']:.2f} over {sampled['episodes']} episodes")
    print(f"  greedy:  success {greedy['success']:.2f} over {greedy['episodes']} episodes")
    print(f"written: {out}")
    return 0
