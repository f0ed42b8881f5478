//! HNSW approximate nearest-neighbour index on unit vectors (cosine similarity).
//!
//! API CONTRACT (used by `library.rs`; keep these signatures stable):
//! - [`HnswParams`] with `m`, `ef_construction`, `ef_search`, `seed`, `flat_threshold`.
//! - [`HnswIndex::new`], [`HnswIndex::insert`], [`HnswIndex::remove`], [`HnswIndex::search`],
//!   [`HnswIndex::search_filtered`], [`HnswIndex::len`], [`HnswIndex::is_empty`],
//!   [`HnswIndex::dim`], [`HnswIndex::contains`], [`HnswIndex::to_bytes`], [`HnswIndex::from_bytes`].
//! - Ids are caller-chosen `u64`; each entry carries a `u32` tag (the library stores
//!   zone/level there) that a search filter can test.
//! - Scores returned are cosine similarities (dot products of unit vectors), best first; ties by id.
//!
//! Additions beyond the contract: [`HnswIndex::insert_batch`], [`HnswIndex::upsert`],
//! [`HnswIndex::upsert_batch`], [`HnswIndex::remove_batch`], [`HnswIndex::search_batch`] (optionally
//! multi-threaded), [`HnswIndex::search_exact`], [`HnswIndex::set_ef`],
//! [`HnswIndex::set_max_elements`], [`HnswIndex::memory_bytes`], [`HnswIndex::stats`],
//! [`HnswIndex::ids`], [`HnswIndex::tag`].
//!
//! # Algorithm
//! The graph follows hnswlib's `HierarchicalNSW` (Malkov & Yashunin): node levels drawn as
//! `floor(-ln U / ln m)` from a seeded splitmix64 generator, `m` links per node on upper layers
//! and `2 m` on layer 0, `ef_construction` candidates per insertion, neighbours chosen by the
//! heuristic of `getNeighborsByHeuristic2`, reverse links pruned with the same heuristic, and a
//! best-first layer-0 search with `max(ef, k)` candidates. Same seed and same operations give the
//! same graph and byte-identical [`HnswIndex::to_bytes`] (on one machine: the AVX2 and portable
//! dot-product kernels round differently).
//!
//! # Vectors
//! Every vector and query is normalised to unit length (in f64) on the way in, so scores are
//! cosines whatever the input norm. NaN/infinite components and all-zero vectors are rejected.
//!
//! # Deletion
//! [`HnswIndex::remove`] tombstones the slot (hnswlib's `markDelete`): it keeps routing searches
//! and is never returned. The next insert reuses the lowest tombstoned slot and repairs the
//! graph around it (hnswlib's `allow_replace_deleted` + `updatePoint`), so memory does not grow
//! with churn.
//!
//! # Exact paths
//! Searches are exact flat scans when the index holds at most `flat_threshold` live entries,
//! or when at most `max(flat_threshold, k)` entries pass the filter. A filtered graph search
//! that needs more distance evaluations than there are matching entries (a very selective
//! filter) or that finds fewer than `min(k, matching)` results falls back to the exact scan,
//! so every search returns exactly `min(k, matching live entries)` results.

mod codec;
mod distance;
mod graph;
mod search;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use distance::{push_normalised, NormError};
use graph::Graph;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Largest supported `m` (hnswlib caps at 10000; lists beyond a few hundred make no sense).
pub const MAX_M: usize = 4096;
/// Largest supported vector dimension.
pub const MAX_DIM: usize = 1 << 16;
/// Largest number of slots (internal node numbers are `u32`).
pub const MAX_SLOTS: usize = u32::MAX as usize;
/// Most bytes [`HnswIndex::set_max_elements`] reserves ahead of use.
const RESERVE_LIMIT: usize = 256 << 20;
/// Most threads [`HnswIndex::search_batch`] starts.
pub const MAX_THREADS: usize = 1024;

/// Construction and search parameters (hnswlib names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct HnswParams {
    /// Neighbours per node on upper layers (2*m on layer 0).
    pub m: usize,
    /// Candidate list size during construction.
    pub ef_construction: usize,
    /// Default candidate list size during search (raised to k when smaller).
    pub ef_search: usize,
    /// Seed of the level generator: same seed and same inserts -> same graph.
    pub seed: u64,
    /// Below this many live entries, search is an exact flat scan.
    pub flat_threshold: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 40,
            seed: 42,
            flat_threshold: 256,
        }
    }
}

