//! Observation clustering: each observation gets the id of a cluster of structurally equivalent
//! observations.
//!
//! `assign(text)`:
//! 1. canonicalise `text` with the clusterer's [`CanonSpec`] and take its structural hash `h`;
//! 2. exact hit: if `h` was seen before (as a cluster's first member or as a text that joined a
//!    cluster), the observation joins that cluster;
//! 3. near duplicate: otherwise the clusters whose prototype's SimHash equals the observation's on
//!    at least one band (`bands` bands of `64 / bands` bits: the LSH index) are candidates; the
//!    observation joins the candidate with the highest similarity if that similarity is at least
//!    `threshold` (ties: the oldest cluster), and `h` becomes an alias of that cluster;
//! 4. new cluster: otherwise a new cluster is made; its id is `h` and its prototype is the
//!    canonical text.
//!
//! The similarity is the Jaccard index of the sets of lines of the two canonical texts. A line of
//! a canonical observation is one statement about the state: the room header, a description
//! paragraph, the exits, one listing (items sorted), the inventory, a feedback message. Two
//! observations show structurally equivalent states when they make the same statements; a near
//! duplicate differs from its prototype in a small share of them (a feedback line in front, one
//! changed entry of a long one-item-per-line listing). Comparing whole statements, never
//! characters, is what keeps different states apart: a character-level ratio (the paper's
//! `SequenceMatcher`) scores "there is an open door" against "there is a closed door", or an
//! inventory with and without a key, above 0.9 and merges those states; here one changed statement
//! of a typical 5-line text-game observation scores at most 4/6 = 0.67.
//!
//! Optionally the number of clusters is bounded: making a cluster beyond `max_clusters` first
//! evicts the least used one (fewest members; among those, the least recently used). Everything is
//! deterministic: the same observations in the same order give the same ids in every process, and
//! `assign_batch(xs)` equals assigning `xs` one by one. `to_bytes`/`save` and `from_bytes`/`load`
//! restore the exact state and refuse a snapshot made with another [`CanonSpec`].

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::mem;
use std::path::Path;

use crate::canon::{CanonSpec, Scratch};
use crate::error::{Error, Result};
use crate::hash::{line_hashes, line_jaccard, mix64, simhash, structural_hash};
use crate::snapshot::{read_file, write_atomic, ByteReader, ByteWriter, Snapshot, SnapshotWriter};

/// Parameters of an [`ObservationClusterer`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterParams {
    /// Minimum line-set Jaccard similarity, in [0, 1], for joining a near-duplicate cluster.
    pub threshold: f64,
    /// Bound on the number of live clusters (least used evicted first); `None`: unbounded.
    pub max_clusters: Option<usize>,
    /// Number of SimHash bands of the LSH index; divides 64.
    pub bands: u32,
    /// Capacity of one LSH bucket: a full bucket forgets its oldest cluster (which stays
    /// reachable by its structural hashes). Bounds the work per observation at
    /// `bands * bucket_cap` candidates when many clusters look alike.
    pub bucket_cap: usize,
}

impl Default for ClusterParams {
    fn default() -> Self {
        ClusterParams {
            threshold: 0.85,
            max_clusters: None,
            bands: 8,
            bucket_cap: 32,
        }
    }
}

impl ClusterParams {
    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(Error::invalid(
                "threshold",
                format!("must be in [0, 1], got {}", self.threshold),
            ));
        }
        if self.max_clusters == Some(0) {
            return Err(Error::invalid(
                "max_clusters",
                "must be at least 1 (or None)",
            ));
        }
        if self.bucket_cap == 0 {
            return Err(Error::invalid("bucket_cap", "must be at least 1"));
        }
        if self.bands == 0 || 64 % self.bands != 0 {
            return Err(Error::invalid(
                "bands",
                format!(
                    "must divide 64 (1, 2, 4, 8, 16, 32 or 64), got {}",
                    self.bands
                ),
            ));
        }
        Ok(())
    }
}

/// Counters and the size histogram of a clusterer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStats {
    /// Live clusters.
    pub clusters: usize,
    /// Observations assigned so far.
    pub observations: u64,
    /// Assignments decided by the structural hash.
    pub exact_hits: u64,
    /// Assignments to a near-duplicate cluster.
    pub near_hits: u64,
    /// Clusters made.
    pub new_clusters: u64,
    /// Clusters evicted by the `max_clusters` bound.
    pub evictions: u64,
    /// `(k, n)`: `n` live clusters have between `k` and `2k - 1` members (`k` a power of two).
    pub size_histogram: Vec<(u64, u64)>,
}

