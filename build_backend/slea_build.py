"""slea's PEP 517 build backend: maturin, with portable Linux wheels by default.

``pip install .`` and ``pip wheel .`` call maturin through this module. maturin's own backend
builds with ``--compatibility off`` (a ``linux_x86_64`` wheel that needs the build machine's
glibc); here a wheel built on glibc Linux is linked with zig against glibc 2.28 instead, so it is
tagged ``manylinux_2_28`` and installs on any Linux with glibc >= 2.28. zig comes from the
``ziglang`` package, which pip installs into the isolated build environment on Linux only.

Everything else is maturin's: sdists, metadata, editable installs (``pip install -e .`` stays a
native build, no zig). Set ``MATURIN_PEP517_ARGS`` (or pass ``-C maturin.build-args=...``) to
choose maturin's options yourself; then nothing is added.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

import maturin
from maturin import (
    build_editable,
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: The manylinux tag of the Linux wheels (glibc 2.28: Debian 10, Ubuntu 18.10, RHEL 8 and newer).
MANYLINUX = "manylinux_2_28"
#: zig versions the build is tested with (the ``ziglang`` package on PyPI).
ZIGLANG = "ziglang>=0.13,<0.18"


def _portable() -> bool:
    """True on glibc Linux when the user did not pass maturin options of their own."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    return not os.environ.get("MATURIN_PEP517_ARGS")


def _user_args(config_settings: Mapping[str, Any] | None) -> bool:
    return bool(config_settings) and any(
        k in config_settings for k in ("maturin.build-args", "build-args")
    )


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    """maturin's requirements, plus ``ziglang`` for a portable Linux wheel."""
    reqs = list(maturin.get_requires_for_build_wheel(config_settings))
    if _portable() and not _user_args(config_settings):
        reqs.append(ZIGLANG)
    return reqs


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Build the wheel; on glibc Linux with ``--zig --compatibility manylinux_2_28``."""
    settings = dict(config_settings or {})
    if _portable() and not _user_args(settings):
        settings["maturin.build-args"] = ["--compatibility", MANYLINUX, "--zig"]
    return maturin.build_wheel(wheel_directory, settings, metadata_directory)


__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]
