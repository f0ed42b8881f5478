"""Multi-process update: 2 ranks with torchrun (gloo, loopback) give the single-process update."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import slea

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

WORKER = textwrap.dedent(
    """
    import copy, os, sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from slea.algo.update import make_optimizer, update_policy
    from slea.policy.tiny import TinyModelSpec, tiny_policy
    from slea.train.config import UpdateConfig

    TEXTS = ["you are in the kitchen. an exit leads north.", "go north", "go south", "take coin"] * 10
    SPEC = TinyModelSpec(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)


    def build():
        torch.manual_seed(0)
        policy = tiny_policy(TEXTS, SPEC, seed=0, mode="choice")
        policy.set_reference(copy.deepcopy(policy.model))
        prompts = [policy.encode_prompt([{"role": "user", "content": f"room {i}"}]) for i in range(11)]
        acts = [["go north", "go south", "take coin"][: 1 + i % 3] for i in range(11)]
        records = policy.act(prompts, acts, generator=torch.Generator().manual_seed(1))
        adv = np.linspace(-1, 1, 11).astype(np.float32)
        return policy, records, adv


    def main(out):
        cfg = UpdateConfig(lr=1e-2, minibatches=2, epochs=2, micro_batch_size=2, kl_beta=0.1)
        policy, records, adv = build()
        model = policy.model
        if "RANK" in os.environ:
            dist.init_process_group("gloo")
            model = torch.nn.parallel.DistributedDataParallel(policy.model)
        opt = make_optimizer(policy.trainable_parameters(), cfg)
        stats = update_policy(policy, opt, records, adv, cfg, model=model,
                              generator=torch.Generator().manual_seed(2))
        rank = dist.get_rank() if dist.is_initialized() else 0
        state = {k: v.clone() for k, v in policy.model.state_dict().items()}
        torch.save({"state": state, "stats": stats.to_dict()}, os.path.join(out, f"rank{rank}.pt"))
        if dist.is_initialized():
            dist.destroy_process_group()


    main(sys.argv[1])
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = Path(slea.__file__).resolve().parents[1]  # where slea is imported from
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow  # starts three Python processes with torch (about a minute on 2 cores)
def test_two_process_ddp_update_equals_single_process(tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir()
    multi.mkdir()
    subprocess.run([sys.executable, str(script), str(single)], check=True, env=_env(), timeout=300)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(multi),
    ]
    proc = subprocess.run(cmd, env=_env(), timeout=300, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = torch.load(single / "rank0.pt")
    r0, r1 = torch.load(multi / "rank0.pt"), torch.load(multi / "rank1.pt")
    for name, value in ref["state"].items():
        torch.testing.assert_close(r0["state"][name], r1["state"][name], atol=0, rtol=0)
        torch.testing.assert_close(r0["state"][name], value, atol=2e-5, rtol=1e-4)
    assert r0["stats"]["units"] == ref["stats"]["units"] == 2 * 11
    assert r0["stats"]["optimizer_steps"] == 4
    assert r0["stats"]["loss"] == pytest.approx(ref["stats"]["loss"], abs=1e-5)


@pytest.mark.slow  # a 2-process tiny training run (about two minutes on 2 cores)
def test_torchrun_training_run_updates_on_both_ranks(tmp_path) -> None:
    pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
    from conftest_envs import games_cache

    from slea.rundir import read_metrics

    root = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "slea",
        "train",
        "--config",
        str(root / "examples/configs/textworld_tiny_test.yaml"),
        "--set",
        f"run.dir={run_dir}",
        "--set",
        f"env.games.cache_dir={games_cache()}",
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=_env(), timeout=900, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("report:") == 1  # rank 0 alone logs, saves and reports
    train = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [1, 2, 3, 4]
    for r in train:  # every row was taken by one of the two ranks (stats are summed over ranks)
        assert r["update"]["units"] == r["rollout"]["steps"]
    # the tiny config's linear schedule; rank 0 sends each update's lr to the follower
    assert [r["update"]["lr"] for r in train] == pytest.approx([1e-3, 7e-4, 4e-4, 1e-4])
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["iter_2", "iter_4"]
