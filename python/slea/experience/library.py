"""The self-evolving experience library (SLEA-RL section 3.1): Python face of the Rust core.

Two zones (``strategy`` from successes, ``warning`` from failures) of three levels
(``principle``, ``pattern``, ``example``), each (zone, level) bounded. Candidates distilled from
trajectories go through :meth:`ExperienceLibrary.admit` (sanitising, per-step rate limit, novelty
check, score-based admission with eviction); every decision comes back in an
:class:`AdmissionReport`. At each step the agent asks :meth:`ExperienceLibrary.retrieve` with
its observation cluster: the cluster's pool answers when it has entries, otherwise a semantic
fallback over the HNSW index does and links its results to the cluster::

    import slea
    lib = slea.ExperienceLibrary(slea.LibraryConfig())
    report = lib.admit([slea.Candidate("Open containers before searching rooms.",
                                       "strategy", "principle", score=1.0, cluster_ids=(7,))],
                       iteration=0)
    [e.text for e in lib.retrieve(7, "You are in a kitchen.")]
    lib.save("library.snap"); lib2 = slea.ExperienceLibrary.load("library.snap")

The rules live in Rust (``rust/slea-core/src/library.rs``); this module owns defaults,
validation of user input, embedding (see :mod:`slea.experience.embed`) and file formats for
humans (JSONL).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from slea import _core
from slea.errors import ConfigError, SnapshotError
from slea.experience.embed import Embedder, HashingEmbedder, MiniLMEmbedder, check_embeddings

__all__ = [
    "LEVELS",
    "OUTCOMES",
    "ZONES",
    "AdmissionDecision",
    "AdmissionReport",
    "Candidate",
    "Experience",
    "ExperienceLibrary",
    "LibraryConfig",
]

ZONES = ("strategy", "warning")
LEVELS = ("principle", "pattern", "example")
OUTCOMES = ("admitted", "duplicate", "rate_limited", "below_floor", "invalid")
_U64 = 1 << 64
PathLike = Union[str, "os.PathLike[str]"]


def _u64(name: str, v: Any) -> int:
    """``v`` as an int in [0, 2**64), else a TypeError/ValueError naming ``name``."""
    if type(v) is not int:
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        v = v.__index__()
    if not 0 <= v < _U64:
        raise ValueError(f"{name} must be in [0, 2**64), got {v}")
    return v


def _ids(name: str, vs: Any) -> tuple[int, ...]:
    if isinstance(vs, (str, bytes)) or not isinstance(vs, Iterable):
        raise TypeError(f"{name} must be a sequence of ints, got {type(vs).__name__}")
    return tuple(_u64(f"{name}[{i}]", v) for i, v in enumerate(vs))


SCORE_LIMIT: float = _core.LIBRARY_MAX_ABS_SCORE
"""Largest magnitude of a score (and of an outcome reward), 1e6.

