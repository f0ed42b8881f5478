"""The model cache on disk: where models live, their manifests, atomic installs.

A model directory is a Hugging Face model directory (``config.json``, ``model.safetensors``, the
tokenizer files) plus :data:`MANIFEST`, a small JSON file saying where the weights came from and
what converted them. Directories are built in a hidden staging directory next to their final place
(``.NAME.tmp-XXXX``) and renamed into place when complete, so the cache never holds a half-written
model: a directory under its final name is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

MANIFEST = "slea-model.json"
"""Name of the manifest file in every model directory slea writes."""

MANIFEST_FORMAT = 1
"""Version of the manifest's layout (key ``format``)."""


def cache_root() -> Path:
    """Where fetched models live: ``$SLEA_CACHE/models``, else ``~/.cache/slea/models``."""
    root = os.environ.get("SLEA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "slea")
    return Path(root) / "models"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dir_size(path: str | os.PathLike[str]) -> int:
    """Total size in bytes of the regular files under ``path`` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def read_manifest(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a model directory; None when it has none or it is not a JSON object."""
    path = Path(model_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(model_dir: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write ``data`` as the manifest of ``model_dir`` (temp file + fsync + rename)."""
    path = Path(model_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def staging_dir(final: Path) -> Path:
    """A new empty hidden directory next to ``final`` (same filesystem, so renames are atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def install(staged: Path, final: Path, *, replace: bool) -> Path:
    """Move the complete directory ``staged`` to ``final`` atomically; returns ``final``.

    ``staged`` must be on the same filesystem (see :func:`staging_dir`). Its files are fsynced
    first. With ``replace``, an existing ``final`` is renamed aside, the new one renamed in, and
    the old one deleted; if the second rename fails the old one is put back. Without ``replace``
    an existing ``final`` raises ``FileExistsError`` and nothing moves.
    """
    _fsync_tree(staged)
    if final.exists() or final.is_symlink():
        if not replace:
            raise FileExistsError(f"{final} already exists")
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
        try:
            os.rename(staged, final)
        except BaseException:
            os.rename(old, final)
            raise
        _fsync_dir(final.parent)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.rename(staged, final)
        _fsync_dir(final.parent)
    return final


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(path: Path) -> None:
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
