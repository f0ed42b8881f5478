"""Prompts: experiences -> system message within a token budget; history + observation -> user message.

The system message is the env rules, then, when experiences were retrieved, a block::

    Tips:
    - <strategy text>
    - Worked step: when you saw "<observation>", the right action was "<action>".
    Avoid:
    - <warning text>

Strategies are shown as tips, warnings as things to avoid, and ``example``-level entries that carry
an (observation, action) pair as a worked step. Entries are added in retrieval order, alternating
zones (first strategy, first warning, second strategy, ...), and an entry is kept only if the whole
block still fits the token budget counted with the policy tokenizer. With no experiences the system
message is exactly the rules, so a run with an empty library sees the same prompts as plain GRPO.

The user message holds the task, a window of recent (action, observation) pairs, the current
observation and, when asked, the admissible actions. :func:`build_prompt` fits everything into
``max_prompt_tokens`` by dropping the oldest history first, then cutting the observation's start.

Two history formats (``history_format``):

``lines`` (the default)
    One user message: ``Task:``, then ``History:`` with ``> action`` and the (clipped)
    observation that answered it per past turn, then ``Now:`` and the current observation.
``chat``
    The past turns as the conversation they were: a first user message with the task (and the
    observation before the first shown turn, when the window still holds it), then per past turn
    an assistant message with its action and a user message with the answer (clipped); the
    last user message holds the current observation (and the actions). A chat-tuned model reads
    its own earlier actions as its own turns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_RULES = (
    "You are an agent in a text game. Reach the goal of the task in as few steps as possible. "
    "Answer with one action."
)
"""System-message rules used when neither the config nor the env gives any."""

GENERATE_SUFFIX = "Reply with the action between <action> and </action>."
"""Appended to the rules in generate mode with the ``tag`` parser."""


class ExperienceLike(Protocol):
    """What the prompt needs of a library entry (slea.Experience has these)."""

    id: int
    text: str
    zone: str
    level: str


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 3)].rstrip() + "..."


def experience_line(exp: Any, demo_chars: int = 160) -> str:
    """One bullet for an entry: its text, or a worked step for an example with (observation, action)."""
    obs = getattr(exp, "observation", None)
    action = getattr(exp, "action", None)
    if getattr(exp, "level", "") == "example" and obs and action and exp.zone == "strategy":
        return f'- Worked step: when you saw "{_clip(obs, demo_chars)}", the right action was "{_clip(action, 80)}".'
    return f"- {_clip(exp.text, 400)}"


def _interleave(experiences: Sequence[Any]) -> list[Any]:
    strategies = [e for e in experiences if e.zone == "strategy"]
    warnings = [e for e in experiences if e.zone != "strategy"]
    out: list[Any] = []
    for i in range(max(len(strategies), len(warnings))):
        out.extend(zone[i] for zone in (strategies, warnings) if i < len(zone))
    return out


def render_experiences(
    experiences: Sequence[Any],
    count_tokens: Callable[[str], int],
    budget_tokens: int,
) -> tuple[str, tuple[int, ...]]:
    """The Tips/Avoid block of the experiences that fit ``budget_tokens``, and their ids.

    Returns ``("", ())`` when nothing fits or nothing was given.
    """
    chosen: list[Any] = []
    text = ""
    for exp in _interleave(experiences):
        candidate = _format_block([*chosen, exp])
        if count_tokens(candidate) <= budget_tokens:
            chosen.append(exp)
            text = candidate
    ids = tuple(int(e.id) for e in experiences if any(e is c for c in chosen))
    return text, ids


def _format_block(chosen: Sequence[Any]) -> str:
    tips = [experience_line(e) for e in chosen if e.zone == "strategy"]
    avoid = [experience_line(e) for e in chosen if e.zone != "strategy"]
    parts = []
    if tips:
        parts.append("Tips:\n" + "\n".join(tips))
    if avoid:
        parts.append("Avoid:\n" + "\n".join(avoid))
    return "\n".join(parts)


def system_message(
    rules: str,
    experiences: Sequence[Any],
    count_tokens: Callable[[str], int],
    budget_tokens: int = 200,
) -> tuple[str, tuple[int, ...]]:
    """Rules plus the experiences that fit the budget; with none, exactly ``rules``."""
    block, ids = render_experiences(experiences, count_tokens, budget_tokens)
    return (f"{rules}\n\n{block}" if block else rules), ids


@dataclass(frozen=True)
class Turn:
    """One past step shown in the history window."""

    action: str
    """The action taken."""
    observation: str
    """What the env answered."""


def user_message(
    task: str,
    history: Sequence[Turn],
    observation: str,
    admissible: Sequence[str] | None = None,
    *,
    history_chars: int = 120,
) -> str:
    """Task, recent turns (oldest first), the current observation and optionally the actions."""
    lines = []
    if task:
        lines.append(f"Task: {_clip(task, 400)}")
    if history:
        lines.append("History:")
        for turn in history:
            lines.append(f"> {turn.action}")
            if history_chars:
                lines.append(_clip(turn.observation, history_chars))
    lines.append("Now:")
    lines.append(observation.strip())
    if admissible:
        lines.append("Actions: " + " | ".join(admissible))
    return "\n".join(lines)


HISTORY_FORMATS = ("lines", "chat")
"""How past turns are rendered: in the user message (lines) or as chat turns (chat)."""


def chat_messages(
    task: str,
    history: Sequence[Turn],
    observation: str,
    admissible: Sequence[str] | None = None,
    *,
    history_chars: int = 120,
    before: str = "",
) -> list[dict[str, str]]:
    """The ``chat`` history format: user/assistant messages after the system message.

    ``history`` are the shown turns (oldest first); the last turn's observation is the current
    one, so it is shown in full once, in the last user message. ``before`` is the observation
    that preceded the first shown turn (clipped like the others; empty = not shown).
    """
    first = [f"Task: {_clip(task, 400)}"] if task else []
    if not history:
        return [{"role": "user", "content": user_message(task, (), observation, admissible)}]
    if before and history_chars:
        first.append(_clip(before, history_chars))
    msgs = [{"role": "user", "content": "\n".join(first) or "Start."}]
    for k, turn in enumerate(history):
        msgs.append({"role": "assistant", "content": turn.action})
        if k < len(history) - 1:
            text = _clip(turn.observation, history_chars) if history_chars else "(seen)"
            msgs.append({"role": "user", "content": text})
    last = [observation.strip()]
    if admissible:
        last.append("Actions: " + " | ".join(admissible))
    msgs.append({"role": "user", "content": "\n".join(last)})
    return msgs


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and what went into it."""

    ids: tuple[int, ...]
    """Token ids, ready for the policy."""
    messages: tuple[Mapping[str, str], ...]
    """The chat messages (system, user)."""
    experience_ids: tuple[int, ...]
    """Ids of the experiences shown in the system message."""