impl HnswParams {
    fn validate(&self) -> Result<()> {
        if !(2..=MAX_M).contains(&self.m) {
            return Err(Error::invalid(
                "m",
                format!("must be between 2 and {MAX_M}, got {}", self.m),
            ));
        }
        if self.ef_construction == 0 {
            return Err(Error::invalid("ef_construction", "must be at least 1"));
        }
        if self.ef_search == 0 {
            return Err(Error::invalid("ef_search", "must be at least 1"));
        }
        Ok(())
    }
}

/// Result of [`HnswIndex::search_batch`]: `rows x width` ids and scores, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    /// Ids of the hits, `rows * width`.
    pub ids: Vec<u64>,
    /// Cosine similarities of the hits, best first in each row.
    pub scores: Vec<f32>,
    /// Hits per row: `min(k, entries passing the filter)`, the same for every row.
    pub width: usize,
}

/// Shape of the graph, for reports and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswStats {
    /// Slots in use, live and tombstoned.
    pub slots: usize,
    /// Live entries.
    pub live: usize,
    /// Tombstoned slots waiting for reuse.
    pub deleted: usize,
    /// Highest layer.
    pub max_level: usize,
    /// `nodes_per_level[l]`: slots whose level is at least `l`.
    pub nodes_per_level: Vec<usize>,
    /// Mean number of layer-0 links per slot.
    pub mean_degree0: f64,
    /// Dot-product kernel in use (`avx2+fma` or `portable`).
    pub kernel: &'static str,
}

/// HNSW index. See the module docs for the contract.
#[derive(Clone)]
pub struct HnswIndex {
    params: HnswParams,
    max_elements: Option<usize>,
    graph: Graph,
    slot_of: HashMap<u64, u32>,
    free: BTreeSet<u32>,
    tag_counts: HashMap<u32, usize>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dim", &self.graph.dim)
            .field("params", &self.params)
            .field("live", &self.len())
            .field("slots", &self.graph.slots())
            .field("max_level", &self.graph.max_level)
            .finish()
    }
}

pub(crate) fn norm_error(arg: &str, e: NormError) -> Error {
    match e {
        NormError::NotFinite => Error::invalid(arg, "contains NaN or infinity"),
        NormError::Zero => Error::invalid(arg, "is the zero vector (cosine is undefined)"),
    }
}

impl HnswIndex {
    /// New empty index of vectors with `dim` components.
    pub fn new(dim: usize, params: HnswParams) -> Result<Self> {
        if !(1..=MAX_DIM).contains(&dim) {
            return Err(Error::invalid(
                "dim",
                format!("must be between 1 and {MAX_DIM}, got {dim}"),
            ));
        }
        params.validate()?;
        let graph = Graph::new(
            dim,
            params.m,
            params.ef_construction,
            params.seed,
            distance::best_kernel(),
        );
        Ok(HnswIndex {
            params,
            max_elements: None,
            graph,
            slot_of: HashMap::new(),
            free: BTreeSet::new(),
            tag_counts: HashMap::new(),
        })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.graph.dim
    }

    /// Parameters the index was built with (`ef_search` as last set by [`HnswIndex::set_ef`]).
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// True when there is no live entry.
    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// True when `id` is a live entry.
    pub fn contains(&self, id: u64) -> bool {
        self.slot_of.contains_key(&id)
    }

    /// Tag of the live entry `id`.
    pub fn tag(&self, id: u64) -> Option<u32> {
        self.slot_of.get(&id).map(|&s| self.graph.tags[s as usize])
    }

    /// Ids of all live entries, ascending.
    pub fn ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.slot_of.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Set the default search candidate list size (at least 1; raised to k per search).
    pub fn set_ef(&mut self, ef: usize) -> Result<()> {
        if ef == 0 {
            return Err(Error::invalid("ef", "must be at least 1"));
        }
        self.params.ef_search = ef;
        Ok(())
    }

    /// Most live entries the index accepts (`None`: unbounded). Reserves memory for them.
    pub fn max_elements(&self) -> Option<usize> {
        self.max_elements
    }

    /// Set the bound on live entries; errors (and changes nothing) if it is below [`Self::len`].
    pub fn set_max_elements(&mut self, max: Option<usize>) -> Result<()> {
        if let Some(mx) = max {
            if mx < self.len() {
                return Err(Error::invalid(
                    "max_elements",
                    format!("{mx} is below the {} entries already held", self.len()),
                ));
            }
            // Reserve like hnswlib does, but never more than RESERVE_LIMIT bytes up front.
            let per_slot = self.dim() * 4 + (1 + 2 * self.params.m) * 4 + 32;
            let more = mx.min(MAX_SLOTS).saturating_sub(self.graph.slots());
            self.graph.reserve(more.min(RESERVE_LIMIT / per_slot));
        }
        self.max_elements = max;
        Ok(())
    }

