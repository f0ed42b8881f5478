"""Canonicalise + structural hash throughput: slea (Rust) vs a plain Python implementation.

``python -m benches canon [--small] [--repeat 30] [--ref-sample 1500]``

Observations are TextWorld texts (benches/tw_data.py) in three sets: ``state`` (room description
and inventory, about 310 bytes), ``full`` (status line and feedback in front, about 515 bytes)
and ``full 600-800B`` (the full texts of 600 to 800 bytes, about 700 bytes, the size the issue
quotes). For each set and for the ``generic`` and ``textworld`` presets:

- slea batch: ``structural_hash_batch(texts, spec)`` (one call, GIL released, one core);
- slea per call: ``structural_hash(text, spec)`` in a Python loop (adds the FFI cost per text);
- Python reference: tests/reference/canon_ref.py (``re`` + ``unicodedata``, one pass per rule)
  followed by an 8-byte blake2b of the canonical text, on an evenly spaced sample of
  ``--ref-sample`` texts;
- Python floor: only NFKC, ``str.lower`` and one ``re.sub`` for white space, then the same
  blake2b, on the same sample: a lower bound on the cost of any Python version of a preset (each
  preset does more), so ``x vs floor`` is the least the Rust core can be credited with.

The ratios ``x vs Python`` and ``x vs floor`` compare slea's batch call on that same sample with
the two Python versions. The reference's canonical texts are checked equal to slea's on the whole
sample first. Every side is timed for the same ``--repeat`` rounds, the sides interleaved
(``benches.common.interleaved``), best round kept. Throughput is UTF-8 bytes per second of
thread CPU time, which the other processes of a shared machine do not inflate; wall-clock
figures are in the JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import unicodedata
from typing import Any

import slea
from benches import tw_data
from benches.common import interleaved, load_average, machine, table, write_json
from tests.reference import canon_ref

COLUMNS = [
    "texts",
    "preset",
    "bytes/text",
    "slea batch MB/s",
    "slea per call MB/s",
    "slea batch on the sample MB/s",
    "Python ref MB/s",
    "Python floor MB/s",
    "x vs Python",
    "x vs floor",
]

_SPACES = re.compile(r"\s+")


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
    """Throughputs of every side on one text set and preset; ratios on the same sample."""
    spec = slea.CanonSpec.preset(preset)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    step = max(1, len(texts) // sample)
    sub = texts[::step]
    sub_bytes = sum(len(t.encode("utf-8")) for t in sub)
    rules = spec.rules
    mismatches = sum(slea.canonicalize(t, spec) != canon_ref.canonicalize(t, rules) for t in sub)
    if mismatches:
        raise AssertionError(f"{mismatches} canonical texts differ from the reference")
    t = interleaved(
        {
            "slea batch": lambda: slea.structural_hash_batch(texts, spec),
            "slea per call": lambda: [slea.structural_hash(x, spec) for x in texts],
            "slea batch, sample": lambda: slea.structural_hash_batch(sub, spec),
            "Python ref": lambda: python_reference(sub, rules),
            "Python floor": lambda: python_floor(sub),
        },
        repeat,
    )
    size = {"slea batch": nbytes, "slea per call": nbytes}
    cpu = {k: size.get(k, sub_bytes) / v.cpu / 1e6 for k, v in t.items()}
    wall = {k: size.get(k, sub_bytes) / v.wall / 1e6 for k, v in t.items()}
    return {
        "texts": name,
        "preset": preset,
        "n": len(texts),
        "sample": len(sub),
        "rounds": repeat,
        "bytes/text": nbytes / len(texts),
        "slea batch MB/s": cpu["slea batch"],
        "slea per call MB/s": cpu["slea per call"],
        "slea batch on the sample MB/s": cpu["slea batch, sample"],
        "Python ref MB/s": cpu["Python ref"],
        "Python floor MB/s": cpu["Python floor"],
        "x vs Python": cpu["slea batch, sample"] / cpu["Python ref"],
        "x vs floor": cpu["slea batch, sample"] / cpu["Python floor"],
        "wall MB/s": wall,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches canon", description=__doc__)
    parser.add_argument("--small", action="store_true", help="the small TextWorld dataset")
    parser.add_argument("--repeat", type=int, default=30, help="rounds of every side (best kept)")
    parser.add_argument("--ref-sample", type=int, default=1500, help="texts for the reference")
    args = parser.parse_args(argv)
    data = tw_data.load(1, 4, 49) if args.small else tw_data.load()
    sets = {
        "state": [o.state for o in data],
        "full": [o.full for o in data],
        "full 600-800B": [o.full for o in data if 600 <= len(o.full.encode("utf-8")) < 800],
    }
    load_start = load_average()
    print(f"{machine()}; load average {load_start}")
    rows = []
    for name, texts in sets.items():
        for preset in ("generic", "textworld"):
            rows.append(measure(name, texts, preset, args.repeat, args.ref_sample))
            print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    path = write_json(
        "canon" + ("_small" if args.small else ""),
        {
            "command": "python -m benches canon " + " ".join(argv),
            "rows": rows,
            "load_average_at_start": load_start,
        },
    )
    print(f"\n{table(rows, COLUMNS)}\n\nwritten to {path}")
    return 0
