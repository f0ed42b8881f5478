"""Observation canonicalisation and clustering: the Python face of ``slea-core``'s canon, hash and
cluster modules.

An observation is first turned into its *canonical text* by a :class:`CanonSpec` (an ordered list
of rules: Unicode NFKC, case folding, white-space collapse, number and id masking, dropping of
volatile lines, sorting of enumerations). Its *structural hash* is the xxh3-64 of the canonical
text: the same value in every process, run and platform. :class:`ObservationClusterer` maps each
observation to a cluster of structurally equivalent observations::

    import slea
    c = slea.ObservationClusterer(threshold=0.85, canon=slea.CanonSpec.textworld())
    ids = c.assign_batch(observations)          # np.ndarray[uint64], one id per observation
    c.prototype(int(ids[0]))                    # canonical text of the cluster's first member

Every batch function releases the GIL.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from slea import _core

__all__ = [
    "CanonSpec",
    "ObservationClusterer",
    "canonicalize",
    "canonicalize_batch",
    "simhash",
    "simhash_batch",
    "structural_hash",
    "structural_hash_batch",
]

_PRESETS = ("generic", "textworld", "alfworld", "scienceworld")


class CanonSpec:
    """An immutable, serialisable canonicalisation spec: an ordered list of rules.

    Build one from a preset (:meth:`generic`, :meth:`textworld`, :meth:`alfworld`,
    :meth:`scienceworld`; :meth:`default` is ``generic``), from rule dicts (:meth:`from_rules`) or
    from JSON (:meth:`from_json`). Rules (``{"rule": name, ...options}``):

    - ``nfkc``; ``casefold`` (each character's Unicode lowercase mapping);
    - ``collapse_whitespace`` (runs of white space -> one space, or one newline when the run holds
      a line break; trimmed ends, no blank lines);
    - ``mask_numbers`` (``token="#"``): ``[0-9]+([.,][0-9]+)*`` -> token;
    - ``mask_ids`` (``token="<id>"``, ``min_len=6``): ``0x``-hex words and mixed letter+digit words
      of at least ``min_len`` characters -> token;
    - ``drop_lines`` (``patterns``): remove each line in which a regex matches;
    - ``keep_from_last`` (``pattern``): remove the text before the line of the last match;
    - ``replace`` (``pattern``, ``replacement``): regex replacement (``$1`` expands a group);
    - ``sort_enumerations`` (``articles``, ``conjunctions``, ``stop_words``, ``lines=False``):
      sort the items of "a x, a y and a z" lists, and with ``lines`` runs of lines that start
      with an article.

    Regexes use the Rust ``regex`` syntax and are compiled once, when the spec is built. Two specs
    are equal when their rules are; :attr:`fingerprint` is a stable 64-bit hash of the rules.
    """

    __slots__ = ("_inner",)
    _inner: _core.CanonSpec

    def __init__(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """Build a spec from rule dicts (the same as :meth:`from_rules`)."""
        if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Iterable):
            raise TypeError(f"rules: expected a list of rule dicts, got {type(rules).__name__}")
        try:
            text = json.dumps(list(rules))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"rules: must be JSON-serialisable rule dicts ({exc})") from None
        object.__setattr__(self, "_inner", _core.CanonSpec.from_rules_json(text))

    @classmethod
    def _wrap(cls, inner: _core.CanonSpec) -> CanonSpec:
        spec = cls.__new__(cls)
        object.__setattr__(spec, "_inner", inner)
        return spec

    @classmethod
    def from_rules(cls, rules: Sequence[Mapping[str, Any]]) -> CanonSpec:
        """Build a spec from a list of rule dicts, e.g. ``[{"rule": "nfkc"}, {"rule": "casefold"}]``.

        Raises ``ValueError`` naming the bad rule (``rules[2]: unknown variant ...``)."""
        return cls(rules)

    @classmethod
    def from_json(cls, text: str) -> CanonSpec:
        """Parse the JSON written by :meth:`to_json`."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        return cls._wrap(_core.CanonSpec.from_json(text))

    @classmethod
    def preset(cls, name: str) -> CanonSpec:
        """The preset called ``name``: one of ``generic``, ``textworld``, ``alfworld``,
        ``scienceworld``. Presets are built (their regexes compiled) once per process."""
        if not isinstance(name, str):
            raise TypeError(f"name: expected str, got {type(name).__name__}")
        return _preset(name)

    @classmethod
    def generic(cls) -> CanonSpec:
        """NFKC, case folding, drop counter/score lines, collapse white space, mask ids and numbers,
        sort enumerations (inline and one-per-line)."""
        return cls.preset("generic")

    @classmethod
    def default(cls) -> CanonSpec:
        """The default spec: :meth:`generic`."""
        return cls.preset("generic")

    @classmethod
    def textworld(cls) -> CanonSpec:
        """TextWorld: keep the observation from its last ``-= Room =-`` header on (drops the
        feedback, banners and status printed before it), drop counter/score and prompt lines,
        collapse white space, sort enumerations. Numbers are kept (entity names carry them)."""
        return cls.preset("textworld")

    @classmethod
    def alfworld(cls) -> CanonSpec:
        """ALFWorld: drop counter lines and the welcome banner, mask ``loc N`` location ids
        (instance numbers such as ``cabinet 3`` are kept), collapse white space, sort
        enumerations."""
        return cls.preset("alfworld")

    @classmethod
    def scienceworld(cls) -> CanonSpec:
        """ScienceWorld: drop counter lines, collapse white space, mask numbers (temperatures,
        counts), sort enumerations and one-item-per-line listings."""
        return cls.preset("scienceworld")

    def to_json(self) -> str:
        """The JSON form, ``{"version": 1, "rules": [...]}``; :meth:`from_json` reads it back."""
        return self._inner.to_json()

    @property
    def fingerprint(self) -> int:
        """Stable 64-bit fingerprint of the rules (the same in every process and platform)."""
        return self._inner.fingerprint

    @property
    def rules(self) -> list[dict[str, Any]]:
        """The rules as a new list of dicts (changing it does not change the spec)."""
        rules: list[dict[str, Any]] = json.loads(self._inner.to_json())["rules"]
        return rules

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CanonSpec):
            return NotImplemented
        return self._inner.to_json() == other._inner.to_json()

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CanonSpec is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("CanonSpec is immutable")

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (CanonSpec.from_json, (self.to_json(),))

    def __repr__(self) -> str:
        for name in _PRESETS:
            if self == CanonSpec.preset(name):
                return f"CanonSpec.{name}()"
        names = ", ".join(r["rule"] for r in self.rules)
        return f"CanonSpec.from_rules([{names}]) (fingerprint {self.fingerprint:016x})"


