"""The learning bench reuses a finished run only when its config and code match (fake run dirs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

learning = pytest.importorskip("benches.learning")


def bench_args(**kw: object) -> argparse.Namespace:
    base = dict(
        env_steps=6000,
        eval_every=10,
        games_cache="",
        fresh=False,
        report_only=True,
        nice=10,
        code_version="0123abc",
    )
    base.update(kw)
    return argparse.Namespace(**base)


def fake_finished_run(run_dir: Path, greedy: float = 0.5) -> None:
    """What a finished ``slea train`` leaves that the bench reads: summary and metrics."""
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text("{}")
    evals = [
        {
            "kind": "eval",
            "env_steps": steps,
            "test_sampled": {"success": 0.25},
            "test_greedy": {"success": greedy},
        }
        for steps in (0, 6000)
    ]
    train = {
        "kind": "train",
        "iteration": 10,
        "env_steps": 6000,
        "elapsed_s": 60.0,
        "library": {"size": 3},
    }
    lines = [json.dumps(r) for r in (evals[0], train, evals[1])]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def key_of(tmp_path: Path, args: argparse.Namespace, seed: int = 0) -> dict[str, str]:
    run_dir = tmp_path / "cc3" / "grpo" / f"seed{seed}"
    overrides = learning.overrides_for("cc3", "grpo", seed, run_dir, args)
    return learning.run_key(overrides, args.code_version)


def test_key_depends_on_config_and_code_not_on_the_run_dir(tmp_path: Path) -> None:
    args = bench_args()
    key = key_of(tmp_path, args)
    assert key == key_of(tmp_path / "elsewhere", args)
    assert key != key_of(tmp_path, args, seed=1)
    assert key != key_of(tmp_path, bench_args(env_steps=3000))
    assert key != key_of(tmp_path, bench_args(code_version="4567def"))


def test_reuse_status(tmp_path: Path) -> None:
    args = bench_args()
    key = key_of(tmp_path, args)
    run_dir = tmp_path / "cc3" / "grpo" / "seed0"
    assert learning.reuse_status(run_dir, key) == "missing"
    fake_finished_run(run_dir)
    assert learning.reuse_status(run_dir, key) == "stale"  # finished, but no key stored
    learning.write_key(run_dir, key)
    assert learning.reuse_status(run_dir, key) == "reuse"
    assert not (run_dir / (learning.KEY_FILE + ".tmp")).exists()
    assert learning.reuse_status(run_dir, key_of(tmp_path, bench_args(env_steps=3000))) == "stale"
    (run_dir / learning.KEY_FILE).write_text("{not json")
    assert learning.reuse_status(run_dir, key) == "stale"


def test_a_run_without_a_matching_key_is_not_reused(tmp_path: Path) -> None:
    """Regression: any run dir with a summary.json used to be reused, whatever its config."""
    fake_finished_run(tmp_path / "cc3" / "grpo" / "seed0", greedy=0.75)
    out = learning._run(tmp_path, "cc3", "grpo", 0, bench_args())
    assert out.get("missing") and out.get("why") == "stale"
    assert "test_greedy" not in out


def test_a_run_with_its_key_is_reused(tmp_path: Path) -> None:
    args = bench_args()
    run_dir = tmp_path / "cc3" / "grpo" / "seed0"
    fake_finished_run(run_dir, greedy=0.75)
    learning.write_key(run_dir, key_of(tmp_path, args))
    out = learning._run(tmp_path, "cc3", "grpo", 0, args)
    assert out["reused"] and out["test_greedy"] == 0.75 and out["env_steps"] == 6000
    # The same run asked for with another code version is stale again.
    out = learning._run(tmp_path, "cc3", "grpo", 0, bench_args(code_version="4567def"))
    assert out.get("missing") and out.get("why") == "stale"


def test_code_version_is_a_commit_or_unknown(tmp_path: Path) -> None:
    assert learning.code_version(tmp_path) == "unknown"  # not a git checkout
    version = learning.code_version()
    assert version == "unknown" or len(version.split("+")[0]) == 40
