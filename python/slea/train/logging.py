"""Metrics: one JSON object per line in ``metrics.jsonl`` (always), TensorBoard and W&B (optional).

Each record has ``kind`` (``train`` or ``eval``) and ``iteration``; nested dicts are flattened with
``/`` for TensorBoard and W&B. :class:`Progress` draws a rich progress bar (iteration, env steps/s,
success rate, library size) and stays silent when disabled or not attached to a terminal.
"""

from __future__ import annotations

import importlib.util
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from slea.errors import require
from slea.rundir import METRICS


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numeric leaves of a nested dict as ``{"a/b": value}`` (bools and numpy scalars too)."""
    out: dict[str, float] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, bool | np.bool_):
            out[key] = float(v)
        elif isinstance(v, numbers.Real) and math.isfinite(float(v)):
            out[key] = float(v)
    return out


class MetricsLogger:
    """Append metrics records to ``<run>/metrics.jsonl`` and, when available, TensorBoard / W&B.

    Args:
        run_dir: the run directory.
        tensorboard: write TensorBoard events under ``<run>/tb`` when tensorboard is installed.
        wandb_project: also log to this W&B project (empty = off; needs the wandb package).
        config: the resolved config, sent to W&B.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        tensorboard: bool = True,
        wandb_project: str = "",
        config: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(run_dir) / METRICS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # closed in close()
        self._tb: Any = None
        self._wandb: Any = None
        if tensorboard and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tb"))
        if wandb_project:
            wandb: Any = require("wandb", "train", "W&B logging")
            self._wandb = wandb.init(project=wandb_project, config=config or {}, dir=str(run_dir))

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (flushed and fsynced, so a killed run keeps what it logged)."""
        self._file.write(json.dumps(record, default=float) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        step = int(record.get("iteration", 0))
        kind = str(record.get("kind", "train"))
        flat = flatten(record)
        if self._tb is not None:
            for k, v in flat.items():
                self._tb.add_scalar(f"{kind}/{k}", v, step)
            self._tb.flush()  # on disk now, like metrics.jsonl: a killed run keeps its curves
        if self._wandb is not None:
            self._wandb.log({f"{kind}/{k}": v for k, v in flat.items()}, step=step)

    def close(self) -> None:
        """Flush and close every sink."""
        if not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Progress:
    """A rich progress bar over training iterations, or any count of ``label`` units (no-op
    when ``enabled`` is False)."""

    def __init__(
        self, total: int, *, enabled: bool = True, start: int = 0, label: str = "train"
    ) -> None:
        self._bar: Any = None
        self.info = ""
        """What :meth:`update` last showed after the bar."""
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            transient=False,
        )
        self._task = self._bar.add_task(label, total=total, completed=start, info="")
        self._bar.start()

    def update(self, iteration: int, *, steps_per_s: float, success: float, library: int) -> None:
        """Advance to ``iteration`` and show env steps/s, success rate and library size."""
        self.info = f"{steps_per_s:6.1f} steps/s  success {success:4.2f}  library {library}"
        self.advance(iteration, self.info)

    def advance(self, completed: int, info: str = "", *, total: int | None = None) -> None:
        """Advance to ``completed`` units (of ``total``, when it is given: a new total) and
        show ``info`` after the bar."""
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=total, info=info)

    def close(self) -> None:
        """Stop drawing."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


__all__ = ["MetricsLogger", "Progress", "flatten"]
