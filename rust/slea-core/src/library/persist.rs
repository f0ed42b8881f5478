//! Snapshots and bulk import of the library.
//!
//! A library snapshot is a [`crate::snapshot`] container of kind [`SNAPSHOT_KIND`] with these
//! sections (schema [`SCHEMA_VERSION`]):
//! - `params`: JSON of [`LibraryParams`] (dimension and embedder fingerprint included);
//! - `state`: JSON: version, id and age counters, LRU clock, rate-limit buckets, counters;
//! - `entries`: JSON array of entries in id order (every field but the embedding);
//! - `embeddings`: `f32` little-endian, one `dim` row per entry in the same order;
//! - `pools`: JSON array of cluster pools;
//! - `hnsw`: the index's own serialisation.
//!
//! Loading re-validates everything a checksum cannot vouch for (a crafted file): sanitised text,
//! finite scores within [`super::MAX_ABS_SCORE`], unit embeddings, unique ids, capacities, pool bounds and links, and that the
//! index holds exactly the entries. Any violation is an [`Error::Snapshot`].

use super::{sanitize, Entry, Key, Level, Library, LibraryParams, Pool, Zone};
use crate::error::{Error, Result};
use crate::hnsw::HnswIndex;
use crate::ratelimit::TokenBucket;
use crate::snapshot::{read_file, ByteReader, ByteWriter, Snapshot, SnapshotWriter};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Kind name of library snapshots.
pub const SNAPSHOT_KIND: &str = "slea.library";
/// Schema version of library snapshots written by this build.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredEntry {
    id: u64,
    text: String,
    zone: Zone,
    level: Level,
    score: f64,
    episode_ids: Vec<u64>,
    iteration: u64,
    cluster_ids: Vec<u64>,
    created_iteration: u64,
    seq: u64,
    retrieved: u64,
    successes: u64,
    failures: u64,
    observation: Option<String>,
    action: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredState {
    version: u64,
    next_id: u64,
    next_seq: u64,
    tick: u64,
    rate: [(f64, f64, f64, f64); 2],
    counters: super::Counters,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPool {
    cluster: u64,
    strategy: Vec<u64>,
    warning: Vec<u64>,
    last_used: u64,
}

/// An entry given to [`Library::import_entries`] (from JSONL or another library).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportEntry {
    /// Id to keep; `None` assigns a new one.
    pub id: Option<u64>,
    /// Text (sanitised on import).
    pub text: String,
    /// Zone.
    pub zone: Zone,
    /// Level.
    pub level: Level,
    /// Score; finite, at most [`super::MAX_ABS_SCORE`] in magnitude.
    pub score: f64,
    /// Source episode ids.
    pub episode_ids: Vec<u64>,
    /// Iteration of the latest provenance.
    pub iteration: u64,
    /// Source cluster ids.
    pub cluster_ids: Vec<u64>,
    /// Iteration of admission.
    pub created_iteration: u64,
    /// Usage: retrievals.
    pub retrieved: u64,
    /// Usage: successes.
    pub successes: u64,
    /// Usage: failures.
    pub failures: u64,
    /// Demonstration observation (`example` only).
    pub observation: Option<String>,
    /// Demonstration action (`example` only).
    pub action: Option<String>,
    /// Embedding of the text (`dim` values; normalised here).
    pub embedding: Vec<f32>,
    /// Clusters to link the entry to.
    pub linked_clusters: Vec<u64>,
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::invalid("library", format!("cannot encode: {e}")))
}

fn unjson<'a, T: Deserialize<'a>>(section: &str, b: &'a [u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| Error::snapshot(format!("section '{section}': {e}")))
}

fn bad(section: &str, msg: impl std::fmt::Display) -> Error {
    Error::snapshot(format!("section '{section}': {msg}"))
}

