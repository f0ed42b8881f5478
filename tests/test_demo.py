"""The CPU demo: its config matches the issue, and (slow) it learns within budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slea
from slea.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "configs" / "textworld_cpu.yaml"


def test_demo_config_is_the_issue_setup() -> None:
    cfg = TrainConfig.from_yaml(DEMO)
    assert cfg.model.path == "" and cfg.policy.mode == "choice"  # tiny model, choice mode
    assert (cfg.env.id, cfg.env.games.kind, cfg.env.games.level) == ("slea/TextWorld-v0", "coin", 3)
    assert 32 <= cfg.env.games.train <= 64 and cfg.env.games.test >= 16
    assert cfg.env.games.compass_augment  # the 48 games are not memorised (RESULTS.md)
    assert cfg.prompt.history_window > 0
    assert cfg.advantage.estimator == "slea" and cfg.retrieval.enabled
    assert (cfg.retrieval.warmup, cfg.retrieval.min_library, cfg.retrieval.budget_tokens) == (
        5,
        10,
        200,
    )
    assert (cfg.update.clip_eps, cfg.update.kl_beta) == (0.2, 0.01)


@pytest.mark.slow  # the full demo: several minutes
def test_demo_learns(tmp_path: Path) -> None:
    pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(slea.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    t0 = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slea",
            "train",
            "--config",
            str(DEMO),
            "--set",
            f"run.dir={tmp_path / 'demo'}",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout, f"wall {wall:.0f} s")
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    trained = {k: v["trained"]["success"] for k, v in summary["success"].items()}
    untrained = {k: v["untrained"]["success"] for k, v in summary["success"].items()}
    # Thresholds chosen on the valid split, not on these test games: what held for every seed
    # measured (`python -m benches recipe --name demo`, seeds 0-2: valid sampled 0.94-0.97,
    # greedy 0.56-0.88; benches/RESULTS.md, "The demo recipe on valid, tested once").
    assert trained["test_sampled"] >= 0.9 > untrained["test_sampled"]
    assert trained["test_greedy"] >= 0.5 > untrained["test_greedy"]
