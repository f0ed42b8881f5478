"""What distillers read and write: the records shared by evolution and every distiller.

:class:`Digest` (a compressed episode, made by :func:`slea.experience.evolve.compress_episode`)
holding :class:`KeyStep` records goes in; :class:`Draft` records (lessons not yet checked) come out
in a :class:`DistillResult`. :class:`Distiller` is the protocol a distiller meets. The modules
that use them import from here, one way: ``rules`` -> ``records``, ``distill`` -> ``rules``,
``records``; ``evolve`` -> all three.

A :class:`Draft` is a distiller's raw output and may hold anything (a bad zone, a non-finite or
huge score, unsafe text): :func:`slea.experience.distill.validate_draft` cleans it or gives the
reason it is rejected, counted per reason, so that odd model output never stops training. What
passes becomes a :class:`slea.Candidate`, the checked input of :meth:`slea.ExperienceLibrary.admit`
(whose constructor raises on a bad field).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from slea.trajectory import Episode

__all__ = [
    "ZONES",
    "Digest",
    "DistillResult",
    "Distiller",
    "Draft",
    "KeyStep",
    "clean_text",
]

ZONES = ("strategy", "warning")

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class KeyStep:
    """One step kept by compression.

    Attributes:
        index: position of the step in its episode (0-based).
        observation: the observation, whitespace-collapsed and cut to the compression bound.
        action: the action text, cut likewise.
        reward: env reward received after the action.
        cluster_id: observation cluster of the step (0 when unknown).
        invalid: the env rejected the action.
        tags: why the step was kept, any of ``reward``, ``context``, ``invalid``, ``repeat``,
            ``start``, ``end``.
    """

    index: int
    observation: str
    action: str
    reward: float
    cluster_id: int = 0
    invalid: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Digest:
    """A compressed episode: what a distiller reads.

    Attributes:
        episode: the full source episode (rule distillers read its whole action sequence).
        zone: ``strategy`` when the episode was selected as a success, ``warning`` as a failure.
        reward: the episode's total reward (becomes the score of its drafts).
        task: the goal text, cut to the compression bound.
        steps: the kept steps in episode order.
        outcome: one line describing how the episode ended.
        family: env family used by the rule templates (``textworld``, ``alfworld``,
            ``scienceworld``, ``sokoban`` or ``generic``).
    """

    episode: Episode = field(repr=False)
    zone: str
    reward: float
    task: str
    steps: tuple[KeyStep, ...]
    outcome: str
    family: str = "generic"

    @property
    def episode_id(self) -> int:
        """Id of the source episode."""
        return self.episode.episode_id

    @property
    def cluster_ids(self) -> tuple[int, ...]:
        """Distinct non-zero cluster ids of the kept steps, in step order."""
        return unique_ids(s.cluster_id for s in self.steps if s.cluster_id)

    def render(self) -> str:
        """The digest as plain text for a prompt (bounded by the compression settings). An
        observation that starts with the task text (first observations often do) shows
        ``(the task)`` in its place, so the prompt holds the task once."""
        lines = [f"Task: {self.task}", f"Outcome: {self.outcome}", "Key steps:"]
        task = self.task.removesuffix("...")  # a cut task still prefixes the observation
        for s in self.steps:
            flags = [t for t in s.tags if t in ("reward", "invalid", "repeat")]
            note = f" [{', '.join(flags)}]" if flags else ""
            obs = s.observation
            if len(task) >= 20 and obs.startswith(task):
                obs = f"(the task) {obs[len(task) :].lstrip()}".rstrip()
            lines.append(f"- step {s.index + 1} observation: {obs}")
            lines.append(f"  action: {s.action} -> reward {s.reward:g}{note}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Draft:
    """A candidate experience as a distiller writes it, before validation and admission.

    Attributes:
        text: the lesson, one or two sentences.
        zone: ``strategy`` or ``warning``.
        level: ``principle``, ``pattern`` or ``example``.
        score: quality score, the source episode's reward (mean over several episodes for
            regularities).
        episode_ids: source episodes.
        cluster_ids: clusters of the steps the lesson was drawn from; admission links the entry
            to them.
        observation: for ``example`` entries, the observation of the demonstrated step.
        action: for ``example`` entries, the action taken at that step.
        source: ``rule`` or ``llm``.
    """

    text: str
    zone: str
    level: str
    score: float
    episode_ids: tuple[int, ...] = ()
    cluster_ids: tuple[int, ...] = ()
    observation: str | None = None
    action: str | None = None
    source: str = "rule"


@dataclass
class DistillResult:
    """What a distiller returns for one batch of digests.

    Attributes:
        drafts: the drafts, in a deterministic order.
        counts: diagnostic counters (``llm_parse_ok``, ``llm_parse_repaired``,
            ``llm_parse_failed``, ``llm_items_rejected``, ``llm_fallbacks``, ``llm_errors``, ...).
    """

    drafts: list[Draft] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def extend(self, other: DistillResult) -> None:
        """Append another result's drafts and add its counts."""
        self.drafts.extend(other.drafts)
        self.counts.update(other.counts)


@runtime_checkable
class Distiller(Protocol):
    """Anything that turns digests into drafts.

    ``distill`` must be deterministic for a given input (and seed, for sampling models), must not
    raise on odd text, and should keep its output bounded (evolution caps it anyway).
    """

    def distill(self, digests: Sequence[Digest]) -> DistillResult:
        """Drafts for the given digests (all of one batch)."""
        ...


def clean_text(text: str, limit: int) -> str:
    """NFKC-normalise, turn whitespace runs (newlines included) into one space, strip, and cut to
    at most ``limit`` characters *before* normalising, so that a 1 MB string costs O(limit)."""
    head = text[: limit * 4 + 16]
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", head)).strip()


def unique_ids(values: Iterable[int]) -> tuple[int, ...]:
    """Distinct ids as ints, in first-seen order."""
    seen: dict[int, None] = {}
    for v in values:
        seen.setdefault(int(v), None)
    return tuple(seen)