A score is an episode return: the source episode's total reward (evolution and the LLM
distiller), the mean return of the supporting episodes (rule patterns and principles), or a
moving average towards outcome rewards (``ema_alpha``). The paper's environments give returns
within +-100 (ALFWorld and WebShop 10 on success, ScienceWorld -100..100, Sokoban about -20..13),
so 1e6 leaves four orders of magnitude for reward scaling; a value beyond it (1e308, a float max
used as a sentinel) is a bug that would outrank every real entry for good. The Rust core enforces
the same bound (``MAX_ABS_SCORE``), so a bad value cannot reach a snapshot either way."""

_NOT_UNICODE = (
    "is not valid Unicode (it holds a lone surrogate); clean it first, "
    "e.g. text.encode('utf-8', 'replace').decode()"
)


def _text(name: str, v: Any) -> str:
    """``v`` if it is a str the library can store (no lone surrogate), else a TypeError or
    ValueError naming ``name`` (the clusterer's wording)."""
    if not isinstance(v, str):
        raise TypeError(f"{name} must be str, got {type(v).__name__}")
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{name}: {_NOT_UNICODE}") from None
    return v


def _opt_text(name: str, v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise TypeError(f"{name} must be str or None, got {type(v).__name__}")
    return None if v is None else _text(name, v)


def _real(name: str, v: Any, lo: float, hi: float, what: str = "a number") -> float:
    """``v`` as a float if it is a real number in ``[lo, hi]`` (finite), else a TypeError or
    ValueError naming ``name``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {what}, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not (math.isfinite(f) and lo <= f <= hi):
        raise ValueError(f"{name} must be finite and in [{lo:g}, {hi:g}], got {v!r}")
    return f


def _score(name: str, v: Any) -> float:
    """A score or reward: a finite number within :data:`SCORE_LIMIT` in magnitude."""
    return _real(name, v, -SCORE_LIMIT, SCORE_LIMIT)


def _small_int(name: str, v: Any, lo: int, hi: int = 1 << 31) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


@dataclass(frozen=True)
class LibraryConfig:
    """Experience-library settings; the defaults are the paper's (SLEA-RL Table 3)."""

    strategy_capacity: int = 100
    """Entries per level in the strategy zone (paper: 100)."""
    warning_capacity: int = 50
    """Entries per level in the warning zone (paper: 50)."""
    max_strategies_per_step: int = 10
    """Strategies admitted per evolution step at most (token bucket on the iteration clock)."""
    max_warnings_per_step: int = 5
    """Warnings admitted per evolution step at most."""
    novelty_threshold: float = 0.85
    """Cosine at or above which a candidate duplicates an entry of its zone (paper: 0.85)."""
    k_strategy: int = 2
    """Strategies returned per retrieval by default (paper: 2)."""
    k_warning: int = 1
    """Warnings returned per retrieval by default (paper: 1)."""
    fallback_threshold: float = 0.2
    """Fallback retrieval keeps entries with cosine to the observation strictly above this.

    The paper's delta (0.85) compares observations for clustering; observation-to-advice cosine
    is much lower, so the fallback uses its own threshold."""
    max_text_chars: int = 500
    """Longest entry text in characters after sanitising; longer candidates are invalid."""
    max_demo_chars: int = 2000
    """Longest demonstration observation or action (example entries) in characters."""
    cluster_pool_size: int = 16
    """Entries per zone linked to one cluster; a full pool keeps the best by score."""
    max_clusters: int = 10_000
    """Cluster pools kept; a new pool beyond this drops the least recently used eighth."""
    max_provenance: int = 32
    """Episode ids and cluster ids remembered per entry (most recent)."""
    ema_alpha: float | None = None
    """If set, each recorded outcome moves the entry's score towards the outcome by this weight
    (exponential moving average); ``None`` (the paper) keeps the source reward."""

    def __post_init__(self) -> None:
        for name, lo in [
            ("strategy_capacity", 0),
            ("warning_capacity", 0),
            ("max_strategies_per_step", 0),
            ("max_warnings_per_step", 0),
            ("k_strategy", 0),
            ("k_warning", 0),
            ("max_text_chars", 1),
            ("max_demo_chars", 1),
            ("cluster_pool_size", 1),
            ("max_clusters", 1),
            ("max_provenance", 1),
        ]:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 1 << 31:
                raise ConfigError(
                    f"LibraryConfig.{name} must be an int in [{lo}, 2**31], got {v!r}"
                )
        for name in ("novelty_threshold", "fallback_threshold"):
            v = getattr(self, name)
            try:
                object.__setattr__(self, name, _real(name, v, -1.0, 1.0))
            except (TypeError, ValueError):
                raise ConfigError(
                    f"LibraryConfig.{name} must be a number in [-1, 1] (a cosine), got {v!r}"
                ) from None
        a = self.ema_alpha
        if a is not None:
            try:
                ok = _real("ema_alpha", a, 0.0, 1.0) > 0.0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(
                    f"LibraryConfig.ema_alpha must be None or a number in (0, 1], got {a!r}"
                )
            object.__setattr__(self, "ema_alpha", float(a))

    def _core_kwargs(self, embedder: Embedder) -> dict[str, Any]:
        return {
            "dim": embedder.dim,
            "embedder": embedder.name,
            "capacity": [self.strategy_capacity, self.warning_capacity],
            "rate_per_step": [
                float(self.max_strategies_per_step),
                float(self.max_warnings_per_step),
            ],
            "novelty_threshold": float(self.novelty_threshold),
            "fallback_threshold": float(self.fallback_threshold),
            "max_text_chars": self.max_text_chars,
            "max_demo_chars": self.max_demo_chars,
            "pool_size": self.cluster_pool_size,
            "max_clusters": self.max_clusters,
            "max_provenance": self.max_provenance,
            "ema_alpha": None if self.ema_alpha is None else float(self.ema_alpha),
        }

    @classmethod
    def _from_core(cls, p: dict[str, Any]) -> LibraryConfig:
        kw = {
            "strategy_capacity": p["capacity"][0],
            "warning_capacity": p["capacity"][1],
            "max_strategies_per_step": int(p["rate_per_step"][0]),
            "max_warnings_per_step": int(p["rate_per_step"][1]),
            "novelty_threshold": p["novelty_threshold"],
            "fallback_threshold": p["fallback_threshold"],
            "max_text_chars": p["max_text_chars"],
            "max_demo_chars": p["max_demo_chars"],
            "cluster_pool_size": p["pool_size"],
            "max_clusters": p["max_clusters"],
            "max_provenance": p["max_provenance"],
            "ema_alpha": p["ema_alpha"],
        }
        defaults = cls()
        # The snapshot stores f32 thresholds; keep the configured value when it rounds the same.
        for name in ("novelty_threshold", "fallback_threshold"):
            if np.float32(getattr(defaults, name)) == np.float32(kw[name]):
                kw[name] = getattr(defaults, name)
            else:
                kw[name] = round(float(kw[name]), 6)
        return cls(**kw)


@dataclass(frozen=True)
class Candidate:
    """A proposed experience, as a distiller produces it.

    Args:
        text: the advice (sanitised on admission; chat markers and control characters are
            stripped, and empty or over-long text makes the candidate ``invalid``).
        zone: ``"strategy"`` or ``"warning"``.
        level: ``"principle"``, ``"pattern"`` or ``"example"``.
        score: quality score, the source episode's return: finite and within
            :data:`SCORE_LIMIT` (1e6) in magnitude (see there why).
        episode_ids: source episode ids (provenance).
        cluster_ids: observation clusters of the source steps; the entry is linked to them.
        observation, action: an optional demonstration step (``example`` level only, both or
            neither).
    """

    text: str
    zone: str
    level: str
    score: float
    episode_ids: tuple[int, ...] = ()
    cluster_ids: tuple[int, ...] = ()
    observation: str | None = None
    action: str | None = None

    def __post_init__(self) -> None:
        _text("Candidate.text", self.text)
        if self.zone not in ZONES:
            raise ValueError(f"Candidate.zone must be one of {ZONES}, got {self.zone!r}")
        if self.level not in LEVELS:
            raise ValueError(f"Candidate.level must be one of {LEVELS}, got {self.level!r}")
        object.__setattr__(self, "score", _score("Candidate.score", self.score))
        object.__setattr__(self, "episode_ids", _ids("Candidate.episode_ids", self.episode_ids))
        object.__setattr__(self, "cluster_ids", _ids("Candidate.cluster_ids", self.cluster_ids))
        _opt_text("Candidate.observation", self.observation)
        _opt_text("Candidate.action", self.action)
        if (self.observation is None) != (self.action is None):
            raise ValueError("Candidate.observation and Candidate.action: give both or neither")
        if self.observation is not None and self.level != "example":
            raise ValueError(
                f"Candidate.observation: only example entries carry a demonstration, not {self.level!r}"
            )


_Values = tuple[
    int, str, str, str, float, tuple[int, ...], int, tuple[int, ...], int, int, int, int,
    str | None, str | None, bytes,
]  # fmt: skip
"""What the binding returns per entry, in :class:`Experience`'s field order (embedding as
little-endian float32 bytes)."""

_FIELDS = (
    "id", "text", "zone", "level", "score", "episode_ids", "iteration", "cluster_ids",
    "created_iteration", "retrieved", "successes", "failures", "observation", "action",
)  # fmt: skip


class Experience:
    """One library entry: an immutable value, a snapshot taken when it was returned.

    Attributes: ``id`` (stable), ``text``, ``zone``, ``level``, ``score``, ``episode_ids``,
    ``iteration`` (latest provenance), ``cluster_ids`` (source clusters), ``created_iteration``,
    usage stats ``retrieved`` / ``successes`` / ``failures``, ``observation`` / ``action``
    (demonstration of an example entry, else ``None``) and ``embedding`` (float32 unit vector).
    ``utility`` is the success rate of the episodes that used it.

    The library builds these from plain values that cross the Rust boundary once per entry;
    building one by hand validates every field like :class:`Candidate` does.
    """

    __slots__ = ("_v",)
    _v: _Values

    def __init__(
        self,
        id: int,
        text: str,
        zone: str,
        level: str,
        score: float,
        episode_ids: Sequence[int] = (),
        iteration: int = 0,
        cluster_ids: Sequence[int] = (),
        created_iteration: int = 0,
        retrieved: int = 0,
        successes: int = 0,
        failures: int = 0,
        observation: str | None = None,
        action: str | None = None,
        embedding: npt.ArrayLike | None = None,
    ) -> None:
        if zone not in ZONES:
            raise ValueError(f"Experience.zone must be one of {ZONES}, got {zone!r}")
        if level not in LEVELS:
            raise ValueError(f"Experience.level must be one of {LEVELS}, got {level!r}")
        emb = np.zeros(0, np.float32) if embedding is None else np.asarray(embedding, np.float32)
        if emb.ndim != 1 or not np.isfinite(emb).all():
            raise ValueError("Experience.embedding must be a 1-D array of finite numbers")
        values: _Values = (
            _u64("Experience.id", id),
            _text("Experience.text", text),
            zone,
            level,
            _score("Experience.score", score),
            _ids("Experience.episode_ids", episode_ids),
            _u64("Experience.iteration", iteration),
            _ids("Experience.cluster_ids", cluster_ids),
            _u64("Experience.created_iteration", created_iteration),
            _u64("Experience.retrieved", retrieved),
            _u64("Experience.successes", successes),
            _u64("Experience.failures", failures),
            _opt_text("Experience.observation", observation),
            _opt_text("Experience.action", action),
            emb.astype("<f4").tobytes(),
        )
        _set_values(self, values)

    @property
    def id(self) -> int:
        """Stable id (assigned in admission order, never reused)."""
        return self._v[0]

    @property
    def text(self) -> str:
        """The advice, sanitised."""
        return self._v[1]

    @property
    def zone(self) -> str:
        """``"strategy"`` or ``"warning"``."""
        return self._v[2]

    @property
    def level(self) -> str:
        """``"principle"``, ``"pattern"`` or ``"example"``."""
        return self._v[3]

    @property
    def score(self) -> float:
        """Quality score (source reward; moved by outcomes when ``ema_alpha`` is set)."""
        return self._v[4]

    @property
    def episode_ids(self) -> tuple[int, ...]:
        """Source episode ids (most recent ``max_provenance``)."""
        return self._v[5]

    @property
    def iteration(self) -> int:
        """Iteration of the latest provenance merged into the entry."""
        return self._v[6]

    @property
    def cluster_ids(self) -> tuple[int, ...]:
        """Observation clusters of the source steps."""
        return self._v[7]

    @property
    def created_iteration(self) -> int:
        """Iteration at which the entry was admitted."""
        return self._v[8]

    @property
    def retrieved(self) -> int:
        """Retrievals reported by :meth:`ExperienceLibrary.record_outcome`."""
        return self._v[9]

    @property
    def successes(self) -> int:
        """Episodes that used the entry and succeeded."""
        return self._v[10]

    @property
    def failures(self) -> int:
        """Episodes that used the entry and failed."""
        return self._v[11]

    @property
    def observation(self) -> str | None:
        """Demonstration observation (example entries), else ``None``."""
        return self._v[12]

    @property
    def action(self) -> str | None:
        """Demonstration action (example entries), else ``None``."""
        return self._v[13]

    @property
    def embedding(self) -> npt.NDArray[np.float32]:
        """Unit embedding of the text, float32 ``(dim,)`` (a copy; empty if built by hand)."""
        return np.frombuffer(self._v[14], dtype="<f4").astype(np.float32)

    @property
    def utility(self) -> float | None:
        """Success rate of the episodes that used the entry, ``None`` before any outcome."""
        n = self._v[10] + self._v[11]
        return self._v[10] / n if n else None

    def to_dict(self) -> dict[str, Any]:
        """All fields but the embedding, as JSON-ready values."""
        d: dict[str, Any] = dict(zip(_FIELDS, self._v, strict=False))
        d["episode_ids"] = list(self._v[5])
        d["cluster_ids"] = list(self._v[7])
        return d

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Experience):
            return NotImplemented
        return self._v[:14] == other._v[:14]

    def __hash__(self) -> int:
        return hash((self._v[0], self._v[1], self._v[4], self._v[9]))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_experience_from_values, (self._v,))

    def __repr__(self) -> str:
        v = self._v
        text = v[1] if len(v[1]) <= 60 else v[1][:57] + "..."
        return (
            f"Experience(id={v[0]}, zone={v[2]!r}, level={v[3]!r}, score={v[4]:g}, text={text!r})"
        )


