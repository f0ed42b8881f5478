//! The experience library of SLEA-RL: two zones (`strategy`, `warning`) of three levels
//! (`principle`, `pattern`, `example`), bounded per (zone, level), with admission rules, cluster
//! pools for retrieval and an HNSW index for the semantic fallback.
//!
//! # Admission ([`Library::admit`])
//! Candidates are processed in order; each gets one [`Outcome`]:
//! 1. `invalid`: text sanitised ([`sanitize`]: chat markers and control characters stripped)
//!    and rejected if empty or longer than `max_text_chars`; demonstration fields only on
//!    `example` entries; zero embedding.
//! 2. `rate_limited`: the zone's token bucket (capacity = refill per iteration =
//!    `rate_per_step[zone]`, clock = the iteration) has no token. A token is spent only when a
//!    candidate is admitted, so duplicates and rejects do not use up the step's budget.
//! 3. `duplicate`: cosine >= `novelty_threshold` to an entry of the same zone (exact scan, any level; the
//!    most similar, ties to the lowest id). That entry keeps the higher score, merges the
//!    provenance (episode and cluster ids, bounded to the `max_provenance` most recent), takes the
//!    newer iteration, adopts a demonstration if it had none, and is linked to the candidate's
//!    clusters.
//! 4. `below_floor`: the (zone, level) is full and the score is not strictly above the lowest
//!    there. Otherwise the candidate is `admitted`, evicting that lowest entry when full (ties on
//!    score: the oldest goes), and linked to its clusters.
//!
//! # Retrieval
//! A cluster id maps to a pool of at most `pool_size` entry ids per zone. [`Library::retrieve_hit`]
//! returns the top `k` of each zone by score (ties: older first) when the pool is not empty; the
//! result is cached under (cluster, k's) and valid while the library version is unchanged. On a
//! miss [`Library::retrieve_fallback`] searches the HNSW index per zone, keeps results with cosine
//! above `fallback_threshold` and links them to the cluster. A full pool drops its lowest entry
//! (score, then age) for a better one; a new pool beyond `max_clusters` first drops the least
//! recently used eighth of the pools (at least one). Removing an entry removes its links; an empty pool is removed.
//!
//! Every mutation (admit, merge, link, remove, outcome, import) bumps [`Library::version`].
//! Nothing here reads a clock or a random source: the same calls give the same library.

mod persist;
mod retrieve;
pub mod sanitize;
mod types;

use crate::error::{Error, Result};
use crate::hnsw::{HnswIndex, HnswParams};
use crate::ratelimit::TokenBucket;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub use persist::{ImportEntry, SCHEMA_VERSION, SNAPSHOT_KIND};
use retrieve::Pool;
pub use sanitize::sanitize;
pub use types::*;

type CacheKey = (u64, usize, usize);

/// The experience library. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Library {
    params: LibraryParams,
    entries: HashMap<u64, Arc<Entry>>,
    buckets: [[BTreeSet<Key>; 3]; 2],
    index: HnswIndex,
    pools: HashMap<u64, Pool>,
    links: HashMap<u64, Vec<u64>>,
    rate: [TokenBucket; 2],
    next_id: u64,
    next_seq: u64,
    version: u64,
    tick: u64,
    counters: Counters,
    cache: HashMap<CacheKey, (u64, Hits)>,
}

impl Library {
    /// New empty library.
    pub fn new(params: LibraryParams) -> Result<Self> {
        params.validate()?;
        let rate = [
            TokenBucket::new(params.rate_per_step[0], params.rate_per_step[0])?,
            TokenBucket::new(params.rate_per_step[1], params.rate_per_step[1])?,
        ];
        let index = HnswIndex::new(params.dim, HnswParams::default())?;
        Ok(Library {
            params,
            entries: HashMap::new(),
            buckets: Default::default(),
            index,
            pools: HashMap::new(),
            links: HashMap::new(),
            rate,
            next_id: 1,
            next_seq: 0,
            version: 0,
            tick: 0,
            counters: Counters::default(),
            cache: HashMap::new(),
        })
    }

    /// Parameters.
    pub fn params(&self) -> &LibraryParams {
        &self.params
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Version: increases with every mutation.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Entry by id.
    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        self.entries.get(&id).cloned()
    }

    /// Entries, optionally of one zone and/or level, sorted by id.
    pub fn entries(&self, zone: Option<Zone>, level: Option<Level>) -> Vec<Arc<Entry>> {
        let mut v: Vec<Arc<Entry>> = self
            .entries
            .values()
            .filter(|e| zone.map_or(true, |z| e.zone == z) && level.map_or(true, |l| e.level == l))
            .cloned()
            .collect();
        v.sort_by_key(|e| e.id);
        v
    }

