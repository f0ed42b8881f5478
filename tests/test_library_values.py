"""Values users hand the library: text (no lone surrogates) and numbers (finite, bounded).

Every entry point that takes text refuses a lone surrogate with the clusterer's ``ValueError``
naming the argument, and changes nothing; every score, reward, threshold and EMA weight must
be finite and within its documented range (scores: ``SCORE_LIMIT``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from bad_input import with_surrogate
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.library_ref import cand, small_config

import slea
from slea import _core
from slea.experience.library import SCORE_LIMIT

# Any str, lone surrogates included (hypothesis leaves them out of st.text() by default).
any_text = st.text(st.characters(exclude_categories=[]), max_size=30) | with_surrogate


def seeded() -> slea.ExperienceLibrary:
    lib = slea.ExperienceLibrary(small_config(), embedder=slea.HashingEmbedder(16))
    lib.admit([cand("t1", cluster_ids=(1,)), cand("t2", zone="warning", level="example")], 0)
    return lib


def has_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def fs_encodable(s: str) -> bool:
    try:
        os.fsencode(s)
    except UnicodeEncodeError:
        return False
    return True


def calls(lib: slea.ExperienceLibrary, text: str, tmp: Path) -> dict[str, tuple]:
    """name -> (call, the argument name its error must carry)."""
    demo = {"level": "example", "observation": "o", "action": "a"}
    return {
        "admit text": (lambda: lib.admit([cand(text)], 1), "Candidate.text"),
        "admit observation": (
            lambda: lib.admit([cand("t3", **{**demo, "observation": text})], 1),
            "Candidate.observation",
        ),
        "admit action": (
            lambda: lib.admit([cand("t3", **{**demo, "action": text})], 1),
            "Candidate.action",
        ),
        "retrieve hit": (lambda: lib.retrieve(1, text), "text"),
        "retrieve fallback": (lambda: lib.retrieve(77, text), "text"),
        "retrieve_batch": (lambda: lib.retrieve_batch([1, 77], ["ok", text]), r"texts\[1\]"),
        "experience": (lambda: slea.Experience(1, text, "strategy", "pattern", 1.0), "text"),
        "embed": (lambda: slea.HashingEmbedder(16).embed(["ok", text]), r"texts\[1\]"),
        "save": (lambda: lib.save(str(tmp / f"{text}.snap")), "path"),
        "import": (lambda: _import(lib, text, tmp), "line 1: Candidate.text"),
    }


def _import(lib: slea.ExperienceLibrary, text: str, tmp: Path) -> list[int]:
    # json.dumps writes a lone surrogate as a \ud800 escape, which json.loads reads back.
    p = tmp / "in.jsonl"
    item = {"text": text, "zone": "strategy", "level": "pattern", "score": 0.5}
    p.write_text(json.dumps(item) + "\n", encoding="ascii")
    return lib.import_jsonl(p)


@settings(max_examples=60, deadline=None)
@given(text=any_text)
def test_lone_surrogates_are_refused_by_every_text_entry_point(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check_text_entry_points(text, Path(tmp))


def _check_text_entry_points(text: str, tmp: Path) -> None:
    lib = seeded()
    for name, (call, arg) in calls(lib, text, tmp).items():
        before = lib._snapshot_bytes()
        # Paths follow the file system's rules: surrogate escapes of undecodable bytes are fine.
        if has_surrogate(text) and not (name == "save" and fs_encodable(text)):
            with pytest.raises(ValueError, match=rf"{arg}: is not valid Unicode.*surrogate"):
                call()
            assert lib._snapshot_bytes() == before, f"{name}: a failed call changed the library"
        else:
            try:
                call()
            except (
                ValueError,
                OSError,
            ) as exc:  # content rules (capacity, file names), never Unicode
                assert "surrogate" not in str(exc), name
    assert len(lib.retrieve(1, "t1")) >= 1


def test_surrogate_escaped_paths_are_file_names(tmp_path: Path) -> None:
    lib = seeded()
    lib.save(tmp_path / "raw-\udc80.snap")  # the byte 0x80, as os.listdir would name it
    assert os.path.exists(os.fsencode(str(tmp_path / "raw-\udc80.snap")))
    with pytest.raises(ValueError, match="path: is not valid Unicode"):
        lib.save(tmp_path / "bad-\ud800.snap")


def test_a_surrogate_escape_in_an_imported_file_names_the_line(tmp_path: Path) -> None:
    lib = seeded()
    p = tmp_path / "in.jsonl"
    good = {"text": "t5", "zone": "strategy", "level": "pattern", "score": 1.0}
    p.write_text(json.dumps(good) + "\n" + '{"text": "bad \\udc80", "zone": "warning", '
                 '"level": "pattern", "score": 0}\n')  # fmt: skip
    before = lib._snapshot_bytes()
    with pytest.raises(ValueError, match=r"line 2: Candidate.text: is not valid Unicode"):
        lib.import_jsonl(p)
    p.write_bytes(json.dumps(good).encode() + b"\n\xff\xfe garbage\n")
    with pytest.raises(ValueError, match="line 2: not UTF-8"):
        lib.import_jsonl(p)
    p.write_text("[" * 100_000 + "\n")
    with pytest.raises(ValueError, match="line 1: "):
        lib.import_jsonl(p)
    assert lib._snapshot_bytes() == before


# ---- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "score", [1e308, -1e308, SCORE_LIMIT * 1.000001, -2e6, 10**400, math.nan, math.inf]
)
def test_scores_beyond_the_limit_are_refused_everywhere(score: float, tmp_path: Path) -> None:
    lib = seeded()
    before = lib._snapshot_bytes()
    with pytest.raises(ValueError, match=r"Candidate.score must be finite and in \[-1e\+06"):
        cand("t5", score=score)
    with pytest.raises(ValueError, match=r"Experience\.score"):
        slea.Experience(1, "x", "strategy", "pattern", score)
    with pytest.raises(ValueError, match="reward"):
        lib.record_outcome([1], True, reward=score)
    p = tmp_path / "in.jsonl"
    p.write_text(json.dumps({"text": "t5", "zone": "strategy", "level": "pattern", "score": score}))
    with pytest.raises(ValueError, match=r"line 1: Candidate\.score"):
        lib.import_jsonl(p)
    # Past the Python checks, the core refuses too (a Candidate altered after construction).
    f = math.inf if isinstance(score, int) else score
    bad = cand("t5")
    object.__setattr__(bad, "score", f)
    with pytest.raises(ValueError, match=r"candidates\[0\].score: must be a finite number"):
        lib._inner.admit([bad], np.ones((1, 16), np.float32), 1)
    with pytest.raises(ValueError, match="reward: must be a finite number"):
        lib._inner.record_outcome([1], True, f)
    assert lib._snapshot_bytes() == before


def test_scores_at_the_limit_are_kept_and_do_not_drift() -> None:
    cfg = small_config(ema_alpha=0.3)
    lib = slea.ExperienceLibrary(cfg, embedder=slea.HashingEmbedder(16))
    r = lib.admit(
        [cand("top", score=SCORE_LIMIT), cand("bottom", zone="warning", score=-SCORE_LIMIT)], 0
    )
    top, bottom = r.admitted_ids
    for _ in range(50):
        lib.record_outcome([top], True, reward=SCORE_LIMIT)
        lib.record_outcome([bottom], False, reward=-SCORE_LIMIT)
    assert lib.get(top).score == SCORE_LIMIT and lib.get(bottom).score == -SCORE_LIMIT
    clone = slea.ExperienceLibrary._restore(
        _core.Library.from_bytes(lib._snapshot_bytes()), slea.HashingEmbedder(16)
    )
    assert [e.score for e in clone.entries()] == [SCORE_LIMIT, -SCORE_LIMIT]
    assert cand("x", score=np.float32(2.5)).score == 2.5
    assert cand("x", score=np.int64(-3)).score == -3.0


@pytest.mark.parametrize(
    "field,value",
    [
        ("novelty_threshold", math.nan),
        ("novelty_threshold", 1.5),
        ("fallback_threshold", -math.inf),
        ("fallback_threshold", "0.2"),
        ("ema_alpha", math.nan),
        ("ema_alpha", 0.0),
        ("ema_alpha", 1e308),
        ("ema_alpha", True),
    ],
)
def test_config_floats_must_be_finite_and_in_range(field: str, value: object) -> None:
    with pytest.raises(slea.ConfigError, match=f"LibraryConfig.{field}"):
        slea.LibraryConfig(**{field: value})  # type: ignore[arg-type]


def test_config_floats_accept_numpy_numbers() -> None:
    cfg = slea.LibraryConfig(
        novelty_threshold=np.float32(0.5),
        fallback_threshold=np.float64(0.25),
        ema_alpha=np.float32(0.5),
    )
    assert (cfg.novelty_threshold, cfg.fallback_threshold, cfg.ema_alpha) == (0.5, 0.25, 0.5)
    assert all(type(v) is float for v in (cfg.novelty_threshold, cfg.ema_alpha))


@settings(max_examples=150, deadline=None)
@given(
    scores=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=6),
    rewards=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6),
)
def test_no_float_corrupts_the_library(scores: list[float], rewards: list[float]) -> None:
    lib = slea.ExperienceLibrary(small_config(ema_alpha=0.5), embedder=slea.HashingEmbedder(16))
    for j, s in enumerate(scores):
        ok = math.isfinite(s) and abs(s) <= SCORE_LIMIT
        try:
            lib.admit([cand(f"t{j}", score=s, cluster_ids=(1,))], j)
        except ValueError:
            assert not ok
        else:
            assert ok
    for r in rewards:
        try:
            lib.record_outcome([e.id for e in lib.entries()], r > 0, reward=r)
        except ValueError:
            assert not (math.isfinite(r) and abs(r) <= SCORE_LIMIT)
    assert all(math.isfinite(e.score) and abs(e.score) <= SCORE_LIMIT for e in lib.entries())
    back = _core.Library.from_bytes(lib._snapshot_bytes())
    assert len(back) == len(lib)