_set_values = Experience.__dict__["_v"].__set__
_new_experience = object.__new__


def _wrap(values: _Values) -> Experience:
    """An :class:`Experience` around values from the binding (already valid: no checks)."""
    e = _new_experience(Experience)
    _set_values(e, values)
    return e


def _experience_from_values(v: _Values) -> Experience:
    """Unpickling: through the constructor, so that a crafted pickle is validated."""
    return Experience(*v[:14], embedding=np.frombuffer(v[14], dtype="<f4"))


@dataclass(frozen=True)
class AdmissionDecision:
    """What admission did with one candidate."""

    index: int
    """Position of the candidate in the batch."""
    zone: str
    """Candidate's zone."""
    level: str
    """Candidate's level."""
    outcome: str
    """One of ``admitted``, ``duplicate``, ``rate_limited``, ``below_floor``, ``invalid``."""
    entry_id: int | None
    """The new entry (admitted) or the entry it merged into (duplicate), else ``None``."""
    reason: str
    """Human-readable reason."""
    evicted: tuple[int, ...] = ()
    """Entries evicted to make room."""


@dataclass(frozen=True)
class AdmissionReport:
    """Decisions of one :meth:`ExperienceLibrary.admit` call, in candidate order."""

    iteration: int
    """Evolution step of the call."""
    decisions: tuple[AdmissionDecision, ...] = field(default_factory=tuple)
    """One decision per candidate."""

    @property
    def admitted_ids(self) -> tuple[int, ...]:
        """Ids of the newly admitted entries."""
        return tuple(
            d.entry_id for d in self.decisions if d.outcome == "admitted" and d.entry_id is not None
        )

    @property
    def evicted_ids(self) -> tuple[int, ...]:
        """Ids evicted by this call."""
        return tuple(i for d in self.decisions for i in d.evicted)

    @property
    def counts(self) -> dict[tuple[str, str, str], int]:
        """Number of candidates per ``(zone, level, outcome)``."""
        return dict(Counter((d.zone, d.level, d.outcome) for d in self.decisions))

    def count(
        self, outcome: str | None = None, zone: str | None = None, level: str | None = None
    ) -> int:
        """Candidates matching the given outcome / zone / level (``None`` matches any)."""
        return sum(
            1
            for d in self.decisions
            if (outcome is None or d.outcome == outcome)
            and (zone is None or d.zone == zone)
            and (level is None or d.level == level)
        )

    def summary(self) -> dict[str, int]:
        """Candidates per outcome (every outcome present, zeros included)."""
        c = Counter(d.outcome for d in self.decisions)
        return {o: c.get(o, 0) for o in OUTCOMES}

    def __len__(self) -> int:
        return len(self.decisions)


