"""``slea library show | export | import | stats``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import slea
from slea.cli import main


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    lib = slea.ExperienceLibrary(embedder=slea.HashingEmbedder(64))
    lib.admit(
        [
            slea.Candidate(
                "Open containers before searching rooms.",
                "strategy",
                "principle",
                1.0,
                cluster_ids=(3,),
                episode_ids=(10,),
            ),
            slea.Candidate(
                "Do not eat raw food.",
                "warning",
                "example",
                0.0,
                observation="You see raw chicken.",
                action="eat chicken",
            ),
        ],
        iteration=1,
    )
    lib.retrieve(3, "kitchen")
    lib.record_outcome([1, 1], True)
    lib.record_outcome([1, 2], False)
    path = tmp_path / "lib.snap"
    lib.save(path)
    return path


def test_show(snap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "show", str(snap)]) == 0
    out = capsys.readouterr().out
    assert "[1] strategy/principle score=1 used=3 utility=0.50" in out
    assert "Do not eat raw food." in out and "demo: 'You see raw chicken.'" in out
    assert "2 of 2 entries shown" in out
    assert main(["library", "show", str(snap), "--zone", "warning", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [2]


def test_stats(snap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "stats", str(snap)]) == 0
    out = capsys.readouterr().out
    assert "2 entries, 1 clusters" in out
    assert "strategy: principle 1/100" in out
    assert "hit rate 1.00" in out
    assert "utility (most used first)" in out and "uses=2" in out
    assert main(["library", "stats", str(snap), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["entries"] == 2 and st["utility"][0]["utility"] == 0.5


def test_export_import_round_trip(
    snap: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lib.jsonl"
    assert main(["library", "export", str(snap), str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == [1, 2]
    assert lines[0]["linked_clusters"] == [3] and lines[1]["action"] == "eat chicken"
    new = tmp_path / "new.snap"
    assert main(["library", "import", str(out), str(new), "--dim", "64"]) == 0
    assert "imported 2 entries" in capsys.readouterr().out
    a, b = slea.ExperienceLibrary.load(snap), slea.ExperienceLibrary.load(new)
    assert [e.to_dict() for e in a.entries()] == [e.to_dict() for e in b.entries()]
    assert a.pool(3) == b.pool(3)
    assert all(
        (x.embedding == y.embedding).all() for x, y in zip(a.entries(), b.entries(), strict=True)
    )
    # Importing the same ids again fails and leaves the snapshot as it was.
    before = new.read_bytes()
    assert main(["library", "import", str(out), str(new)]) == 1
    assert "already used" in capsys.readouterr().err
    assert new.read_bytes() == before


def test_errors_are_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "show", str(tmp_path / "missing.snap")]) == 1
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"SLEASNAP" + b"\x01\x00\x00\x00" + b"\x00" * 40)
    assert main(["library", "stats", str(bad)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_cli_subprocess(snap: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "slea", "library", "stats", str(snap)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": ":".join(sys.path)},
    )
    assert "2 entries" in out.stdout


def test_inspecting_needs_no_embedder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Custom:
        dim, name = 8, "custom-embedder-v3"

        def embed(self, texts):  # type: ignore[no-untyped-def]
            import numpy as np

            return np.ones((len(texts), 8), np.float32)

    lib = slea.ExperienceLibrary(embedder=Custom())
    lib.admit([slea.Candidate("a tip", "strategy", "principle", 1.0)], 0)
    lib.save(tmp_path / "c.snap")
    assert main(["library", "stats", str(tmp_path / "c.snap")]) == 0
    assert "embedder custom-embedder-v3" in capsys.readouterr().out
    assert main(["library", "export", str(tmp_path / "c.snap"), str(tmp_path / "c.jsonl")]) == 0
    # Importing needs the real embedder, which the CLI cannot build: a readable error.
    assert main(["library", "import", str(tmp_path / "c.jsonl"), str(tmp_path / "c.snap")]) == 1
    assert "pass embedder=" in capsys.readouterr().err
