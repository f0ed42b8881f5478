"""``slea sft --config FILE [--set key=value ...]``: supervised warm start on walkthroughs.

Replays the training tasks' walkthroughs through the rollout's prompt path, trains the configured
model on them (``sft.*``; LoRA when ``model.lora_r``), evaluates ``sft.eval_split`` before and
after (sampled and greedy), and writes a run directory (``run.dir``) whose ``sft_model/`` (LoRA
merged) a later ``slea train --set model.path=RUN/sft_model`` starts from. See
:mod:`slea.train.sft`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slea sft``."""
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="YAML config (see examples/configs)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set sft.epochs=3 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def format_summary(summary: dict[str, Any]) -> str:
    """The before-vs-after table printed at the end of ``slea sft``."""
    data = summary["data"]
    skipped = ", ".join(f"{k}: {v}" for k, v in data["skipped"].items() if v) or "none"
    lines = [
        f"walkthroughs: {data['used']} of {data['tasks']} training tasks, "
        f"{data['decisions']} decisions (skipped: {skipped})",
        "loss per epoch: " + " ".join(f"{x:.4f}" for x in summary["loss"]),
    ]
    if "before" in summary:
        split = summary["split"]
        lines.append(f"{'success rate':26s} {'before SFT':>22s} {'after SFT':>22s}")
        for mode in ("sampled", "greedy"):
            if mode not in summary["before"]:
                continue
            cells = [
                f"{summary[w][mode]['success']:.2f} ({summary[w][mode]['episodes']} episodes)"
                for w in ("before", "after")
            ]
            lines.append(f"{split + ', ' + mode:26s} {cells[0]:>22s} {cells[1]:>22s}")
    else:
        lines.append(f"no {summary['split']} tasks: no evaluation (set sft.eval_split)")
    secs = summary["seconds"]
    lines.append(
        f"{secs['total']:.0f} s in all: {secs['collect']:.0f} s replaying walkthroughs, "
        f"{secs['train']:.0f} s training, {secs['eval']:.0f} s evaluating"
    )
    lines.append(f"model: {summary['model']}  (train from it with --set model.path=...)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """SFT, evaluate before and after, save the model; print the summary table."""
    from slea.train.config import TrainConfig
    from slea.train.sft import run_sft
    from slea.train.trainer import Trainer

    cfg = TrainConfig.from_yaml(args.config, args.set)
    if args.quiet:
        cfg = cfg.replace("logging.progress=false")
    run_dir = Path(cfg.run.dir)
    created = not run_dir.exists()
    try:
        with Trainer(cfg) as trainer:
            summary = run_sft(trainer)
    except BaseException:
        if created:  # a failed run leaves nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    print(format_summary(summary))
    sys.stdout.flush()
    return 0
