"""build_backend/slea_build.py: which maturin options ``pip wheel .`` gets, with maturin stubbed.

The real build (zig, manylinux_2_28, ``auditwheel show``) runs in ``.ci/run``; these tests pin the
choice the backend makes on each platform and that a user's own maturin options win.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def backend(monkeypatch):
    calls: list[tuple[str, dict]] = []
    fake = types.ModuleType("maturin")

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        calls.append((wheel_directory, dict(config_settings or {})))
        return "slea_rl-0-cp310-abi3-any.whl"

    fake.build_wheel = build_wheel
    fake.get_requires_for_build_wheel = lambda config_settings=None: ["puccinialin"]
    for name in (
        "build_editable",
        "build_sdist",
        "get_requires_for_build_editable",
        "get_requires_for_build_sdist",
        "prepare_metadata_for_build_editable",
        "prepare_metadata_for_build_wheel",
    ):
        setattr(fake, name, lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "maturin", fake)
    monkeypatch.delenv("MATURIN_PEP517_ARGS", raising=False)
    spec = importlib.util.spec_from_file_location(
        "slea_build_under_test", ROOT / "build_backend" / "slea_build.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.calls = calls
    return mod


def _on(monkeypatch, mod, platform: str, libc: str) -> None:
    monkeypatch.setattr(mod.sys, "platform", platform)
    monkeypatch.setattr(mod.platform, "libc_ver", lambda: (libc, "2.36"))


def test_glibc_linux_builds_manylinux_with_zig(backend, monkeypatch) -> None:
    _on(monkeypatch, backend, "linux", "glibc")
    assert backend.get_requires_for_build_wheel() == ["puccinialin", backend.ZIGLANG]
    backend.build_wheel("out")
    assert backend.calls == [
        ("out", {"maturin.build-args": ["--compatibility", "manylinux_2_28", "--zig"]})
    ]


@pytest.mark.parametrize(("platform", "libc"), [("darwin", ""), ("linux", "musl"), ("win32", "")])
def test_other_platforms_get_maturins_defaults(backend, monkeypatch, platform, libc) -> None:
    _on(monkeypatch, backend, platform, libc)
    assert backend.get_requires_for_build_wheel() == ["puccinialin"]
    backend.build_wheel("out", {"x": "1"})
    assert backend.calls == [("out", {"x": "1"})]


def test_the_users_maturin_options_win(backend, monkeypatch) -> None:
    _on(monkeypatch, backend, "linux", "glibc")
    backend.build_wheel("out", {"maturin.build-args": "--compatibility off"})
    assert backend.calls[-1] == ("out", {"maturin.build-args": "--compatibility off"})
    assert backend.get_requires_for_build_wheel({"build-args": "-v"}) == ["puccinialin"]
    monkeypatch.setenv("MATURIN_PEP517_ARGS", "--compatibility off")
    assert backend.get_requires_for_build_wheel() == ["puccinialin"]
    backend.build_wheel("out")
    assert backend.calls[-1] == ("out", {})


def test_pyproject_uses_the_backend_and_ships_it_in_the_sdist() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    bs = cfg["build-system"]
    assert bs["build-backend"] == "slea_build" and bs["backend-path"] == ["build_backend"]
    assert (ROOT / bs["backend-path"][0] / "slea_build.py").is_file()
    include = cfg["tool"]["maturin"]["include"]
    assert {"path": "build_backend/slea_build.py", "format": "sdist"} in include
