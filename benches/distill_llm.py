"""The LLM distiller with a real language model: JSON validity, lessons per batch, fallbacks.

Plays batches of the CPU demo's training games (coin collector level 3) with the demo's untrained
tiny policy (it wins about 4 games in 10, so every batch has successes and failures), and hands
each batch to evolution's drafting step (:func:`slea.experience.evolve.draft_candidates`: top and
bottom K episodes, compressed) with an :class:`~slea.experience.distill.LLMDistiller` on a
pretrained model (default: the ``smollm2-135m-instruct`` preset; ``slea models fetch`` it once).
Reports per batch and in total: answers, strictly valid JSON, repaired near-JSON, unparseable,
lessons accepted and rejected (with reasons), episodes that fell back to the rule distiller, the
seconds the model took, and quotes the lessons it wrote::

    python -m benches distill_llm --batches 4 --out benches/results/distill_llm.json

The policy only provides episodes; which model played them does not change what is measured
here (whether the distiller model follows the JSON format and writes lessons that pass
validation).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "configs" / "textworld_cpu.yaml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches distill_llm", description=__doc__)
    p.add_argument("--model", default="smollm2-135m-instruct", help="preset name or model dir")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the config's")
    p.add_argument("--quotes", type=int, default=12)
    p.add_argument(
        "--per-zone",
        type=int,
        default=None,
        help="episodes distilled per zone (evolution.top_k and bottom_k); default: the config's",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override"
    )
    p.add_argument("--raw", type=int, default=4, help="raw model answers kept in the output")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from slea.experience.distill import LLMDistiller
    from slea.experience.evolve import EvolutionConfig, draft_candidates
    from slea.models.presets import resolve_preset
    from slea.train.config import TrainConfig
    from slea.train.trainer import Trainer, sample_episodes

    torch.set_num_threads(1)
    model_dir = Path(args.model)
    if not model_dir.is_dir():
        model_dir = resolve_preset(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="slea-distill-"))
    t0 = time.perf_counter()
    overrides = [
        f"run.dir={tmp / 'run'}",
        f"train.seed={args.seed}",
        "train.threads=1",
        "logging.progress=false",
        "evolution.distiller=llm",
        f"evolution.distiller_model={model_dir}",
    ]
    if args.max_new_tokens:
        overrides.append(f"evolution.llm_max_new_tokens={args.max_new_tokens}")
    if args.per_zone:
        overrides += [f"evolution.top_k={args.per_zone}", f"evolution.bottom_k={args.per_zone}"]
    overrides += args.set
    cfg = TrainConfig.from_yaml(DEMO, overrides)
    evo: EvolutionConfig = cfg.evolution
    totals: Counter[str] = Counter()
    batches: list[dict[str, Any]] = []
    quotes: list[dict[str, str]] = []
    try:
        with Trainer(cfg) as trainer:
            load_s = time.perf_counter() - t0  # the tiny policy and the distiller model
            distiller = trainer.distiller  # the LLM distiller on the distiller model
            assert isinstance(distiller, LLMDistiller)
            generate = distiller.generate
            raw: list[dict[str, str]] = []

            def keep_raw(chats: Any) -> list[str]:  # the model's answers, as it wrote them
                answers = list(generate(chats))
                for chat, answer in zip(chats, answers, strict=False):
                    if len(raw) < args.raw:
                        zone = "strategy" if "succeeded" in chat[1]["content"] else "warning"
                        raw.append({"zone": zone, "answer": answer})
                return answers

            distiller.generate = keep_raw
            rng = np.random.default_rng(args.seed)
            gen = torch.Generator().manual_seed(args.seed)
            r = cfg.rollout
            for b in range(args.batches):
                specs = sample_episodes(trainer.tasks, r.tasks_per_iteration, r.group_size, rng)
                assert trainer.venv is not None
                rollout = trainer._play(
                    trainer.venv,
                    specs,
                    clusterer=trainer.clusterer,
                    library=None,
                    generator=gen,
                    seed=args.seed * 1000 + b,
                )
                t1 = time.perf_counter()
                drafting = draft_candidates(rollout.episodes, distiller=distiller, config=evo)
                seconds = time.perf_counter() - t1
                counts = Counter({k: int(v) for k, v in drafting.distiller.items()})
                by_source = Counter(d.source for d in drafting.candidates)
                row = {
                    "batch": b,
                    "episodes": len(rollout.episodes),
                    "won": int(sum(e.won for e in rollout.episodes)),
                    "selected": len(drafting.selected),
                    "counts": dict(counts),
                    "candidates_llm": by_source.get("llm", 0),
                    "candidates_rule": by_source.get("rule", 0),
                    "seconds": seconds,
                }
                batches.append(row)
                totals.update(counts)
                totals["candidates_llm"] += row["candidates_llm"]
                totals["candidates_rule"] += row["candidates_rule"]
                totals["seconds"] += round(seconds)
                for d in drafting.candidates:
                    if d.source == "llm" and len(quotes) < args.quotes:
                        quotes.append({"zone": d.zone, "level": d.level, "text": d.text})
                print(
                    f"batch {b}: {row['selected']} episodes distilled, "
                    f"parse ok {counts['llm_parse_ok']} repaired {counts['llm_parse_repaired']} "
                    f"failed {counts['llm_parse_failed']}, lessons accepted {counts['llm_items']} "
                    f"rejected {counts['llm_items_rejected']}, fallbacks {counts['llm_fallbacks']}, "
                    f"{seconds:.0f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    answers = totals["llm_parse_ok"] + totals["llm_parse_repaired"] + totals["llm_parse_failed"]
    summary = {
        "model": args.model,  # a preset name, or the directory as the user gave it
        "batches": args.batches,
        "answers": answers,
        "json_strict_rate": totals["llm_parse_ok"] / max(answers, 1),
        "json_usable_rate": (totals["llm_parse_ok"] + totals["llm_parse_repaired"])
        / max(answers, 1),
        "lessons_accepted_per_batch": totals["llm_items"] / max(args.batches, 1),
        "lessons_rejected_per_batch": totals["llm_items_rejected"] / max(args.batches, 1),
        "fallback_rate": totals["llm_fallbacks"] / max(answers, 1),
        "rejections": {
            k.removeprefix("llm_rejected_"): v
            for k, v in totals.items()
            if k.startswith("llm_rejected_")
        },
        "setup_s": load_s,
        "distill_s_per_batch": totals["seconds"] / max(args.batches, 1),
        "settings": {
            "llm_max_new_tokens": evo.llm_max_new_tokens,
            "llm_temperature": evo.llm_temperature,
            "llm_max_items": evo.llm_max_items,
            "llm_batch_size": evo.llm_batch_size,
            "top_k": evo.top_k,
            "bottom_k": evo.bottom_k,
        },
        "per_batch": batches,
        "quotes": quotes,
        "raw_answers": raw,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps({k: v for k, v in summary.items() if k not in ("per_batch",)}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_suffix(".tmp")
        tmp_out.write_text(json.dumps(summary, indent=1) + "\n")
        tmp_out.replace(args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
