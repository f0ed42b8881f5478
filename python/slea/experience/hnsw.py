"""HNSW approximate nearest-neighbour index on unit vectors (cosine), implemented in Rust.

The experience library uses it for semantic fallback retrieval; it is public so that it can be
benchmarked against hnswlib (``python -m benches hnsw``) and used on its own::

    import numpy as np, slea
    index = slea.HnswIndex(384, m=16, ef_construction=200, ef=40)
    index.add(np.arange(1000, dtype=np.uint64), vectors)          # (1000, 384) float32
    ids, scores = index.search(vectors[0], k=10)                   # best first, cosine scores
    ids, scores = index.search(vectors[:64], k=10, tag_filter={1, 2})   # (64, 10) each
    index.remove(17)
    index.save("index.hnsw"); again = slea.HnswIndex.load("index.hnsw")

Vectors are normalised to unit length on the way in (so scores are cosines whatever the input
norm); NaN/infinite components and zero vectors are rejected with ``ValueError``. Every entry
has a ``uint32`` tag that ``tag_filter`` selects on during the graph search.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from slea import _core

__all__ = ["HnswIndex"]

_U64_MAX = 2**64 - 1
_U32_MAX = 2**32 - 1
_I63_MAX = 2**63 - 1
_MAX_DIM = 1 << 16
_MAX_M = 4096
_F32_MAX = float(np.finfo(np.float32).max)


def _int_in(value: object, name: str, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]`` (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return int(value)


def _positive_int(value: object, name: str) -> int:
    return _int_in(value, name, 1, _I63_MAX)


def _uint_array(values: object, name: str, top: int, dtype: type[np.generic]) -> np.ndarray:
    """1-D array of integers in ``[0, top]`` (a scalar becomes one element)."""
    arr = np.asarray(values)
    if arr.size == 0 and arr.ndim <= 1:
        return np.zeros(0, dtype=dtype)
    if arr.dtype == object:
        flat = arr.reshape(-1).tolist()
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in flat):
            raise TypeError(f"{name} must be integers")
        if any(v < 0 or v > top for v in flat):
            raise ValueError(f"{name} must lie in [0, {top}]")
        arr = np.array(flat, dtype=dtype).reshape(arr.shape)
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    elif arr.size and (int(arr.min()) < 0 or int(arr.max()) > top):
        raise ValueError(f"{name} must lie in [0, {top}]")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr.reshape(-1), dtype=dtype)


def _float_rows(values: object, name: str, dim: int) -> np.ndarray:
    """C-contiguous float32 array of shape (n, dim) (a 1-D vector becomes one row)."""
    arr = np.asarray(values)
    shape = arr.shape
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}) or ({dim},), got {shape}")
    if arr.dtype != np.float32:
        if arr.size and arr.dtype.kind == "f":
            finite = arr[np.isfinite(arr)]
            if finite.size and float(np.abs(finite).max()) > _F32_MAX:
                raise ValueError(f"{name}: values exceed the float32 range")
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def _tag_set(tag_filter: Iterable[int] | npt.ArrayLike) -> np.ndarray:
    if isinstance(tag_filter, (str, bytes)):
        raise TypeError("tag_filter must be a collection of int tags")
    values = list(tag_filter) if isinstance(tag_filter, (set, frozenset)) else tag_filter
    return np.unique(_uint_array(values, "tag_filter", _U32_MAX, np.uint32))


class HnswIndex:
    """HNSW index of unit vectors with ``uint64`` ids and ``uint32`` tags (cosine similarity).

    Args:
        dim: vector dimension, 1 to 65536.
        m: links per node on upper layers (``2 m`` on layer 0), 2 to 4096.
        ef_construction: candidate list size while inserting (quality of the graph).
        ef: default candidate list size while searching (raised to ``k`` when smaller).
        seed: seed of the level generator; same seed and same operations give the same graph.
        flat_threshold: at most this many live entries (or entries passing a filter) are
            searched exactly by a flat scan.
        max_elements: most live entries accepted, up to ``2**32 - 1`` (``None``: unbounded);
            memory for them is reserved up front.
    """

    __slots__ = ("_dim", "_inner")

    def __init__(
        self,
        dim: int,
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef: int = 40,
        seed: int = 42,
        flat_threshold: int = 256,
        max_elements: int | None = None,
    ) -> None:
        dim = _int_in(dim, "dim", 1, _MAX_DIM)
        m = _int_in(m, "m", 2, _MAX_M)
        ef_construction = _positive_int(ef_construction, "ef_construction")
        ef = _positive_int(ef, "ef")
        seed = _int_in(seed, "seed", 0, _U64_MAX)
        flat_threshold = _int_in(flat_threshold, "flat_threshold", 0, _I63_MAX)
        if max_elements is not None:
            max_elements = _int_in(max_elements, "max_elements", 1, _U32_MAX)
        self._inner = _core.HnswIndex(
            dim, m, ef_construction, ef, seed, flat_threshold, max_elements
        )
        self._dim = dim

    @classmethod
    def _wrap(cls, inner: _core.HnswIndex) -> HnswIndex:
        obj = cls.__new__(cls)
        obj._inner = inner
        obj._dim = inner.params()[0]
        return obj

    # -- parameters -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def m(self) -> int:
        """Links per node on upper layers (``2 m`` on layer 0)."""
        return self._inner.params()[1]

    @property
    def ef_construction(self) -> int:
        """Candidate list size used while inserting."""
        return self._inner.params()[2]

    @property
    def ef(self) -> int:
        """Default candidate list size used while searching (see :meth:`set_ef`)."""
        return self._inner.params()[3]

    @property
    def seed(self) -> int:
        """Seed of the level generator."""
        return self._inner.params()[4]

    @property
    def flat_threshold(self) -> int:
        """Live entries (or filtered entries) at or below which search is an exact scan."""
        return self._inner.params()[5]

    @property
    def max_elements(self) -> int | None:
        """Most live entries accepted, or ``None``."""
        return self._inner.params()[6]

    def set_ef(self, ef: int) -> None:
        """Set the default search candidate list size (at least 1)."""
        self._inner.set_ef(_positive_int(ef, "ef"))

    # -- mutation ---------------------------------------------------------------------------

    def add(
        self, ids: npt.ArrayLike, vectors: npt.ArrayLike, tags: npt.ArrayLike | None = None
    ) -> None:
        """Insert entries; all-or-nothing.

        Args:
            ids: ``n`` distinct non-negative integer ids (``uint64``), none already present;
                a scalar with a 1-D vector inserts one entry.
            vectors: ``(n, dim)`` real numbers (or ``(dim,)`` for one entry); normalised to
                unit length. NaN/infinite components and zero vectors raise ``ValueError``.
            tags: ``n`` tags in ``[0, 2**32)``, one scalar for all, or ``None`` for 0.

        Raises ``ValueError`` (naming the argument) for any invalid row or a duplicate id, and
        then nothing is inserted. Tombstoned slots of removed entries are reused first.
        The GIL is released while the graph is updated.
        """
        self._add(ids, vectors, tags, upsert=False)

    def upsert(
        self, ids: npt.ArrayLike, vectors: npt.ArrayLike, tags: npt.ArrayLike | None = None
    ) -> None:
        """As :meth:`add`, but an id already present gets the new vector and tag."""
        self._add(ids, vectors, tags, upsert=True)

    def _add(self, ids: Any, vectors: Any, tags: Any, *, upsert: bool) -> None:
        id_arr = _uint_array(ids, "ids", _U64_MAX, np.uint64)
        rows = _float_rows(vectors, "vectors", self.dim)
        if rows.shape[0] != id_arr.shape[0]:
            raise ValueError(f"vectors has {rows.shape[0]} rows but ids has {id_arr.shape[0]}")
        if tags is None:
            tag_arr = np.zeros(id_arr.shape[0], dtype=np.uint32)
        else:
            tag_arr = _uint_array(tags, "tags", _U32_MAX, np.uint32)
            if tag_arr.shape[0] == 1 and id_arr.shape[0] != 1 and np.ndim(tags) == 0:
                tag_arr = np.full(id_arr.shape[0], tag_arr[0], dtype=np.uint32)
            if tag_arr.shape[0] != id_arr.shape[0]:
                raise ValueError(
                    f"tags has {tag_arr.shape[0]} entries but ids has {id_arr.shape[0]}"
                )
        self._inner.add(id_arr, rows, tag_arr, upsert)

    def remove(self, ids: npt.ArrayLike) -> None:
        """Remove one id or a 1-D collection of ids; all-or-nothing.

        Raises ``KeyError`` if an id is not present, ``ValueError`` if one repeats. Removed entries are
        tombstoned: they still route searches, are never returned, and their slots are reused
        by later inserts.
        """
        self._inner.remove(_uint_array(ids, "ids", _U64_MAX, np.uint64))

    # -- queries ----------------------------------------------------------------------------

    def search(
        self,
        query: npt.ArrayLike,
        k: int = 10,
        *,
        ef: int | None = None,
        tag_filter: Iterable[int] | npt.ArrayLike | None = None,
        num_threads: int = 1,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """The ``k`` most similar live entries, best first (ties by id).

        Args:
            query: ``(dim,)`` for one query or ``(q, dim)`` for a batch; normalised.
            k: hits wanted (at least 1).
            ef: candidate list size (default :attr:`ef`; raised to ``k``).
            tag_filter: allowed tags (a set, list or array of ints); only entries whose tag
                is in it are returned. The filter is applied inside the graph search.
            num_threads: threads for a batch, 1 to 1024 (the GIL is released either way).

        Returns:
            ``(ids, scores)``: ``uint64`` ids and ``float32`` cosine similarities, of shape
            ``(w,)`` for one query or ``(q, w)`` for a batch, where
            ``w = min(k, number of live entries passing the filter)``.
        """
        if type(k) is not int:
            k = _positive_int(k, "k")
        elif k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if ef is not None:
            ef = _positive_int(ef, "ef")
        allowed = None if tag_filter is None else _tag_set(tag_filter)
        if (
            isinstance(query, np.ndarray)
            and query.ndim == 1
            and query.dtype == np.float32
            and query.shape[0] == self._dim
        ):
            return self._inner.search_one(query, k, ef, allowed)
        rows = _float_rows(query, "query", self.dim)
        if np.ndim(query) == 1:
            return self._inner.search_one(rows[0], k, ef, allowed)
        threads = _int_in(num_threads, "num_threads", 1, 1024)
        return self._inner.search(rows, k, ef, allowed, threads)

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, id: object) -> bool:
        if isinstance(id, bool) or not isinstance(id, (int, np.integer)):
            return False
        return bool(0 <= id <= _U64_MAX) and self._inner.contains(int(id))

    def ids(self) -> npt.NDArray[np.uint64]:
        """Ids of all live entries, ascending."""
        return self._inner.ids()

    def memory_bytes(self) -> int:
        """Bytes held by the index (vectors, links, per-entry fields, maps, one visited list)."""
        return self._inner.memory_bytes()

    def stats(self) -> dict[str, Any]:
        """Shape of the graph: slots, live, deleted, max_level, nodes_per_level,
        mean_degree0 (layer-0 links per slot) and the dot-product kernel in use."""
        return dict(self._inner.stats())

    def __repr__(self) -> str:
        return (
            f"HnswIndex(dim={self.dim}, m={self.m}, ef_construction={self.ef_construction}, "
            f"ef={self.ef}, len={len(self)})"
        )

    # -- persistence ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole index as bytes (versioned, checksummed)."""
        return self._inner.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> HnswIndex:
        """Inverse of :meth:`to_bytes`; raises :class:`slea.SnapshotError` on any corruption."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return cls._wrap(_core.HnswIndex.from_bytes(bytes(data)))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` atomically (temporary file, fsync, rename, fsync dir)."""
        _core.write_file_atomic(os.fspath(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HnswIndex:
        """Read an index written by :meth:`save`; raises :class:`slea.SnapshotError` if corrupt."""
        return cls.from_bytes(Path(path).read_bytes())