@functools.cache
def _preset(name: str) -> CanonSpec:
    return CanonSpec._wrap(_core.CanonSpec.preset(name))


def _spec(spec: CanonSpec | None) -> CanonSpec:
    if spec is None:
        return _preset("generic")
    if not isinstance(spec, CanonSpec):
        raise TypeError(f"spec: expected slea.CanonSpec or None, got {type(spec).__name__}")
    return spec


def _texts(texts: Iterable[str]) -> list[str] | tuple[str, ...]:
    if isinstance(texts, (list, tuple)):
        return texts
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts: expected a list of str, got {type(texts).__name__}")
    return list(texts)


def canonicalize(text: str, spec: CanonSpec | None = None) -> str:
    """The canonical text of one observation under ``spec`` (default: ``CanonSpec.default()``)."""
    return _spec(spec)._inner.canonicalize(text)


def structural_hash(text: str, spec: CanonSpec | None = None) -> int:
    """The structural hash of one observation: xxh3-64 of its canonical text, an int in
    [0, 2**64). The same value in every process, run and platform."""
    return _spec(spec)._inner.structural_hash(text)


def simhash(text: str, spec: CanonSpec | None = None) -> int:
    """64-bit SimHash of the word 3-shingles of the canonical text, an int in [0, 2**64).
    Near-identical texts differ in few bits."""
    return _spec(spec)._inner.simhash(text)


