"""Canonicalise + structural hash throughput: slea (Rust) vs a plain Python implementation.

``python -m benches canon [--small] [--repeat 30] [--ref-sample 1500]``

Observations are TextWorld texts (benches/tw_data.py) in three sets: ``state`` (room description
and inventory, about 310 bytes), ``full`` (status line and feedback in front, about 515 bytes)
and ``full 600-800B`` (the full texts of 600 to 800 bytes, about 700 bytes, the size the issue
quotes). For each set and for the ``generic`` and ``textworld`` presets:

- slea batch: ``structural_hash_batch(texts, spec)`` (one call, GIL released, one core);
- slea per call: ``structural_hash(text, spec)`` in a Python loop (adds the FFI cost per text);
- Python reference: tests/reference/canon_ref.py (``re`` + ``unicodedata``, one pass per rule)
  followed by an 8-byte blake2b of the canonical text, on ``--ref-sample`` texts (best of
  ``--repeat // 3``);
- Python floor: only NFKC, ``str.lower`` and one ``re.sub`` for white space, then the same
  blake2b: a lower bound on the cost of any Python version of a preset (each preset does more),
  so ``x vs floor`` is the least the Rust core can be credited with.

The reference's canonical texts are checked equal to slea's first. Throughput is UTF-8 bytes
per second of thread CPU time (best of ``--repeat``), which the other processes of a shared
machine do not inflate; wall-clock figures are in the JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import slea
from benches import tw_data
from benches.common import machine, table, write_json
from tests.reference import canon_ref

COLUMNS = [
    "texts",
    "preset",
    "bytes/text",
    "slea batch MB/s",
    "slea per call MB/s",
    "Python ref MB/s",
    "Python floor MB/s",
    "x vs Python",
    "x vs floor",
]

_SPACES = re.compile(r"\s+")


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(best thread CPU seconds, best wall seconds) of ``fn()`` over ``repeat`` runs."""
    cpu = wall = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu = min(cpu, time.thread_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return cpu, wall


def python_reference(texts: list[str], rules: list[dict[str, Any]]) -> list[int]:
    out = []
    for t in texts:
        canonical = canon_ref.canonicalize(t, rules)
        digest = hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little"))
    return out


def python_floor(texts: list[str]) -> list[int]:
    out = []
    for t in texts:
        canonical = _SPACES.sub(" ", unicodedata.normalize("NFKC", t).lower()).strip()
        digest = hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little"))
    return out


def measure(name: str, texts: list[str], preset: str, repeat: int, sample: int) -> dict[str, Any]:
    spec = slea.CanonSpec.preset(preset)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    step = max(1, len(texts) // sample)
    sub = texts[::step]
    sub_bytes = sum(len(t.encode("utf-8")) for t in sub)
    rules = spec.rules
    mismatches = sum(
        slea.canonicalize(t, spec) != canon_ref.canonicalize(t, rules) for t in sub[:300]
    )
    if mismatches:
        raise AssertionError(f"{mismatches} canonical texts differ from the reference")
    batch = best_time(lambda: slea.structural_hash_batch(texts, spec), repeat)
    single = best_time(lambda: [slea.structural_hash(t, spec) for t in texts], max(1, repeat // 2))
    ref = best_time(lambda: python_reference(sub, rules), max(1, repeat // 3))
    floor = best_time(lambda: python_floor(sub), max(1, repeat // 3))

    def mbs(n: int, seconds: float) -> float:
        return n / seconds / 1e6

    return {
        "texts": name,
        "preset": preset,
        "n": len(texts),
        "bytes/text": nbytes / len(texts),
        "slea batch MB/s": mbs(nbytes, batch[0]),
        "slea per call MB/s": mbs(nbytes, single[0]),
        "Python ref MB/s": mbs(sub_bytes, ref[0]),
        "Python floor MB/s": mbs(sub_bytes, floor[0]),
        "x vs Python": mbs(nbytes, batch[0]) / mbs(sub_bytes, ref[0]),
        "x vs floor": mbs(nbytes, batch[0]) / mbs(sub_bytes, floor[0]),
        "wall": {
            "slea batch MB/s": mbs(nbytes, batch[1]),
            "slea per call MB/s": mbs(nbytes, single[1]),
            "Python ref MB/s": mbs(sub_bytes, ref[1]),
            "Python floor MB/s": mbs(sub_bytes, floor[1]),
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches canon", description=__doc__)
    parser.add_argument("--small", action="store_true", help="the small TextWorld dataset")
    parser.add_argument("--repeat", type=int, default=30, help="repetitions of the slea runs")
    parser.add_argument("--ref-sample", type=int, default=1500, help="texts for the reference")
    args = parser.parse_args(argv)
    data = tw_data.load(1, 4, 49) if args.small else tw_data.load()
    sets = {
        "state": [o.state for o in data],
        "full": [o.full for o in data],
        "full 600-800B": [o.full for o in data if 600 <= len(o.full.encode("utf-8")) < 800],
    }
    print(machine())
    rows = []
    for name, texts in sets.items():
        for preset in ("generic", "textworld"):
            rows.append(measure(name, texts, preset, args.repeat, args.ref_sample))
            print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    path = write_json(
        "canon" + ("_small" if args.small else ""),
        {"command": "python -m benches canon " + " ".join(argv), "rows": rows},
    )
    print(f"\n{table(rows, COLUMNS)}\n\nwritten to {path}")
    return 0
