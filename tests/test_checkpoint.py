"""Checkpoints: atomic save, manifest verification, keep-last-K, metrics truncation."""

from __future__ import annotations

import json
import os

import pytest

from slea.errors import SnapshotError
from slea.rundir import (
    DIR_MODE,
    FILE_MODE,
    CheckpointManager,
    atomic_write_text,
    install_dir,
    read_metrics,
    staging_dir,
    truncate_metrics,
)
from slea.train.logging import MetricsLogger, flatten


def _writer(payload: str):
    def write(d):
        (d / "model").mkdir()
        (d / "model" / "w.bin").write_text(payload)
        (d / "state.json").write_text(json.dumps({"p": payload}))

    return write


def test_save_list_verify_and_keep_last(tmp_path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for it in (1, 2, 3):
        path = mgr.save(it, _writer(f"w{it}"))
        assert path.name == f"iter_{it}"
    assert [i for i, _ in mgr.list()] == [2, 3]
    it, latest = mgr.latest()
    assert it == 3 and (latest / "model" / "w.bin").read_text() == "w3"
    manifest = mgr.verify(latest)
    assert manifest["iteration"] == 3 and set(manifest["files"]) == {"model/w.bin", "state.json"}
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_resaving_an_iteration_replaces_it(tmp_path) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(4, _writer("a"))
    mgr.save(4, _writer("b"))
    assert (mgr.path(4) / "model" / "w.bin").read_text() == "b"
    assert [i for i, _ in mgr.list()] == [4]


def test_failed_save_leaves_previous_checkpoints_untouched(tmp_path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(1, _writer("good"))

    def boom(d):
        (d / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        mgr.save(2, boom)
    assert [i for i, _ in mgr.list()] == [1]
    mgr.verify(mgr.path(1))
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]


def test_corruption_is_detected_with_a_fix(tmp_path) -> None:
    mgr = CheckpointManager(tmp_path)
    path = mgr.save(1, _writer("good"))
    (path / "model" / "w.bin").write_text("evil")
    with pytest.raises(
        SnapshotError, match=r"w\.bin is corrupted.*delete .* to resume from the previous"
    ):
        mgr.verify(path)
    (path / "model" / "w.bin").unlink()
    with pytest.raises(SnapshotError, match="missing"):
        mgr.verify(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(SnapshotError, match="unreadable"):
        mgr.verify(path)
    os.remove(path / "manifest.json")
    with pytest.raises(SnapshotError, match=r"no manifest\.json"):
        mgr.verify(path)


def test_atomic_write_text(tmp_path) -> None:
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two" and os.listdir(p.parent) == ["f.txt"]


def test_written_files_and_directories_get_the_usual_modes(tmp_path) -> None:
    # not the 0o600 / 0o700 of temporary files: what open() and mkdir give under the umask
    umask = os.umask(0o022)
    os.umask(umask)
    assert FILE_MODE == 0o666 & ~umask and DIR_MODE == 0o777 & ~umask
    atomic_write_text(tmp_path / "f.txt", "x")
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == FILE_MODE
    staged = staging_dir(tmp_path / "out")
    (staged / "a").write_text("x")
    final = install_dir(staged, tmp_path / "out")
    assert final.stat().st_mode & 0o777 == DIR_MODE
    ckpt = CheckpointManager(tmp_path / "run").save(1, _writer("w"))
    assert ckpt.stat().st_mode & 0o777 == DIR_MODE
    assert (ckpt / "manifest.json").stat().st_mode & 0o777 == FILE_MODE


def test_metrics_logger_and_truncation(tmp_path) -> None:
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for it in range(1, 5):
            log.log(
                {"kind": "train", "iteration": it, "success": it / 4, "timing": {"update": 0.1}}
            )
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "iter')  # torn line from a killed process
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in recs] == [1, 2, 3, 4]
    truncate_metrics(tmp_path / "metrics.jsonl", 2)
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]
    assert flatten({"a": {"b": 1, "c": "x"}, "d": True, "e": float("nan")}) == {
        "a/b": 1.0,
        "d": 1.0,
    }
