"""Smoke tests of an installed slea: import, clustering, a library round trip, the CLI, the wrapper.

They run in the main suite like any test, and ``.ci/run`` runs them once more inside a fresh venv
that holds only the built wheel and its dependencies, with no Rust toolchain on ``PATH`` and the
repository's ``python/`` not importable (``SLEA_WHEEL_TEST=1``): then they also check that
``slea`` comes from that venv's site-packages and that the compiled core is the wheel's.
Only the core dependencies are needed (numpy, gymnasium, pyyaml, rich) and pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import slea

ROOT = Path(__file__).resolve().parents[1]
WHEEL_TEST = os.environ.get("SLEA_WHEEL_TEST") == "1"


@pytest.mark.skipif(not WHEEL_TEST, reason="only inside the wheel's venv (SLEA_WHEEL_TEST=1)")
def test_slea_is_the_installed_wheel_and_no_rust_toolchain_is_reachable() -> None:
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(slea.__file__).resolve().is_relative_to(site), slea.__file__
    core = Path(slea._core.__file__).resolve()
    assert core.is_relative_to(site) and core.name.endswith(".abi3.so"), core
    for tool in ("cargo", "rustc", "rustup"):
        assert shutil.which(tool) is None, f"{tool} is on PATH: {shutil.which(tool)}"


def test_import_is_light_and_versions_agree() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, slea; print(slea.__version__, 'torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [slea.__version__, "False"]
    from importlib.metadata import version

    assert version("slea-rl") == slea.__version__


def test_clustering_call() -> None:
    c = slea.ObservationClusterer(threshold=0.85)
    ids = c.assign_batch(
        [
            "You are in the kitchen. You see a red apple and a knife.",
            "You are in the kitchen. You see a knife and a red apple.",
            "You are in the garden. There is a locked shed to the north.",
        ]
    )
    assert ids.dtype == np.uint64 and ids[0] == ids[1] != ids[2]


def test_library_round_trip(tmp_path: Path) -> None:
    lib = slea.ExperienceLibrary()
    cid = slea.ObservationClusterer().assign("You are in the kitchen.")
    report = lib.admit(
        [
            slea.Candidate(
                "Open the fridge first.", "strategy", "principle", 1.0, cluster_ids=(cid,)
            )
        ],
        iteration=1,
    )
    assert report.summary()["admitted"] == 1
    lib.save(tmp_path / "lib.snap")
    back = slea.ExperienceLibrary.load(tmp_path / "lib.snap")
    assert [e.text for e in back.retrieve(cid, "You are in the kitchen.")] == [
        "Open the fridge first."
    ]
    assert back.entries()[0].to_dict() == lib.entries()[0].to_dict()


def test_cli_help() -> None:
    exe = shutil.which("slea", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe and WHEEL_TEST else [sys.executable, "-m", "slea"]
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for sub in ("train", "eval", "library", "report", "envs"):
        assert sub in proc.stdout
    bad = subprocess.run([*cmd, "no-such-command"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_the_wrapper_example_runs_from_the_installed_package() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "retrieval_wrapper_loop.py"),
            "--levels",
            "1",
            "--episodes",
            "1",
            "--max-steps",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(sys.executable).parent,  # not the repository: slea must come from the install
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("success: 1/1")
