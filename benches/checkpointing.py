"""Gradient checkpointing: memory and time of one PPO update, with and without.

Each measurement is a fresh subprocess (so peak memory is its own): load the model, build a
batch of choice-mode decisions (``--decisions`` prompts of about ``--prompt-tokens`` tokens, 4
candidate actions each), act once without gradients, then run one :func:`slea.algo.update.update_policy`
over the batch in one micro-batch. Reported: the peak resident memory the update added (the
process's high-water mark after the update minus its resident memory just before) and the
update's wall time. Off and on alternate, ``--reps`` times each, in the same run::

    python -m benches checkpointing --model smollm2-135m-instruct --reps 2

On a GPU the same comparison would use ``torch.cuda.max_memory_allocated``; only CPU was at hand.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(model: str, checkpointing: bool, decisions: int, prompt_tokens: int, lora: int) -> dict:
    import resource

    import numpy as np
    import torch

    from slea.algo.update import UpdateConfig, make_optimizer, update_policy
    from slea.models.presets import resolve_preset
    from slea.policy.hf import HFPolicy, LoraSpec, enable_gradient_checkpointing

    torch.set_num_threads(1)
    torch.manual_seed(0)
    path = Path(model) if Path(model).is_dir() else resolve_preset(model)
    spec = LoraSpec(r=lora) if lora else None
    policy = HFPolicy.from_pretrained(path, lora=spec)
    if checkpointing:
        enable_gradient_checkpointing(policy.model)
    words = "you are in a room . there is a door to the north and a coin on the floor ".split()
    text = " ".join(words[i % len(words)] for i in range(prompt_tokens))
    prompts = [
        policy.encode_prompt([{"role": "user", "content": f"game {k}: {text}"}])
        for k in range(decisions)
    ]
    actions = [["go north", "go south", "take coin", "examine coin"]] * decisions
    records = policy.act(prompts, actions, generator=torch.Generator().manual_seed(0))
    adv = np.linspace(-1, 1, decisions).astype(np.float32)
    cfg = UpdateConfig(lr=1e-5, micro_batch_size=decisions, kl_beta=0.0)
    opt = make_optimizer(policy.trainable_parameters(), cfg)
    before = _rss_kib()
    t0 = time.perf_counter()
    stats = update_policy(policy, opt, records, adv, cfg)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "checkpointing": checkpointing,
        "update_s": seconds,
        "added_peak_mib": (peak - before) / 1024,
        "loss": float(stats.loss),
        "prompt_tokens": int(np.mean([len(p) for p in prompts])),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches checkpointing", description=__doc__)
    p.add_argument("--model", default="smollm2-135m-instruct", help="preset name or model dir")
    p.add_argument("--decisions", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=300)
    p.add_argument("--lora", type=int, default=0, help="LoRA rank (0 = all weights train)")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        out = child(args.model, args.child == "on", args.decisions, args.prompt_tokens, args.lora)
        print(json.dumps(out))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    rows: dict[str, list[dict]] = {"off": [], "on": []}
    for rep in range(args.reps):
        for mode in ("off", "on"):
            cmd = [sys.executable, "-m", "benches", "checkpointing", "--child", mode]
            cmd += ["--model", args.model, "--decisions", str(args.decisions)]
            cmd += ["--prompt-tokens", str(args.prompt_tokens), "--lora", str(args.lora)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows[mode].append(row)
            print(f"rep {rep} {mode}: {row}", flush=True)
    summary = {
        mode: {
            "update_s": statistics.median(r["update_s"] for r in rs),
            "added_peak_mib": statistics.median(r["added_peak_mib"] for r in rs),
            "loss": rs[0]["loss"],
        }
        for mode, rs in rows.items()
    }
    summary["memory_ratio_on_off"] = summary["on"]["added_peak_mib"] / max(
        summary["off"]["added_peak_mib"], 1e-9
    )
    summary["time_ratio_on_off"] = summary["on"]["update_s"] / summary["off"]["update_s"]
    summary["settings"] = {
        "model": args.model,
        "decisions": args.decisions,
        "prompt_tokens": rows["off"][0]["prompt_tokens"],
        "lora": args.lora,
        "reps": args.reps,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
