"""Plain-Python restatement of slea's observation canonicalisation, hashing and similarity.

Our own obviously-correct version, used two ways: hypothesis tests compare the Rust core against
it, and ``python -m benches canon`` measures the Rust core's speed against it (the issue's
"straightforward Python implementation": ``re`` + ``unicodedata``, one pass per rule).

A spec is a list of rule dicts, the same JSON the Rust ``CanonSpec`` reads (``{"rule": "nfkc"}``,
``{"rule": "drop_lines", "patterns": [...]}``, ...). See ``rust/slea-core/src/canon.rs`` for the
meaning of each rule; every function below is the definition written as simply as possible.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any


Rule = dict[str, Any]

# The Unicode White_Space characters (Rust's char::is_whitespace) and those among them that end a line.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
LINE_BREAKS = "\n\x0b\x0c\r\x85\u2028\u2029"
SEGMENT_DELIMITERS = ".!?;:\n"


def nfkc(text: str, rule: Rule) -> str:
    return unicodedata.normalize("NFKC", text)


def casefold(text: str, rule: Rule) -> str:
    # The Unicode lowercase mapping of each character on its own (no context, so no final sigma;
    # str.lower() differs from that only around a capital sigma).
    if "\u03a3" not in text:
        return text.lower()
    return "".join(ch.lower() for ch in text)


_WS_RUN = re.compile(f"[{re.escape(WHITESPACE)}]+")


def _separator(m: re.Match[str]) -> str:
    return "\n" if any(c in LINE_BREAKS for c in m.group()) else " "


def collapse_whitespace(text: str, rule: Rule) -> str:
    return _WS_RUN.sub(_separator, text.strip(WHITESPACE))


def mask_numbers(text: str, rule: Rule) -> str:
    return re.sub(r"[0-9]+(?:[.,][0-9]+)*", lambda m: rule["token"], text)


def _is_id(word: str, min_len: int) -> bool:
    hexdigits = "0123456789abcdefABCDEF"
    if word[:2] in ("0x", "0X") and len(word) > 2 and all(c in hexdigits for c in word[2:]):
        return True
    has_digit = any(c.isascii() and c.isdigit() for c in word)
    has_letter = any(c.isascii() and c.isalpha() for c in word)
    return len(word) >= min_len and has_digit and has_letter


def mask_ids(text: str, rule: Rule) -> str:
    # Words are maximal runs of [A-Za-z0-9_-]; only those holding a digit can be ids.
    token, min_len = rule["token"], rule["min_len"]
    return re.sub(
        r"[A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*",
        lambda m: token if _is_id(m.group(), min_len) else m.group(),
        text,
    )


def drop_lines(text: str, rule: Rule) -> str:
    patterns = [re.compile(p) for p in rule["patterns"]]
    lines = text.split("\n")
    kept = [line for line in lines if not any(p.search(line) for p in patterns)]
    return "\n".join(kept)


def keep_from_last(text: str, rule: Rule) -> str:
    matches = list(re.finditer(rule["pattern"], text, re.MULTILINE))
    if not matches:
        return text
    start = text.rfind("\n", 0, matches[-1].start()) + 1
    return text[start:]


def replace(text: str, rule: Rule) -> str:
    # Rust replacement syntax ($1, ${name}) -> Python's (\g<1>, \g<name>).
    repl = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: rf"\g<{m.group(1) or m.group(2)}>", rule["replacement"])
    return re.sub(rule["pattern"], repl, text, flags=re.MULTILINE)


def _sort_segment(seg: str, rule: Rule) -> str:
    articles, conjunctions, stop_words = rule["articles"], rule["conjunctions"], rule["stop_words"]
    core = seg.strip(" ")
    padded = f" {core} "
    if "," not in core and not any(f" {c} " in padded for c in conjunctions):
        return seg  # no comma and no conjunction: no item can start here
    lead = seg[: len(seg) - len(seg.lstrip(" "))]
    trail = seg[len(seg.rstrip(" ")) :]
    words = core.split(" ")
    # An item starts at an article that follows a comma or a conjunction (itself after a word).
    breaks = [
        i
        for i in range(1, len(words))
        if words[i] in articles
        and (words[i - 1].endswith(",") or (words[i - 1] in conjunctions and i >= 2))
    ]
    if not breaks:
        return seg
    bounds = [0, *breaks, len(words)]
    chunks = [words[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]
    conjunction = None
    for k in range(len(chunks) - 1):
        chunk = chunks[k]
        if chunk and chunk[-1] in conjunctions and len(chunk) >= 2:
            if k == len(chunks) - 2:
                conjunction = chunk[-1]
            chunk = chunk[:-1]
        if chunk and chunk[-1].endswith(","):
            chunk = [*chunk[:-1], chunk[-1][:-1]]
        chunks[k] = chunk
    first = chunks[0]
    starts = [j for j, w in enumerate(first) if w in articles]
    j = starts[-1] if starts else 0
    prefix, chunks[0] = first[:j], first[j:]
    last = chunks[-1]
    m = next((i for i in range(2, len(last)) if last[i] in stop_words), len(last))
    chunks[-1], suffix = last[:m], last[m:]
    items = sorted(" ".join(c) for c in chunks)
    if conjunction is not None:
        body = ", ".join(items[:-1]) + f" {conjunction} " + items[-1]
    else:
        body = ", ".join(items)
    return lead + " ".join([*prefix, body, *suffix]) + trail


def _starts_with_article(line: str, articles: list[str]) -> bool:
    return line.lstrip(" \t").split(" ")[0] in articles


def sort_enumerations(text: str, rule: Rule) -> str:
    pieces = re.split(f"([{re.escape(SEGMENT_DELIMITERS)}])", text)
    text = "".join(p if i % 2 else _sort_segment(p, rule) for i, p in enumerate(pieces))
    if not rule["lines"]:
        return text
    lines = text.split("\n")
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, None]:
        if line is not None and _starts_with_article(line, rule["articles"]):
            run.append(line)
            continue
        out.extend(sorted(run) if len(run) >= 2 else run)
        run = []
        if line is not None:
            out.append(line)
    return "\n".join(out)


RULES = {
    "nfkc": nfkc,
    "casefold": casefold,
    "collapse_whitespace": collapse_whitespace,
    "mask_numbers": mask_numbers,
    "mask_ids": mask_ids,
    "drop_lines": drop_lines,
    "keep_from_last": keep_from_last,
    "replace": replace,
    "sort_enumerations": sort_enumerations,
}


def canonicalize(text: str, rules: list[Rule]) -> str:
    """Apply each rule in order."""
    for rule in rules:
        text = RULES[rule["rule"]](text, rule)
    return text


# --- hashing (rust/slea-core/src/hash.rs) ------------------------------------------------------

MASK64 = (1 << 64) - 1
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def mix64(z: int) -> int:
    """SplitMix64 finaliser."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK64


