"""Our restatement of the two observation clusterings slea is measured against.

- :class:`ReleasedClusterer`: the clustering of the released SLEA-RL code (``ObservationIndex`` in
  ``verl/trainer/ppo/forge/step_experience.py``): a signature (the first 300 characters of the
  stripped observation) selects a bucket; within the bucket, the observation joins the first
  cluster whose prototype is identical or has a ``difflib.SequenceMatcher`` ratio >= threshold on
  the first 500 characters of both; otherwise a new cluster is made. At ``max_clusters`` (500 in the
  released code) the least used cluster (fewest members, the oldest among ties) is evicted first.
- :class:`SleaRefClusterer`: slea's own semantics, written as plain Python, for differential tests.
- :class:`PaperClusterer`: the paper's plain formulation, ``c(o) = c_i if sim(o, rep(c_i)) >=
  delta`` with the same ratio tried against every prototype in creation order (O(|C|) per
  observation), first fit, no bound.

Cluster ids are consecutive integers in creation order. Written from the descriptions above; no
code is copied.
"""

from __future__ import annotations

from collections import defaultdict
from difflib import SequenceMatcher

try:  # pytest puts tests/ on sys.path; benches import tests.reference.*
    from reference import canon_ref
except ImportError:  # pragma: no cover
    from tests.reference import canon_ref


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


class SleaRefClusterer:
    """Plain-Python restatement of slea's ``ObservationClusterer`` (rust/slea-core/src/cluster.rs).

    ``canon`` maps an observation to its canonical text and ``hash64`` a canonical text to its
    structural hash (xxh3-64, taken from slea with an empty spec: it is tested on its own). The
    SimHash and the line-set Jaccard come from canon_ref. Ids are the structural hash of each
    cluster's first member.
    """

    def __init__(self, canon, hash64, threshold=0.85, bands=8, max_clusters=None, bucket_cap=32):
        self.ref = canon_ref
        self.canon, self.hash64 = canon, hash64
        self.threshold, self.bands, self.max_clusters = threshold, bands, max_clusters
        self.bucket_cap = bucket_cap
        self.exact: dict[int, int] = {}  # structural hash -> cluster id
        self.clusters: dict[int, dict] = {}  # id -> {lines, simhash, hits, last, created, aliases}
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.seq = 0
        self.counts = {"exact_hits": 0, "near_hits": 0, "new_clusters": 0, "evictions": 0}

    def _keys(self, sh: int) -> list[tuple[int, int]]:
        width = 64 // self.bands
        return [(b, (sh >> (b * width)) & ((1 << width) - 1)) for b in range(self.bands)]

    def assign(self, text: str) -> int:
        canonical = self.canon(text)
        h = self.hash64(canonical)
        self.seq += 1
        if h in self.exact:
            self.counts["exact_hits"] += 1
            return self._touch(self.exact[h])
        sh = self.ref.simhash(canonical)
        lines = self.ref.line_set(canonical)
        candidates = {cid for key in self._keys(sh) for cid in self.buckets.get(key, ())}
        best = None
        for cid in candidates:
            c = self.clusters[cid]
            s = self.ref.jaccard(lines, c["lines"])
            if s >= self.threshold and (
                best is None or (s, -c["created"]) > (best[0], -self.clusters[best[1]]["created"])
            ):
                best = (s, cid)
        if best is not None:
            self.counts["near_hits"] += 1
            self.exact[h] = best[1]
            self.clusters[best[1]]["aliases"].append(h)
            return self._touch(best[1])
        if self.max_clusters is not None:
            while len(self.clusters) >= self.max_clusters:
                self._evict()
        self.counts["new_clusters"] += 1
        self.clusters[h] = {
            "lines": lines,
            "simhash": sh,
            "hits": 1,
            "last": self.seq,
            "created": self.seq,
            "aliases": [h],
            "prototype": canonical,
            "indexed": set(),
        }
        self.exact[h] = h
        for key in self._keys(sh):
            bucket = self.buckets[key]
            if len(bucket) >= self.bucket_cap:  # a full bucket forgets its oldest cluster
                self.clusters[bucket.pop(0)]["indexed"].discard(key)
            bucket.append(h)
            self.clusters[h]["indexed"].add(key)
        return h

    def _touch(self, cid: int) -> int:
        self.clusters[cid]["hits"] += 1
        self.clusters[cid]["last"] = self.seq
        return cid

    def _evict(self) -> None:
        victim = min(self.clusters, key=lambda c: (self.clusters[c]["hits"], self.clusters[c]["last"]))
        c = self.clusters.pop(victim)
        for a in c["aliases"]:
            del self.exact[a]
        for key in c["indexed"]:
            self.buckets[key].remove(victim)
        self.counts["evictions"] += 1
