"""Train the CPU demo from Python instead of the CLI.

python examples/train_textworld.py                      # the full demo (a few minutes)
python examples/train_textworld.py train.iterations=2   # any config override, as with --set
"""

from __future__ import annotations

import sys
from pathlib import Path

import slea
from slea.cli.train import format_summary

CONFIG = Path(__file__).resolve().parent / "configs" / "textworld_cpu.yaml"


def main(overrides: list[str]) -> int:
    cfg = slea.TrainConfig.from_yaml(CONFIG, overrides)
    with slea.Trainer(cfg) as trainer:
        summary = trainer.fit()
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