    /// Insert `vector` (normalised on the way in) under `id` with `tag`.
    /// Errors if `id` is already present or the vector is malformed; the index is unchanged then.
    pub fn insert(&mut self, id: u64, vector: &[f32], tag: u32) -> Result<()> {
        let unit = self.prepare("id", "vector", &[id], vector, false)?;
        self.apply(&[id], &unit, &[tag]);
        Ok(())
    }

    /// Insert a batch: `vectors` holds `ids.len()` rows of `dim` floats, `tags` one per row.
    /// The whole batch is validated first; on any error nothing is inserted.
    pub fn insert_batch(&mut self, ids: &[u64], vectors: &[f32], tags: &[u32]) -> Result<()> {
        self.check_tags(ids, tags)?;
        let unit = self.prepare("ids", "vectors", ids, vectors, false)?;
        self.apply(ids, &unit, tags);
        Ok(())
    }

    /// Insert `id`, or replace its vector and tag when it is already present.
    pub fn upsert(&mut self, id: u64, vector: &[f32], tag: u32) -> Result<()> {
        let unit = self.prepare("id", "vector", &[id], vector, true)?;
        self.apply(&[id], &unit, &[tag]);
        Ok(())
    }

    /// Batch form of [`HnswIndex::upsert`] (ids must be distinct within the batch).
    pub fn upsert_batch(&mut self, ids: &[u64], vectors: &[f32], tags: &[u32]) -> Result<()> {
        self.check_tags(ids, tags)?;
        let unit = self.prepare("ids", "vectors", ids, vectors, true)?;
        self.apply(ids, &unit, tags);
        Ok(())
    }

