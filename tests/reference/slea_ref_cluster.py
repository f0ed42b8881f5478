"""Our restatement of the two observation clusterings slea is measured against.

- :class:`ReleasedClusterer`: the clustering of the released SLEA-RL code (``ObservationIndex`` in
  ``verl/trainer/ppo/forge/step_experience.py``): a signature (the first 300 characters of the
  stripped observation) selects a bucket; within the bucket, the observation joins the first
  cluster whose prototype is identical or has a ``difflib.SequenceMatcher`` ratio >= threshold on
  the first 500 characters of both; otherwise a new cluster is made. At ``max_clusters`` (500 in the
  released code) the least used cluster (fewest members, the oldest among ties) is evicted first.
- :class:`PaperClusterer`: the paper's plain formulation, ``c(o) = c_i if sim(o, rep(c_i)) >=
  delta`` with the same ratio tried against every prototype in creation order (O(|C|) per
  observation), first fit, no bound.

Cluster ids are consecutive integers in creation order. Written from the descriptions above; no
code is copied.
"""

from __future__ import annotations

from collections import defaultdict
from difflib import SequenceMatcher


def ratio(a: str, b: str) -> float:
    """The released similarity: SequenceMatcher ratio of the first 500 characters."""
    return SequenceMatcher(None, a[:500], b[:500]).ratio()


class ReleasedClusterer:
    def __init__(self, threshold: float = 0.85, max_clusters: int | None = 500):
        self.threshold = threshold
        self.max_clusters = max_clusters
        self.buckets: dict[str, list[int]] = defaultdict(list)
        self.prototype: dict[int, str] = {}
        self.members: dict[int, int] = {}
        self.signature_of: dict[int, str] = {}
        self.created = 0

    def assign(self, observation: str) -> int:
        signature = observation.strip()[:300]
        for cid in self.buckets.get(signature, ()):
            rep = self.prototype[cid]
            if observation == rep or ratio(observation, rep) >= self.threshold:
                self.members[cid] += 1
                return cid
        if self.max_clusters is not None and len(self.prototype) >= self.max_clusters:
            self._evict()
        cid = self.created
        self.created += 1
        self.prototype[cid] = observation
        self.members[cid] = 1
        self.signature_of[cid] = signature
        self.buckets[signature].append(cid)
        return cid

    def _evict(self) -> None:
        victim = min(self.prototype, key=lambda c: (self.members[c], c))
        self.buckets[self.signature_of[victim]].remove(victim)
        del self.prototype[victim], self.members[victim], self.signature_of[victim]


class PaperClusterer:
    def __init__(self, threshold: float = 0.85):
        self.threshold = threshold
        self.prototypes: list[str] = []

    def assign(self, observation: str) -> int:
        for cid, rep in enumerate(self.prototypes):
            if ratio(observation, rep) >= self.threshold:
                return cid
        self.prototypes.append(observation)
        return len(self.prototypes) - 1
