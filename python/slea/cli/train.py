"""``slea train --config FILE [--set key=value ...] [--dry-run]`` (or ``--resume RUN_DIR``).

Trains, writes the report, and prints a table of untrained vs trained success (held-out games,
sampled and greedy, with episode counts) and the report's path. ``--dry-run`` prints the plan of
the run instead (see :mod:`slea.train.preflight`) and exits without loading weights or writing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slea train``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="FILE", help="YAML config (see examples/configs)")
    src.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set update.lr=3e-4 (repeatable; not with --resume)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: apply edits made to the run's config.yaml since its last checkpoint "
        "(they are recorded in metrics.jsonl); without it an edited config is refused",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the config, build the task lists, check the model and data, print the plan "
        "(tasks, batch, token budgets, a GPU memory estimate) and exit: loads no weights and "
        "writes no run directory",
    )


def format_summary(summary: dict[str, Any]) -> str:
    """The untrained-vs-trained table printed at the end of ``slea train``."""
    from slea.rundir import SUCCESS_KEYS

    lines = [f"{'success rate':26s} {'untrained':>22s} {'trained':>22s}"]
    for key, label in SUCCESS_KEYS.items():
        row = summary.get("success", {}).get(key)
        if not row:
            continue
        cells = []
        for which in ("untrained", "trained"):
            r = row.get(which)
            cells.append(f"{r['success']:.2f} ({r['episodes']} episodes)" if r else "-")
        lines.append(f"{label:26s} {cells[0]:>22s} {cells[1]:>22s}")
    lines.append(
        f"{summary.get('iterations', 0)} iterations, {summary.get('env_steps', 0)} env steps, "
        f"{summary.get('train_time_s', 0.0):.0f} s of training"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Train (or resume), write the report, print the summary table and the report path."""
    from slea.errors import ConfigError
    from slea.report.html import write_report
    from slea.train.config import TrainConfig
    from slea.train.trainer import Trainer

    if args.allow_config_change and not args.resume:
        raise ConfigError("--allow-config-change only goes with --resume")
    if args.dry_run:
        from slea.train.preflight import dry_run, format_plan

        if args.resume:
            raise ConfigError("--dry-run goes with --config FILE, not with --resume")
        print(format_plan(dry_run(TrainConfig.from_yaml(args.config, args.set))))
        return 0
    if args.resume:
        if args.set:
            raise ConfigError("--set cannot be combined with --resume: a run keeps its config")
        trainer = Trainer.resume(args.resume, allow_config_change=args.allow_config_change)
    else:
        cfg = TrainConfig.from_yaml(args.config, args.set)
        if args.quiet:
            cfg = cfg.replace("logging.progress=false")
        trainer = Trainer(cfg)
    with trainer:
        summary = trainer.fit()
    if trainer.rank != 0:
        return 0
    report = write_report(trainer.run_dir)
    print(format_summary(summary))
    print(f"report: {report}")
    sys.stdout.flush()
    return 0
