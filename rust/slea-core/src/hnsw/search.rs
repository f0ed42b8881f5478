//! Search entry points over the graph: the choice between the exact scan and the graph, the
//! exhaustive-filter fallback, and the (optionally multi-threaded) batch search.

use super::distance::push_normalised;
use super::graph::Far;
use super::{norm_error, BatchResult, HnswIndex, MAX_THREADS};
use crate::error::{Error, Result};
use std::collections::BinaryHeap;

/// Same-distance hits of the exact scan are ordered by id.
#[derive(Clone, Copy, PartialEq)]
struct ExactHit {
    d: f32,
    id: u64,
}
impl Eq for ExactHit {}
impl PartialOrd for ExactHit {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ExactHit {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// The inputs every row of a batch search shares.
struct Plan<'a> {
    k: usize,
    ef: Option<usize>,
    filter: Option<&'a (dyn Fn(u32) -> bool + Sync)>,
    n_match: usize,
    width: usize,
}

impl HnswIndex {
    /// Search `queries` (`rows x dim`, row-major) on `threads` threads (1: the calling thread;
    /// at most [`MAX_THREADS`] and one per row).
    /// Every row gets `width = min(k, entries passing the filter)` hits.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&(dyn Fn(u32) -> bool + Sync)>,
        threads: usize,
    ) -> Result<BatchResult> {
        let dim = self.dim();
        if queries.len() % dim != 0 {
            return Err(Error::invalid(
                "queries",
                format!("has {} floats, not a multiple of dim {dim}", queries.len()),
            ));
        }
        let rows = queries.len() / dim;
        let mut unit = Vec::with_capacity(queries.len());
        for (i, row) in queries.chunks_exact(dim).enumerate() {
            push_normalised(row, &mut unit).map_err(|e| norm_error(&format!("queries[{i}]"), e))?;
        }
        let n_match = match filter {
            Some(f) => self.count_matching(f),
            None => self.len(),
        };
        let width = if self.is_empty() { 0 } else { k.min(n_match) };
        let mut ids = vec![u64::MAX; rows * width];
        let mut scores = vec![f32::NEG_INFINITY; rows * width];
        if width == 0 {
            return Ok(BatchResult { ids, scores, width });
        }
        let plan = Plan {
            k,
            ef,
            filter,
            n_match,
            width,
        };
        let threads = threads.clamp(1, rows.clamp(1, MAX_THREADS));
        if threads == 1 {
            self.fill_rows(&plan, &unit, &mut ids, &mut scores);
        } else {
            let per = rows.div_ceil(threads);
            std::thread::scope(|sc| {
                let parts = unit
                    .chunks(per * dim)
                    .zip(ids.chunks_mut(per * width))
                    .zip(scores.chunks_mut(per * width));
                for ((qs, is), ss) in parts {
                    let plan = &plan;
                    sc.spawn(move || self.fill_rows(plan, qs, is, ss));
                }
            });
        }
        Ok(BatchResult { ids, scores, width })
    }

    /// Search each normalised row of `qs` into its `plan.width` slots of `ids` and `scores`.
    fn fill_rows(&self, plan: &Plan<'_>, qs: &[f32], ids: &mut [u64], scores: &mut [f32]) {
        let outs = ids
            .chunks_exact_mut(plan.width)
            .zip(scores.chunks_exact_mut(plan.width));
        for (q, (ri, rs)) in qs.chunks_exact(self.dim()).zip(outs) {
            let filter = plan.filter.map(|f| f as &dyn Fn(u32) -> bool);
            let hits = self.search_unit(q, plan.k, plan.ef, filter, plan.n_match);
            for (j, (id, s)) in hits.into_iter().take(plan.width).enumerate() {
                ri[j] = id;
                rs[j] = s;
            }
        }
    }

    /// Live entries whose tag passes `filter`.
    pub(super) fn count_matching(&self, filter: &dyn Fn(u32) -> bool) -> usize {
        if self.tag_counts.len() <= 4096 {
            self.tag_counts
                .iter()
                .filter(|(t, _)| filter(**t))
                .map(|(_, c)| c)
                .sum()
        } else {
            let g = &self.graph;
            (0..g.slots())
                .filter(|&s| !g.deleted[s] && filter(g.tags[s]))
                .count()
        }
    }

    /// Search with a normalised query; `n_match` live entries pass `filter`.
    pub(super) fn search_unit(
        &self,
        q: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn Fn(u32) -> bool>,
        n_match: usize,
    ) -> Vec<(u64, f32)> {
        if k == 0 || n_match == 0 {
            return Vec::new();
        }
        let flat = self.params.flat_threshold;
        if self.len() <= flat || n_match <= flat.max(k) {
            return self.exact(q, k, filter);
        }
        let ef = ef.unwrap_or(self.params.ef_search).max(k);
        let g = &self.graph;
        let found = match filter {
            None if g.n_deleted == 0 => g.knn(q, ef, |_| true, usize::MAX),
            None => g.knn(q, ef, |s| !g.deleted[s as usize], n_match),
            Some(f) => g.knn(
                q,
                ef,
                |s| !g.deleted[s as usize] && f(g.tags[s as usize]),
                n_match,
            ),
        };
        match found {
            Some(hits) if hits.len() >= k.min(n_match) => self.finish(hits, k),
            _ => self.exact(q, k, filter),
        }
    }

    /// Graph hits (nearest first) to `(id, score)` ordered by score then id, cut to `k`.
    fn finish(&self, hits: Vec<Far>, k: usize) -> Vec<(u64, f32)> {
        let mut out: Vec<(u64, f32)> = hits
            .into_iter()
            .map(|h| (self.graph.ids[h.slot as usize], -h.d))
            .collect();
        out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        out
    }

    /// Exact top-`k` of live entries passing `filter` for a normalised query.
    pub(super) fn exact(
        &self,
        q: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u64, f32)> {
        let g = &self.graph;
        if k == 0 {
            return Vec::new();
        }
        let mut heap: BinaryHeap<ExactHit> = BinaryHeap::with_capacity(k.min(g.slots()) + 1);
        for s in 0..g.slots() {
            if g.deleted[s] || filter.is_some_and(|f| !f(g.tags[s])) {
                continue;
            }
            let hit = ExactHit {
                d: -(g.dot)(q, g.vector(s as u32)),
                id: g.ids[s],
            };
            if heap.len() < k {
                heap.push(hit);
            } else if heap.peek().is_some_and(|w| hit < *w) {
                heap.pop();
                heap.push(hit);
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|h| (h.id, -h.d))
            .collect()
    }
}