/// Hasher for keys that are already hashes or small integers: one SplitMix64 finaliser.
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

type U64Map<V> = HashMap<u64, V, BuildHasherDefault<MixHasher>>;

#[derive(Debug, Clone)]
struct Cluster {
    id: u64,
    created: u64,
    hits: u64,
    last_used: u64,
    simhash: u64,
    prototype: String,
    lines: Vec<u64>,
    aliases: Vec<u64>,
    /// Bit `b` set: the cluster is in its bucket of band `b`.
    indexed: u64,
}

/// The clusterer (see the module docs).
#[derive(Debug, Clone)]
pub struct ObservationClusterer {
    spec: CanonSpec,
    params: ClusterParams,
    slots: Vec<Option<Cluster>>,
    free: Vec<u32>,
    live: usize,
    by_id: U64Map<u32>,
    exact: U64Map<u32>,
    bands: Vec<U64Map<Vec<u32>>>,
    lru: Option<BTreeSet<(u64, u64, u32)>>,
    seq: u64,
    exact_hits: u64,
    near_hits: u64,
    new_clusters: u64,
    evictions: u64,
    scratch: Scratch,
    candidates: Vec<u32>,
}

impl ObservationClusterer {
    /// An empty clusterer.
    pub fn new(spec: CanonSpec, params: ClusterParams) -> Result<Self> {
        params.validate()?;
        let bands = (0..params.bands).map(|_| U64Map::default()).collect();
        let lru = params.max_clusters.map(|_| BTreeSet::new());
        Ok(ObservationClusterer {
            spec,
            params,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_id: U64Map::default(),
            exact: U64Map::default(),
            bands,
            lru,
            seq: 0,
            exact_hits: 0,
            near_hits: 0,
            new_clusters: 0,
            evictions: 0,
            scratch: Scratch::default(),
            candidates: Vec::new(),
        })
    }

    /// The canonicalisation spec.
    pub fn spec(&self) -> &CanonSpec {
        &self.spec
    }

    /// The parameters.
    pub fn params(&self) -> &ClusterParams {
        &self.params
    }

    /// Number of live clusters.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when there is no cluster.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// True when `id` is a live cluster.
    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    fn cluster(&self, id: u64) -> Result<&Cluster> {
        self.by_id
            .get(&id)
            .and_then(|&s| self.slots[s as usize].as_ref())
            .ok_or_else(|| Error::NotFound {
                what: "cluster",
                id: id.to_string(),
            })
    }

    /// The prototype (canonical text of the first member) of cluster `id`.
    pub fn prototype(&self, id: u64) -> Result<&str> {
        Ok(&self.cluster(id)?.prototype)
    }

    /// Number of observations assigned to cluster `id`.
    pub fn size(&self, id: u64) -> Result<u64> {
        Ok(self.cluster(id)?.hits)
    }

