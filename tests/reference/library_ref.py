"""Plain-Python reference of the experience library's rules (our own restatement).

It restates, in the simplest loops we could write, what ``rust/slea-core/src/library.rs`` does:
admission (validation, per-zone token buckets on the iteration clock, novelty by cosine within
the zone, score-based admission with eviction of the lowest, ties to the oldest), provenance
merging, cluster pools (bounded per zone, the least recently used eighth dropped beyond the bound,
dangling links removed), pool retrieval, the semantic fallback as an exact scan, and outcome
credit with the optional EMA. The Rust library is tested against it on random streams; nothing
here is optimised.

Text sanitising is not modelled: callers give clean text or one of the invalid forms listed in
``INVALID_TEXTS`` (empty, whitespace, a bare role marker), or text over the length limit.

The file also restates the hashing embedder (``rust/slea-core/src/embed.rs``) bit for bit.
"""

import math
from collections.abc import Sequence

import numpy as np

ZONES = ("strategy", "warning")
LEVELS = ("principle", "pattern", "example")
INVALID_TEXTS = ("", "   ", "system:", "<|im_start|>")


def cosine(a, b):
    """Dot product of two unit vectors (in float64)."""
    return sum(float(x) * float(y) for x, y in zip(a, b))


class RefLibrary:
    """The library's rules over plain dicts and lists."""

    def __init__(self, capacity, rate, novelty, fallback, max_chars, pool_size, max_clusters,
                 max_provenance, ema_alpha=None):
        self.capacity = dict(zip(ZONES, capacity))
        self.rate = dict(zip(ZONES, rate))
        self.novelty = novelty
        self.fallback = fallback
        self.max_chars = max_chars
        self.pool_size = pool_size
        self.max_clusters = max_clusters
        self.max_provenance = max_provenance
        self.ema_alpha = ema_alpha
        self.entries = {}  # id -> dict
        self.tokens = dict(self.rate)
        self.clock = {z: 0.0 for z in ZONES}
        self.pools = {}  # cluster -> {"strategy": [ids], "warning": [ids], "last_used": int}
        self.next_id = 1
        self.next_seq = 0
        self.tick = 0

    # ---- helpers -------------------------------------------------------------------------

    def merged(self, old, new):
        out = list(old)
        for x in new:
            if x not in out:
                out.append(x)
        return out[len(out) - self.max_provenance:] if len(out) > self.max_provenance else out

    def key(self, e):
        return (e["score"], e["seq"], e["id"])

    def level_entries(self, zone, level):
        return [e for e in self.entries.values() if e["zone"] == zone and e["level"] == level]

    # ---- admission -----------------------------------------------------------------------

    def admit(self, candidates, iteration):
        """candidates: dicts with text, zone, level, score, episode_ids, cluster_ids, vector.
        Returns one (outcome, entry_id, evicted) per candidate."""
        return [self.admit_one(c, iteration) for c in candidates]

    def admit_one(self, c, iteration):
        text = " ".join(c["text"].split())
        if text in INVALID_TEXTS or not text or len(text) > self.max_chars:
            return ("invalid", None, [])
        zone = c["zone"]
        if iteration > self.clock[zone]:
            self.tokens[zone] = min(self.rate[zone],
                                    self.tokens[zone] + (iteration - self.clock[zone]) * self.rate[zone])
            self.clock[zone] = iteration
        if self.tokens[zone] < 1.0:
            return ("rate_limited", None, [])
        best = None
        for e in sorted(self.entries.values(), key=lambda e: e["id"]):
            if e["zone"] != zone:
                continue
            cos = cosine(e["vector"], c["vector"])
            if best is None or cos > best[1]:
                best = (e["id"], cos)
        if best is not None and best[1] >= self.novelty:
            e = self.entries[best[0]]
            e["score"] = max(e["score"], c["score"])
            e["episode_ids"] = self.merged(e["episode_ids"], c["episode_ids"])
            e["cluster_ids"] = self.merged(e["cluster_ids"], c["cluster_ids"])
            e["iteration"] = max(e["iteration"], iteration)
            for cl in self.merged([], c["cluster_ids"]):
                self.link_one(cl, e["id"])
            return ("duplicate", e["id"], [])
        level_now = self.level_entries(zone, c["level"])
        evicted = []
        if len(level_now) >= self.capacity[zone]:
            if not level_now:
                return ("below_floor", None, [])
            lowest = min(level_now, key=self.key)
            if not c["score"] > lowest["score"]:
                return ("below_floor", None, [])
            evicted.append(lowest["id"])
            self.remove(lowest["id"])
        self.tokens[zone] -= 1.0
        eid = self.next_id
        self.next_id += 1
        self.entries[eid] = {
            "id": eid, "zone": zone, "level": c["level"], "score": c["score"],
            "seq": self.next_seq, "vector": c["vector"], "text": text,
            "episode_ids": self.merged([], c["episode_ids"]),
            "cluster_ids": self.merged([], c["cluster_ids"]),
            "iteration": iteration, "created_iteration": iteration,
            "retrieved": 0, "successes": 0, "failures": 0,
        }
        self.next_seq += 1
        for cl in self.merged([], c["cluster_ids"]):
            self.link_one(cl, eid)
        return ("admitted", eid, evicted)

    def remove(self, eid):
        del self.entries[eid]
        for cl in list(self.pools):
            pool = self.pools[cl]
            for z in ZONES:
                pool[z] = [x for x in pool[z] if x != eid]
            if not pool["strategy"] and not pool["warning"]:
                del self.pools[cl]

    # ---- pools and retrieval ---------------------------------------------------------------

    def link_one(self, cluster, eid):
        e = self.entries[eid]
        if cluster not in self.pools and len(self.pools) >= self.max_clusters:
            n = max(1, -(-len(self.pools) // 8))
            for cl in sorted(self.pools, key=lambda cl: (self.pools[cl]["last_used"], cl))[:n]:
                del self.pools[cl]
        self.tick += 1
        pool = self.pools.setdefault(cluster, {"strategy": [], "warning": [], "last_used": 0})
        pool["last_used"] = self.tick
        ids = pool[e["zone"]]
        if eid in ids:
            return
        if len(ids) < self.pool_size:
            ids.append(eid)
            return
        i_low = min(range(len(ids)), key=lambda i: self.key(self.entries[ids[i]]))
        if self.key(e) > self.key(self.entries[ids[i_low]]):
            ids[i_low] = eid

    def retrieve_hit(self, cluster, k_strategy, k_warning):
        """Ids from the cluster's pool, or None when it has no pool."""
        pool = self.pools.get(cluster)
        if pool is None:
            return None
        self.tick += 1
        pool["last_used"] = self.tick
        out = []
        for z, k in (("strategy", k_strategy), ("warning", k_warning)):
            es = sorted((self.entries[i] for i in pool[z]), key=lambda e: (-e["score"], e["seq"]))
            out.extend(e["id"] for e in es[:k])
        return out

    def retrieve(self, cluster, query, k_strategy, k_warning):
        """Pool answer, else the exact fallback (linked to the cluster)."""
        hit = self.retrieve_hit(cluster, k_strategy, k_warning)
        if hit is not None:
            return hit
        out = []
        for z, k in (("strategy", k_strategy), ("warning", k_warning)):
            scored = sorted(((cosine(e["vector"], query), e["id"]) for e in self.entries.values()
                             if e["zone"] == z), key=lambda t: (-t[0], t[1]))
            out.extend(i for c, i in scored[:k] if c > self.fallback)
        for i in out:
            self.link_one(cluster, i)
        return out

    # ---- usage -----------------------------------------------------------------------------

    def record_outcome(self, ids, success, reward=None):
        """Credit existing ids (unknown ones are skipped); returns the distinct count."""
        counts = {}
        for i in ids:
            if i in self.entries:
                counts[i] = counts.get(i, 0) + 1
        target = reward if reward is not None else (1.0 if success else 0.0)
        for i, n in counts.items():
            e = self.entries[i]
            e["retrieved"] += n
            e["successes" if success else "failures"] += 1
            if self.ema_alpha is not None:
                e["score"] = (1.0 - self.ema_alpha) * e["score"] + self.ema_alpha * target
        return len(counts)


# ---- hashing embedder -----------------------------------------------------------------------

_MASK = (1 << 64) - 1


def _fnv_splitmix(tag, data):
    h = 0xCBF29CE484222325
    for b in bytes([tag]) + data:
        h ^= b
        h = (h * 0x100000001B3) & _MASK
    z = h
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _add(acc, h, w):
    acc[h % len(acc)] += -w if h >> 63 else w


def _trigrams(word, acc):
    chars = ["<", *word, ">"]
    for i in range(len(chars) - 2):
        _add(acc, _fnv_splitmix(3, "".join(chars[i:i + 3]).encode("utf-8")), 0.25)


def hashing_embed_ref(text, dim):
    """The hashing embedder: list of ``dim`` floats (rounded to float32 by the caller)."""
    acc = [0.0] * dim
    lowered = "".join(ch.lower() if ch.isalnum() else " " for ch in text)
    words = [w for w in lowered.split(" ") if w]
    if not words:
        rest = "".join(ch.lower() for ch in text if ch not in " \t\r\n")
        if rest:
            _trigrams(rest, acc)
    prev = None
    for w in words:
        _add(acc, _fnv_splitmix(1, w.encode("utf-8")), 1.0)
        if prev is not None:
            _add(acc, _fnv_splitmix(2, (prev + " " + w).encode("utf-8")), 0.5)
        _trigrams(w, acc)
        prev = w
    norm = math.sqrt(sum(x * x for x in acc))
    return [x / norm if norm > 0 else 0.0 for x in acc]


# ---- fixtures shared by the library tests ----------------------------------------------------

# (cos to e_j, cos to e_{j+1}) of the three variants of a direction j; pairwise cosines are
# 1.0, 0.9, 0.8, 0.98, 0.72, 0.6, 0.54, 0.44, 0.39: never near the 0.85 novelty threshold.
VARIANTS = {0: (1.0, 0.0), 1: (0.9, 0.4358898943540674), 2: (0.8, 0.6)}


class GridEmbedder:
    """Texts ``"t<j> v<var>"`` map to fixed vectors near direction ``j``; ``"q<j>"`` to ``e_j``.

    Deterministic and exact, so novelty and fallback decisions are reproducible in a reference.
    Any other text maps to a fixed direction derived from its length.
    """

    def __init__(self, dim: int = 12) -> None:
        self.dim = dim
        self.name = f"grid-test-{dim}"

    def vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float64)
        parts = text.split()
        try:
            j = int(parts[0][1:]) % self.dim
            var = int(parts[1][1:]) if len(parts) > 1 else 0
            a, b = VARIANTS[var]
        except (IndexError, ValueError, KeyError):
            j, a, b = len(text) % self.dim, 1.0, 0.0
        v[j] += a
        v[(j + 1) % self.dim] += b
        return (v / np.linalg.norm(v)).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vector(t) for t in texts])


def small_config(**kw):
    """A LibraryConfig with small capacities for tests (override any field)."""
    import slea

    base = {
        "strategy_capacity": 3,
        "warning_capacity": 2,
        "max_strategies_per_step": 4,
        "max_warnings_per_step": 2,
        "cluster_pool_size": 2,
        "max_clusters": 4,
        "max_provenance": 3,
        "max_text_chars": 40,
    }
    base.update(kw)
    return slea.LibraryConfig(**base)


def cand(text, zone="strategy", level="principle", score=1.0, **kw):
    """A Candidate with defaults."""
    import slea

    return slea.Candidate(text, zone, level, score, **kw)