impl Library {
    /// The snapshot file contents (see the module docs for the sections).
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>> {
        let mut ids: Vec<u64> = self.entries.keys().copied().collect();
        ids.sort_unstable();
        let mut stored = Vec::with_capacity(ids.len());
        let mut vecs = ByteWriter::new();
        for e in ids.iter().filter_map(|id| self.entries.get(id)) {
            stored.push(StoredEntry {
                id: e.id,
                text: e.text.clone(),
                zone: e.zone,
                level: e.level,
                score: e.score,
                episode_ids: e.episode_ids.clone(),
                iteration: e.iteration,
                cluster_ids: e.cluster_ids.clone(),
                created_iteration: e.created_iteration,
                seq: e.seq,
                retrieved: e.retrieved,
                successes: e.successes,
                failures: e.failures,
                observation: e.observation.clone(),
                action: e.action.clone(),
            });
            vecs.f32s(&e.embedding);
        }
        let mut clusters: Vec<u64> = self.pools.keys().copied().collect();
        clusters.sort_unstable();
        let pools: Vec<StoredPool> = clusters
            .iter()
            .filter_map(|c| self.pools.get(c).map(|p| (c, p)))
            .map(|(c, p)| StoredPool {
                cluster: *c,
                strategy: p.ids[0].clone(),
                warning: p.ids[1].clone(),
                last_used: p.last_used,
            })
            .collect();
        let state = StoredState {
            version: self.version,
            next_id: self.next_id,
            next_seq: self.next_seq,
            tick: self.tick,
            rate: [self.rate[0].state(), self.rate[1].state()],
            counters: self.counters.clone(),
        };
        let mut w = SnapshotWriter::new(SNAPSHOT_KIND, SCHEMA_VERSION)?;
        w.add("params", json(&self.params)?)?;
        w.add("state", json(&state)?)?;
        w.add("entries", json(&stored)?)?;
        w.add("embeddings", vecs.into_inner())?;
        w.add("pools", json(&pools)?)?;
        w.add("hnsw", self.index.to_bytes())?;
        Ok(w.to_bytes())
    }

    /// The parameters as JSON (the same text as the snapshot's `params` section).
    pub fn params_json(&self) -> Result<String> {
        serde_json::to_string(&self.params)
            .map_err(|e| Error::invalid("params", format!("cannot encode: {e}")))
    }