    /// Ids of the live clusters, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        let mut live: Vec<&Cluster> = self.slots.iter().flatten().collect();
        live.sort_unstable_by_key(|c| c.created);
        live.iter().map(|c| c.id).collect()
    }

    /// Counters and size histogram.
    pub fn stats(&self) -> ClusterStats {
        let mut hist: std::collections::BTreeMap<u64, u64> = Default::default();
        for c in self.slots.iter().flatten() {
            let k = 1u64 << (63 - c.hits.max(1).leading_zeros());
            *hist.entry(k).or_default() += 1;
        }
        ClusterStats {
            clusters: self.live,
            observations: self.seq,
            exact_hits: self.exact_hits,
            near_hits: self.near_hits,
            new_clusters: self.new_clusters,
            evictions: self.evictions,
            size_histogram: hist.into_iter().collect(),
        }
    }

    /// Assign one observation; returns its cluster id.
    pub fn assign(&mut self, text: &str) -> u64 {
        let mut scratch = mem::take(&mut self.scratch);
        let canonical = self.spec.canonicalize_into(text, &mut scratch);
        let id = self.assign_canonical(canonical);
        self.scratch = scratch;
        id
    }

    /// Assign each observation in order (the same result as calling [`Self::assign`] on each).
    pub fn assign_batch(&mut self, texts: &[&str]) -> Vec<u64> {
        texts.iter().map(|t| self.assign(t)).collect()
    }

    fn band_keys(&self, sh: u64) -> impl Iterator<Item = (usize, u64)> {
        let width = 64 / self.params.bands;
        let mask = if width == 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        (0..self.params.bands as usize).map(move |b| (b, (sh >> (b as u32 * width)) & mask))
    }

    fn assign_canonical(&mut self, canonical: &str) -> u64 {
        let h = structural_hash(canonical);
        self.seq += 1;
        if let Some(&slot) = self.exact.get(&h) {
            self.exact_hits += 1;
            return self.touch(slot);
        }
        let sh = simhash(canonical);
        let lines = line_hashes(canonical);
        let mut candidates = mem::take(&mut self.candidates);
        candidates.clear();
        for (b, key) in self.band_keys(sh) {
            if let Some(v) = self.bands[b].get(&key) {
                candidates.extend_from_slice(v);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut best: Option<(f64, u64, u32)> = None;
        for &slot in &candidates {
            let Some(c) = self.slots[slot as usize].as_ref() else {
                continue;
            };
            let s = line_jaccard(&lines, &c.lines);
            let better = match best {
                None => true,
                Some((bs, bc, _)) => s > bs || (s == bs && c.created < bc),
            };
            if s >= self.params.threshold && better {
                best = Some((s, c.created, slot));
            }
        }
        self.candidates = candidates;
        if let Some((_, _, slot)) = best {
            self.near_hits += 1;
            self.exact.insert(h, slot);
            if let Some(c) = self.slots[slot as usize].as_mut() {
                c.aliases.push(h);
            }
            return self.touch(slot);
        }
        self.new_cluster(h, sh, canonical.to_owned(), lines)
    }

    /// Record one more member of the cluster in `slot`; returns its id.
    fn touch(&mut self, slot: u32) -> u64 {
        let seq = self.seq;
        let Some(c) = self.slots[slot as usize].as_mut() else {
            return 0;
        };
        if let Some(lru) = self.lru.as_mut() {
            lru.remove(&(c.hits, c.last_used, slot));
            lru.insert((c.hits + 1, seq, slot));
        }
        c.hits += 1;
        c.last_used = seq;
        c.id
    }

    fn new_cluster(&mut self, h: u64, sh: u64, prototype: String, lines: Vec<u64>) -> u64 {
        if let Some(max) = self.params.max_clusters {
            while self.live >= max {
                if !self.evict_least_used() {
                    break;
                }
            }
        }
        self.new_clusters += 1;
        let cluster = Cluster {
            id: h,
            created: self.seq,
            hits: 1,
            last_used: self.seq,
            simhash: sh,
            prototype,
            lines,
            aliases: vec![h],
            indexed: 0,
        };
        let slot = self.insert(cluster);
        let keys: Vec<(usize, u64)> = self.band_keys(sh).collect();
        for (b, key) in keys {
            let bucket = self.bands[b].entry(key).or_default();
            if bucket.len() >= self.params.bucket_cap {
                let dropped = bucket.remove(0);
                if let Some(c) = self.slots[dropped as usize].as_mut() {
                    c.indexed &= !(1u64 << b);
                }
            }
            bucket.push(slot);
            if let Some(c) = self.slots[slot as usize].as_mut() {
                c.indexed |= 1u64 << b;
            }
        }
        h
    }

    /// Put `cluster` into a free slot and the exact, id and LRU indexes (not the LSH buckets).
    fn insert(&mut self, cluster: Cluster) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        for &a in &cluster.aliases {
            self.exact.insert(a, slot);
        }
        self.by_id.insert(cluster.id, slot);
        if let Some(lru) = self.lru.as_mut() {
            lru.insert((cluster.hits, cluster.last_used, slot));
        }
        self.slots[slot as usize] = Some(cluster);
        self.live += 1;
        slot
    }

    fn evict_least_used(&mut self) -> bool {
        let Some(&(hits, last, slot)) = self.lru.as_ref().and_then(|l| l.first()) else {
            return false;
        };
        if let Some(lru) = self.lru.as_mut() {
            lru.remove(&(hits, last, slot));
        }
        let Some(c) = self.slots[slot as usize].take() else {
            return false;
        };
        for a in &c.aliases {
            self.exact.remove(a);
        }
        self.by_id.remove(&c.id);
        let keys: Vec<(usize, u64)> = self.band_keys(c.simhash).collect();
        for (b, key) in keys {
            if c.indexed & (1u64 << b) == 0 {
                continue;
            }
            if let Some(v) = self.bands[b].get_mut(&key) {
                v.retain(|&s| s != slot);
                if v.is_empty() {
                    self.bands[b].remove(&key);
                }
            }
        }
        self.free.push(slot);
        self.live -= 1;
        self.evictions += 1;
        true
    }

    /// The snapshot bytes: a [`crate::snapshot`] container of kind `slea.clusterer` with two
    /// sections, `spec` (the canon spec's JSON) and `state` (parameters, counters, every slot).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut w = ByteWriter::new();
        w.u64(self.spec.fingerprint());
        w.f64(self.params.threshold);
        w.u32(self.params.bands);
        w.u64(self.params.max_clusters.map_or(0, |m| m as u64));
        w.u64(self.params.bucket_cap as u64);
        for v in [
            self.seq,
            self.exact_hits,
            self.near_hits,
            self.new_clusters,
            self.evictions,
        ] {
            w.u64(v);
        }
        w.u64(self.slots.len() as u64);
        for slot in &self.slots {
            let Some(c) = slot else {
                w.u8(0);
                continue;
            };
            w.u8(1);
            for v in [c.id, c.created, c.hits, c.last_used, c.simhash, c.indexed] {
                w.u64(v);
            }
            w.str(&c.prototype);
            w.u64(c.aliases.len() as u64);
            for &a in &c.aliases {
                w.u64(a);
            }
        }
        w.u64(self.free.len() as u64);
        for &f in &self.free {
            w.u32(f);
        }
        let mut snap = SnapshotWriter::new(SNAPSHOT_KIND, SCHEMA_VERSION)?;
        snap.add("spec", self.spec.to_json().as_bytes().to_vec())?;
        snap.add("state", w.into_inner())?;
        Ok(snap.to_bytes())
    }

    /// Inverse of [`Self::to_bytes`]. With `spec`, refuses a snapshot made with another spec; any
    /// malformed input is an [`Error::Snapshot`].
    pub fn from_bytes(bytes: &[u8], spec: Option<&CanonSpec>) -> Result<Self> {
        let snap = Snapshot::parse(bytes, SNAPSHOT_KIND, SCHEMA_VERSION)?;
        let json = std::str::from_utf8(snap.section("spec")?)
            .map_err(|_| Error::snapshot("spec: invalid UTF-8"))?;
        let saved = CanonSpec::from_json(json)
            .map_err(|e| Error::snapshot(format!("its canon spec does not load: {e}")))?;
        let mut r = ByteReader::new(snap.section("state")?, "state");
        let fingerprint = r.u64()?;
        if saved.fingerprint() != fingerprint {
            return Err(Error::snapshot(
                "its canon spec does not match its fingerprint",
            ));
        }
        if let Some(want) = spec {
            if want.fingerprint() != fingerprint {
                return Err(Error::snapshot(format!(
                    "it was made with canon spec {fingerprint:016x}, not the given {:016x}; \
                     load it without a spec to use the saved one",
                    want.fingerprint()
                )));
            }
        }
        let params = ClusterParams {
            threshold: r.f64()?,
            bands: r.u32()?,
            max_clusters: match r.u64()? {
                0 => None,
                m => Some(usize::try_from(m).map_err(|_| Error::snapshot("bad max_clusters"))?),
            },
            bucket_cap: usize::try_from(r.u64()?).map_err(|_| Error::snapshot("bad bucket_cap"))?,
        };
        let mut c = ObservationClusterer::new(saved, params)
            .map_err(|e| Error::snapshot(format!("bad parameters: {e}")))?;
        c.seq = r.u64()?;
        c.exact_hits = r.u64()?;
        c.near_hits = r.u64()?;
        c.new_clusters = r.u64()?;
        c.evictions = r.u64()?;
        let n_slots = r.u64()?;
        if n_slots > u32::MAX as u64 || n_slots > bytes.len() as u64 {
            return Err(Error::snapshot("state: bad slot count"));
        }
        let mut present = Vec::with_capacity(n_slots as usize);
        for _ in 0..n_slots {
            match r.u8()? {
                0 => present.push(None),
                1 => present.push(Some(read_cluster(&mut r)?)),
                _ => return Err(Error::snapshot("state: bad slot marker")),
            }
        }
        let n_free = r.u64()?;
        if n_free > n_slots {
            return Err(Error::snapshot("state: bad free-slot count"));
        }
        let mut free = Vec::with_capacity(n_free as usize);
        for _ in 0..n_free {
            free.push(r.u32()?);
        }
        if !r.is_empty() {
            return Err(Error::snapshot("state: trailing bytes"));
        }
        c.rebuild(present, free)?;
        Ok(c)
    }

    /// Rebuild the indexes from loaded slots; checks every invariant the snapshot must hold.
    fn rebuild(&mut self, present: Vec<Option<Cluster>>, free: Vec<u32>) -> Result<()> {
        let n = present.len();
        let mut is_free = vec![false; n];
        for &f in &free {
            let f = f as usize;
            if f >= n || present[f].is_some() || mem::replace(&mut is_free[f], true) {
                return Err(Error::snapshot("state: bad free slot"));
            }
        }
        if present
            .iter()
            .enumerate()
            .any(|(i, p)| p.is_none() && !is_free[i])
        {
            return Err(Error::snapshot(
                "state: empty slot missing from the free list",
            ));
        }
        self.slots = vec![None; n];
        for (slot, cluster) in present.into_iter().enumerate() {
            let Some(mut cluster) = cluster else { continue };
            if structural_hash(&cluster.prototype) != cluster.id
                || self.by_id.contains_key(&cluster.id)
                || cluster.aliases.iter().any(|a| self.exact.contains_key(a))
                || cluster.indexed >> (self.params.bands - 1) > 1
            {
                return Err(Error::snapshot(
                    "state: inconsistent cluster (id, prototype, aliases or bands)",
                ));
            }
            cluster.lines = line_hashes(&cluster.prototype);
            self.free.push(slot as u32);
            self.insert(cluster);
        }
        // Buckets hold their clusters in creation order (a full bucket forgets the oldest).
        let mut order: Vec<(u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (c.created, i as u32)))
            .collect();
        order.sort_unstable();
        for (_, slot) in order {
            let Some(c) = self.slots[slot as usize].as_ref() else {
                continue;
            };
            let (sh, indexed) = (c.simhash, c.indexed);
            let keys: Vec<(usize, u64)> = self.band_keys(sh).collect();
            for (b, key) in keys {
                if indexed & (1u64 << b) != 0 {
                    let bucket = self.bands[b].entry(key).or_default();
                    if bucket.len() >= self.params.bucket_cap {
                        return Err(Error::snapshot("state: an LSH bucket is over capacity"));
                    }
                    bucket.push(slot);
                }
            }
        }
        if self.params.max_clusters.is_some_and(|m| self.live > m) {
            return Err(Error::snapshot("state: more clusters than max_clusters"));
        }
        self.free = free;
        Ok(())
    }

    /// Write [`Self::to_bytes`] to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// Read a snapshot written by [`Self::save`] (see [`Self::from_bytes`]).
    pub fn load(path: &Path, spec: Option<&CanonSpec>) -> Result<Self> {
        Self::from_bytes(&read_file(path)?, spec)
    }
}

