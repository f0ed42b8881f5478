"""One evolution step of the experience library (SLEA-RL section 3.4), without gradients.

::

    eta, wins, losses = partition(episodes, config.eta)          # r > eta vs r <= eta
    chosen = select(wins, losses, config)                         # top K wins, bottom K losses
    digests = [compress_episode(e, zone=z, config=config) ...]   # bounded text per episode
    drafts  = distiller.distill(digests)                          # LLM (paper) or rules
    candidates = validate, merge exact duplicates, cap 10 strategies / 5 warnings
    library.admit(candidates, iteration)                          # rate limit, novelty, score floor
                                                                  # admitted entries linked to the
                                                                  # clusters of their source steps

:func:`evolve_library` runs it and returns an :class:`EvolutionReport` whose
:meth:`~EvolutionReport.metrics` is a flat ``{name: number}`` dict for the metrics log.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slea.errors import ConfigError
from slea.experience.credit import CreditReport, credit_episodes
from slea.experience.distill import LLMDistiller, ValidationConfig, validate_draft
from slea.experience.library import Candidate
from slea.experience.parse import LEVELS
from slea.experience.records import (
    ZONES,
    Digest,
    Distiller,
    DistillResult,
    Draft,
    KeyStep,
    clean_text,
)
from slea.experience.rules import FAMILIES, RuleDistiller, detect_family
from slea.trajectory import Episode


@dataclass(frozen=True)
class EvolutionConfig:
    """Settings of the evolution step (paper defaults).

    Attributes:
        eta: partition threshold: ``"median"`` (the batch median of episode rewards, as in the
            paper) or a fixed number (the released code uses 0.5). Success is strictly
            ``reward > eta``, failure ``reward <= eta``. With ``"median"`` and binary rewards, a
            batch where at least half the episodes win has median 1 and therefore no successes;
            use a fixed ``eta`` (e.g. 0.5) to keep learning strategies once success passes 50 %.
        top_k: successes analysed per step (the highest rewards; ties prefer distinct tasks,
            then shorter episodes, then lower episode id).
        bottom_k: failures analysed per step (the lowest rewards; ties prefer distinct tasks,
            then longer episodes, then lower episode id).
        max_strategies: strategy candidates sent to the library per step (the library's rate
            limit enforces the same bound).
        max_warnings: warning candidates sent to the library per step.
        context_steps: steps kept before each reward event when compressing.
        max_key_steps: most steps kept per compressed episode.
        max_observation_chars: observations are cut to this many characters in a digest.
        max_action_chars: actions are cut to this many characters in a digest.
        max_task_chars: the task text is cut to this many characters in a digest.
        distiller: ``"llm"`` (the paper: a language model writes the lessons, with the rule
            distiller as per-episode fallback) or ``"rule"`` (no model).
        distiller_model: local directory of a separate distiller model; ``None`` uses the
            policy's current weights.
        llm_max_new_tokens: completion budget per episode (tokens): three items under 200
            characters take about 160 tokens in JSON; generation stops earlier once the list
            is closed, so the budget is spent only by answers that run on.
        llm_temperature: 0 for greedy (reproducible) distillation; > 0 samples.
        llm_batch_size: episodes per generation call.
        llm_max_items: lessons asked for per episode.
        llm_prefill: start the model's answer with ``[{"text": "`` (the assistant turn is
            prefilled), which keeps small models to the JSON format.
        family: env family for the rule templates (``auto``, ``textworld``, ``alfworld``,
            ``scienceworld``, ``sokoban``, ``generic``).
        min_support: distinct episodes needed for a rule ``pattern``.
        principle_support: distinct episodes needed for a rule ``principle``.
        min_chars: shortest lesson accepted (characters).
        max_chars: longest lesson accepted (characters).
        credit: record at episode end, for every entry retrieved during the episode, whether
            the episode succeeded (utility statistics; see :mod:`slea.experience.credit`).
        credit_success: what counts as success for that credit: ``"won"`` (the env said so) or
            ``"eta"`` (reward above the step's eta, the partition rule).
        seed: seed of sampled distillation (ignored when greedy).
    """

    eta: str | float = "median"
    top_k: int = 5
    bottom_k: int = 5
    max_strategies: int = 10
    max_warnings: int = 5
    context_steps: int = 2
    max_key_steps: int = 12
    max_observation_chars: int = 300
    max_action_chars: int = 80
    max_task_chars: int = 300
    distiller: str = "llm"
    distiller_model: str | None = None
    llm_max_new_tokens: int = 192
    llm_temperature: float = 0.0
    llm_batch_size: int = 8
    llm_max_items: int = 3
    llm_prefill: bool = True
    family: str = "auto"
    min_support: int = 2
    principle_support: int = 3
    min_chars: int = 12
    max_chars: int = 300
    credit: bool = True
    credit_success: str = "won"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.eta, str):
            if self.eta != "median":
                raise ConfigError(f"evolution.eta must be 'median' or a number, got {self.eta!r}")
        elif isinstance(self.eta, bool) or not isinstance(self.eta, (int, float)):
            raise ConfigError(f"evolution.eta must be 'median' or a number, got {self.eta!r}")
        elif not math.isfinite(self.eta):
            raise ConfigError(f"evolution.eta must be finite, got {self.eta}")
        positive = ("top_k", "bottom_k", "max_key_steps", "max_observation_chars",
                    "max_action_chars", "max_task_chars", "llm_max_new_tokens", "llm_batch_size",
                    "llm_max_items", "min_support", "principle_support", "min_chars")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"evolution.{name} must be an integer >= 1, got {value!r}")
        for name in ("max_strategies", "max_warnings", "context_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"evolution.{name} must be an integer >= 0, got {value!r}")
        if self.max_chars < self.min_chars:
            raise ConfigError(f"evolution.max_chars must be >= min_chars ({self.min_chars})")
        choices = {"distiller": ("llm", "rule"), "credit_success": ("won", "eta"),
                   "family": ("auto", *FAMILIES)}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"evolution.{name} must be one of {', '.join(allowed)}, got "
                    f"{getattr(self, name)!r}"
                )
        if not (self.llm_temperature >= 0 and math.isfinite(self.llm_temperature)):
            raise ConfigError(f"evolution.llm_temperature must be >= 0, got {self.llm_temperature}")
        if not isinstance(self.llm_prefill, bool):
            raise ConfigError(
                f"evolution.llm_prefill must be true or false, got {self.llm_prefill!r}"
            )

    @property
    def validation(self) -> ValidationConfig:
        """The lesson bounds as a :class:`~slea.experience.distill.ValidationConfig`."""
        return ValidationConfig(min_chars=self.min_chars, max_chars=self.max_chars)


# ---------------------------------------------------------------------------------------------
# Partition and selection


def partition(
    episodes: Sequence[Episode], eta: str | float = "median"
) -> tuple[float, list[Episode], list[Episode]]:
    """Split episodes into successes (``reward > eta``) and failures (``reward <= eta``).

    ``eta="median"`` uses :func:`statistics.median` of the batch's episode rewards (for an even
    count, the mean of the two middle values). Episodes with a non-finite reward are left out of
    both sides. Returns ``(eta_value, successes, failures)``; ``eta_value`` is NaN for an empty
    batch. Order within each side follows the input.
    """
    rewards = [(e.total_reward, e) for e in episodes]
    kept = [(r, e) for r, e in rewards if math.isfinite(r)]
    if not kept:
        return float("nan"), [], []
    value = statistics.median(r for r, _ in kept) if eta == "median" else float(eta)
    wins = [e for r, e in kept if r > value]
    losses = [e for r, e in kept if r <= value]
    return float(value), wins, losses


def _spread(episodes: Sequence[Episode], sign: float, k: int) -> list[Episode]:
    """The first ``k`` episodes by ``sign * reward``; among equal rewards each task's first
    episode comes before any task's second one (so that the K cover as many tasks as possible),
    then shorter (successes, ``sign < 0``) or longer (failures) episodes, then lower ids."""
    keyed = sorted(
        ((sign * e.total_reward, -sign * len(e), e.episode_id, e) for e in episodes),
        key=lambda t: t[:3],
    )
    seen: Counter[tuple[float, str]] = Counter()
    ranked = []
    for r, n, eid, e in keyed:
        ranked.append((r, seen[(r, e.task_id)], n, eid, e))
        seen[(r, e.task_id)] += 1
    ranked.sort(key=lambda t: t[:4])
    return [t[-1] for t in ranked[:k]]


def select(
    wins: Sequence[Episode], losses: Sequence[Episode], top_k: int = 5, bottom_k: int = 5
) -> tuple[list[Episode], list[Episode]]:
    """The ``top_k`` successes with the highest rewards and the ``bottom_k`` failures with the
    lowest, ties broken as documented on :class:`EvolutionConfig` (deterministic)."""
    return _spread(wins, -1.0, top_k), _spread(losses, 1.0, bottom_k)


# ---------------------------------------------------------------------------------------------
# Compression


def _cut(text: str, n: int) -> str:
    out = clean_text(text, n)
    return out if len(out) <= n else out[: n - 3].rstrip() + "..."


def compress_episode(
    episode: Episode, *, zone: str, config: EvolutionConfig | None = None
) -> Digest:
    """Compress an episode into a :class:`~slea.experience.records.Digest` for a distiller.

    Kept steps, by priority until ``config.max_key_steps``: reward events (the last ones first),
    the ``context_steps`` steps before each reward event, the last and the first step and
    invalid actions (earliest first), then repeats (the same action in the same situation - same
    cluster, or same observation when clusters are unknown - including the first occurrence). Texts
    are whitespace-collapsed and cut, so a digest's rendered length is at most about
    ``max_task_chars + max_key_steps * (max_observation_chars + max_action_chars + 60) + 150``
    characters whatever the episode's length or its strings' sizes.
    """
    config = config or EvolutionConfig()
    if zone not in ZONES:
        raise ValueError(f"zone must be one of {ZONES}, got {zone!r}")
    steps = list(episode.steps)
    tags: dict[int, list[str]] = {}
    priority: dict[int, tuple[int, int]] = {}

    def mark(i: int, tag: str, rank: int, order: int) -> None:
        tags.setdefault(i, []).append(tag)
        priority[i] = min(priority.get(i, (99, 0)), (rank, order))

    seen: dict[tuple[Any, str], int] = {}
    for i, s in enumerate(steps):
        if s.reward != 0:
            mark(i, "reward", 0, -i)
            for j in range(max(0, i - config.context_steps), i):
                mark(j, "context", 1, -j)
        if s.invalid:
            mark(i, "invalid", 2, i)
        key = (
            s.cluster_id or clean_text(s.observation, 200)[:200].casefold(),
            clean_text(s.action, 120)[:120],
        )
        if key in seen:
            mark(seen[key], "repeat", 3, seen[key])
            mark(i, "repeat", 3, i)
        seen[key] = i
    if steps:
        mark(0, "start", 2, -1)
        mark(len(steps) - 1, "end", 2, -2)
    keep = sorted(sorted(priority, key=lambda i: priority[i])[: config.max_key_steps])
    kept = tuple(
        KeyStep(
            index=i,
            observation=_cut(steps[i].observation, config.max_observation_chars),
            action=_cut(steps[i].action, config.max_action_chars),
            reward=float(steps[i].reward),
            cluster_id=int(steps[i].cluster_id),
            invalid=bool(steps[i].invalid),
            tags=tuple(dict.fromkeys(tags[i])),
        )
        for i in keep
    )
    n_invalid = sum(s.invalid for s in steps)
    n_repeat = sum("repeat" in t for t in tags.values())
    end = "won" if episode.won else ("truncated" if episode.truncated else "ended")
    outcome = (
        f"{end}; total reward {episode.total_reward:g} in {len(steps)} steps; "
        f"{n_invalid} invalid actions; {n_repeat} steps in repeats"
    )
    family = config.family if config.family != "auto" else detect_family(episode)
    return Digest(
        episode=episode,
        zone=zone,
        reward=float(episode.total_reward),
        task=_cut(episode.task, config.max_task_chars),
        steps=kept,
        outcome=outcome,
        family=family,
    )


# ---------------------------------------------------------------------------------------------
# Distillers from a config


def make_distiller(
    config: EvolutionConfig, *, model: Any = None, tokenizer: Any = None
) -> Distiller:
    """The distiller ``config`` asks for.

    ``distiller="rule"`` -> :class:`~slea.experience.rules.RuleDistiller`. ``"llm"`` ->
    :class:`~slea.experience.distill.LLMDistiller` on ``config.distiller_model`` when set (a
    local directory), else on ``model`` and ``tokenizer`` (the current policy), with the rule
    distiller as per-episode fallback.
    """
    rule = RuleDistiller(min_support=config.min_support, principle_support=config.principle_support)
    if config.distiller == "rule":
        return rule
    from slea.experience.distill import LIST_END, HFGenerator

    gen_kwargs = dict(
        stop=LIST_END,
        max_new_tokens=config.llm_max_new_tokens,
        temperature=config.llm_temperature,
        batch_size=config.llm_batch_size,
        seed=config.seed,
    )
    if config.distiller_model is not None:
        generator = HFGenerator.from_pretrained(config.distiller_model, **gen_kwargs)  # type: ignore[arg-type]
    elif model is not None and tokenizer is not None:
        generator = HFGenerator(model, tokenizer, **gen_kwargs)  # type: ignore[arg-type]
    else:
        raise ConfigError(
            "evolution.distiller='llm' needs the policy's model and tokenizer or "
            "evolution.distiller_model (a local model directory); or set evolution.distiller=rule"
        )
    return LLMDistiller(
        generator,
        max_items=config.llm_max_items,
        fallback=rule,
        rules=config.validation,
        prefill=config.llm_prefill,
    )


# ---------------------------------------------------------------------------------------------
# Drafts -> candidates


@dataclass
class Drafting:
    """Result of :func:`draft_candidates` (everything before admission).

    Attributes:
        eta: the threshold used.
        successes: number of episodes with ``reward > eta``.
        failures: number with ``reward <= eta``.
        selected: ids of the analysed episodes (successes first).
        drafts: counts of distilled drafts per ``zone/level``.
        candidates: the validated, merged, capped drafts in admission order.
        rejected: counts per reason (validation reasons, ``merged`` exact repeats within the
            batch, ``capped``: not examined because the zone's maximum was reached).
        distiller: the distiller's counters (parse failures, fallbacks, ...).
        seconds: wall time per phase.
    """

    eta: float
    successes: int
    failures: int
    selected: tuple[int, ...]
    drafts: Counter[str] = field(default_factory=Counter)
    candidates: list[Draft] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    distiller: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)


def _distill(distiller: Distiller, digests: list[Digest], config: EvolutionConfig) -> DistillResult:
    if not digests:
        return DistillResult()
    try:
        return distiller.distill(digests)
    except Exception:  # a broken custom distiller must not stop training: use the rules
        result = RuleDistiller(
            min_support=config.min_support, principle_support=config.principle_support
        ).distill(digests)
        result.counts["distiller_errors"] += 1
        return result


def _merge(old: Draft, new: Draft) -> Draft:
    """Two drafts with the same zone and text: union of provenance, the higher score, the first
    one's level and demonstration pair."""
    return Draft(
        text=old.text,
        zone=old.zone,
        level=old.level,
        score=max(old.score, new.score),
        episode_ids=tuple(dict.fromkeys(old.episode_ids + new.episode_ids)),
        cluster_ids=tuple(dict.fromkeys(old.cluster_ids + new.cluster_ids)),
        observation=old.observation,
        action=old.action,
        source=old.source,
    )


_LEVEL_TURNS = ("principle", "pattern", "example", "example")


def _order(drafts: list[Draft]) -> list[Draft]:
    """Admission order within a zone: levels interleaved (principle, pattern, example, example,
    principle, ...) so that general lessons come early without crowding out the concrete ones;
    within a level, round-robin over source episodes (one episode cannot take every slot), then
    higher score, then distiller order."""
    by_level: dict[str, list[Draft]] = {level: [] for level in LEVELS}
    for d in drafts:
        by_level[d.level].append(d)
    queues: dict[str, list[Draft]] = {}
    for level, items in by_level.items():
        turn: Counter[int] = Counter()
        keyed = []
        for n, d in enumerate(items):
            src = d.episode_ids[0] if d.episode_ids else -1
            keyed.append((turn[src], -d.score, n, d))
            turn[src] += 1
        queues[level] = [d for *_, d in sorted(keyed, key=lambda k: k[:3])]
    out: list[Draft] = []
    while any(queues.values()):
        for level in _LEVEL_TURNS:
            if queues[level]:
                out.append(queues[level].pop(0))
    return out


def draft_candidates(
    episodes: Sequence[Episode], *, distiller: Distiller, config: EvolutionConfig | None = None
) -> Drafting:
    """Partition, select, compress, distil, then per zone: order the drafts (:func:`_order`),
    validate them in that order, merge exact repeats of an accepted text, and stop once the
    zone's maximum is reached (the rest count as ``capped``). No library involved."""
    config = config or EvolutionConfig()
    t0 = time.perf_counter()
    eta, wins, losses = partition(episodes, config.eta)
    best, worst = select(wins, losses, config.top_k, config.bottom_k)
    t1 = time.perf_counter()
    digests = [compress_episode(e, zone="strategy", config=config) for e in best]
    digests += [compress_episode(e, zone="warning", config=config) for e in worst]
    t2 = time.perf_counter()
    result = _distill(distiller, digests, config)
    t3 = time.perf_counter()
    out = Drafting(eta, len(wins), len(losses), tuple(e.episode_id for e in best + worst))
    out.distiller.update(result.counts)
    sources = {d.episode_id: [d.task, *(s.observation for s in d.steps)] for d in digests}
    for draft in result.drafts:
        out.drafts[f"{draft.zone}/{draft.level}"] += 1
    caps = {"strategy": config.max_strategies, "warning": config.max_warnings}
    for zone in ZONES:
        kept: dict[str, Draft] = {}
        ordered = _order([d for d in result.drafts if d.zone == zone])
        for n, draft in enumerate(ordered):
            if len(kept) >= caps[zone]:
                out.rejected["capped"] += len(ordered) - n
                break
            src = [t for eid in draft.episode_ids for t in sources.get(eid, ())]
            ok, reason = validate_draft(draft, sources=src, rules=config.validation)
            if ok is None:
                out.rejected[str(reason)] += 1
            elif ok.text.casefold() in kept:
                out.rejected["merged"] += 1
                key = ok.text.casefold()
                kept[key] = _merge(kept[key], ok)
            else:
                kept[ok.text.casefold()] = ok
        out.candidates.extend(kept.values())
    t4 = time.perf_counter()
    out.seconds = {"select": t1 - t0, "compress": t2 - t1, "distill": t3 - t2, "validate": t4 - t3}
    return out


# ---------------------------------------------------------------------------------------------
# One evolution step on a library


@dataclass(frozen=True)
class EvolutionReport:
    """What one evolution step did; :meth:`metrics` flattens it for the metrics log.

    Attributes:
        iteration: the evolution step (training iteration).
        episodes: episodes in the batch.
        eta: partition threshold used (NaN for an empty batch).
        successes: episodes with ``reward > eta``.
        failures: episodes with ``reward <= eta``.
        selected: ids of the analysed episodes (successes first).
        drafts: distilled drafts per ``zone/level``.
        candidates: candidates sent to the library per ``zone/level``.
        rejected: drafts rejected before the library, per reason (``too_long``, ``role_marker``,
            ``injection``, ``copy``, ... , ``merged``, ``capped``).
        outcomes: library decisions per outcome (``admitted``, ``duplicate``, ``rate_limited``,
            ``below_floor``, ``invalid``).
        admitted: admitted entries per ``zone/level``.
        admitted_ids: ids of the admitted entries.
        linked: (entry, cluster) links requested by admitted and duplicate candidates.
        distiller: the distiller's counters (``llm_parse_failed``, ``llm_fallbacks``, ...).
        credit: utility credit of the batch's retrievals (``None`` when off).
        library_size: entries in the library after the step.
        seconds: wall time per phase (``credit``, ``select``, ``compress``, ``distill``,
            ``validate``, ``admit``, ``total``).
    """

    iteration: int
    episodes: int
    eta: float
    successes: int
    failures: int
    selected: tuple[int, ...]
    drafts: dict[str, int]
    candidates: dict[str, int]
    rejected: dict[str, int]
    outcomes: dict[str, int]
    admitted: dict[str, int]
    admitted_ids: tuple[int, ...]
    linked: int
    distiller: dict[str, int]
    credit: CreditReport | None
    library_size: int
    seconds: dict[str, float]

    def metrics(self, prefix: str = "evolve/") -> dict[str, float]:
        """Flat ``{name: number}``: counts, per-zone/level counts (``drafts/strategy/example``),
        rejection reasons, outcomes, distiller counters, credit, timings (``seconds/...``)."""
        out: dict[str, float] = {
            f"{prefix}episodes": float(self.episodes),
            f"{prefix}eta": float(self.eta),
            f"{prefix}successes": float(self.successes),
            f"{prefix}failures": float(self.failures),
            f"{prefix}selected": float(len(self.selected)),
            f"{prefix}linked": float(self.linked),
            f"{prefix}library_size": float(self.library_size),
        }
        groups: dict[str, Mapping[str, float]] = {
            "drafts": self.drafts,
            "candidates": self.candidates,
            "rejected": self.rejected,
            "outcomes": self.outcomes,
            "admitted": self.admitted,
            "distiller": self.distiller,
            "seconds": self.seconds,
        }
        for group, values in groups.items():
            for key, value in sorted(values.items()):
                out[f"{prefix}{group}/{key}"] = float(value)
        if self.credit is not None:
            out.update(self.credit.metrics(f"{prefix}credit/"))
        return out

    def to_dict(self) -> dict[str, float]:
        """:meth:`metrics` without prefix (flat, JSON-ready), for loggers that call ``to_dict``."""
        return self.metrics(prefix="")

    def __str__(self) -> str:
        admitted = self.outcomes.get("admitted", 0)
        sent = sum(self.candidates.values())
        fallbacks = self.distiller.get("llm_fallbacks", 0)
        return (
            f"evolution step {self.iteration}: {self.successes} successes / {self.failures} "
            f"failures (eta {self.eta:g}), {sent} candidates, {admitted} admitted, "
            f"{self.outcomes.get('duplicate', 0)} duplicates, {sum(self.rejected.values())} "
            f"rejected before the library, {fallbacks} LLM fallbacks, library {self.library_size}"
        )


OUTCOMES = ("admitted", "duplicate", "rate_limited", "below_floor", "invalid")


def _u64s(ids: Sequence[int]) -> tuple[int, ...]:
    """The ids that fit the library's uint64 ids (others cannot be provenance: dropped)."""
    return tuple(i for i in ids if 0 <= i < 1 << 64)


def _to_candidates(drafts: Sequence[Draft]) -> list[Candidate]:
    """Validated drafts as library candidates (the library's checked input type)."""
    return [
        Candidate(
            text=d.text,
            zone=d.zone,
            level=d.level,
            score=d.score,
            episode_ids=_u64s(d.episode_ids),
            cluster_ids=_u64s(d.cluster_ids),
            observation=d.observation,
            action=d.action,
        )
        for d in drafts
    ]


def evolve_library(
    library: Any,
    episodes: Sequence[Episode],
    *,
    distiller: Distiller,
    iteration: int,
    config: EvolutionConfig | None = None,
) -> EvolutionReport:
    """Run one evolution step on ``library`` from a batch of finished episodes.

    Credits the batch's retrievals (``config.credit``), drafts candidates
    (:func:`draft_candidates`: partition by eta, top/bottom K, compress, distil, validate, cap)
    and admits them with ``library.admit(candidates, iteration=iteration)``; the library links
    admitted (and duplicate) entries to the candidates' cluster ids, so that cluster pools fill
    from evolution. Never raises on odd episode text or model output; an empty batch is a no-op
    step with an empty report.
    """
    config = config or EvolutionConfig()
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be an integer >= 0, got {iteration!r}")
    episodes = list(episodes)
    t0 = time.perf_counter()
    credit = None
    if config.credit:
        eta = partition(episodes, config.eta)[0] if config.credit_success == "eta" else None
        ok = config.credit_success == "won" or (eta is not None and math.isfinite(eta))
        credit = (
            credit_episodes(library, episodes, success=config.credit_success, eta=eta)
            if ok
            else CreditReport()
        )
    t1 = time.perf_counter()
    drafting = draft_candidates(episodes, distiller=distiller, config=config)
    t2 = time.perf_counter()
    decisions = library.admit(_to_candidates(drafting.candidates), iteration=iteration).decisions
    t3 = time.perf_counter()
    outcomes: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
    admitted: Counter[str] = Counter()
    admitted_ids: list[int] = []
    linked = 0
    for draft, decision in zip(drafting.candidates, decisions, strict=True):
        outcome = str(decision.outcome)
        outcomes[outcome] += 1
        if outcome == "admitted":
            admitted[f"{draft.zone}/{draft.level}"] += 1
            admitted_ids.append(int(decision.entry_id))
        if outcome in ("admitted", "duplicate"):
            linked += len(draft.cluster_ids)
    seconds = {"credit": t1 - t0, **drafting.seconds, "admit": t3 - t2, "total": t3 - t0}
    return EvolutionReport(
        iteration=iteration,
        episodes=len(episodes),
        eta=drafting.eta,
        successes=drafting.successes,
        failures=drafting.failures,
        selected=drafting.selected,
        drafts=dict(drafting.drafts),
        candidates=dict(Counter(f"{d.zone}/{d.level}" for d in drafting.candidates)),
        rejected={k: v for k, v in drafting.rejected.items() if v},
        outcomes=dict(outcomes),
        admitted=dict(admitted),
        admitted_ids=tuple(admitted_ids),
        linked=linked,
        distiller=dict(drafting.distiller),
        credit=credit,
        library_size=len(library),
        seconds=seconds,
    )


__all__ = [
    "Drafting",
    "EvolutionConfig",
    "EvolutionReport",
    "compress_episode",
    "draft_candidates",
    "evolve_library",
    "make_distiller",
    "partition",
    "select",
]