    /// Cluster ids whose pools hold `id`, sorted.
    pub fn linked_clusters(&self, id: u64) -> Vec<u64> {
        let mut v = self.links.get(&id).cloned().unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Pool of `cluster`: (strategy ids, warning ids) in link order.
    pub fn pool(&self, cluster: u64) -> Option<(Vec<u64>, Vec<u64>)> {
        self.pools
            .get(&cluster)
            .map(|p| (p.ids[0].clone(), p.ids[1].clone()))
    }

    /// Entries in `zone`.
    fn zone_len(&self, zone: Zone) -> usize {
        self.buckets[zone.index()].iter().map(BTreeSet::len).sum()
    }

    /// Most similar entry of `zone` by an exact scan: `(id, cosine)`, ties to the lowest id.
    fn nearest_in_zone(&self, zone: Zone, unit: &[f32]) -> Option<(u64, f32)> {
        let z = zone.index() as u32;
        let filter = move |t: u32| t / 3 == z;
        let found = self.index.search_exact(unit, 1, Some(&filter)).ok()?;
        found.first().copied()
    }

    fn mutated(&mut self) {
        self.version += 1;
        self.cache.clear();
    }

    fn check_vector(&self, arg: &str, v: &[f32]) -> Result<Option<Vec<f32>>> {
        if v.len() != self.params.dim {
            return Err(Error::invalid(
                arg,
                format!(
                    "has dimension {}, the library's embedder ({}) has {}",
                    v.len(),
                    self.params.embedder,
                    self.params.dim
                ),
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(arg, "contains NaN or infinity"));
        }
        let norm = v
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 {
            return Ok(None);
        }
        Ok(Some(v.iter().map(|&x| (x as f64 / norm) as f32).collect()))
    }

    /// Admit `candidates` at evolution step `iteration`, in order (see the module docs).
    /// Malformed input (wrong embedding dimension, non-finite values, a score beyond
    /// [`MAX_ABS_SCORE`]) fails the whole call before anything changes; content problems make a
    /// candidate `invalid`.
    pub fn admit(&mut self, candidates: Vec<Candidate>, iteration: u64) -> Result<Vec<Decision>> {
        let mut prepared = Vec::with_capacity(candidates.len());
        for (i, c) in candidates.into_iter().enumerate() {
            check_score(format!("candidates[{i}].score"), c.score)?;
            let unit = self.check_vector(&format!("candidates[{i}].embedding"), &c.embedding)?;
            prepared.push((c, unit));
        }
        let mut out = Vec::with_capacity(prepared.len());
        let mut changed = false;
        for (c, unit) in prepared {
            let d = self.admit_one(c, unit, iteration);
            changed |= matches!(d.outcome, Outcome::Admitted | Outcome::Duplicate);
            self.counters.outcomes[outcome_index(d.outcome)] += 1;
            out.push(d);
        }
        if changed {
            self.mutated();
        }
        Ok(out)
    }

    fn admit_one(&mut self, c: Candidate, unit: Option<Vec<f32>>, iteration: u64) -> Decision {
        let reject = |outcome, reason: String| Decision {
            outcome,
            entry_id: None,
            reason,
            evicted: Vec::new(),
        };
        let (text, demo) = match self.validate_candidate(&c) {
            Ok(v) => v,
            Err(reason) => return reject(Outcome::Invalid, reason),
        };
        let Some(unit) = unit else {
            return reject(Outcome::Invalid, "embedding: zero vector".into());
        };
        let z = c.zone.index();
        self.rate[z].advance(iteration as f64);
        if !self.rate[z].has(1.0) {
            let reason = format!(
                "rate limit: at most {} {} entries per step",
                self.params.rate_per_step[z],
                c.zone.name()
            );
            return reject(Outcome::RateLimited, reason);
        }
        if let Some((id, cos)) = self.nearest_in_zone(c.zone, &unit) {
            if cos >= self.params.novelty_threshold {
                self.merge_into(id, &c, demo, iteration);
                return Decision {
                    outcome: Outcome::Duplicate,
                    entry_id: Some(id),
                    reason: format!("cosine {cos:.3} to entry {id}"),
                    evicted: Vec::new(),
                };
            }
        }
        let cap = self.params.capacity[z];
        let bucket = &self.buckets[z][c.level.index()];
        let mut evicted = Vec::new();
        if bucket.len() >= cap {
            match bucket.first().copied() {
                Some(low) if c.score > low.score => evicted.push(low.id),
                low => {
                    let floor = low.map_or("none".to_string(), |k| k.score.to_string());
                    let reason = format!(
                        "{}/{} is full ({cap}) and score {} is not above its lowest ({floor})",
                        c.zone.name(),
                        c.level.name(),
                        c.score
                    );
                    return reject(Outcome::BelowFloor, reason);
                }
            }
        }
        for &id in &evicted {
            self.remove_entry(id);
            self.counters.evicted += 1;
        }
        self.rate[z].take(1.0);
        let id = self.insert_entry(c, text, demo, unit, iteration);
        Decision {
            outcome: Outcome::Admitted,
            entry_id: Some(id),
            reason: if evicted.is_empty() {
                "admitted".into()
            } else {
                format!("admitted, evicting entry {}", evicted[0])
            },
            evicted,
        }
    }

    /// Sanitised text and demonstration, or the reason the candidate is invalid.
    #[allow(clippy::type_complexity)]
    fn validate_candidate(
        &self,
        c: &Candidate,
    ) -> std::result::Result<(String, Option<(String, String)>), String> {
        let p = &self.params;
        let text = sanitize(&c.text, p.max_text_chars, false).map_err(|r| format!("text: {r}"))?;
        let demo = match (&c.observation, &c.action) {
            (None, None) => None,
            (Some(o), Some(a)) => {
                if c.level != Level::Example {
                    return Err(format!(
                        "observation/action: only example entries carry a demonstration, not {}",
                        c.level.name()
                    ));
                }
                let o =
                    sanitize(o, p.max_demo_chars, true).map_err(|r| format!("observation: {r}"))?;
                let a = sanitize(a, p.max_demo_chars, false).map_err(|r| format!("action: {r}"))?;
                Some((o, a))
            }
            _ => return Err("observation/action: give both or neither".into()),
        };
        Ok((text, demo))
    }

    fn insert_entry(
        &mut self,
        c: Candidate,
        text: String,
        demo: Option<(String, String)>,
        unit: Vec<f32>,
        iteration: u64,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mp = self.params.max_provenance;
        let (observation, action) = demo.unzip();
        let e = Entry {
            id,
            text,
            zone: c.zone,
            level: c.level,
            score: c.score,
            episode_ids: merged(&[], &c.episode_ids, mp),
            iteration,
            cluster_ids: merged(&[], &c.cluster_ids, mp),
            created_iteration: iteration,
            seq: self.next_seq,
            retrieved: 0,
            successes: 0,
            failures: 0,
            observation,
            action,
            embedding: unit.into(),
        };
        self.next_seq += 1;
        self.place(e);
        for cl in merged(&[], &c.cluster_ids, mp) {
            self.link_one(cl, id);
        }
        id
    }

    /// Put a complete entry into every structure (no links).
    fn place(&mut self, e: Entry) {
        let (id, t, v) = (e.id, tag(e.zone, e.level), e.embedding.clone());
        self.place_unindexed(e);
        // The vector was validated against the index's dimension and the id is fresh, so this
        // cannot fail; an error would mean a broken invariant, not bad input.
        let inserted = self.index.insert(id, &v, t);
        debug_assert!(inserted.is_ok(), "hnsw insert failed: {inserted:?}");
    }

    fn merge_into(&mut self, id: u64, c: &Candidate, demo: Option<(String, String)>, it: u64) {
        let mp = self.params.max_provenance;
        let Some(arc) = self.entries.get_mut(&id) else {
            return;
        };
        let old_key = arc.key();
        let e = Arc::make_mut(arc);
        e.score = e.score.max(c.score);
        e.episode_ids = merged(&e.episode_ids, &c.episode_ids, mp);
        e.cluster_ids = merged(&e.cluster_ids, &c.cluster_ids, mp);
        e.iteration = e.iteration.max(it);
        if e.level == Level::Example && e.observation.is_none() {
            if let Some((o, a)) = demo {
                e.observation = Some(o);
                e.action = Some(a);
            }
        }
        let (new_key, z, l) = (e.key(), e.zone.index(), e.level.index());
        self.rekey(z, l, old_key, new_key);
        for cl in merged(&[], &c.cluster_ids, mp) {
            self.link_one(cl, id);
        }
    }

    fn rekey(&mut self, z: usize, l: usize, old: Key, new: Key) {
        if old != new {
            self.buckets[z][l].remove(&old);
            self.buckets[z][l].insert(new);
        }
    }

    /// Remove an entry and its links; returns whether it existed.
    fn remove_entry(&mut self, id: u64) -> bool {
        let Some(e) = self.entries.remove(&id) else {
            return false;
        };
        let (z, l) = (e.zone.index(), e.level.index());
        self.buckets[z][l].remove(&e.key());
        self.index.remove(id);
        for cl in self.links.remove(&id).unwrap_or_default() {
            if let Some(p) = self.pools.get_mut(&cl) {
                p.ids[z].retain(|&x| x != id);
                if p.is_empty() {
                    self.pools.remove(&cl);
                }
            }
        }
        true
    }

    fn check_ids(&self, ids: &[u64]) -> Result<()> {
        match ids.iter().find(|id| !self.entries.contains_key(id)) {
            Some(id) => Err(Error::NotFound {
                what: "experience",
                id: id.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Remove an entry. Errors if it does not exist.
    pub fn remove(&mut self, id: u64) -> Result<()> {
        self.check_ids(&[id])?;
        self.remove_entry(id);
        self.mutated();
        Ok(())
    }

    /// Credit the entries an episode retrieved: each occurrence of an id counts one retrieval;
    /// each distinct id gets one success or failure. With `ema_alpha` set, the score moves
    /// towards `reward` (default 1 for success, 0 for failure; within [`MAX_ABS_SCORE`]) by
    /// `ema_alpha`. Unknown ids fail
    /// the call (nothing changed) unless `ignore_missing`. Returns the distinct ids credited.
    pub fn record_outcome(
        &mut self,
        ids: &[u64],
        success: bool,
        reward: Option<f64>,
        ignore_missing: bool,
    ) -> Result<usize> {
        if let Some(r) = reward {
            check_score("reward", r)?;
        }
        if !ignore_missing {
            self.check_ids(ids)?;
        }
        let mut counts: Vec<(u64, u64)> = Vec::new();
        for &id in ids.iter().filter(|id| self.entries.contains_key(id)) {
            match counts.iter_mut().find(|(x, _)| *x == id) {
                Some((_, n)) => *n += 1,
                None => counts.push((id, 1)),
            }
        }
        let target = reward.unwrap_or(if success { 1.0 } else { 0.0 });
        for &(id, n) in &counts {
            let Some(arc) = self.entries.get_mut(&id) else {
                continue;
            };
            let old_key = arc.key();
            let e = Arc::make_mut(arc);
            e.retrieved += n;
            if success {
                e.successes += 1;
            } else {
                e.failures += 1;
            }
            if let Some(a) = self.params.ema_alpha {
                // A convex combination of two in-range values; the clamp absorbs rounding.
                e.score = ((1.0 - a) * e.score + a * target).clamp(-MAX_ABS_SCORE, MAX_ABS_SCORE);
            }
            let (new_key, z, l) = (e.key(), e.zone.index(), e.level.index());
            self.rekey(z, l, old_key, new_key);
        }
        if !counts.is_empty() {
            self.mutated();
        }
        Ok(counts.len())
    }

    /// Sizes, counters and an estimate of memory use.
    pub fn stats(&self) -> Stats {
        let mut sizes = [[0usize; 3]; 2];
        for (z, row) in sizes.iter_mut().enumerate() {
            for (l, n) in row.iter_mut().enumerate() {
                *n = self.buckets[z][l].len();
            }
        }
        let links: usize = self.links.values().map(Vec::len).sum();
        Stats {
            sizes,
            clusters: self.pools.len(),
            links,
            version: self.version,
            counters: self.counters.clone(),
            memory_bytes: self.memory_bytes(links),
        }
    }

    fn memory_bytes(&self, links: usize) -> usize {
        use std::mem::size_of;
        let dim = self.params.dim;
        let per_entry: usize = self
            .entries
            .values()
            .map(|e| {
                size_of::<Entry>()
                    + e.text.capacity()
                    + 8 * (e.episode_ids.capacity() + e.cluster_ids.capacity())
                    + e.observation.as_ref().map_or(0, String::capacity)
                    + e.action.as_ref().map_or(0, String::capacity)
                    + 4 * dim // the entry's own vector (the index keeps another)
                    + 16 // the Arc's counters
                    + 2 * (8 + 16) // entry map and bucket set
            })
            .sum();
        let index = self.index.memory_bytes();
        let pools = self.pools.len() * (size_of::<Pool>() + 24) + 16 * links;
        let cache: usize = self.cache.values().map(|(_, h)| 48 + 8 * h.len()).sum();
        per_entry + index + pools + cache
    }
}

#[cfg(test)]
mod bad_values;
#[cfg(test)]
mod tests;