_EXPORT_FIELDS: dict[str, Any] = {
    "id": None,
    "text": None,
    "zone": None,
    "level": None,
    "score": None,
    "episode_ids": [],
    "iteration": 0,
    "cluster_ids": [],
    "created_iteration": 0,
    "retrieved": 0,
    "successes": 0,
    "failures": 0,
    "observation": None,
    "action": None,
    "linked_clusters": [],
}
_REQUIRED = ("text", "zone", "level", "score")


class ExperienceLibrary:
    """Bounded, crash-safe experience library with cluster-indexed retrieval.

    Thread-safe: the Rust core serialises access; batch calls release the GIL.

    Args:
        config: settings (:class:`LibraryConfig`, paper defaults).
        embedder: text embedder (default ``HashingEmbedder(256)``); its ``name`` and ``dim`` are
            stored in snapshots.
    """

    def __init__(
        self, config: LibraryConfig | None = None, embedder: Embedder | None = None
    ) -> None:
        config = LibraryConfig() if config is None else config
        if not isinstance(config, LibraryConfig):
            raise TypeError(f"config must be a LibraryConfig, got {type(config).__name__}")
        embedder = HashingEmbedder(256) if embedder is None else embedder
        _check_embedder(embedder)
        self._init(_core.Library(**config._core_kwargs(embedder)), config, embedder)

    def _init(self, inner: Any, config: LibraryConfig, embedder: Embedder) -> None:
        self._inner = inner
        self.config = config
        self.embedder = embedder
        self._ks = config.k_strategy
        self._kw = config.k_warning

    # ---- admission -------------------------------------------------------------------------

    def admit(self, candidates: Sequence[Candidate], iteration: int) -> AdmissionReport:
        """Run admission on ``candidates`` in order at evolution step ``iteration``.

        Each candidate is sanitised, rate-limited per zone and step, checked for novelty against
        its zone, and admitted by score (evicting the lowest of a full level); see the module
        docs of ``library.rs``. Content problems make a candidate ``invalid`` with a reason; a
        wrong argument type or a broken embedder raises and changes nothing.
        """
        it = _u64("iteration", iteration)
        if isinstance(candidates, Candidate):
            raise TypeError("candidates must be a sequence of Candidate, not a single Candidate")
        cands = list(candidates)
        for i, c in enumerate(cands):
            if not isinstance(c, Candidate):
                raise TypeError(f"candidates[{i}] must be a Candidate, got {type(c).__name__}")
        if not cands:
            return AdmissionReport(it, ())
        clean = _core.sanitize_texts([c.text for c in cands], self.config.max_text_chars)
        ok = [i for i, (t, _) in enumerate(clean) if t is not None]
        emb = np.zeros((len(cands), self.embedder.dim), dtype=np.float32)
        if ok:
            emb[ok] = check_embeddings(self.embedder, [t for t, _ in clean if t is not None])
        raw = self._inner.admit(cands, emb, it)
        decisions = tuple(
            AdmissionDecision(i, c.zone, c.level, outcome, eid, reason, tuple(ev))
            for i, (c, (outcome, eid, reason, ev)) in enumerate(zip(cands, raw, strict=True))
        )
        return AdmissionReport(it, decisions)

    # ---- retrieval -------------------------------------------------------------------------

    def retrieve(
        self,
        cluster_id: int,
        text: str,
        k_strategy: int | None = None,
        k_warning: int | None = None,
    ) -> list[Experience]:
        """Experiences for one step: strategies (best first) then warnings (best first).

        If the pool of ``cluster_id`` has entries, its top ``k_strategy`` strategies and
        ``k_warning`` warnings by score (cached until the library changes); otherwise the
        semantic fallback: ``text`` (the observation) is embedded, the nearest entries of each
        zone with cosine above ``fallback_threshold`` are returned and linked to the cluster.
        """
        ks = self._ks if k_strategy is None else _small_int("k_strategy", k_strategy, 0)
        kw = self._kw if k_warning is None else _small_int("k_warning", k_warning, 0)
        if type(cluster_id) is not int or not 0 <= cluster_id < _U64:
            cluster_id = _u64("cluster_id", cluster_id)
        if type(text) is not str or not text.isascii():
            _text("text", text)
        hits = self._inner.retrieve(cluster_id, ks, kw)
        if hits is None:
            q = check_embeddings(self.embedder, [text])[0]
            hits = self._inner.retrieve(cluster_id, ks, kw, q)
        return [_wrap(r) for r in hits]

    def retrieve_batch(
        self,
        cluster_ids: Sequence[int] | npt.NDArray[np.integer[Any]],
        texts: Sequence[str],
        k_strategy: int | None = None,
        k_warning: int | None = None,
    ) -> list[list[Experience]]:
        """:meth:`retrieve` for many steps at once (e.g. the G environments of a group).

        Pool lookups run in one call with the GIL released; only the texts of clusters without a
        pool are embedded, in one batch. Returns one list per cluster id, in order.
        """
        ks = self._ks if k_strategy is None else _small_int("k_strategy", k_strategy, 0)
        kw = self._kw if k_warning is None else _small_int("k_warning", k_warning, 0)
        cids = _u64_array("cluster_ids", cluster_ids)
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not a single str")
        texts = list(texts)
        if len(texts) != len(cids):
            raise ValueError(f"texts has {len(texts)} items, cluster_ids has {len(cids)}")
        for i, t in enumerate(texts):
            if type(t) is not str or not t.isascii():
                _text(f"texts[{i}]", t)
        hits = self._inner.retrieve_hits(cids, ks, kw)
        miss = [i for i, h in enumerate(hits) if h is None]
        if miss:
            q = check_embeddings(self.embedder, [texts[i] for i in miss])
            found = self._inner.retrieve_fallbacks(cids[miss], q, ks, kw)
            for i, h in zip(miss, found, strict=True):
                hits[i] = h
        return [[_wrap(r) for r in h] for h in hits]

    # ---- usage, links, edits ---------------------------------------------------------------

    def record_outcome(
        self,
        entry_ids: Iterable[int],
        success: bool,
        *,
        reward: float | None = None,
        ignore_missing: bool = False,
    ) -> int:
        """Credit the entries an episode retrieved with its outcome.

        ``entry_ids``: every id the episode retrieved, once per retrieval (repeats count as
        retrievals); each distinct id gets one success or failure. With ``ema_alpha`` set the
        score moves towards ``reward`` (default 1.0 for success, 0.0 for failure; finite, within
        :data:`SCORE_LIMIT` in magnitude). Unknown ids
        raise ``KeyError`` and change nothing, unless ``ignore_missing`` (entries evicted since
        they were retrieved are then skipped). Returns the number of distinct entries credited.
        """
        ids = list(_ids("entry_ids", entry_ids))
        if not isinstance(success, (bool, np.bool_)):
            raise TypeError(f"success must be a bool, got {type(success).__name__}")
        if reward is not None:
            reward = _real("reward", reward, -SCORE_LIMIT, SCORE_LIMIT, "a number or None")
        return self._inner.record_outcome(ids, bool(success), reward, bool(ignore_missing))

    def link(self, cluster_id: int, entry_ids: Iterable[int]) -> int:
        """Link existing entries to a cluster's pool (pool rules apply); returns links added.

        Raises ``KeyError`` (nothing changed) if an id does not exist.
        """
        cid = _u64("cluster_id", cluster_id)
        return self._inner.link(cid, list(_ids("entry_ids", entry_ids)))

    def get(self, entry_id: int) -> Experience:
        """The entry with this id; ``KeyError`` if there is none."""
        rec = self._inner.get(_u64("entry_id", entry_id))
        if rec is None:
            raise KeyError(f"experience {entry_id} does not exist")
        return _wrap(rec)

    def remove(self, entry_id: int) -> None:
        """Remove an entry and its cluster links; ``KeyError`` if there is none."""
        self._inner.remove(_u64("entry_id", entry_id))

    def entries(self, zone: str | None = None, level: str | None = None) -> list[Experience]:
        """All entries (optionally of one zone and/or level), sorted by id."""
        if zone is not None and zone not in ZONES:
            raise ValueError(f"zone must be one of {ZONES} or None, got {zone!r}")
        if level is not None and level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS} or None, got {level!r}")
        return [_wrap(r) for r in self._inner.entries(zone, level)]

    def linked_clusters(self, entry_id: int) -> tuple[int, ...]:
        """Clusters whose pools hold the entry, sorted."""
        return tuple(self._inner.linked_clusters(_u64("entry_id", entry_id)))

    def pool(self, cluster_id: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(strategy ids, warning ids)`` linked to a cluster (empty tuples if none)."""
        p = self._inner.pool(_u64("cluster_id", cluster_id))
        return ((), ()) if p is None else (tuple(p[0]), tuple(p[1]))

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, entry_id: object) -> bool:
        return (
            type(entry_id) is int and 0 <= entry_id < _U64 and self._inner.get(entry_id) is not None
        )

    @property
    def version(self) -> int:
        """Increases with every change of entries, scores, usage stats or links."""
        return self._inner.version

    def stats(self) -> dict[str, Any]:
        """Sizes per zone and level, capacities, retrieval and admission counters, memory.

        Keys: ``entries``, ``sizes`` (zone -> level -> count), ``capacity`` (zone -> per level),
        ``clusters``, ``links``, ``version``, ``retrieval`` (``hits``, ``cache_hits``,
        ``fallbacks``, ``fallback_empty``, ``hit_rate``), ``admission`` (outcome -> count since
        creation), ``evicted``, ``memory_bytes`` and ``bytes_per_entry`` (estimates of heap use),
        ``embedder``.
        """
        raw = self._inner.stats()
        n = len(self)
        hits, fb = raw["hits"], raw["fallbacks"]
        return {
            "entries": n,
            "sizes": {
                z: dict(zip(LEVELS, raw["sizes"][zi], strict=True)) for zi, z in enumerate(ZONES)
            },
            "capacity": {
                "strategy": self.config.strategy_capacity,
                "warning": self.config.warning_capacity,
            },
            "clusters": raw["clusters"],
            "links": raw["links"],
            "version": raw["version"],
            "retrieval": {
                "hits": hits,
                "cache_hits": raw["cache_hits"],
                "fallbacks": fb,
                "fallback_empty": raw["fallback_empty"],
                "hit_rate": hits / (hits + fb) if hits + fb else 0.0,
            },
            "admission": dict(zip(OUTCOMES, raw["outcomes"], strict=True)),
            "evicted": raw["evicted"],
            "memory_bytes": raw["memory_bytes"],
            "bytes_per_entry": raw["memory_bytes"] / n if n else 0.0,
            "embedder": self.embedder.name,
        }

    # ---- files -----------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Write a checksummed snapshot atomically (temporary file, fsync, rename, fsync dir).

        An interrupted save leaves the previous file intact. GIL released.
        """
        self._inner.save(_path(path))

    @classmethod
    def load(cls, path: PathLike, embedder: Embedder | None = None) -> ExperienceLibrary:
        """Read a snapshot written by :meth:`save`.

        Raises :class:`slea.SnapshotError` if the file is not a library snapshot, is corrupt
        (checksum), comes from a newer slea, or was made with another embedder than
        ``embedder``. With ``embedder=None`` the stored fingerprint picks the embedder
        (hashing or MiniLM); another embedder must be passed explicitly.
        """
        return cls._restore(_core.Library.load(_path(path)), embedder)

    @classmethod
    def _restore(cls, inner: Any, embedder: Embedder | None) -> ExperienceLibrary:
        params = json.loads(inner.params_json())
        name, dim = params["embedder"], params["dim"]
        if embedder is None:
            embedder = _embedder_for(name, dim)
        else:
            _check_embedder(embedder)
            if embedder.name != name or embedder.dim != dim:
                raise SnapshotError(
                    f"snapshot was made with embedder {name!r} (dim {dim}); "
                    f"got {embedder.name!r} (dim {embedder.dim})"
                )
        lib = cls.__new__(cls)
        lib._init(inner, LibraryConfig._from_core(params), embedder)
        return lib

    def _snapshot_bytes(self) -> bytes:
        """The snapshot as bytes (what :meth:`save` writes)."""
        return self._inner.to_bytes()

    def export_jsonl(self, path: PathLike) -> int:
        """Write every entry as one JSON object per line (atomic); returns the entry count.

        Fields: those of :meth:`Experience.to_dict` plus ``linked_clusters``. Embeddings are not
        written; :meth:`import_jsonl` recomputes them.
        """
        lines = []
        for e in self.entries():
            d = e.to_dict()
            d["linked_clusters"] = list(self.linked_clusters(e.id))
            lines.append(json.dumps(d, ensure_ascii=False))
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        _core.write_file_atomic(_path(path), data)
        return len(lines)

    def import_jsonl(self, path: PathLike) -> list[int]:
        """Add the entries of a JSONL file (as written by :meth:`export_jsonl`); all or nothing.

        This is a restore, not an admission: no rate limit and no novelty check, but texts are
        sanitised and capacities enforced. ``text``, ``zone``, ``level`` and ``score`` are
        required; a given ``id`` is kept and must be unused. Raises ``ValueError`` naming the
        line on any problem (``OSError`` if the file cannot be read). Returns the ids in file
        order.
        """
        items = []
        with open(_path(path), "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ValueError(f"line {n}: not UTF-8 text ({exc.reason})") from None
                if line.strip():
                    items.append(_import_item(line, n))
        if not items:
            return []
        clean = _core.sanitize_texts([it["text"] for it in items], self.config.max_text_chars)
        for it, (t, why) in zip(items, clean, strict=True):
            if t is None:
                raise ValueError(f"line {it.pop('_line')}: text: {why}")
            it["text"] = t
            it.pop("_line")
        emb = check_embeddings(self.embedder, [it["text"] for it in items])
        return list(self._inner.import_entries(items, emb))

    def __repr__(self) -> str:
        return f"ExperienceLibrary({len(self)} entries, version={self.version}, embedder={self.embedder.name!r})"


def _check_embedder(e: Any) -> None:
    dim, name = getattr(e, "dim", None), getattr(e, "name", None)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise TypeError(f"embedder.dim must be a positive int, got {dim!r}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"embedder.name must be a non-empty str, got {name!r}")
    _text("embedder.name", name)
    if not callable(getattr(e, "embed", None)):
        raise TypeError("embedder must have an embed(texts) method")


def _embedder_for(name: str, dim: int) -> Embedder:
    if name == HashingEmbedder(dim).name:
        return HashingEmbedder(dim)
    if name == MiniLMEmbedder.name and dim == MiniLMEmbedder.dim:
        return MiniLMEmbedder()
    raise SnapshotError(
        f"snapshot was made with embedder {name!r} (dim {dim}); pass embedder= to load it"
    )


def _path(path: Any) -> str:
    """``path`` as a str for the binding; a TypeError or ValueError naming ``path`` otherwise."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    try:
        os.fsencode(p)
    except UnicodeEncodeError:
        raise ValueError(f"path: {_NOT_UNICODE}") from None
    return p


def _u64_array(name: str, v: Any) -> npt.NDArray[np.uint64]:
    if isinstance(v, np.ndarray):
        if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer):
            raise TypeError(
                f"{name} must be a 1-D integer array, got {v.dtype} with shape {v.shape}"
            )
        if v.dtype != np.uint64:
            if v.size and v.min() < 0:
                raise ValueError(f"{name} must be in [0, 2**64)")
            v = v.astype(np.uint64)
        return np.ascontiguousarray(v)
    return np.fromiter(_ids(name, v), dtype=np.uint64)


def _import_item(line: str, n: int) -> dict[str, Any]:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {n}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise ValueError(f"line {n}: JSON nested too deeply") from None
    if not isinstance(d, dict):
        raise ValueError(f"line {n}: expected a JSON object")
    unknown = sorted(set(d) - set(_EXPORT_FIELDS))
    if unknown:
        raise ValueError(f"line {n}: unknown field(s) {unknown}")
    missing = [k for k in _REQUIRED if d.get(k) is None]
    if missing:
        raise ValueError(f"line {n}: missing field(s) {missing}")
    item: dict[str, Any] = {k: d.get(k, default) for k, default in _EXPORT_FIELDS.items()}
    try:
        Candidate(
            item["text"],
            item["zone"],
            item["level"],
            item["score"],
            item["episode_ids"],
            item["cluster_ids"],
            item["observation"],
            item["action"],
        )
        if item["id"] is not None:
            _u64("id", item["id"])
        for k in ("iteration", "created_iteration", "retrieved", "successes", "failures"):
            _u64(k, item[k])
        _ids("linked_clusters", item["linked_clusters"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"line {n}: {exc}") from None
    item["score"] = float(item["score"])
    item["_line"] = n
    return item
