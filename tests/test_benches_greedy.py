"""benches.greedy on a tiny trained run: every step scored, the greedy action is the argmax."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_greedy_diagnostics_of_a_tiny_run(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("textworld")
    from conftest_envs import games_cache

    greedy = pytest.importorskip("benches.greedy")
    run_dir = tmp_path / "tiny"
    cmd = [sys.executable, "-m", "slea", "train", "--quiet"]
    cmd += ["--config", str(ROOT / "examples" / "configs" / "textworld_tiny_test.yaml")]
    cmd += ["--set", f"run.dir={run_dir}", "--set", f"env.games.cache_dir={games_cache()}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    games = greedy.diagnose(run_dir, "test", max_tasks=1)
    assert len(games) == 1 and games[0]["steps"]
    for step in games[0]["steps"]:
        probs = step["probabilities"]
        assert step["action"] in probs and abs(sum(probs.values()) - 1.0) < 1e-4
        assert step["rescored_argmax"]
    assert "won" in greedy.render(games[0], 2) or "lost" in greedy.render(games[0], 2)
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # read-only
