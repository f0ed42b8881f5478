"""Rule distiller: deterministic, data-grounded lessons from episodes, without a language model.

The released SLEA-RL code falls back to canned sentences ("Examine objects before interacting with
them", "Task failed - review the approach") chosen by keyword. Every sentence written here instead
quotes what happened in the batch: the actions, the place, the env's reply, counts over episodes.

Per episode (level ``example``):

- success: the loop-erased route to the last reward event (state loops cut out, idle actions such
  as ``look`` dropped). Each of its last ``max_route`` steps becomes a strategy linked to that
  step's own cluster and carrying its (observation, action) pair, so that the cluster's pool holds
  a worked step: *Bedroom: "go north", then "take key", won (reward 1).*
- failure: invalid actions with the env's reply and an admissible alternative; loops, i.e. the same
  action taken again in the same situation (same cluster), with the actions that closed the cycle
  and the admissible actions never tried there; if neither is found, the untried admissible
  actions at the end of an episode that earned nothing.

Across episodes (levels ``pattern`` and ``principle``), only for regularities seen in at least
``min_support`` (patterns) or ``principle_support`` (principles) distinct episodes:

- pattern strategies: the same rewarded action, or the same verb, in several successes;
- pattern warnings: the same looping action, or the same rejected verb, in several failures;
- principles: the rewarded object was named in the task in every supporting success; failures
  repeat actions in the same situation (or are rejected) far more often than successes.

Env families (``textworld``, ``alfworld``, ``scienceworld``, ``sokoban``, ``generic``) differ in how a
place is named, which moves undo each other and which actions are idle; ``auto`` detects the family
from the observations (:func:`detect_family`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

from slea.experience.records import Digest, DistillResult, Draft, clean_text
from slea.trajectory import Episode, Step

# ---------------------------------------------------------------------------------------------
# Env families


def _first_group(pattern: str) -> Callable[[str], str]:
    rx = re.compile(pattern, re.IGNORECASE)

    def place(observation: str) -> str:
        m = rx.search(observation[:4000])
        return _cut(m.group(1), 40) if m else ""

    return place


@dataclass(frozen=True)
class Family:
    """What the templates need to know about one env family.

    Attributes:
        name: family name.
        detect: matches an observation of this family.
        place: short place label of an observation ("" when the env has no named places).
        idle: regex of actions that observe without changing the world (dropped from routes).
    """

    name: str
    detect: re.Pattern[str]
    place: Callable[[str], str]
    idle: re.Pattern[str] = field(default=re.compile(r"^(?:look|inventory|i|l)$", re.IGNORECASE))


FAMILIES: Mapping[str, Family] = {
    "textworld": Family(
        "textworld",
        re.compile(r"-= .{1,40}? =-"),
        _first_group(r"-= (.{1,40}?) =-"),
        re.compile(r"^(?:look|inventory|examine .*|l|i|x .*)$", re.IGNORECASE),
    ),
    "alfworld": Family(
        "alfworld",
        re.compile(r"You are in the middle of a room|You arrive at |Your task is to:"),
        _first_group(r"You arrive at (?:loc \d+\.\s*)?([^.]{1,40})\."),
        re.compile(r"^(?:look|inventory|examine .*)$", re.IGNORECASE),
    ),
    "scienceworld": Family(
        "scienceworld",
        re.compile(r"This room is called the "),
        _first_group(r"This room is called the ([^.]{1,40})\."),
        re.compile(r"^(?:look around|inventory|task|look at .*)$", re.IGNORECASE),
    ),
    "sokoban": Family(
        "sokoban",
        re.compile(r"^#{3,}\s*$", re.MULTILINE),
        lambda observation: "",
        re.compile(r"^$"),
    ),
    "generic": Family("generic", re.compile(r"(?!)"), lambda observation: ""),
}


def detect_family(episode: Episode, default: str = "generic") -> str:
    """The family whose ``detect`` pattern matches the first observations of ``episode``."""
    head = " ".join(s.observation[:2000] for s in list(episode.steps)[:3])
    for name in ("textworld", "alfworld", "scienceworld", "sokoban"):
        if FAMILIES[name].detect.search(head):
            return name
    return default


# ---------------------------------------------------------------------------------------------
# Text helpers


def _cut(text: str, n: int) -> str:
    out = clean_text(text, n)
    return out if len(out) <= n else out[: n - 3].rstrip() + "..."


def _q(action: str) -> str:
    """An action quoted for a sentence."""
    return '"' + _cut(action, 48).replace('"', "'") + '"'


def _qs(actions: Sequence[str], limit: int = 3) -> str:
    return ", ".join(_q(a) for a in list(dict.fromkeys(actions))[:limit])


def _where(place: str) -> str:
    """Sentence prefix naming the place: room first and short, so that lessons about different
    places stay apart under the library's novelty check (and cost few prompt tokens)."""
    return f"{place}: " if place else ""


