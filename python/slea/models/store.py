"""The model cache on disk: where models live, their manifests, atomic installs.

A model directory is a Hugging Face model directory (``config.json``, ``model.safetensors``, the
tokenizer files) plus :data:`MANIFEST`, a small JSON file saying where the weights came from and
what converted them. Directories are built in a hidden staging directory next to their final place
(``.NAME.tmp-XXXX``) and renamed into place when complete, so the cache never holds a half-written
model: a directory under its final name is whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from slea.rundir import atomic_write_text

MANIFEST = "slea-model.json"
"""Name of the manifest file in every model directory slea writes."""

MANIFEST_FORMAT = 1
"""Version of the manifest's layout (key ``format``)."""


def cache_root() -> Path:
    """Where fetched models live: ``$SLEA_CACHE/models``, else ``~/.cache/slea/models``."""
    root = os.environ.get("SLEA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "slea")
    return Path(root) / "models"


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
    """Write ``data`` as the manifest of ``model_dir`` atomically."""
    path = Path(model_dir) / MANIFEST
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