def canonicalize_batch(texts: Sequence[str], spec: CanonSpec | None = None) -> list[str]:
    """:func:`canonicalize` of each of ``n`` texts: a list of ``n`` str (GIL released)."""
    return _spec(spec)._inner.canonicalize_batch(_texts(texts))


def structural_hash_batch(
    texts: Sequence[str], spec: CanonSpec | None = None
) -> npt.NDArray[np.uint64]:
    """:func:`structural_hash` of each of ``n`` texts: ``np.ndarray`` of shape ``(n,)``, dtype
    uint64 (GIL released)."""
    return _spec(spec)._inner.structural_hash_batch(_texts(texts))


def simhash_batch(texts: Sequence[str], spec: CanonSpec | None = None) -> npt.NDArray[np.uint64]:
    """:func:`simhash` of each of ``n`` texts: ``np.ndarray`` of shape ``(n,)``, dtype uint64
    (GIL released)."""
    return _spec(spec)._inner.simhash_batch(_texts(texts))


def _cluster_id(cluster_id: object) -> int:
    try:
        value = operator.index(cluster_id)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"cluster_id: expected an int, got {type(cluster_id).__name__}") from None
    if not 0 <= value < 2**64:
        raise ValueError(f"cluster_id: must be in [0, 2**64), got {value}")
    return value


