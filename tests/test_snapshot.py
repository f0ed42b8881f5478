"""Library snapshots: round trip, corruption detection, newer formats, crash safety of save."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from reference.library_ref import GridEmbedder, cand, small_config

import slea
from slea import _core


def small_library() -> slea.ExperienceLibrary:
    lib = slea.ExperienceLibrary(small_config(), embedder=GridEmbedder(12))
    lib.admit(
        [
            cand("t1", score=1.0, cluster_ids=(3,), episode_ids=(7,)),
            cand("t4", zone="warning", level="example", score=0.0, observation="o", action="a"),
        ],
        iteration=2,
    )
    lib.retrieve(9, "q1")
    lib.record_outcome([1], True)
    return lib


def test_round_trip(tmp_path: Path) -> None:
    lib = small_library()
    path = tmp_path / "lib.snap"
    lib.save(path)
    back = slea.ExperienceLibrary.load(path, embedder=GridEmbedder(12))
    assert back._snapshot_bytes() == lib._snapshot_bytes() == path.read_bytes()
    assert back.entries() == lib.entries()
    assert back.config == lib.config
    assert back.version == lib.version
    assert back.pool(9) == lib.pool(9) and back.pool(3) == lib.pool(3)
    assert [e.id for e in back.retrieve(3, "")] == [e.id for e in lib.retrieve(3, "")]
    # Admission continues identically after a reload (rate-limit state and ids included).
    more = [cand("t7", score=0.5), cand("t8", zone="warning", score=0.1)]
    assert lib.admit(more, 2) == back.admit(more, 2)
    assert lib._snapshot_bytes() == back._snapshot_bytes()


def test_default_embedder_is_restored(tmp_path: Path) -> None:
    lib = slea.ExperienceLibrary(
        slea.LibraryConfig(strategy_capacity=7, ema_alpha=0.25), embedder=slea.HashingEmbedder(32)
    )
    lib.admit([cand("open the door")], 0)
    lib.save(tmp_path / "a.snap")
    back = slea.ExperienceLibrary.load(tmp_path / "a.snap")
    assert isinstance(back.embedder, slea.HashingEmbedder) and back.embedder.dim == 32
    assert back.config == lib.config


def test_embedder_mismatch_is_refused(tmp_path: Path) -> None:
    small_library().save(tmp_path / "a.snap")
    with pytest.raises(slea.SnapshotError, match="grid-test-12"):
        slea.ExperienceLibrary.load(tmp_path / "a.snap")  # unknown embedder: must be passed
    with pytest.raises(slea.SnapshotError, match="hashing-v1-d12"):
        slea.ExperienceLibrary.load(tmp_path / "a.snap", embedder=slea.HashingEmbedder(12))


def test_every_flipped_byte_is_detected(tmp_path: Path) -> None:
    good = small_library()._snapshot_bytes()
    path = tmp_path / "x.snap"
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(slea.SnapshotError):
            slea.ExperienceLibrary.load(path, embedder=GridEmbedder(12))
    # Lowest and highest bit flips, through the in-memory parser (the path after reading).
    for i in range(len(good)):
        for bit in (0, 7):
            bad = bytearray(good)
            bad[i] ^= 1 << bit
            with pytest.raises(slea.SnapshotError):
                _core.Library.from_bytes(bytes(bad))
    # Every truncation too.
    for n in range(len(good)):
        with pytest.raises(slea.SnapshotError):
            _core.Library.from_bytes(good[:n])
    print(f"{len(good)}-byte snapshot: {len(good) * 3} flips and {len(good)} truncations detected")


def test_newer_format_version_gets_a_clear_error(tmp_path: Path) -> None:
    good = bytearray(small_library()._snapshot_bytes())
    assert good[:8] == b"SLEASNAP"
    newer = bytearray(good)
    newer[8:12] = (_core.SNAPSHOT_FORMAT_VERSION + 1).to_bytes(4, "little")
    (tmp_path / "n.snap").write_bytes(bytes(newer))
    with pytest.raises(slea.SnapshotError, match="newer than this slea reads"):
        slea.ExperienceLibrary.load(tmp_path / "n.snap")
    (tmp_path / "j.snap").write_bytes(b"not a snapshot at all")
    with pytest.raises(slea.SnapshotError, match="magic"):
        slea.ExperienceLibrary.load(tmp_path / "j.snap")
    with pytest.raises(FileNotFoundError):
        slea.ExperienceLibrary.load(tmp_path / "missing.snap")
    kind, fmt, schema, sections = _core.snapshot_info(_write(tmp_path / "ok.snap", bytes(good)))
    assert (kind, fmt, schema) == ("slea.library", 1, 1)
    assert [s for s, _ in sections] == ["params", "state", "entries", "embeddings", "pools", "hnsw"]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    lib = small_library()
    path = tmp_path / "lib.snap"
    lib.save(path)
    lib.admit([cand("t6")], 3)
    lib.save(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.snap"]
    assert slea.ExperienceLibrary.load(path, embedder=GridEmbedder(12)).version == lib.version
    with pytest.raises(OSError):
        lib.save(tmp_path)  # a directory
    with pytest.raises(OSError):
        lib.save(tmp_path / "no" / "such" / "dir.snap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.snap"]


CHILD = textwrap.dedent(
    """
    import sys
    import slea
    lib = slea.ExperienceLibrary.load(sys.argv[1])
    first = lib.entries()[0].id
    print("ready", flush=True)
    while True:
        lib.record_outcome([first], True)
        lib.save(sys.argv[2])
    """
)


def big_library(tmp_path: Path, n: int) -> tuple[Path, float]:
    """A library of ``n`` long entries saved to disk, and the time one save takes."""
    cfg = slea.LibraryConfig(
        strategy_capacity=n,
        warning_capacity=1,
        max_strategies_per_step=n,
        max_text_chars=4000,
        novelty_threshold=1.0,
    )
    lib = slea.ExperienceLibrary(cfg, embedder=slea.HashingEmbedder(32))
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    texts = [" ".join(rng.choices(words, k=500)) for _ in range(n)]
    report = lib.admit([cand(t, level="example", score=rng.random()) for t in texts], 0)
    assert len(lib) == report.count("admitted") > n * 0.9
    src = tmp_path / "big.snap"
    t0 = time.perf_counter()
    lib.save(src)
    return src, time.perf_counter() - t0


def kill_during_save(tmp_path: Path, runs: int, n: int, max_runs: int = 0) -> dict[str, int]:
    """Kill a saving process ``runs`` times at random moments (and, up to ``max_runs``, until
    at least one kill has landed inside a save: on a loaded machine the timing drifts)."""
    src, save_s = big_library(tmp_path, n)
    target = tmp_path / "lib.snap"
    target.write_bytes(src.read_bytes())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    rng = random.Random(1)
    counts = {"runs": 0, "temp_left": 0, "loaded": 0}
    for i in range(max(runs, max_runs)):
        if i >= runs and counts["temp_left"] >= 1:
            break
        p = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(src), str(target)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 2.5 * save_s))
        p.send_signal(signal.SIGKILL)
        p.wait()
        counts["runs"] += 1
        lib = slea.ExperienceLibrary.load(target)  # must never raise
        assert len(lib) == len(slea.ExperienceLibrary.load(src))
        counts["loaded"] += 1
        temps = [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]
        counts["temp_left"] += len(temps)
        for q in temps:
            q.unlink()
    print(f"save of {src.stat().st_size / 1e6:.1f} MB takes {save_s * 1e3:.0f} ms; {counts}")
    return counts


def test_sigkill_during_save_leaves_a_loadable_snapshot(tmp_path: Path) -> None:
    counts = kill_during_save(tmp_path, runs=6, n=500, max_runs=30)
    assert counts["loaded"] == counts["runs"] >= 6
    assert counts["temp_left"] >= 1, "at least one kill should land inside a save"


@pytest.mark.slow
def test_sigkill_during_save_many_times(tmp_path: Path) -> None:
    counts = kill_during_save(tmp_path, runs=40, n=4000)
    assert counts["loaded"] == counts["runs"] == 40