def word_hash(word: bytes) -> int:
    h = len(word)
    for i in range(0, len(word), 8):
        h = mix64(h ^ int.from_bytes(word[i : i + 8].ljust(8, b"\0"), "little"))
    return h


def words(text: str) -> list[str]:
    """Maximal runs of characters that are neither white space nor ASCII punctuation."""
    out, cur = [], ""
    for ch in text:
        if ch in WHITESPACE or ch in PUNCTUATION:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def simhash(canonical: str) -> int:
    """SimHash-64 of the word 3-shingles (taken within each line) of an already canonical text."""
    shingles = []
    for line in canonical.split("\n"):
        hs = [word_hash(w.encode("utf-8")) for w in words(line)]
        if len(hs) == 1:
            shingles.append(mix64(hs[0]))
        elif len(hs) == 2:
            shingles.append(mix64(rotl(hs[0], 21) ^ hs[1]))
        else:
            shingles += [
                mix64(rotl(hs[i], 42) ^ rotl(hs[i + 1], 21) ^ hs[i + 2]) for i in range(len(hs) - 2)
            ]
    out = 0
    for j in range(64):
        ones = sum((s >> j) & 1 for s in shingles)
        if 2 * ones > len(shingles):
            out |= 1 << j
    return out


def line_set(canonical: str) -> frozenset[str]:
    return frozenset(canonical.split("\n"))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)
