//! Cluster pools and retrieval: pool hits (cached per library version) and the HNSW fallback.

use super::{Entry, Hits, Library, Zone};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Pool {
    pub(super) ids: [Vec<u64>; 2],
    pub(super) last_used: u64,
}

impl Pool {
    pub(super) fn is_empty(&self) -> bool {
        self.ids.iter().all(Vec::is_empty)
    }
}

impl Library {
    /// Link entry `id` (must exist) to `cluster` under the pool rules; returns whether the pool
    /// changed.
    pub(super) fn link_one(&mut self, cluster: u64, id: u64) -> bool {
        let Some(e) = self.entries.get(&id) else {
            return false;
        };
        let (z, key) = (e.zone.index(), e.key());
        if !self.pools.contains_key(&cluster) && self.pools.len() >= self.params.max_clusters {
            self.drop_lru_pools();
        }
        self.tick += 1;
        let tick = self.tick;
        let pool = self.pools.entry(cluster).or_default();
        pool.last_used = tick;
        if pool.ids[z].contains(&id) {
            return false;
        }
        if pool.ids[z].len() >= self.params.pool_size {
            let entries = &self.entries;
            let lowest = pool.ids[z]
                .iter()
                .enumerate()
                .filter_map(|(i, x)| entries.get(x).map(|e| (i, e.key())))
                .min_by_key(|&(_, k)| k);
            match lowest {
                Some((i, low)) if key > low => {
                    pool.ids[z][i] = id;
                    if let Some(v) = self.links.get_mut(&low.id) {
                        v.retain(|&c| c != cluster);
                        if v.is_empty() {
                            self.links.remove(&low.id);
                        }
                    }
                }
                _ => return false,
            }
        } else {
            pool.ids[z].push(id);
        }
        self.links.entry(id).or_default().push(cluster);
        true
    }

    /// Drop the least recently used eighth of the pools (at least one), so that the scan is
    /// amortised over many new clusters. Ties on recency go to the smaller cluster id.
    fn drop_lru_pools(&mut self) {
        let n = self.pools.len().div_ceil(8).max(1);
        let mut order: Vec<(u64, u64)> =
            self.pools.iter().map(|(c, p)| (p.last_used, *c)).collect();
        if n < order.len() {
            order.select_nth_unstable(n - 1);
            order.truncate(n);
        }
        for (_, cl) in order {
            let Some(p) = self.pools.remove(&cl) else {
                continue;
            };
            for id in p.ids.iter().flatten() {
                if let Some(v) = self.links.get_mut(id) {
                    v.retain(|&c| c != cl);
                    if v.is_empty() {
                        self.links.remove(id);
                    }
                }
            }
        }
    }

    /// Link existing entries to `cluster`. Errors (nothing changed) if an id does not exist.
    /// Returns how many links were added.
    pub fn link(&mut self, cluster: u64, ids: &[u64]) -> Result<usize> {
        self.check_ids(ids)?;
        let added = ids.iter().filter(|&&id| self.link_one(cluster, id)).count();
        if added > 0 {
            self.mutated();
        }
        Ok(added)
    }