    /// Remove `id`. Returns false when it was not present.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        let tag = self.graph.tags[slot as usize];
        if let Some(c) = self.tag_counts.get_mut(&tag) {
            *c -= 1;
            if *c == 0 {
                self.tag_counts.remove(&tag);
            }
        }
        self.graph.mark_deleted(slot);
        self.free.insert(slot);
        true
    }

    /// Remove every id of `ids`; errors (and removes nothing) if one is absent or repeated.
    pub fn remove_batch(&mut self, ids: &[u64]) -> Result<()> {
        let mut seen = HashSet::with_capacity(ids.len());
        for &id in ids {
            if !self.contains(id) {
                return Err(Error::NotFound {
                    what: "id",
                    id: id.to_string(),
                });
            }
            if !seen.insert(id) {
                return Err(Error::invalid("ids", format!("id {id} appears twice")));
            }
        }
        for &id in ids {
            self.remove(id);
        }
        Ok(())
    }

    /// The `k` most similar live entries to `query`: `(id, cosine)`, best first.
    pub fn search(&self, query: &[f32], k: usize, ef: Option<usize>) -> Result<Vec<(u64, f32)>> {
        let q = self.prepare_query("query", query)?;
        let n_match = self.len();
        Ok(self.search_unit(&q, k, ef, None, n_match))
    }

    /// As [`HnswIndex::search`], keeping only entries whose tag passes `filter`.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: &dyn Fn(u32) -> bool,
    ) -> Result<Vec<(u64, f32)>> {
        let q = self.prepare_query("query", query)?;
        let n_match = self.count_matching(filter);
        Ok(self.search_unit(&q, k, ef, Some(filter), n_match))
    }

    /// Exact top-`k` by a full scan (the ground truth the graph approximates).
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
    ) -> Result<Vec<(u64, f32)>> {
        let q = self.prepare_query("query", query)?;
        Ok(self.exact(&q, k, filter))
    }

    /// Bytes held by the index: vectors, links, per-slot fields, one visited list, and an
    /// estimate of the hash maps (buckets x entry size + control bytes).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let map = |cap: usize, entry: usize| cap * (entry + 1);
        size_of::<Self>()
            + self.graph.memory_bytes()
            + map(self.slot_of.capacity(), size_of::<(u64, u32)>())
            + map(self.tag_counts.capacity(), size_of::<(u32, usize)>())
            + self.free.len() * size_of::<u32>() * 2
            + self.graph.slots() * size_of::<u16>()
    }

    /// Shape of the graph.
    pub fn stats(&self) -> HnswStats {
        let g = &self.graph;
        let mut nodes_per_level = vec![0usize; g.max_level + 1];
        for &l in &g.levels {
            for c in nodes_per_level.iter_mut().take(l as usize + 1) {
                *c += 1;
            }
        }
        let links: usize = (0..g.slots() as u32).map(|s| g.links(s, 0).len()).sum();
        HnswStats {
            slots: g.slots(),
            live: self.len(),
            deleted: g.n_deleted,
            max_level: g.max_level,
            nodes_per_level,
            mean_degree0: if g.slots() == 0 {
                0.0
            } else {
                links as f64 / g.slots() as f64
            },
            kernel: distance::kernel_name(),
        }
    }

    fn check_tags(&self, ids: &[u64], tags: &[u32]) -> Result<()> {
        if ids.len() != tags.len() {
            return Err(Error::invalid(
                "tags",
                format!("has {} entries but ids has {}", tags.len(), ids.len()),
            ));
        }
        Ok(())
    }

    /// Validate a batch and return its rows normalised; nothing is changed.
    fn prepare(
        &self,
        id_arg: &str,
        vec_arg: &str,
        ids: &[u64],
        vectors: &[f32],
        upsert: bool,
    ) -> Result<Vec<f32>> {
        let dim = self.dim();
        let expect = ids.len().checked_mul(dim);
        if expect != Some(vectors.len()) {
            return Err(Error::invalid(
                vec_arg,
                format!(
                    "has {} floats, expected {} rows of dimension {dim}",
                    vectors.len(),
                    ids.len()
                ),
            ));
        }
        let mut seen = HashSet::with_capacity(ids.len());
        let mut new = 0usize;
        for &id in ids {
            if !seen.insert(id) {
                return Err(Error::invalid(id_arg, format!("id {id} appears twice")));
            }
            if self.contains(id) {
                if !upsert {
                    return Err(Error::invalid(
                        id_arg,
                        format!("{id} is already in the index"),
                    ));
                }
            } else {
                new += 1;
            }
        }
        if let Some(mx) = self.max_elements {
            if self.len() + new > mx {
                return Err(Error::invalid(
                    id_arg,
                    format!(
                        "the index holds at most {mx} entries ({} now, {new} new)",
                        self.len()
                    ),
                ));
            }
        }
        if self.graph.slots() + new.saturating_sub(self.free.len()) > MAX_SLOTS {
            return Err(Error::invalid(id_arg, "the index is full"));
        }
        let mut unit = Vec::with_capacity(vectors.len());
        for (i, row) in vectors.chunks_exact(dim).enumerate() {
            push_normalised(row, &mut unit).map_err(|e| {
                if ids.len() == 1 {
                    norm_error(vec_arg, e)
                } else {
                    norm_error(&format!("{vec_arg}[{i}]"), e)
                }
            })?;
        }
        Ok(unit)
    }

    fn prepare_query(&self, arg: &str, query: &[f32]) -> Result<Vec<f32>> {
        if query.len() != self.dim() {
            return Err(Error::invalid(
                arg,
                format!(
                    "has dimension {}, the index expects {}",
                    query.len(),
                    self.dim()
                ),
            ));
        }
        let mut q = Vec::with_capacity(query.len());
        push_normalised(query, &mut q).map_err(|e| norm_error(arg, e))?;
        Ok(q)
    }

    /// Insert validated, normalised rows (cannot fail).
    fn apply(&mut self, ids: &[u64], unit: &[f32], tags: &[u32]) {
        let dim = self.dim();
        let fresh = ids.iter().filter(|id| !self.contains(**id)).count();
        self.graph.reserve(fresh.saturating_sub(self.free.len()));
        for ((&id, v), &tag) in ids.iter().zip(unit.chunks_exact(dim)).zip(tags) {
            let slot = if let Some(&slot) = self.slot_of.get(&id) {
                let old = self.graph.tags[slot as usize];
                if let Some(c) = self.tag_counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.tag_counts.remove(&old);
                    }
                }
                self.graph.replace(slot, id, tag, v);
                slot
            } else if let Some(slot) = self.free.pop_first() {
                self.graph.replace(slot, id, tag, v);
                slot
            } else {
                self.graph.insert_new(id, tag, v)
            };
            self.slot_of.insert(id, slot);
            *self.tag_counts.entry(tag).or_insert(0) += 1;
        }
    }
}
