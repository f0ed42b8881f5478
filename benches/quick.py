"""A one-minute tour of slea's Rust core, each piece timed against a plain-Python reference.

``python -m benches quick``: canonicalise + hash, observation clustering, step-level advantages
and experience-library retrieval on small synthetic data. Prints one table; writes
benches/out/quick.json. Nothing here downloads anything or needs torch.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

import slea
from benches.common import best_of, machine, table, write_json

ROOMS = ["kitchen", "pantry", "garden", "cellar", "attic", "hallway", "study", "bedroom"]
THINGS = ["coin", "key", "apple", "lamp", "book", "knife", "box", "map", "rope", "mug"]


def observations(n: int, seed: int = 0) -> list[str]:
    """Synthetic TextWorld-like observations with volatile status lines and shuffled items."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        room = rng.choice(ROOMS)
        items = rng.sample(THINGS, rng.randint(1, 4))
        rng.shuffle(items)
        listing = ", ".join(f"a {t}" for t in items[:-1])
        listing = f"{listing} and a {items[-1]}" if listing else f"a {items[-1]}"
        out.append(
            f"Moves: {i}  Score: {rng.randint(0, 3)}\n"
            f"-= {room.title()} =-\nYou are in the {room}. You see {listing}."
        )
    return out


def py_canonical(text: str) -> str:
    """Plain-Python stand-in: lowercase, drop status lines, mask numbers, collapse spaces."""
    import re

    lines = [ln for ln in text.lower().splitlines() if not ln.startswith("moves:")]
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", " ".join(lines))).strip()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches quick", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="observations to process")
    args = parser.parse_args(argv)
    obs = observations(args.n)
    mb = sum(len(o.encode()) for o in obs) / 1e6
    spec = slea.CanonSpec.textworld()
    rows = []

    t_rust = best_of(lambda: slea.structural_hash_batch(obs, spec), repeat=3)
    t_py = best_of(lambda: [hash(py_canonical(o)) for o in obs], repeat=3)
    rows.append(
        {
            "piece": "canonicalise + hash",
            "slea": f"{mb / t_rust:.0f} MB/s",
            "python": f"{mb / t_py:.0f} MB/s",
            "speedup": t_py / t_rust,
        }
    )

    t0 = time.perf_counter()
    clusterer = slea.ObservationClusterer(threshold=0.85, canon=spec)
    ids = clusterer.assign_batch(obs)
    t_cluster = time.perf_counter() - t0
    rows.append(
        {
            "piece": "clustering",
            "slea": f"{1e6 * t_cluster / len(obs):.2f} us/obs",
            "python": "-",
            "speedup": "-",
            "note": f"{len(clusterer)} clusters for {len(set(ids.tolist()))} ids",
        }
    )

    rng = np.random.default_rng(0)
    n_rows = 10_000
    episode = np.repeat(np.arange(n_rows // 10), 10)
    group = episode // 8
    step = np.tile(np.arange(10), n_rows // 10)
    reward = (rng.random(n_rows) < 0.1).astype(np.float64)
    key = rng.integers(0, 50, n_rows).astype(np.uint64)
    batch = slea.StepBatch(group, episode, step, reward, key)
    t_adv = best_of(lambda: slea.compute_advantages(batch, "slea"), repeat=3)
    rows.append(
        {
            "piece": "advantages (slea, 10k rows)",
            "slea": f"{1e3 * t_adv:.2f} ms",
            "python": "-",
            "speedup": "-",
        }
    )

    lib = slea.ExperienceLibrary(slea.LibraryConfig())
    cands = [
        slea.Candidate(
            f"In the {r}, take the {t} before moving on.",
            "strategy",
            "example",
            1.0,
            cluster_ids=(int(ids[i]),),
        )
        for i, (r, t) in enumerate(zip(ROOMS, THINGS, strict=False))
    ]
    lib.admit(cands, iteration=1)
    cid = int(ids[0])
    t_ret = best_of(lambda: lib.retrieve(cid, obs[0]), repeat=3)
    rows.append(
        {
            "piece": "library retrieve (cluster hit)",
            "slea": f"{1e6 * t_ret:.2f} us",
            "python": "-",
            "speedup": "-",
            "note": f"{len(lib)} entries",
        }
    )

    print(f"slea {slea.__version__} quick tour on {machine()}")
    print(table(rows, ["piece", "slea", "python", "speedup", "note"]))
    write_json("quick", {"rows": rows})
    return 0