    /// Cluster-pool retrieval: `Some(top k_strategy strategies then top k_warning warnings)`
    /// when the pool of `cluster` is not empty, `None` otherwise (then use
    /// [`Library::retrieve_fallback`]).
    pub fn retrieve_hit(
        &mut self,
        cluster: u64,
        k_strategy: usize,
        k_warning: usize,
    ) -> Option<Hits> {
        let key = (cluster, k_strategy, k_warning);
        let pool = self.pools.get_mut(&cluster)?;
        self.tick += 1;
        pool.last_used = self.tick;
        self.counters.hits += 1;
        if let Some((v, hits)) = self.cache.get(&key) {
            if *v == self.version {
                self.counters.cache_hits += 1;
                return Some(hits.clone());
            }
        }
        let pool = self.pools.get(&cluster)?;
        let cap = pool.ids[0].len().min(k_strategy) + pool.ids[1].len().min(k_warning);
        let mut out: Vec<Arc<Entry>> = Vec::with_capacity(cap);
        for (z, k) in [(0, k_strategy), (1, k_warning)] {
            let mut es: Vec<&Arc<Entry>> = pool.ids[z]
                .iter()
                .filter_map(|id| self.entries.get(id))
                .collect();
            // Best score first; equal scores: older (smaller seq) first.
            es.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.seq.cmp(&b.seq)));
            out.extend(es.into_iter().take(k).cloned());
        }
        let hits: Hits = out.into();
        if self.cache.len() >= self.params.max_clusters.saturating_mul(4).max(64) {
            self.cache.clear();
        }
        self.cache.insert(key, (self.version, hits.clone()));
        Some(hits)
    }

    /// Semantic fallback for `cluster` with query embedding `query` (`dim` values, normalised
    /// here): if the pool has meanwhile filled, the pool answer; otherwise the top `k` of each
    /// zone by cosine above `fallback_threshold`, which are then linked to the cluster. A zero
    /// query finds nothing.
    pub fn retrieve_fallback(
        &mut self,
        cluster: u64,
        query: &[f32],
        k_strategy: usize,
        k_warning: usize,
    ) -> Result<Hits> {
        let q = self.check_vector("query", query)?;
        Ok(self.fallback_checked(cluster, q.as_deref(), k_strategy, k_warning))
    }

    fn fallback_checked(&mut self, cluster: u64, q: Option<&[f32]>, ks: usize, kw: usize) -> Hits {
        if let Some(h) = self.retrieve_hit(cluster, ks, kw) {
            return h;
        }
        self.counters.fallbacks += 1;
        let mut out: Vec<Arc<Entry>> = Vec::new();
        if let Some(q) = q {
            for (zone, k) in [(Zone::Strategy, ks), (Zone::Warning, kw)] {
                let k = k.min(self.zone_len(zone));
                if k == 0 {
                    continue;
                }
                let filter = |t: u32| t / 3 == zone.index() as u32;
                let found = self
                    .index
                    .search_filtered(q, k, None, &filter)
                    .unwrap_or_default();
                out.extend(
                    found
                        .into_iter()
                        .filter(|&(_, c)| c > self.params.fallback_threshold)
                        .filter_map(|(id, _)| self.entries.get(&id).cloned()),
                );
            }
        }
        if out.is_empty() {
            self.counters.fallback_empty += 1;
        } else {
            for e in &out {
                self.link_one(cluster, e.id);
            }
            self.mutated();
        }
        out.into()
    }

    /// [`Library::retrieve_hit`] for many clusters.
    pub fn retrieve_hits(
        &mut self,
        clusters: &[u64],
        k_strategy: usize,
        k_warning: usize,
    ) -> Vec<Option<Hits>> {
        clusters
            .iter()
            .map(|&c| self.retrieve_hit(c, k_strategy, k_warning))
            .collect()
    }

    /// [`Library::retrieve_fallback`] for many clusters; `queries` is row-major
    /// `clusters.len() x dim`. All queries are checked before anything changes.
    pub fn retrieve_fallbacks(
        &mut self,
        clusters: &[u64],
        queries: &[f32],
        k_strategy: usize,
        k_warning: usize,
    ) -> Result<Vec<Hits>> {
        let dim = self.params.dim;
        if queries.len() != clusters.len() * dim {
            return Err(Error::invalid(
                "queries",
                format!(
                    "has {} values, expected {} clusters x dimension {dim}",
                    queries.len(),
                    clusters.len()
                ),
            ));
        }
        let mut qs = Vec::with_capacity(clusters.len());
        for (i, row) in queries.chunks_exact(dim).enumerate() {
            qs.push(self.check_vector(&format!("queries[{i}]"), row)?);
        }
        Ok(clusters
            .iter()
            .zip(qs)
            .map(|(&c, q)| self.fallback_checked(c, q.as_deref(), k_strategy, k_warning))
            .collect())
    }
}