def _norm(action: str) -> str:
    """An action as a comparison key: cleaned, cut to 120 characters, case-folded."""
    return clean_text(action, 120)[:120].casefold()


def _first_sentence(text: str) -> str:
    body = clean_text(text, 200)
    m = re.match(r"(.{3,}?[.!?])(?:\s|$)", body)
    return _cut(m.group(1) if m else body, 60)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _verb(action: str) -> str:
    words = _norm(action).split()
    return words[0] if words else ""


# ---------------------------------------------------------------------------------------------
# Per-episode facts


@dataclass(eq=False)
class _Facts:
    """What the templates read from one episode."""

    digest: Digest
    family: Family
    steps: list[Step]
    keys: list[int | str]  # state key per step: cluster id, else the cleaned observation
    acts: list[str]  # action key per step (:func:`_norm`)
    loops: list[tuple[int, int]] = field(default_factory=list)  # (first, repeat) step indices
    invalid: list[int] = field(default_factory=list)
    route: list[int] = field(default_factory=list)  # loop-erased route to the last reward
    rewarded: list[int] = field(default_factory=list)

    @property
    def episode_id(self) -> int:
        return self.digest.episode_id

    def place(self, i: int) -> str:
        return self.family.place(self.steps[i].observation)

    def cluster(self, *idx: int) -> tuple[int, ...]:
        return tuple(dict.fromkeys(c for c in (self.steps[i].cluster_id for i in idx) if c))


def _facts(digest: Digest) -> _Facts:
    steps = list(digest.episode.steps)
    family = FAMILIES.get(digest.family, FAMILIES["generic"])
    keys: list[int | str] = [
        s.cluster_id if s.cluster_id else clean_text(s.observation, 300)[:300].casefold()
        for s in steps
    ]
    f = _Facts(digest, family, steps, keys, [_norm(s.action) for s in steps])
    seen: dict[tuple[int | str, str], int] = {}
    for i, s in enumerate(steps):
        if s.invalid:
            f.invalid.append(i)
        pair = (keys[i], f.acts[i])
        if pair in seen:
            f.loops.append((seen[pair], i))
        seen[pair] = i
    f.rewarded = [i for i, s in enumerate(steps) if s.reward > 0]
    if f.rewarded:
        f.route = _route(f, f.rewarded[-1])
    return f


def _route(f: _Facts, end: int) -> list[int]:
    """Loop-erased route from the start to step ``end``: when a state recurs, the steps since its
    first visit are cut; invalid and idle steps are dropped."""
    path: list[int] = []
    where: dict[int | str, int] = {}
    for i in range(end + 1):
        k = f.keys[i]
        if k in where:
            del path[where[k] :]
            where = {f.keys[j]: n for n, j in enumerate(path)}
        where[k] = len(path)
        path.append(i)

    def keep(i: int) -> bool:
        s = f.steps[i]
        return i == end or not (s.invalid or f.family.idle.match(f.acts[i]))

    return [i for i in path if keep(i)]


# ---------------------------------------------------------------------------------------------
# The distiller


