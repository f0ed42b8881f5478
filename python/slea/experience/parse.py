"""Parsing a model's answer: strict JSON first, then a lenient parser for common near-JSON.

Models asked for a JSON list of ``{"text", "level"}`` items often answer with almost-JSON: a
Markdown fence, prose around the list, single or typographic quotes, bare keys, Python literals,
trailing or missing commas, a wrapping object, synonyms for the keys and levels, or output cut
off by the token budget. :func:`parse_items` accepts these, keeps only complete items, and never
raises on a string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LEVELS = ("principle", "pattern", "example")

MAX_PARSE_CHARS = 32_768
"""Only this many characters of a model output are parsed (a 1 MB reply costs no more)."""

_LEVEL_SYNONYMS: dict[str, str] = {
    "principle": "principle",
    "principles": "principle",
    "general": "principle",
    "rule": "principle",
    "pattern": "pattern",
    "patterns": "pattern",
    "method": "pattern",
    "tactic": "pattern",
    "strategy": "pattern",
    "example": "example",
    "examples": "example",
    "concrete": "example",
    "instance": "example",
    "mistake": "example",
}
_TEXT_KEYS = ("text", "content", "lesson", "strategy", "warning", "tip")
_LEVEL_KEYS = ("level", "type", "kind", "abstraction")
_LIST_KEYS = ("items", "lessons", "experiences", "strategies", "warnings", "tips", "results")
_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)(?:```|$)", re.DOTALL)
_SMART = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "«": '"', "»": '"'})


@dataclass(frozen=True)
class ParseResult:
    """Outcome of parsing one model output.

    Attributes:
        items: ``(text, level)`` pairs with a known level (not yet validated as lessons).
        status: ``ok`` (strict JSON of the asked shape), ``repaired`` (needed repair or a shape
            fix) or ``failed`` (nothing usable).
        dropped: items that were present but malformed (no text, unknown level, not an object).
    """

    items: tuple[tuple[str, str], ...]
    status: str
    dropped: int = 0


class _Eof(Exception):
    """The input ended inside a value (truncated output)."""


class _Bad(Exception):
    """The input is not near-JSON at this position."""


class _Lenient:
    """A small recursive-descent parser that accepts JSON plus the mistakes models make:
    single-quoted strings, bare keys, Python literals, trailing or missing commas, raw newlines in
    strings, and truncation (incomplete trailing list items are dropped)."""

    _NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
    _WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
    _ESCAPES: Mapping[str, str] = {
        "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'",
    }  # fmt: skip

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.truncated = False
        self.depth = 0

    def skip(self) -> None:
        s, n = self.s, len(self.s)
        while self.i < n and (s[self.i].isspace() or s[self.i] == ","):
            self.i += 1

    def peek(self) -> str:
        self.skip()
        if self.i >= len(self.s):
            raise _Eof
        return self.s[self.i]

    def value(self, key: bool = False) -> Any:
        ch = self.peek()
        if ch == "[":
            return self.array()
        if ch == "{":
            return self.obj()
        if ch in "\"'":
            return self.string()
        m = self._NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            return float(m.group())
        m = self._WORD.match(self.s, self.i)
        if m:
            self.i = m.end()
            word = m.group()
            if key:
                return word
            literal = word.lower()
            if literal not in ("true", "false", "null", "none"):
                raise _Bad(f"bare word {word!r} is not a value")
            return {"true": True, "false": False}.get(literal)
        raise _Bad(f"unexpected {ch!r}")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > 16:
            raise _Bad("nesting too deep")

    def array(self) -> list[Any]:
        self._enter()
        self.i += 1
        out: list[Any] = []
        while True:
            try:
                if self.peek() == "]":
                    self.i += 1
                    self.depth -= 1
                    return out
                out.append(self.value())
            except _Eof:
                self.truncated = True  # keep the complete items, drop the incomplete one
                return out

    def obj(self) -> dict[str, Any]:
        self._enter()
        self.i += 1
        out: dict[str, Any] = {}
        while True:
            if self.peek() == "}":
                self.i += 1
                self.depth -= 1
                return out
            key = self.value(key=True)
            if not isinstance(key, str):
                raise _Bad("object key is not a string")
            if self.peek() != ":":
                raise _Bad("missing ':' in object")
            self.i += 1
            out[key] = self.value()

    def string(self) -> str:
        quote, s, n = self.s[self.i], self.s, len(self.s)
        self.i += 1
        buf: list[str] = []
        while self.i < n:
            ch = s[self.i]
            if ch == quote:
                self.i += 1
                out = "".join(buf)
                if any("\ud800" <= c <= "\udfff" for c in out):  # join \u escaped pairs
                    out = out.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
                return out
            if ch == "\\" and self.i + 1 < n:
                nxt = s[self.i + 1]
                if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[self.i + 2 : self.i + 6]):
                    buf.append(chr(int(s[self.i + 2 : self.i + 6], 16)))
                    self.i += 6
                    continue
                buf.append(self._ESCAPES.get(nxt, nxt))
                self.i += 2
                continue
            buf.append(ch)
            self.i += 1
        raise _Eof


def _to_items(value: Any) -> tuple[list[tuple[str, str]], int, bool] | None:
    """Map a parsed value to (items, dropped, shape_fixed), or None if it has the wrong shape."""
    fixed = False
    if isinstance(value, dict):
        for key in _LIST_KEYS:
            if isinstance(value.get(key), list):
                value, fixed = value[key], True
                break
        else:
            value, fixed = [value], True
    if not isinstance(value, list):
        return None
    items: list[tuple[str, str]] = []
    dropped = 0
    for item in value:
        if isinstance(item, str):  # a bare list of sentences: level unknown
            item, fixed = {"text": item, "level": "pattern"}, True
        if not isinstance(item, dict):
            dropped += 1
            continue
        text_key = next((k for k in _TEXT_KEYS if isinstance(item.get(k), str)), None)
        level_key = next((k for k in _LEVEL_KEYS if isinstance(item.get(k), str)), None)
        if text_key is None:
            dropped += 1
            continue
        raw_level = item[level_key] if level_key else "pattern"
        level = _LEVEL_SYNONYMS.get(raw_level.strip().lower())
        if level is None:
            dropped += 1
            continue
        fixed = fixed or text_key != "text" or level_key != "level" or level != raw_level
        items.append((item[text_key], level))
    return items, dropped, fixed


def _starts(text: str, limit: int = 8) -> list[int]:
    """Positions of the first ``limit`` opening brackets/braces, lists first."""
    out = [m.start() for m in re.finditer(r"\[", text)][:limit]
    out += [m.start() for m in re.finditer(r"\{", text)][:limit]
    return out


def parse_items(raw: str) -> ParseResult:
    """Parse a model's answer into ``(text, level)`` items.

    Strict first: the whole output (or the body of a Markdown code fence) must be a JSON list of
    objects with string ``text`` and a ``level`` among principle/pattern/example -> ``ok``.
    Otherwise a lenient parser tries the first few ``[`` / ``{`` positions and accepts prose
    around the JSON, code fences, single quotes, smart quotes, bare keys, Python literals,
    trailing or missing commas, a wrapping object (``{"items": [...]}``), a single object, key and
    level synonyms (``content``, ``method``...) and truncated output (complete items kept)
    -> ``repaired``. Anything else -> ``failed`` with no items. Never raises on a ``str``; only the
    first :data:`MAX_PARSE_CHARS` characters are read.
    """
    if not isinstance(raw, str):
        return ParseResult((), "failed")
    text = raw[:MAX_PARSE_CHARS]
    body = text.strip()
    fence = _FENCE.search(body)
    try:
        strict = json.loads(body)
    except (ValueError, RecursionError):
        strict = None
    if isinstance(strict, list):
        shaped = _to_items(strict)
        if shaped is not None and shaped[0] and not shaped[2]:
            return ParseResult(tuple(shaped[0]), "ok", shaped[1])
    best: ParseResult | None = None
    candidates = [fence.group(1)] if fence else []
    candidates.append(text)
    if '"' not in text and "'" not in text:  # typographic quotes used as JSON quotes
        candidates.append(text.translate(_SMART))
    for cand in candidates:
        for start in _starts(cand):
            parser = _Lenient(cand)
            parser.i = start
            try:
                value = parser.value()
            except (_Bad, _Eof, RecursionError):
                continue
            shaped = _to_items(value)
            if shaped is None or not shaped[0]:
                continue
            result = ParseResult(tuple(shaped[0]), "repaired", shaped[1])
            if best is None or len(result.items) > len(best.items):
                best = result
        if best is not None:
            return best
    return ParseResult((), "failed")


__all__ = ["MAX_PARSE_CHARS", "ParseResult", "parse_items"]