/// Kind and schema version of clusterer snapshots.
const SNAPSHOT_KIND: &str = "slea.clusterer";
const SCHEMA_VERSION: u32 = 1;

fn read_cluster(r: &mut ByteReader<'_>) -> Result<Cluster> {
    let (id, created, hits, last_used, simhash, indexed) =
        (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let prototype = r.str()?.to_owned();
    let n_aliases = r.u64()?;
    if n_aliases == 0 || n_aliases > 1 << 40 {
        return Err(Error::snapshot("state: bad alias count"));
    }
    let mut aliases = Vec::new();
    for _ in 0..n_aliases {
        aliases.push(r.u64()?);
    }
    if hits == 0 || aliases[0] != id || simhash != crate::hash::simhash(&prototype) {
        return Err(Error::snapshot("state: inconsistent cluster record"));
    }
    Ok(Cluster {
        id,
        created,
        hits,
        last_used,
        simhash,
        prototype,
        lines: Vec::new(),
        aliases,
        indexed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clusterer(max: Option<usize>) -> ObservationClusterer {
        let params = ClusterParams {
            max_clusters: max,
            ..ClusterParams::default()
        };
        ObservationClusterer::new(CanonSpec::preset("generic").unwrap(), params).unwrap()
    }

    fn room(extra: &str) -> String {
        format!("-= Kitchen =-\nA kitchen.\nYou see a table.\nExits: north, south.\nA clock.\nA rug.\nA lamp.\nA sink.\nA stove.\n{extra}")
    }

    #[test]
    fn exact_near_and_new() {
        let mut c = clusterer(None);
        let a = c.assign(&room("You are carrying nothing."));
        assert_eq!(a, structural_hash(c.prototype(a).unwrap()));
        assert_eq!(c.assign(&room("YOU ARE  carrying nothing.")), a);
        // One extra line among ten: Jaccard 10/11 >= 0.85, a near duplicate.
        assert_eq!(
            c.assign(&room("You are carrying nothing.\nYou hear a noise.")),
            a
        );
        let b = c.assign("-= Hall =-\nA hall.");
        assert_ne!(a, b);
        let s = c.stats();
        assert_eq!(
            (s.exact_hits, s.near_hits, s.new_clusters, s.clusters),
            (1, 1, 2, 2)
        );
        assert_eq!(s.size_histogram, vec![(1, 1), (2, 1)]);
        assert_eq!(c.size(a).unwrap(), 3);
        assert!(c.prototype(12345).is_err());
    }

    #[test]
    fn params_are_validated() {
        let spec = CanonSpec::preset("generic").unwrap();
        for p in [
            ClusterParams {
                threshold: 1.5,
                ..Default::default()
            },
            ClusterParams {
                threshold: f64::NAN,
                ..Default::default()
            },
            ClusterParams {
                bands: 3,
                ..Default::default()
            },
            ClusterParams {
                max_clusters: Some(0),
                ..Default::default()
            },
        ] {
            assert!(ObservationClusterer::new(spec.clone(), p).is_err());
        }
    }

    #[test]
    fn eviction_bound_and_least_used() {
        let mut c = clusterer(Some(3));
        let hot = c.assign("alpha state");
        c.assign("alpha state");
        for i in 0..20 {
            c.assign(&format!("state number {}", "x".repeat(i + 1)));
            assert!(c.len() <= 3);
            assert!(c.contains(hot));
        }
        assert_eq!(c.stats().evictions, 18);
    }

    #[test]
    fn snapshot_roundtrip_and_refusals() {
        let mut c = clusterer(Some(4));
        let texts: Vec<String> = (0..30).map(|i| room(&"z ".repeat(i % 7))).collect();
        for t in &texts[..15] {
            c.assign(t);
        }
        let bytes = c.to_bytes().unwrap();
        let mut d = ObservationClusterer::from_bytes(&bytes, Some(c.spec())).unwrap();
        for t in &texts[15..] {
            assert_eq!(c.assign(t), d.assign(t));
        }
        assert_eq!(c.stats(), d.stats());
        assert_eq!(c.to_bytes().unwrap(), d.to_bytes().unwrap());
        let other = CanonSpec::preset("textworld").unwrap();
        let e = ObservationClusterer::from_bytes(&bytes, Some(&other)).unwrap_err();
        assert!(matches!(e, Error::Snapshot(_)), "{e}");
        for cut in [0, 5, 20, bytes.len() - 1] {
            assert!(ObservationClusterer::from_bytes(&bytes[..cut], None).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(ObservationClusterer::from_bytes(&flipped, None).is_err());
    }

    #[test]
    fn save_and_load_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bin");
        let mut c = clusterer(None);
        c.assign("a b c");
        c.save(&path).unwrap();
        let d = ObservationClusterer::load(&path, None).unwrap();
        assert_eq!(d.ids(), c.ids());
        assert!(ObservationClusterer::load(&dir.path().join("missing"), None).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn batch_equals_sequential_and_bound_holds(
            picks in proptest::collection::vec((0usize..6, 0usize..4), 1..60),
            max in proptest::option::of(1usize..5),
        ) {
            let texts: Vec<String> = picks
                .iter()
                .map(|&(r, v)| room(&format!("line {r}\n{}", "extra\n".repeat(v))))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut a = clusterer(max);
            let mut b = clusterer(max);
            let batch = a.assign_batch(&refs);
            let one: Vec<u64> = refs.iter().map(|t| b.assign(t)).collect();
            prop_assert_eq!(&batch, &one);
            if let Some(m) = max {
                prop_assert!(a.len() <= m);
            }
            let s = a.stats();
            prop_assert_eq!(s.exact_hits + s.near_hits + s.new_clusters, texts.len() as u64);
            prop_assert_eq!(s.new_clusters - s.evictions, a.len() as u64);
        }
    }
}
