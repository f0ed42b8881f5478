"""The run directory, shared by training and reports: its file names, atomic writes, checksummed
manifests, checkpoints and the metrics file. It sits below :mod:`slea.train` and
:mod:`slea.report`, so neither imports the other.

Layout of a run directory::

    config.yaml        the resolved config (written when the run starts)
    metrics.jsonl      one JSON record per line (``kind`` train or eval, ``iteration``)
    model_init/        the initial model and tokenizer (the tiny model, the KL reference)
    checkpoints/iter_N/  model, optimizer, library, clusterer, RNG state, manifest.json
    report/            the HTML report and its figures
    summary.json       untrained vs trained success

:func:`atomic_write_bytes` is the one atomic-write helper of the package (temporary file in the
same directory, fsync, rename, fsync of the directory).

A checkpoint is written into a temporary sibling directory, every file is fsynced, a
``manifest.json`` (iteration, file sizes and SHA-256) is written last, and the directory is renamed
into place. A crash at any moment leaves either the old set of checkpoints or the new one, never a
half-written ``iter_N``. Older checkpoints are pruned only after the new one is in place, and
loading never writes, so a failed resume cannot damage a good checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slea.errors import SnapshotError

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
REPORT = "report"
_NAME = re.compile(r"^iter_(\d+)$")


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CheckpointManager:
    """The checkpoints of one run: save atomically, list, verify, prune.

    Args:
        run_dir: the run directory (checkpoints live in ``run_dir/checkpoints``).
        keep_last: how many of the most recent checkpoints to keep.
    """

    def __init__(self, run_dir: str | os.PathLike[str], keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def path(self, iteration: int) -> Path:
        """Directory of the checkpoint of ``iteration``."""
        return self.root / f"iter_{iteration}"

    def list(self) -> list[tuple[int, Path]]:
        """Complete-looking checkpoints ``(iteration, path)``, oldest first (temporaries excluded)."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest(self) -> tuple[int, Path] | None:
        """The most recent checkpoint, or None."""
        items = self.list()
        return items[-1] if items else None

    def save(
        self, iteration: int, write: Callable[[Path], None], meta: dict[str, Any] | None = None
    ) -> Path:
        """Create ``iter_<iteration>`` by calling ``write(tmp_dir)``, then manifest, fsync, rename.

        Returns the final directory. Prunes all but the last ``keep_last`` checkpoints afterwards.
        """
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-iter_{iteration}-", dir=self.root))
        try:
            write(tmp)
            files = {}
            for f in sorted(tmp.rglob("*")):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
                    files[str(f.relative_to(tmp))] = {
                        "bytes": f.stat().st_size,
                        "sha256": sha256_file(f),
                    }
            manifest = {"iteration": iteration, "files": files, **(meta or {})}
            atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
            for d in sorted({f.parent for f in tmp.rglob("*") if f.is_file()}):
                fsync_dir(d)
            final = self.path(iteration)
            if final.exists():  # re-saving the same iteration: move the old one aside first
                old = self.root / f".old-iter_{iteration}-{os.getpid()}"
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.prune()
        return final

    def prune(self) -> None:
        """Delete all but the last ``keep_last`` checkpoints, and stale temporaries."""
        items = self.list()
        for _, p in items[: max(0, len(items) - self.keep_last)]:
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".tmp-iter_*"):
            shutil.rmtree(p, ignore_errors=True)

    @staticmethod
    def verify(path: str | os.PathLike[str]) -> dict[str, Any]:
        """Check a checkpoint against its manifest; return the manifest or raise SnapshotError."""
        p = Path(path)
        fix = f"delete {p} to resume from the previous checkpoint, or start a new run"
        mf = p / MANIFEST
        if not mf.is_file():
            raise SnapshotError(
                f"checkpoint {p} has no {MANIFEST} (incomplete or not a checkpoint); {fix}"
            )
        try:
            manifest = json.loads(mf.read_text())
            files = manifest["files"]
            int(manifest["iteration"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"checkpoint {p}: unreadable {MANIFEST} ({exc}); {fix}") from None
        for name, info in files.items():
            f = p / name
            if not f.is_file():
                raise SnapshotError(f"checkpoint {p}: file {name} is missing; {fix}")
            if f.stat().st_size != info["bytes"] or sha256_file(f) != info["sha256"]:
                raise SnapshotError(
                    f"checkpoint {p}: file {name} is corrupted (checksum mismatch); {fix}"
                )
        return dict(manifest)


# ---------------------------------------------------------------------------- metrics


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a metrics file (a torn last line from a crash is skipped)."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(path: str | os.PathLike[str], iteration: int) -> None:
    """Keep only records with ``iteration <= iteration`` (used when resuming from a checkpoint)."""
    p = Path(path)
    if not p.is_file():
        return
    keep = [r for r in read_metrics(p) if int(r.get("iteration", 0)) <= iteration]
    atomic_write_text(p, "".join(json.dumps(r) + "\n" for r in keep))


__all__ = [
    "CONFIG",
    "MANIFEST",
    "METRICS",
    "REPORT",
    "SUMMARY",
    "CheckpointManager",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "read_metrics",
    "sha256_file",
    "truncate_metrics",
]
