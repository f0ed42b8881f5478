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
    .lock              held (flock) by the process that trains in the directory

:func:`atomic_write_bytes` is the one atomic-write helper of the package (temporary file in the
same directory, fsync, rename, fsync of the directory); :func:`install_dir` does the same for a
whole directory (a model, an adapter) built in :func:`staging_dir`.

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

from slea.errors import ConfigError, SleaError, SnapshotError

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
LOCK = ".lock"
MODEL_INIT = "model_init"
METRICS = "metrics.jsonl"
SUCCESS_KEYS = {
    "valid_sampled": "validation games, sampled",
    "valid_greedy": "validation games, greedy",
    "test_sampled": "held-out games, sampled",
    "test_greedy": "held-out games, greedy",
    "train_sampled": "training games, sampled",
}
"""The success rows of an ``eval`` metrics record (and of ``summary.json``), with their labels."""
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import (setting it to read it is not thread-safe later)
FILE_MODE = 0o666 & ~_UMASK
"""Mode of the files and directories written here (``0o777 & ~umask`` for directories): what
``open()`` and ``mkdir`` would give, not the ``0o600`` / ``0o700`` of temporary files."""
DIR_MODE = 0o777 & ~_UMASK


def _mkdtemp(prefix: str, parent: Path) -> Path:
    """A new directory with ``mkdir``'s usual mode (``tempfile.mkdtemp`` makes it ``0o700``)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, DIR_MODE)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (mode ``FILE_MODE``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
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


def fsync_tree(path: Path) -> None:
    """fsync every file and directory under ``path``."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def staging_dir(final: Path) -> Path:
    """A new empty hidden directory next to ``final`` (same filesystem, so renames are atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return _mkdtemp(f".{final.name}.tmp-", final.parent)


def install_dir(staged: Path, final: Path, *, replace: bool = True) -> Path:
    """Move the complete directory ``staged`` (from :func:`staging_dir`) to ``final`` atomically.

    Its files are fsynced first. With ``replace``, an existing ``final`` is renamed aside, the new
    one renamed in (the old one is put back if that fails) and the old one deleted; without it an
    existing ``final`` raises ``FileExistsError`` and nothing moves. Returns ``final``.
    """
    fsync_tree(staged)
    if final.exists() or final.is_symlink():
        if not replace:
            raise FileExistsError(f"{final} already exists")
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        old.rmdir()
        os.rename(final, old)
        try:
            os.rename(staged, final)
        except BaseException:
            os.rename(old, final)
            raise
        fsync_dir(final.parent)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.rename(staged, final)
        fsync_dir(final.parent)
    return final


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """fsync every file under ``directory`` and write its ``manifest.json`` (sizes and SHA-256 of
    every file, plus ``meta``) atomically; returns the manifest."""
    directory = Path(directory)
    files = {}
    for f in sorted(directory.rglob("*")):
        if f.is_file() and f != directory / MANIFEST:
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            files[str(f.relative_to(directory))] = {
                "bytes": f.stat().st_size,
                "sha256": sha256_file(f),
            }
    manifest = {**(meta or {}), "files": files}
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    for d in sorted({f.parent for f in directory.rglob("*") if f.is_file()}):
        fsync_dir(d)
    return manifest


def verify_manifest(directory: Path, what: str, fix: str) -> dict[str, Any]:
    """Check every file of ``directory`` against its ``manifest.json``; return the manifest or
    raise SnapshotError naming ``what`` (e.g. "checkpoint DIR"), the file and ``fix``."""
    p = Path(directory)
    mf = p / MANIFEST
    if not mf.is_file():
        raise SnapshotError(f"{what} has no {MANIFEST} (incomplete or not written by slea); {fix}")
    try:
        manifest = json.loads(mf.read_bytes().decode("utf-8"))
        files = manifest["files"]
        checks = [
            (str(name), int(info["bytes"]), str(info["sha256"])) for name, info in files.items()
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"{what}: unreadable {MANIFEST} ({exc}); {fix}") from None
    for name, size, digest in checks:
        f = p / name
        if not f.is_file():
            raise SnapshotError(f"{what}: file {name} is missing; {fix}")
        if f.stat().st_size != size or sha256_file(f) != digest:
            raise SnapshotError(f"{what}: file {name} is corrupted (checksum mismatch); {fix}")
    return dict(manifest)


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
        tmp = _mkdtemp(f".tmp-iter_{iteration}-", self.root)
        try:
            write(tmp)
            write_manifest(tmp, {"iteration": iteration, **(meta or {})})
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
        manifest = verify_manifest(p, f"checkpoint {p}", fix)
        try:
            int(manifest["iteration"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"checkpoint {p}: unreadable {MANIFEST} ({exc}); {fix}") from None
        return manifest


# ---------------------------------------------------------------------------- metrics


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a metrics file (a torn last line from a crash is skipped)."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for raw in p.read_bytes().splitlines():
        try:  # a torn or damaged line (not UTF-8, not JSON, not a record) is skipped
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def truncate_metrics(path: str | os.PathLike[str], iteration: int) -> None:
    """Keep only records with ``iteration <= iteration`` (used when resuming from a checkpoint)."""
    p = Path(path)
    if not p.is_file():
        return
    keep = [r for r in read_metrics(p) if _iteration_of(r) <= iteration]
    atomic_write_text(p, "".join(json.dumps(r) + "\n" for r in keep))


def _iteration_of(record: dict[str, Any]) -> int:
    try:
        return int(record.get("iteration", 0))
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------------------- the run lock


class RunLock:
    """An exclusive lock on a run directory, held by one process for the life of a run.

    It is an ``flock`` on ``<run>/.lock``: the operating system releases it when the holder
    exits or is killed, so the lock file of a dead run never blocks a new one. The file holds the
    holder's pid, host and start time, which the refusal message names.
    """

    def __init__(self, run_dir: Path, fd: int) -> None:
        import fcntl

        self.run_dir = run_dir
        self._fd: int | None = fd
        # bound now: a lock released by the garbage collector at interpreter exit cannot import
        self._unlock: Callable[[int], Any] = lambda f: fcntl.flock(f, fcntl.LOCK_UN)
        self._close = os.close

    @classmethod
    def acquire(
        cls, run_dir: str | os.PathLike[str], purpose: str = "training", key: str = "run.dir"
    ) -> RunLock:
        """Lock ``run_dir`` (created if missing) or raise naming the process that holds it;
        ``key`` is the config key the errors name (``engine.adapter_dir`` for the adapters)."""
        import fcntl
        import socket
        import time

        rd = Path(run_dir)
        if rd.exists() and not rd.is_dir():
            raise ConfigError(f"{key}: {str(rd)!r} is a file, not a directory; choose another")
        rd.mkdir(parents=True, exist_ok=True)
        fd = os.open(rd / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise SleaError(
                f"{key}: {str(rd)!r} is in use by {holder}; wait for that run to end or stop "
                f"it, or choose another {key}"
            ) from None
        info = f"pid {os.getpid()} on {socket.gethostname()} ({purpose} since "
        info += time.strftime("%Y-%m-%d %H:%M:%S") + ")"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        return cls(rd, fd)

    @property
    def held(self) -> bool:
        """True until :meth:`release`."""
        return self._fd is not None

    def release(self) -> None:
        """Unlock (idempotent); the lock file stays, unlocked."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self._unlock(fd)
        finally:
            self._close(fd)

    def __del__(self) -> None:
        self.release()


__all__ = [
    "CONFIG",
    "DIR_MODE",
    "FILE_MODE",
    "LOCK",
    "MANIFEST",
    "METRICS",
    "MODEL_INIT",
    "REPORT",
    "SUCCESS_KEYS",
    "SUMMARY",
    "CheckpointManager",
    "RunLock",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "fsync_tree",
    "install_dir",
    "read_metrics",
    "sha256_file",
    "staging_dir",
    "truncate_metrics",
    "verify_manifest",
    "write_manifest",
]
