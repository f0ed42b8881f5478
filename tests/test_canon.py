"""Canonicalisation and hashing: Rust vs the plain-Python reference, invariants, bad input."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
import unicodedata

import numpy as np
import pytest
from bad_input import bad_texts
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reference import canon_ref

import slea
from slea import CanonSpec

PRESETS = ["generic", "textworld", "alfworld", "scienceworld"]
EMPTY = CanonSpec([])

# --- strategies --------------------------------------------------------------------------------

WORDS = [
    "a", "an", "the", "some", "and", "or", "on", "in", "here", "key", "red", "apple", "knife",
    "cookbook", "blanket", "pants", "table", "floor", "You", "see", "carrying", "nothing",
    "There", "is", "Moves", "Score", "step", "0x1F", "a3f9c2e1", "12", "3.14", "1,000", "É",
    "Ｋｅｙ", "ﬁle", "ΣΑΣ", "İ", "ß", "猫", "-=", "=-", "Kitchen", "Hall",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", ", ", ". ", ": ", "; ", "! ", "\n", "\n\n", "\t", "  ", "\r\n",
              "\u2028", "\xa0", "\u3000", " and ", ", and ", "\n-= Hall =-\n"]  # fmt: skip


@st.composite
def game_text(draw: st.DrawFn) -> str:
    """Text-game-like observations: words, list separators, headers, numbers, odd white space."""
    n = draw(st.integers(0, 40))
    parts = []
    for _ in range(n):
        parts.append(draw(st.sampled_from(WORDS)))
        parts.append(draw(st.sampled_from(SEPARATORS)))
    return "".join(parts)


def _safe(ch: str) -> bool:
    # Characters assigned in this Python's Unicode database, minus surrogates and the classes on
    # which Python's re and Rust's regex define \w and \b differently (marks, other numbers).
    cat = unicodedata.category(ch)
    return cat not in ("Cn", "Cs", "Co") and cat[0] != "M" and cat not in ("No", "Nl")


unicode_text = st.text(alphabet=st.characters(codec="utf-8").filter(_safe), max_size=60) | st.lists(
    st.sampled_from(WORDS + SEPARATORS), max_size=30
).map("".join)
texts = game_text() | unicode_text
any_text = st.text(st.characters(codec="utf-8"), max_size=80)  # every scalar value

SORT = {"rule": "sort_enumerations", "articles": ["a", "an", "the"], "conjunctions": ["and", "or"],
        "stop_words": ["on", "in", "here"], "lines": True}  # fmt: skip
RULE_POOL = [
    {"rule": "nfkc"},
    {"rule": "casefold"},
    {"rule": "collapse_whitespace"},
    {"rule": "mask_numbers", "token": "#"},
    {"rule": "mask_numbers", "token": "<n>"},
    {"rule": "mask_ids", "token": "<id>", "min_len": 4},
    {"rule": "drop_lines", "patterns": ["^score", "x{2,}", "^$"]},
    {"rule": "keep_from_last", "pattern": "^-= .+ =-$"},
    {"rule": "replace", "pattern": "a+b", "replacement": "X"},
    {"rule": "replace", "pattern": "(o)(n)", "replacement": "$2$1"},
    SORT,
    {**SORT, "lines": False, "stop_words": []},
]


# --- presets, JSON, fingerprints ---------------------------------------------------------------


def test_presets_and_default() -> None:
    specs = [CanonSpec.preset(n) for n in PRESETS]
    assert [CanonSpec.generic(), CanonSpec.textworld(), CanonSpec.alfworld(),
            CanonSpec.scienceworld()] == specs  # fmt: skip
    assert CanonSpec.default() == CanonSpec.generic()
    assert len({s.fingerprint for s in specs}) == 4
    assert repr(CanonSpec.textworld()) == "CanonSpec.textworld()"
    assert "nfkc" in repr(CanonSpec([{"rule": "nfkc"}]))
    with pytest.raises(ValueError, match="name: unknown preset"):
        CanonSpec.preset("nope")
    with pytest.raises(TypeError, match="name"):
        CanonSpec.preset(3)  # type: ignore[arg-type]


def test_json_roundtrip_rules_copy_pickle() -> None:
    for name in PRESETS:
        spec = CanonSpec.preset(name)
        back = CanonSpec.from_json(spec.to_json())
        assert back == spec and hash(back) == hash(spec) and back.fingerprint == spec.fingerprint
        assert CanonSpec.from_rules(spec.rules) == spec
        assert pickle.loads(pickle.dumps(spec)) == spec
        rules = spec.rules
        rules.append({"rule": "nfkc"})
        assert spec.rules != rules
    doc = json.loads(CanonSpec.textworld().to_json())
    assert doc["version"] == 1 and doc["rules"][0] == {"rule": "nfkc"}
    # Defaults are filled in, so equal meaning gives an equal spec and fingerprint.
    assert CanonSpec([{"rule": "mask_numbers"}]) == CanonSpec(
        [{"rule": "mask_numbers", "token": "#"}]
    )
    assert CanonSpec([{"rule": "nfkc"}]) != CanonSpec([{"rule": "casefold"}])
    assert CanonSpec([]) != "not a spec"


def test_spec_is_immutable() -> None:
    spec = CanonSpec.generic()
    with pytest.raises(AttributeError):
        spec.fingerprint = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        spec._inner = None  # type: ignore[assignment]
    with pytest.raises(AttributeError):
        del spec._inner


# Pinned values: a change to canonicalisation or hashing that changes cluster ids fails here.
# Update them only together with CANON_VERSION (rust/slea-core/src/canon.rs).
KNOWN_FINGERPRINTS = {
    "generic": 0x811DD31EF2E75DA8,
    "textworld": 0xE0353F557C1F2CAF,
    "alfworld": 0x9D3E2A620623EC7A,
    "scienceworld": 0x64B92ED3FDE0596B,
}
KNOWN_TEXTS = [
    "-= Kitchen =-\nYou see a red apple, a knife and a cookbook.\n\nYou are carrying nothing.",
    "Moves: 12    Score: 3\nYou pick up the key.\n\n-= Hall =-\n"
    "There is a blanket and a controller on the floor.",
    "ÉTAT 0x1F obj a3f9c2e1 at 3.14 degrees\tand  some\u2028text",
]
KNOWN = {  # preset -> [(structural_hash, simhash, canonical text)]
    "generic": [
        (0xF06261B8FDEDACBE, 0xBAB4EF7FC0730329,
         "-= kitchen =-\nyou see a cookbook, a knife and a red apple.\nyou are carrying nothing."),
        (0x09A11192209ABFF5, 0x09B9C4347B9294C2,
         "you pick up the key.\n-= hall =-\nthere is a blanket and a controller on the floor."),
        (0x890309ECBF9E718C, 0x9D838861F6625BE1, "some and état <id> obj <id> at # degrees\ntext"),
    ],
    "textworld": [
        (0xF06261B8FDEDACBE, 0xBAB4EF7FC0730329,
         "-= kitchen =-\nyou see a cookbook, a knife and a red apple.\nyou are carrying nothing."),
        (0x6F04BCDB51D41881, 0x7BB9C73F7F9694C7,
         "-= hall =-\nthere is a blanket and a controller on the floor."),
        (0x66D0AB97943FC2EC, 0x8549F03B565830F0,
         "état 0x1f obj a3f9c2e1 at 3.14 degrees and some\ntext"),
    ],
}  # fmt: skip


def test_known_answers() -> None:
    for name, fp in KNOWN_FINGERPRINTS.items():
        assert CanonSpec.preset(name).fingerprint == fp, name
    for name, rows in KNOWN.items():
        spec = CanonSpec.preset(name)
        for text, (h, sh, canonical) in zip(KNOWN_TEXTS, rows, strict=True):
            assert slea.canonicalize(text, spec) == canonical
            assert slea.structural_hash(text, spec) == h
            assert slea.simhash(text, spec) == sh
    # xxh3-64 reference vectors (seed 0): the structural hash of a text under the empty spec.
    assert slea.structural_hash("", EMPTY) == 0x2D06800538D394C2
    assert slea.structural_hash("a", EMPTY) == 0xE6C632B61E964E1F


def test_hashes_are_the_same_in_another_process() -> None:
    code = (
        "import json, sys, slea\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps([[slea.structural_hash(t, slea.CanonSpec.preset(p)),"
        " slea.simhash(t, slea.CanonSpec.preset(p)), slea.CanonSpec.preset(p).fingerprint]"
        " for p in ('generic', 'textworld') for t in texts]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(KNOWN_TEXTS),
        capture_output=True,
        text=True,
        check=True,
    )
    here = [
        [slea.structural_hash(t, CanonSpec.preset(p)), slea.simhash(t, CanonSpec.preset(p)),
         CanonSpec.preset(p).fingerprint]
        for p in ("generic", "textworld") for t in KNOWN_TEXTS
    ]  # fmt: skip
    assert json.loads(out.stdout) == here


# --- differential: Rust vs tests/reference/canon_ref.py ----------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, name=st.sampled_from(PRESETS))
@example(text="x a, and a b", name="generic")  # an article before the comma of the first item
@example(text="a a, and a ", name="generic")
@example(
    text="there is a coin, a key and a box on the floor.\n\tthe agent\n\ta chair", name="generic"
)
def test_presets_match_reference(text: str, name: str) -> None:
    spec = CanonSpec.preset(name)
    expected = canon_ref.canonicalize(text, spec.rules)
    assert slea.canonicalize(text, spec) == expected
    assert slea.structural_hash(text, spec) == slea.structural_hash(expected, EMPTY)
    assert slea.simhash(text, spec) == canon_ref.simhash(expected)


@given(text=texts, rules=st.lists(st.sampled_from(RULE_POOL), max_size=6))
def test_rule_lists_match_reference(text: str, rules: list[dict]) -> None:
    spec = CanonSpec(rules)
    assert slea.canonicalize(text, spec) == canon_ref.canonicalize(text, spec.rules)


@given(text=texts)
def test_simhash_matches_reference(text: str) -> None:
    assert slea.simhash(text, EMPTY) == canon_ref.simhash(text)


@given(
    items=st.lists(
        st.sampled_from(
            [
                "a red apple",
                "a knife",
                "an orange",
                "the agent",
                "some pants",
                "a key 3",
                "a salt and pepper shaker",
            ]
        ),
        min_size=2,
        max_size=6,
    ),
    perm=st.randoms(use_true_random=False),
    prefix=st.sampled_from(["You see", "On the table you can see", "There is", ""]),
    suffix=st.sampled_from(["", " on the floor", " here"]),
    oxford=st.booleans(),
    name=st.sampled_from(PRESETS),
)
def test_enumeration_order_does_not_matter(
    items: list[str], perm, prefix: str, suffix: str, oxford: bool, name: str
) -> None:
    def listing(xs: list[str]) -> str:
        sep = ", and " if oxford and len(xs) > 2 else " and "
        return ", ".join(xs[:-1]) + sep + xs[-1]

    shuffled = list(items)
    perm.shuffle(shuffled)
    spec = CanonSpec.preset(name)
    a = f"-= Hall =-\n{prefix} {listing(items)}{suffix}.\nYou are carrying nothing."
    b = f"-= Hall =-\n{prefix} {listing(shuffled)}{suffix}.\nYou are carrying nothing."
    assert slea.structural_hash(a, spec) == slea.structural_hash(b, spec)
    # One item per line (ScienceWorld listings): the order of the lines does not matter either.
    if name in ("generic", "scienceworld"):
        la = "In it, you see:\n\t" + "\n\t".join(items)
        lb = "In it, you see:\n\t" + "\n\t".join(shuffled)
        assert slea.structural_hash(la, spec) == slea.structural_hash(lb, spec)


def test_volatile_parts_are_removed() -> None:
    tw = CanonSpec.textworld()
    state = "-= Kitchen =-\nA kitchen.\n\nYou are carrying: a key and a coin."
    full = f"Moves: 7    Score: 1\nYou pick up the coin.\n\n{state}"
    assert slea.structural_hash(full, tw) == slea.structural_hash(state, tw)
    intro = f"Welcome to TextWorld!\n\n-= Kitchen =-\nA kitchen.\n\n\n{state}"
    assert slea.structural_hash(intro, tw) == slea.structural_hash(state, tw)
    gen = CanonSpec.generic()
    assert slea.canonicalize("Step 4/50\nObj 7f3a9c11 at 3 o'clock", gen) == "obj <id> at # o'clock"
    assert slea.canonicalize("cabinet 3. You arrive at loc 12.", CanonSpec.alfworld()) == (
        "cabinet 3. you arrive at loc #."
    )


# --- batch entry points and bad input ----------------------------------------------------------


@given(batch=st.lists(texts, max_size=12), name=st.sampled_from(PRESETS))
def test_batch_equals_single(batch: list[str], name: str) -> None:
    spec = CanonSpec.preset(name)
    hashes = slea.structural_hash_batch(batch, spec)
    sims = slea.simhash_batch(tuple(batch), spec)
    assert hashes.dtype == np.uint64 and hashes.shape == (len(batch),)
    assert sims.dtype == np.uint64 and sims.shape == (len(batch),)
    assert [int(h) for h in hashes] == [slea.structural_hash(t, spec) for t in batch]
    assert [int(h) for h in sims] == [slea.simhash(t, spec) for t in batch]
    assert slea.canonicalize_batch(iter(batch), spec) == [slea.canonicalize(t, spec) for t in batch]


def test_empty_batches() -> None:
    for f in (slea.structural_hash_batch, slea.simhash_batch):
        out = f([])
        assert isinstance(out, np.ndarray) and out.dtype == np.uint64 and out.shape == (0,)
    assert slea.canonicalize_batch([]) == []
    assert slea.canonicalize("") == "" and slea.simhash("") == 0


@given(text=any_text, name=st.sampled_from(PRESETS))
def test_any_unicode_is_handled(text: str, name: str) -> None:
    spec = CanonSpec.preset(name)
    out = slea.canonicalize(text, spec)
    assert isinstance(out, str)
    assert slea.structural_hash(text, spec) == slea.structural_hash(out, EMPTY)
    assert slea.canonicalize(text, spec) == out


@given(
    text=st.text(min_size=1, max_size=20).map(lambda s: s + "\ud800" + s),
    name=st.sampled_from(PRESETS),
)
def test_lone_surrogates_are_refused(text: str, name: str) -> None:
    spec = CanonSpec.preset(name)
    for f in (slea.canonicalize, slea.structural_hash, slea.simhash):
        with pytest.raises(ValueError, match=r"text: .*surrogate"):
            f(text, spec)
    for g in (slea.canonicalize_batch, slea.structural_hash_batch, slea.simhash_batch):
        with pytest.raises(ValueError, match=r"texts\[1\]: .*surrogate"):
            g(["fine", text], spec)


@given(
    batch=st.lists(texts, max_size=6),
    bad=bad_texts,
    pos=st.integers(0, 6),
    name=st.sampled_from(PRESETS),
)
def test_any_bad_element_is_named(batch: list[str], bad: object, pos: int, name: str) -> None:
    spec = CanonSpec.preset(name)
    i = min(pos, len(batch))
    mixed: list[object] = [*batch[:i], bad, *batch[i:]]
    exc, why = (ValueError, "surrogate") if isinstance(bad, str) else (TypeError, "expected str")
    for f in (slea.canonicalize, slea.structural_hash, slea.simhash):
        with pytest.raises(exc, match=f"text: .*{why}"):
            f(bad, spec)  # type: ignore[arg-type]
    for g in (slea.canonicalize_batch, slea.structural_hash_batch, slea.simhash_batch):
        with pytest.raises(exc, match=rf"texts\[{i}\]: .*{why}"):
            g(mixed, spec)  # type: ignore[arg-type]
    # The same batch without the bad element still works and matches the single calls.
    assert [int(h) for h in slea.structural_hash_batch(batch, spec)] == [
        slea.structural_hash(t, spec) for t in batch
    ]


def test_wrong_types_name_the_argument() -> None:
    for f in (slea.canonicalize, slea.structural_hash, slea.simhash):
        with pytest.raises(TypeError, match="text: expected str, got int"):
            f(3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="text: expected str, got bytes"):
            f(b"x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"spec: expected slea\.CanonSpec"):
            f("x", "generic")  # type: ignore[arg-type]
    for g in (slea.canonicalize_batch, slea.structural_hash_batch, slea.simhash_batch):
        with pytest.raises(TypeError, match=r"texts\[2\]: expected str, got NoneType"):
            g(["a", "b", None])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="texts: expected a list of str, got str"):
            g("abc")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="texts: expected a list of str, got int"):
            g(5)  # type: ignore[arg-type]


def test_bad_specs_name_the_rule() -> None:
    with pytest.raises(ValueError, match=r"rules\[1\]: unknown variant `bogus`"):
        CanonSpec([{"rule": "nfkc"}, {"rule": "bogus"}])
    with pytest.raises(ValueError, match=r"rules\[0\]\.pattern: is not a valid regex"):
        CanonSpec([{"rule": "keep_from_last", "pattern": "("}])
    with pytest.raises(ValueError, match=r"rules\[0\]\.patterns\[1\]: is not a valid regex"):
        CanonSpec([{"rule": "drop_lines", "patterns": ["ok", "[z-a]"]}])
    with pytest.raises(ValueError, match=r"rules\[0\]: unknown field `colour`"):
        CanonSpec([{"rule": "nfkc", "colour": "red"}])
    with pytest.raises(ValueError, match=r"rules\[0\]\.min_len: must be at least 1"):
        CanonSpec([{"rule": "mask_ids", "min_len": 0}])
    with pytest.raises(ValueError, match=r"rules\[0\]\.articles\[0\]: must be one word"):
        CanonSpec([{"rule": "sort_enumerations", "articles": ["a b"]}])
    with pytest.raises(ValueError, match=r"rules\[0\]: missing field `patterns`"):
        CanonSpec([{"rule": "drop_lines"}])
    with pytest.raises(TypeError, match="rules: expected a list of rule dicts, got str"):
        CanonSpec("nfkc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rules: must be JSON-serialisable"):
        CanonSpec([{"rule": "nfkc", "x": object()}])
    with pytest.raises(ValueError, match="version 2 is not supported"):
        CanonSpec.from_json('{"version": 2, "rules": []}')
    with pytest.raises(ValueError, match="json"):
        CanonSpec.from_json("{")
    with pytest.raises(TypeError, match="text: expected str"):
        CanonSpec.from_json(b"{}")  # type: ignore[arg-type]


def test_ten_megabyte_observation() -> None:
    line = "You see a red apple, a knife and a cookbook. Moves: 3 obj 7f3a9c11\n"
    text = line * (10_000_000 // len(line))
    for name in PRESETS:
        spec = CanonSpec.preset(name)
        out = slea.canonicalize(text, spec)
        assert 0 < len(out) <= len(text) + 1000
        assert slea.structural_hash_batch([text, "x"], spec)[0] == slea.structural_hash(out, EMPTY)


def test_batches_run_in_parallel_threads() -> None:
    # The GIL is released during a batch: threads hashing at once give the same results.
    batch = [f"-= Room {i} =-\nYou see a key{i % 7}, a coin and a box." for i in range(3000)]
    spec = CanonSpec.textworld()
    expected = slea.structural_hash_batch(batch, spec)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(slea.structural_hash_batch(batch, spec))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.array_equal(r, expected) for r in results)