    /// Write a snapshot to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::snapshot::write_atomic(path, &self.to_snapshot_bytes()?)
    }

    /// Read and verify a snapshot file.
    pub fn load(path: &Path) -> Result<Library> {
        Library::from_snapshot_bytes(&read_file(path)?)
    }

    /// Parse and verify snapshot bytes.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Library> {
        let snap = Snapshot::parse(bytes, SNAPSHOT_KIND, SCHEMA_VERSION)?;
        let params: LibraryParams = unjson("params", snap.section("params")?)?;
        params.validate().map_err(|e| bad("params", e))?;
        let state: StoredState = unjson("state", snap.section("state")?)?;
        let stored: Vec<StoredEntry> = unjson("entries", snap.section("entries")?)?;
        let pools: Vec<StoredPool> = unjson("pools", snap.section("pools")?)?;
        let mut lib = Library::new(params).map_err(|e| bad("params", e))?;
        lib.restore_entries(stored, snap.section("embeddings")?)?;
        lib.restore_pools(pools)?;
        lib.restore_index(snap.section("hnsw")?)?;
        for (z, s) in state.rate.iter().enumerate() {
            if s.0 != lib.params.rate_per_step[z] || s.1 != lib.params.rate_per_step[z] {
                return Err(bad(
                    "state",
                    "rate-limit buckets do not match the parameters",
                ));
            }
        }
        lib.rate = [
            restore_bucket(state.rate[0])?,
            restore_bucket(state.rate[1])?,
        ];
        if state.next_id < lib.next_id || state.next_seq < lib.next_seq || state.tick < lib.tick {
            return Err(bad("state", "counters are behind the entries"));
        }
        lib.version = state.version;
        lib.next_id = state.next_id;
        lib.next_seq = state.next_seq;
        lib.tick = state.tick;
        lib.counters = state.counters;
        Ok(lib)
    }

    fn restore_entries(&mut self, stored: Vec<StoredEntry>, vecs: &[u8]) -> Result<()> {
        let dim = self.params.dim;
        let mut r = ByteReader::new(vecs, "embeddings");
        let mut seqs = HashSet::with_capacity(stored.len());
        for s in stored {
            let v = r.f32s(dim)?;
            let norm = v
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt();
            if v.iter().any(|x| !x.is_finite()) || (norm - 1.0).abs() > 1e-3 {
                return Err(bad(
                    "embeddings",
                    format!("entry {} is not a unit vector", s.id),
                ));
            }
            let e = Entry {
                id: s.id,
                text: s.text,
                zone: s.zone,
                level: s.level,
                score: s.score,
                episode_ids: s.episode_ids,
                iteration: s.iteration,
                cluster_ids: s.cluster_ids,
                created_iteration: s.created_iteration,
                seq: s.seq,
                retrieved: s.retrieved,
                successes: s.successes,
                failures: s.failures,
                observation: s.observation,
                action: s.action,
                embedding: v.into(),
            };
            self.check_stored(&e)
                .map_err(|m| bad("entries", format!("entry {}: {m}", e.id)))?;
            if self.entries.contains_key(&e.id) || !seqs.insert(e.seq) {
                return Err(bad("entries", format!("entry {} appears twice", e.id)));
            }
            let (z, l) = (e.zone.index(), e.level.index());
            if self.buckets[z][l].len() >= self.params.capacity[z] {
                return Err(bad("entries", "more entries than the capacity"));
            }
            self.place_unindexed(e);
        }
        if !r.is_empty() {
            return Err(bad("embeddings", "more rows than entries"));
        }
        Ok(())
    }

    /// Invariants of a stored entry that the admission rules guarantee.
    fn check_stored(&self, e: &Entry) -> std::result::Result<(), String> {
        let p = &self.params;
        if sanitize(&e.text, p.max_text_chars, false).as_ref() != Ok(&e.text) {
            return Err("text is not sanitised".into());
        }
        if super::check_score("score", e.score).is_err() {
            return Err(format!(
                "score {} is not finite or beyond +-{:e}",
                super::types::number(e.score),
                super::MAX_ABS_SCORE
            ));
        }
        match (&e.observation, &e.action) {
            (None, None) => {}
            (Some(o), Some(a)) if e.level == Level::Example => {
                let ok_o = sanitize(o, p.max_demo_chars, true).as_ref() == Ok(o);
                let ok_a = sanitize(a, p.max_demo_chars, false).as_ref() == Ok(a);
                if !(ok_o && ok_a) {
                    return Err("demonstration is not sanitised".into());
                }
            }
            _ => return Err("invalid demonstration fields".into()),
        }
        if e.episode_ids.len() > p.max_provenance || e.cluster_ids.len() > p.max_provenance {
            return Err("provenance longer than max_provenance".into());
        }
        Ok(())
    }

    /// Insert an entry into every structure except the HNSW index.
    pub(super) fn place_unindexed(&mut self, e: Entry) {
        let (z, l) = (e.zone.index(), e.level.index());
        self.buckets[z][l].insert(Key {
            score: e.score,
            seq: e.seq,
            id: e.id,
        });
        self.next_id = self.next_id.max(e.id.saturating_add(1));
        self.next_seq = self.next_seq.max(e.seq.saturating_add(1));
        self.entries.insert(e.id, Arc::new(e));
    }

    fn restore_pools(&mut self, pools: Vec<StoredPool>) -> Result<()> {
        if pools.len() > self.params.max_clusters {
            return Err(bad("pools", "more pools than max_clusters"));
        }
        for sp in pools {
            let mut pool = Pool {
                ids: [sp.strategy, sp.warning],
                last_used: sp.last_used,
            };
            for (z, zone) in Zone::ALL.into_iter().enumerate() {
                let ids = &pool.ids[z];
                let unique: HashSet<&u64> = ids.iter().collect();
                let zone_ok = ids
                    .iter()
                    .all(|id| self.entries.get(id).is_some_and(|e| e.zone == zone));
                if unique.len() != ids.len() || ids.len() > self.params.pool_size || !zone_ok {
                    return Err(bad(
                        "pools",
                        format!("pool of cluster {} is invalid", sp.cluster),
                    ));
                }
            }
            if pool.is_empty() || self.pools.contains_key(&sp.cluster) {
                return Err(bad(
                    "pools",
                    format!("pool of cluster {} is invalid", sp.cluster),
                ));
            }
            for id in pool.ids.iter().flatten() {
                self.links.entry(*id).or_default().push(sp.cluster);
            }
            self.tick = self.tick.max(pool.last_used);
            pool.ids.iter_mut().for_each(|v| v.shrink_to_fit());
            self.pools.insert(sp.cluster, pool);
        }
        Ok(())
    }

    fn restore_index(&mut self, bytes: &[u8]) -> Result<()> {
        let index = HnswIndex::from_bytes(bytes).map_err(|e| bad("hnsw", e))?;
        let consistent = index.dim() == self.params.dim
            && index.len() == self.entries.len()
            && self.entries.keys().all(|&id| index.contains(id));
        if !consistent {
            return Err(bad("hnsw", "the index does not match the entries"));
        }
        self.index = index;
        Ok(())
    }

    /// Insert complete entries (a restore, not an admission: no rate limit, no novelty check).
    /// All-or-nothing: texts must sanitise, scores be finite and within [`super::MAX_ABS_SCORE`], embeddings valid, kept ids unused,
    /// and no (zone, level) may exceed its capacity. Returns the ids in input order.
    pub fn import_entries(&mut self, items: Vec<ImportEntry>) -> Result<Vec<u64>> {
        let mut prepared = Vec::with_capacity(items.len());
        let mut fresh = self.next_id;
        let mut kept = HashSet::new();
        let requested: HashSet<u64> = items.iter().filter_map(|x| x.id).collect();
        let mut counts = [[0usize; 3]; 2];
        for (i, it) in items.iter().enumerate() {
            let arg = |f: &str| format!("entries[{i}].{f}");
            let entry = self.import_one(it, &arg)?;
            let id = match it.id {
                Some(id) => {
                    if self.entries.contains_key(&id) || !kept.insert(id) {
                        return Err(Error::invalid(arg("id"), format!("{id} is already used")));
                    }
                    id
                }
                None => {
                    while self.entries.contains_key(&fresh) || requested.contains(&fresh) {
                        fresh += 1;
                    }
                    fresh += 1;
                    fresh - 1
                }
            };
            counts[it.zone.index()][it.level.index()] += 1;
            prepared.push((id, entry));
        }
        for z in Zone::ALL {
            for l in Level::ALL {
                let n = self.buckets[z.index()][l.index()].len() + counts[z.index()][l.index()];
                if n > self.params.capacity[z.index()] {
                    return Err(Error::invalid(
                        "entries",
                        format!(
                            "would put {n} entries in {}/{}, whose capacity is {}",
                            z.name(),
                            l.name(),
                            self.params.capacity[z.index()]
                        ),
                    ));
                }
            }
        }
        let mut ids = Vec::with_capacity(prepared.len());
        for ((id, mut e), it) in prepared.into_iter().zip(&items) {
            e.id = id;
            e.seq = self.next_seq;
            self.place(e);
            for &c in &it.linked_clusters {
                self.link_one(c, id);
            }
            ids.push(id);
        }
        if !ids.is_empty() {
            self.mutated();
        }
        Ok(ids)
    }

    fn import_one(&self, it: &ImportEntry, arg: &dyn Fn(&str) -> String) -> Result<Entry> {
        let p = &self.params;
        let text = sanitize(&it.text, p.max_text_chars, false)
            .map_err(|m| Error::invalid(arg("text"), m))?;
        super::check_score(arg("score"), it.score)?;
        let unit = self
            .check_vector(&arg("embedding"), &it.embedding)?
            .ok_or_else(|| Error::invalid(arg("embedding"), "is the zero vector"))?;
        let (observation, action) = match (&it.observation, &it.action) {
            (None, None) => (None, None),
            (Some(o), Some(a)) if it.level == Level::Example => (
                Some(
                    sanitize(o, p.max_demo_chars, true)
                        .map_err(|m| Error::invalid(arg("observation"), m))?,
                ),
                Some(
                    sanitize(a, p.max_demo_chars, false)
                        .map_err(|m| Error::invalid(arg("action"), m))?,
                ),
            ),
            _ => {
                return Err(Error::invalid(
                    arg("observation"),
                    "a demonstration needs both observation and action, on an example entry",
                ))
            }
        };
        let mp = p.max_provenance;
        Ok(Entry {
            id: 0,
            text,
            zone: it.zone,
            level: it.level,
            score: it.score,
            episode_ids: super::merged(&[], &it.episode_ids, mp),
            iteration: it.iteration,
            cluster_ids: super::merged(&[], &it.cluster_ids, mp),
            created_iteration: it.created_iteration,
            seq: 0,
            retrieved: it.retrieved,
            successes: it.successes,
            failures: it.failures,
            observation,
            action,
            embedding: unit.into(),
        })
    }
}

fn restore_bucket(s: (f64, f64, f64, f64)) -> Result<TokenBucket> {
    TokenBucket::from_state(s.0, s.1, s.2, s.3).map_err(|e| bad("state", e))
}