@dataclass(frozen=True)
class RuleDistiller:
    """Deterministic lessons from episodes; see the module docstring for the templates.

    Attributes:
        max_route: route steps turned into ``example`` strategies per successful episode.
        max_warnings: ``example`` warnings per failed episode.
        min_support: distinct episodes needed for a ``pattern``.
        principle_support: distinct episodes needed for a ``principle``.
    """

    max_route: int = 3
    max_warnings: int = 3
    min_support: int = 2
    principle_support: int = 3

    def __post_init__(self) -> None:
        for name in ("max_route", "max_warnings", "min_support", "principle_support"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def distill(self, digests: Sequence[Digest]) -> DistillResult:
        """Drafts for ``digests``: per-episode examples, then cross-episode patterns and
        principles. Deterministic: the same digests give the same drafts in the same order."""
        result = DistillResult()
        facts = [_facts(d) for d in digests]
        wins = [f for f in facts if f.digest.zone == "strategy"]
        losses = [f for f in facts if f.digest.zone == "warning"]
        for f in facts:
            win = f.digest.zone == "strategy"
            drafts = self._route_examples(f) if win else self._failure_examples(f)
            result.drafts.extend(drafts)
        result.drafts.extend(self._win_patterns(wins))
        result.drafts.extend(self._loss_patterns(losses))
        result.drafts.extend(self._principles(wins, losses))
        result.counts["rule_drafts"] += len(result.drafts)
        return result

    # -- successes -----------------------------------------------------------------------------

    def _route_examples(self, f: _Facts) -> list[Draft]:
        if not f.route:
            return []
        end = f.route[-1]
        final = f.steps[end]
        won = f.digest.episode.won and end == f.rewarded[-1]
        result = "won" if won else "earned a reward"
        out: list[Draft] = []
        tail = f.route[-self.max_route :]
        for pos in range(len(tail) - 1, -1, -1):  # the rewarded step first
            i = tail[pos]
            s = f.steps[i]
            if i == end:
                before = [f.steps[j].action for j in tail[:pos]]
                after = f" after {_qs(before)}" if before else ""
                text = f"{_where(f.place(i))}{_q(s.action)} {result} (reward {_fmt(final.reward)}){after}."
            else:
                rest = [f.steps[j].action for j in tail[pos + 1 :]]
                text = (
                    f"{_where(f.place(i))}{_q(s.action)}, then {_qs(rest)}, {result} "
                    f"(reward {_fmt(final.reward)})."
                )
            out.append(self._draft(f, text, "example", (i,), pair=i))
        return out

    # -- failures ------------------------------------------------------------------------------

    def _failure_examples(self, f: _Facts) -> list[Draft]:
        out: list[Draft] = []
        for action, idx in _group_by_action(f, f.invalid).items():
            i = idx[0]
            nxt = f.steps[i + 1].observation if i + 1 < len(f.steps) else ""
            reply = f' ("{_first_sentence(nxt)}")' if nxt else ""
            alts = [a for a in f.steps[i].admissible if _norm(a) != action]
            hint = f"; try {_qs(alts, 2).replace(', ', ' or ')}" if alts else ""
            times = f" {len(idx)} times" if len(idx) > 1 else ""
            text = f"{_where(f.place(i))}{_q(f.steps[i].action)} was rejected{times}{reply}{hint}."
            out.append(self._draft(f, text, "example", tuple(idx), pair=i))
        looped: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for first, again in f.loops:
            looped[f.acts[again]].append((first, again))
        for pairs in sorted(looped.values(), key=lambda p: (-len(p), p[0][1])):
            out.append(self._loop_warning(f, pairs))
        if not out and f.digest.reward <= 0 and f.steps:
            out.extend(self._untried(f))
        return out[: self.max_warnings]

    def _loop_warning(self, f: _Facts, pairs: list[tuple[int, int]]) -> Draft:
        first, again = pairs[0]
        s = f.steps[again]
        cycle = [f.steps[j].action for j in range(first, again)]
        if len({f.acts[j] for j in range(first, again)}) == 1:
            how = f"repeated {len(pairs) + 1} times in the same situation, no reward"
        else:
            how = f"taken again after {_qs(cycle, 4)} led back to the same situation, no reward"
        tried = {f.acts[j] for j, k in enumerate(f.keys) if k == f.keys[again]}
        untried = [a for a in s.admissible if _norm(a) not in tried]
        hint = f"; untried there: {_qs(untried, 2)}" if untried else ""
        text = f"{_where(f.place(again))}{_q(s.action)} {how}{hint}."
        idx = tuple(sorted({i for p in pairs for i in p}))
        return self._draft(f, text, "example", idx, pair=again)

    def _untried(self, f: _Facts) -> list[Draft]:
        last = len(f.steps) - 1
        used = set(f.acts)
        untried = [a for a in f.steps[last].admissible if _norm(a) not in used]
        if not untried:
            return []
        most, n = Counter(f.acts).most_common(1)[0]
        text = (
            f"No reward in {len(f.steps)} steps (most used: {_q(most)}, {n} times); never tried: "
            f"{_qs(untried, 3)}."
        )
        return [self._draft(f, text, "example", (last,))]

    # -- regularities across episodes ---------------------------------------------------------

    def _win_patterns(self, wins: list[_Facts]) -> list[Draft]:
        final = [(f, f.route[-1]) for f in wins if f.route]
        by_action: dict[str, list[tuple[_Facts, int]]] = defaultdict(list)
        by_verb: dict[str, list[tuple[_Facts, int]]] = defaultdict(list)
        for f, i in final:
            by_action[f.acts[i]].append((f, i))
            by_verb[_verb(f.steps[i].action)].append((f, i))
        out: list[Draft] = []
        for support in _supported(by_action, self.min_support):
            f0, i0 = support[0]
            places = [p for p in dict.fromkeys(f.place(i) for f, i in support) if p][:3]
            where = f" (in the {', the '.join(places)})" if places else ""
            text = (
                f"{_q(f0.steps[i0].action)} earned the reward in {len(support)} of {len(wins)} "
                f"successful episodes{where}."
            )
            out.append(self._multi(support, text, "pattern", "strategy"))
        for verb, support in by_verb.items():
            actions = {f.acts[i] for f, i in support}
            if len(support) < self.min_support or len(actions) < 2 or not verb:
                continue
            text = (
                f'Rewarded actions began with "{_cut(verb, 24)}" in {len(support)} of {len(wins)} '
                f"successful episodes: {_qs([f.steps[i].action for f, i in support], 3)}."
            )
            out.append(self._multi(support, text, "pattern", "strategy"))
        return out

    def _loss_patterns(self, losses: list[_Facts]) -> list[Draft]:
        looped: dict[str, list[tuple[_Facts, int]]] = defaultdict(list)
        rejected: dict[str, list[tuple[_Facts, int]]] = defaultdict(list)
        for f in losses:
            for action, idx in _group_by_action(f, [a for _, a in f.loops]).items():
                looped[action].append((f, idx[0]))
            for verb, idx in _group_by(f, f.invalid, lambda s: _verb(s.action)).items():
                rejected[verb].append((f, idx[0]))
        out: list[Draft] = []
        for support in _supported(looped, self.min_support):
            f0, i0 = support[0]
            text = (
                f"{_q(f0.steps[i0].action)} was repeated in the same situation in {len(support)} "
                f"of {len(losses)} failed episodes; once tried there, try something else."
            )
            out.append(self._multi(support, text, "pattern", "warning"))
        for support in _supported(rejected, self.min_support):
            f0, i0 = support[0]
            text = (
                f'Actions starting with "{_cut(_verb(f0.steps[i0].action), 24)}" were rejected in '
                f"{len(support)} of {len(losses)} failed episodes, e.g. "
                f"{_qs([f.steps[i].action for f, i in support], 2)}."
            )
            out.append(self._multi(support, text, "pattern", "warning"))
        return out

    def _principles(self, wins: list[_Facts], losses: list[_Facts]) -> list[Draft]:
        out: list[Draft] = []
        named = [(f, f.route[-1]) for f in wins if f.route and _names_task_object(f, f.route[-1])]
        if len(named) >= self.principle_support and len(named) == len([f for f in wins if f.route]):
            text = (
                f"In {len(named)} of {len(wins)} successful episodes the rewarded action used an "
                f"object named in the task ({_qs([f.steps[i].action for f, i in named], 3)}): "
                "find that object and act on it."
            )
            out.append(self._multi(named, text, "principle", "strategy"))
        kinds: list[tuple[str, Callable[[_Facts], list[int]], str]] = [
            ("repeated an earlier action in the same situation", lambda f: [a for _, a in f.loops],
             "do not repeat an action where it already failed"),
            ("had actions rejected", lambda f: f.invalid, "choose among the admissible actions"),
        ]  # fmt: skip
        for what, steps_of, advice in kinds:
            bad = [f for f in losses if steps_of(f)]
            if len(bad) < self.principle_support:
                continue
            lo = fmean(len(steps_of(f)) for f in losses)
            hi = fmean(len(steps_of(f)) for f in wins) if wins else 0.0
            if lo < 2 * hi + 0.5:
                continue
            common = Counter(f.steps[i].action for f in bad for i in steps_of(f))
            vs = f" (successful ones {hi:.1f})" if wins else ""
            text = (
                f"Failed episodes {what} {lo:.1f} times on average{vs}, most often "
                f"{_qs([a for a, _ in common.most_common(2)], 2)}: {advice}."
            )
            support = [(f, steps_of(f)[0]) for f in bad]
            out.append(self._multi(support, text, "principle", "warning"))
        return out

    # -- draft builders ------------------------------------------------------------------------

    def _draft(
        self, f: _Facts, text: str, level: str, idx: tuple[int, ...], pair: int | None = None
    ) -> Draft:
        s = f.steps[pair] if pair is not None else None
        return Draft(
            text=text,
            zone=f.digest.zone,
            level=level,
            score=f.digest.reward,
            episode_ids=(f.episode_id,),
            cluster_ids=f.cluster(*idx),
            observation=s.observation if s is not None else None,
            action=s.action if s is not None else None,
        )

    def _multi(self, support: list[tuple[_Facts, int]], text: str, level: str, zone: str) -> Draft:
        return Draft(
            text=text,
            zone=zone,
            level=level,
            score=fmean(f.digest.reward for f, _ in support),
            episode_ids=tuple(dict.fromkeys(f.episode_id for f, _ in support)),
            cluster_ids=tuple(dict.fromkeys(c for f, i in support for c in f.cluster(i)))[:8],
        )


def _group_by(f: _Facts, idx: Sequence[int], key: Callable[[Step], str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in idx:
        out.setdefault(key(f.steps[i]), []).append(i)
    return out


def _group_by_action(f: _Facts, idx: Sequence[int]) -> dict[str, list[int]]:
    return _group_by(f, idx, lambda s: _norm(s.action))


def _supported(
    groups: Mapping[str, list[tuple[_Facts, int]]], min_support: int
) -> list[list[tuple[_Facts, int]]]:
    """Groups seen in at least ``min_support`` distinct episodes (one entry per episode), largest
    first, ties in first-seen order."""
    out = []
    for members in groups.values():
        per_episode = list({f.episode_id: (f, i) for f, i in reversed(members)}.values())[::-1]
        if len(per_episode) >= min_support:
            out.append(per_episode)
    return sorted(out, key=lambda m: -len(m))


def _names_task_object(f: _Facts, i: int) -> bool:
    words = f.acts[i].split()[1:]
    task = f.digest.episode.task.casefold()
    return bool(words) and all(re.search(rf"\b{re.escape(w)}\b", task) for w in words)


__all__ = ["FAMILIES", "Family", "RuleDistiller", "detect_family"]
