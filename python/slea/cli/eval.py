"""``slea eval``: evaluate a run's latest checkpoint (or a kept one), or a config's initial policy.

``slea eval --run DIR [--split test]`` plays every game of the split with the run's prompts
(library included), sampled and greedy, prints the success rates and writes the result to
``DIR/eval/<split>_iter_<N>.json``. ``--retrieval none`` plays the same policy without its
library (``step`` / ``task``: with it, retrieved per step or once per episode; the file name then
ends in ``_<retrieval>``), which separates what the weights learnt from what the library adds;
``--no-greedy`` skips the greedy pass. ``--iteration N`` evaluates the kept checkpoint of
iteration N instead of the latest (the result's ``env_steps`` says how many training env steps
it had seen: runs can be compared at equal env steps).

``slea eval --config FILE [--set KEY=VALUE ...] [--split test] [--out result.json]`` evaluates the
policy the config starts from (a pretrained model zero-shot, or the seeded tiny model) without a
run directory: it plays in a temporary directory that is removed afterwards, and writes the result
to ``--out`` (atomically) when given.

The result holds ``success_sampled``, ``success_greedy`` (null with ``--no-greedy``), ``episodes``
(sampled) and ``episodes_greedy``, ``retrieval`` and ``library_in_prompts``, ``by_type`` where the
env's tasks have types, and the full ``sampled`` and ``greedy`` records.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

SPLITS = ("test", "valid", "train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slea eval``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="DIR", help="run directory: evaluate its latest checkpoint")
    src.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config: evaluate the policy it starts from, without a run directory",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --config: override a config key (repeatable)",
    )
    parser.add_argument(
        "--iteration",
        type=_positive,
        default=None,
        metavar="N",
        help="with --run: the checkpoint of iteration N instead of the latest (one that was kept)",
    )
    parser.add_argument("--split", default="test", choices=SPLITS, help="which tasks")
    parser.add_argument(
        "--episodes",
        type=_positive,
        default=None,
        metavar="N",
        help="sampled episodes per task, >= 1 (default: the config's eval.episodes_per_task)",
    )
    parser.add_argument(
        "--max-tasks", type=_positive, default=None, metavar="N", help="at most N tasks (>= 1)"
    )
    parser.add_argument(
        "--retrieval",
        choices=("config", "none", "step", "task"),
        default="config",
        help="the library in the prompts: as the config says (default), none (the policy "
        "alone), or retrieved per step or once per task",
    )
    parser.add_argument(
        "--no-greedy", action="store_true", help="play only the sampled episodes (no greedy pass)"
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="write the result as JSON here (default with --run: DIR/eval/<split>_iter_<N>.json)",
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


def evaluate(
    trainer: Any,
    split: str,
    episodes: int | None,
    max_tasks: int | None,
    *,
    retrieval: str | None = None,
    greedy: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Sampled and (unless ``greedy`` is false) greedy evaluation of ``trainer``'s policy on
    ``split``, as one result; ``retrieval`` as :meth:`slea.Trainer.evaluate` takes it;
    ``progress`` draws a bar per pass (episodes played)."""
    from slea.train.logging import Progress

    n = episodes or trainer.config.eval.episodes_per_task
    limit = max_tasks or 0

    def one_pass(label: str, **kw: Any) -> dict[str, Any]:
        bar = Progress(0, enabled=progress, label=label)
        try:
            return trainer.evaluate(
                split,
                max_tasks=limit,
                retrieval=retrieval,
                progress=lambda done, total: bar.advance(done, total=total),
                **kw,
            )
        finally:
            bar.close()

    sampled = one_pass(f"{split} sampled", episodes_per_task=n)
    played: dict[str, Any] = (
        one_pass(f"{split} greedy", greedy=True) if greedy else {"success": None, "episodes": 0}
    )
    result: dict[str, Any] = {
        "split": split,
        "iteration": trainer.iteration,
        "retrieval": retrieval or "config",
        "library_in_prompts": sampled.get("library", {}).get("in_prompts", False),
        "success_sampled": sampled["success"],
        "success_greedy": played["success"],
        "episodes": sampled["episodes"],
        "episodes_greedy": played["episodes"],
    }
    if "by_type" in sampled:
        result["by_type"] = {
            kind: {
                "success_sampled": row["success"],
                "success_greedy": played.get("by_type", {}).get(kind, {}).get("success"),
                "episodes": row["episodes"],
            }
            for kind, row in sampled["by_type"].items()
        }
    result["sampled"], result["greedy"] = sampled, (played if greedy else None)
    return result


def run(args: argparse.Namespace) -> int:
    """Evaluate and print sampled and greedy success."""
    from slea.errors import ConfigError
    from slea.rundir import atomic_write_text
    from slea.train.config import TrainConfig
    from slea.train.trainer import Trainer

    if args.set and not args.config:
        raise ConfigError("--set goes with --config FILE (a run keeps its config)")
    if args.iteration is not None and not args.run:
        raise ConfigError("--iteration goes with --run DIR (a config has no checkpoints)")
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise ConfigError(f"--out: {str(out)!r} is a directory; give a file name")
    how: dict[str, Any] = {
        "retrieval": None if args.retrieval == "config" else args.retrieval,
        "greedy": not args.no_greedy,
    }
    if args.run:
        with Trainer.load(args.run, iteration=args.iteration) as trainer:
            how["progress"] = trainer.config.logging.progress
            result = evaluate(trainer, args.split, args.episodes, args.max_tasks, **how)
            result["env_steps"] = trainer.env_steps  # the training env steps behind it
            where = f"checkpoint iteration {result['iteration']}"
            tag = "" if args.retrieval == "config" else f"_{args.retrieval}"
            name = f"{args.split}_iter_{trainer.iteration}{tag}.json"
            out = out or trainer.run_dir / "eval" / name
    else:
        cfg = TrainConfig.from_yaml(args.config, args.set)
        how["progress"] = cfg.logging.progress
        tmp = Path(tempfile.mkdtemp(prefix="slea-eval-"))
        try:  # the initial policy plays in a throwaway run directory
            cfg = cfg.replace(f"run.dir={tmp / 'run'}", "logging.progress=false")
            with Trainer(cfg, _writes=False) as trainer:  # a reader: no KL reference, no lock
                result = evaluate(trainer, args.split, args.episodes, args.max_tasks, **how)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        result["config"] = str(args.config)
        result["overrides"] = list(args.set)
        where = "initial policy of " + str(args.config)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    library = "with the library" if result["library_in_prompts"] else "without the library"
    print(f"{where}, split {args.split}, {library}")
    print(f"  sampled: success {result['success_sampled']:.2f} over {result['episodes']} episodes")
    if result["success_greedy"] is not None:
        print(
            f"  greedy:  success {result['success_greedy']:.2f} over "
            f"{result['episodes_greedy']} episodes"
        )
    for kind, row in result.get("by_type", {}).items():
        print(f"  {kind}: sampled {row['success_sampled']:.2f} over {row['episodes']} episodes")
    if out is not None:
        print(f"written: {out}")
    return 0
