"""Exceptions of slea.

Every error slea raises on purpose is a :class:`SleaError` (or a ``ValueError`` / ``TypeError``
where Python users expect one). The Rust core's errors map here: snapshot corruption becomes
:class:`SnapshotError`, argument mistakes become ``ValueError``, I/O failures ``OSError``.
"""

from __future__ import annotations

from slea._core import SleaError, SnapshotError


class ConfigError(SleaError, ValueError):
    """A configuration value or key is invalid; the message names the key and the fix."""


class EnvError(SleaError):
    """An environment failed or is misconfigured (missing data, missing package, dead worker)."""


class EngineError(SleaError):
    """A generation engine (a generation server) failed or answered something unusable; the
    message names the server, the request and the fix."""


class ModelFileError(SleaError, ValueError):
    """A model file is missing, corrupt, truncated, unsupported or fails its checksum; the message
    names the file and the fix."""


class MissingExtraError(SleaError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""


def require(module: str, extra: str, feature: str) -> object:
    """Import ``module`` or raise :class:`MissingExtraError` telling which extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{feature} needs the '{module}' package: pip install 'slea-rl[{extra}]'"
        ) from exc


__all__ = [
    "ConfigError",
    "EngineError",
    "EnvError",
    "MissingExtraError",
    "ModelFileError",
    "SleaError",
    "SnapshotError",
    "require",
]