class ObservationClusterer:
    """Maps observations to clusters of structurally equivalent observations.

    ``assign(text)``: the text is canonicalised with ``canon`` and hashed; (1) a structural hash
    seen before returns its cluster; (2) otherwise the clusters whose prototype's SimHash agrees on
    one of ``bands`` bands are candidates, and the observation joins the most similar one if the
    similarity is at least ``threshold``; (3) otherwise a new cluster is made whose id is the
    structural hash of this first member and whose prototype is its canonical text.

    The similarity is the Jaccard index of the two canonical texts' sets of lines. Each line of a
    canonical observation is one statement about the state (header, description paragraph, exits,
    a sorted listing, inventory, feedback); structurally equivalent states make the same
    statements, and a near duplicate differs in a small share of them. Comparing whole statements
    keeps different states apart where a character ratio does not ("an open door" vs "a closed
    door" scores 0.97 as characters; one changed line of a 5-line observation scores 4/6 here).

    Args:
        threshold: minimum similarity in [0, 1] for joining a near-duplicate cluster (default
            0.85, the paper's delta).
        canon: the :class:`CanonSpec` (default ``CanonSpec.default()``).
        max_clusters: optional bound on the number of clusters; making one more first evicts the
            least used (fewest members, then least recently used).
        bands: number of SimHash bands of the LSH index (divides 64; more bands find more
            candidates).
        bucket_cap: capacity of one LSH bucket; a full bucket forgets its oldest cluster (still
            found by its structural hashes). Bounds the work per new observation at
            ``bands * bucket_cap`` similarity checks when many clusters look alike.

    Deterministic: ``assign_batch(xs)`` equals assigning ``xs`` one by one, and the same
    observations in the same order give the same ids in every process.
    """

    __slots__ = ("_canon", "_inner")
    _inner: _core.ObservationClusterer
    _canon: CanonSpec

    def __init__(
        self,
        threshold: float = 0.85,
        canon: CanonSpec | None = None,
        max_clusters: int | None = None,
        *,
        bands: int = 8,
        bucket_cap: int = 32,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"threshold: expected a float, got {type(threshold).__name__}")
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold: must be in [0, 1], got {threshold}")
        if canon is not None and not isinstance(canon, CanonSpec):
            raise TypeError(f"canon: expected slea.CanonSpec or None, got {type(canon).__name__}")
        if max_clusters is not None:
            if isinstance(max_clusters, bool) or not isinstance(max_clusters, numbers.Integral):
                raise TypeError(
                    f"max_clusters: expected an int or None, got {type(max_clusters).__name__}"
                )
            if max_clusters < 1:
                raise ValueError(f"max_clusters: must be at least 1, got {max_clusters}")
        if isinstance(bands, bool) or not isinstance(bands, numbers.Integral):
            raise TypeError(f"bands: expected an int, got {type(bands).__name__}")
        if bands not in (1, 2, 4, 8, 16, 32, 64):
            raise ValueError(f"bands: must divide 64 (1, 2, 4, 8, 16, 32 or 64), got {bands}")
        if isinstance(bucket_cap, bool) or not isinstance(bucket_cap, numbers.Integral):
            raise TypeError(f"bucket_cap: expected an int, got {type(bucket_cap).__name__}")
        if bucket_cap < 1:
            raise ValueError(f"bucket_cap: must be at least 1, got {bucket_cap}")
        spec = _spec(canon)
        mc = None if max_clusters is None else int(max_clusters)
        self._inner = _core.ObservationClusterer(
            spec._inner, float(threshold), mc, int(bands), int(bucket_cap)
        )
        self._canon = spec

    def assign(self, text: str) -> int:
        """The cluster id (an int in [0, 2**64)) of one observation; updates the clusters."""
        return self._inner.assign(text)

    def assign_batch(self, texts: Sequence[str]) -> npt.NDArray[np.uint64]:
        """Cluster ids of ``n`` observations, in order: ``np.ndarray`` of shape ``(n,)``, dtype
        uint64. The same as calling :meth:`assign` on each (GIL released)."""
        return self._inner.assign_batch(_texts(texts))

    def prototype(self, cluster_id: int) -> str:
        """The prototype of a cluster: the canonical text of its first member. ``KeyError`` when
        there is no such cluster."""
        return self._inner.prototype(_cluster_id(cluster_id))

    def size(self, cluster_id: int) -> int:
        """Number of observations assigned to a cluster. ``KeyError`` when there is none."""
        return self._inner.size(_cluster_id(cluster_id))

    def ids(self) -> npt.NDArray[np.uint64]:
        """Ids of the live clusters, oldest first (uint64 array)."""
        return self._inner.ids()

    def stats(self) -> dict[str, Any]:
        """Counters: ``clusters`` (live), ``observations``, ``exact_hits``, ``near_hits``,
        ``new_clusters``, ``evictions``, and ``size_histogram``: ``{k: n}`` where ``n`` live
        clusters have between ``k`` and ``2k - 1`` members (``k`` a power of two)."""
        return self._inner.stats()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the complete state to ``path`` atomically (temporary file, fsync, rename)."""
        self._inner.save(os.fspath(path))

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], canon: CanonSpec | None = None
    ) -> ObservationClusterer:
        """Read a clusterer written by :meth:`save`, in exactly the state it was saved in. With
        ``canon``, a snapshot made with another spec is refused (``slea.SnapshotError``)."""
        if canon is not None and not isinstance(canon, CanonSpec):
            raise TypeError(f"canon: expected slea.CanonSpec or None, got {type(canon).__name__}")
        inner = _core.ObservationClusterer.load(
            os.fspath(path), None if canon is None else canon._inner
        )
        self = cls.__new__(cls)
        self._inner = inner
        self._canon = CanonSpec._wrap(inner.spec)
        return self

    @property
    def threshold(self) -> float:
        """Minimum similarity for joining a near-duplicate cluster."""
        return self._inner.threshold

    @property
    def canon(self) -> CanonSpec:
        """The canonicalisation spec."""
        return self._canon

    @property
    def max_clusters(self) -> int | None:
        """Bound on the number of clusters (None: unbounded)."""
        return self._inner.max_clusters

    @property
    def bands(self) -> int:
        """Number of SimHash bands of the LSH index."""
        return self._inner.bands

    @property
    def bucket_cap(self) -> int:
        """Capacity of one LSH bucket."""
        return self._inner.bucket_cap

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, cluster_id: object) -> bool:
        try:
            value = _cluster_id(cluster_id)
        except (TypeError, ValueError):
            return False
        return self._inner.contains(value)

    def __repr__(self) -> str:
        return (
            f"ObservationClusterer(threshold={self.threshold}, canon={self.canon!r}, "
            f"max_clusters={self.max_clusters}, bands={self.bands}, bucket_cap={self.bucket_cap}, "
            f"clusters={len(self)})"
        )
