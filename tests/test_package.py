"""Package-level invariants: one version source, a light import, a typed public surface."""

from __future__ import annotations

import subprocess
import sys

import slea
import slea._core


def test_version_single_source() -> None:
    assert slea.__version__ == slea._core.__version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("slea-rl")
    except PackageNotFoundError:
        import pytest

        pytest.skip("slea-rl is not installed (in-place development build)")
    assert installed == slea.__version__


def test_import_is_light() -> None:
    code = "import sys, slea; bad = [m for m in ('torch', 'transformers', 'textworld') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_errors_hierarchy() -> None:
    assert issubclass(slea.SnapshotError, slea.SleaError)
    assert issubclass(slea.ConfigError, slea.SleaError)
    assert issubclass(slea.ConfigError, ValueError)
    assert issubclass(slea.SleaError, Exception)


def test_unknown_attribute() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute"):
        _ = slea.DoesNotExist  # type: ignore[attr-defined]


def test_cli_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "slea", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in out.stdout and "library" in out.stdout
