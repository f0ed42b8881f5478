"""Plain-Python reference for the HNSW index: exact cosine k-NN by looping over every entry.

Obviously correct and slow; the tests compare slea.HnswIndex against it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def normalise(vector: Sequence[float]) -> list[float]:
    """``vector / |vector|`` in double precision (raises ValueError for a zero vector)."""
    norm = math.sqrt(sum(float(x) * float(x) for x in vector))
    if norm == 0.0:
        raise ValueError("zero vector")
    return [float(x) / norm for x in vector]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two non-zero vectors."""
    ua, ub = normalise(a), normalise(b)
    return sum(x * y for x, y in zip(ua, ub))


def knn(
    entries: dict[int, tuple[Sequence[float], int]],
    query: Sequence[float],
    k: int,
    allowed: Iterable[int] | None = None,
) -> list[tuple[int, float]]:
    """The ``k`` entries most similar to ``query``: ``(id, cosine)``, best first, ties by id.

    ``entries`` maps id -> (vector, tag); ``allowed`` (if given) is the set of tags kept.
    """
    keep = None if allowed is None else set(allowed)
    scored = []
    for entry_id, (vector, tag) in entries.items():
        if keep is not None and tag not in keep:
            continue
        scored.append((entry_id, cosine(vector, query)))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:k]