def build_prompt(
    encode: Callable[[Sequence[Mapping[str, str]]], list[int]],
    count_tokens: Callable[[str], int],
    *,
    rules: str,
    experiences: Sequence[Any],
    task: str,
    history: Sequence[Turn],
    observation: str,
    admissible: Sequence[str] | None,
    history_window: int,
    history_chars: int,
    budget_tokens: int,
    max_prompt_tokens: int,
    history_format: str = "lines",
    example: Sequence[str] = (),
) -> Prompt:
    """System + user messages encoded with ``encode``, fitted into ``max_prompt_tokens``.

    The last ``history_window`` turns are shown (``history_format`` ``lines`` or ``chat``);
    while the prompt is too long the oldest turn is dropped, then the observation is cut from
    the start (its end carries the latest text), then the experiences are dropped (``ids`` says
    none were shown); a prompt still too long keeps its last ``max_prompt_tokens`` tokens.
    ``example`` (user, assistant, user, assistant, ...) texts are a worked exchange placed right
    after the system message (a format demonstration for models that do not answer with a bare
    action otherwise); it is never dropped.
    """
    if history_format not in HISTORY_FORMATS:
        raise ValueError(
            f"prompt.history_format: must be one of {HISTORY_FORMATS}, got {history_format!r}"
        )
    if len(example) % 2:
        raise ValueError(
            "prompt.example: needs user and assistant texts in pairs, got an odd number"
        )
    demo = tuple(
        {"role": "user" if k % 2 == 0 else "assistant", "content": str(text)}
        for k, text in enumerate(example)
    )
    system, ids = system_message(rules, experiences, count_tokens, budget_tokens)
    turns = list(history[-history_window:]) if history_window else []
    obs = observation
    while True:
        if history_format == "chat":
            shown = len(turns)
            before = history[-shown - 1].observation if 0 < shown < len(history) else ""
            messages: tuple[Mapping[str, str], ...] = (
                {"role": "system", "content": system},
                *demo,
                *chat_messages(
                    task, turns, obs, admissible, history_chars=history_chars, before=before
                ),
            )
        else:
            user = user_message(task, turns, obs, admissible, history_chars=history_chars)
            messages = (
                {"role": "system", "content": system},
                *demo,
                {"role": "user", "content": user},
            )
        tokens = encode(messages)
        if len(tokens) <= max_prompt_tokens:
            return Prompt(tuple(tokens), messages, ids)
        if turns:
            turns = turns[1:]
        elif len(obs) > 16:
            obs = "..." + obs[len(obs) // 4 :]
        elif ids:  # the experiences go before the system message is cut
            system, ids = rules, ()
        else:
            return Prompt(tuple(tokens[-max_prompt_tokens:]), messages, ids)


__all__ = [
    "DEFAULT_RULES",
    "GENERATE_SUFFIX",
    "HISTORY_FORMATS",
    "ExperienceLike",
    "Prompt",
    "Turn",
    "build_prompt",
    "chat_messages",
    "experience_line",
    "render_experiences",
    "system_message",
    "user_message",
]
