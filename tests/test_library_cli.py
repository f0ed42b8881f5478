"""``slea library show | export | import | stats``."""

from __future__ import annotations

import json
import os
import random
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
    assert main(["library", "import", str(out), str(new)]) == 2
    assert "already used" in capsys.readouterr().err
    assert new.read_bytes() == before


def test_errors_are_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "show", str(tmp_path / "missing.snap")]) == 2
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"SLEASNAP" + b"\x01\x00\x00\x00" + b"\x00" * 40)
    assert main(["library", "stats", str(bad)]) == 2
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
    assert main(["library", "import", str(tmp_path / "c.jsonl"), str(tmp_path / "c.snap")]) == 2
    assert "pass embedder=" in capsys.readouterr().err


# ---- bad files: one line on stderr, exit status 2, nothing overwritten ---------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slea", "library", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(sys.path)},
        timeout=120,
    )


def one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: slea library {command}: "), err
    assert "Traceback" not in err
    return lines[0]


def test_export_refuses_to_overwrite_its_input(snap: Path, tmp_path: Path) -> None:
    before = snap.read_bytes()
    proc = cli("export", str(snap), str(snap))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "destroy the input" in one_line_error(proc.stderr, "export")
    assert snap.read_bytes() == before
    # The same file under other names: a relative spelling, a symlink, a hard link.
    (tmp_path / "sub").mkdir()
    os.symlink(snap, tmp_path / "link.snap")
    os.link(snap, tmp_path / "hard.snap")
    for other in ("sub/../lib.snap", "link.snap", "hard.snap"):
        assert main(["library", "export", str(snap), str(tmp_path / other)]) == 2, other
        assert snap.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hard.snap",
        "lib.snap",
        "link.snap",
        "sub",
    ]


def test_import_refuses_to_write_its_input(snap: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "lib.jsonl"
    assert main(["library", "export", str(snap), str(jsonl)]) == 0
    before = jsonl.read_bytes()
    proc = cli("import", str(jsonl), str(jsonl))
    assert proc.returncode == 2
    assert "destroy the input" in one_line_error(proc.stderr, "import")
    assert jsonl.read_bytes() == before


def bad_files(tmp: Path, snap: Path) -> dict[str, Path]:
    rng = random.Random(0)
    good = snap.read_bytes()
    files = {
        "random bytes": bytes(rng.randrange(256) for _ in range(4096)),
        "truncated snapshot": good[: len(good) // 2],
        "empty file": b"",
        "jsonl with garbage lines": b'{"text": "ok", "zone": "strategy", "level": "pattern", '
        b'"score": 1}\n\x00\xff not json at all\n{]\n',
    }
    out = {}
    for name, data in files.items():
        p = tmp / name.replace(" ", "_")
        p.write_bytes(data)
        out[name] = p
    (tmp / "a_directory").mkdir()
    out["a directory"] = tmp / "a_directory"
    out["missing file"] = tmp / "missing.snap"
    return out


@pytest.mark.parametrize("command", ["show", "stats", "export", "import-input", "import-snapshot"])
def test_every_command_turns_bad_files_into_one_line(
    command: str, snap: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = tmp_path / "good.jsonl"
    assert main(["library", "export", str(snap), str(jsonl)]) == 0
    capsys.readouterr()
    for name, bad in bad_files(tmp_path, snap).items():
        out = tmp_path / "out.jsonl"
        args = {
            "show": ["show", str(bad)],
            "stats": ["stats", str(bad)],
            "export": ["export", str(bad), str(out)],
            "import-input": ["import", str(bad), str(tmp_path / "new.snap")],
            "import-snapshot": ["import", str(jsonl), str(bad)],
        }[command]
        if (command, name) in (("import-input", "empty file"), ("import-snapshot", "missing file")):
            continue  # an empty JSONL is a valid import; import creates a missing snapshot
        before = bad.read_bytes() if bad.is_file() else None
        code = main(["library", *args])
        assert code == 2, (command, name)
        one_line_error(capsys.readouterr().err, args[0])
        assert not out.exists() and not (tmp_path / "new.snap").exists(), (command, name)
        if before is not None:
            assert bad.read_bytes() == before, f"{command} changed {name}"
    assert (
        main(["library", "import", str(tmp_path / "missing.jsonl"), str(tmp_path / "n.snap")]) == 2
    )
    assert "No such file" in one_line_error(capsys.readouterr().err, "import")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], "a temporary file was left behind"


def test_bad_files_through_the_real_command_line(snap: Path, tmp_path: Path) -> None:
    files = bad_files(tmp_path, snap)
    for name in ("random bytes", "truncated snapshot", "a directory", "missing file"):
        proc = cli("show", str(files[name]))
        assert proc.returncode == 2, (name, proc.stderr)
        one_line_error(proc.stderr, "show")
    proc = cli("import", str(files["jsonl with garbage lines"]), str(tmp_path / "n.snap"))
    assert proc.returncode == 2
    assert "line 2: not UTF-8" in one_line_error(proc.stderr, "import")
    proc = cli("export", str(snap), str(tmp_path / "a_directory"))
    assert proc.returncode == 2 and (tmp_path / "a_directory").is_dir()
    one_line_error(proc.stderr, "export")
