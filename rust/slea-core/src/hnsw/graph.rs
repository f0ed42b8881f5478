//! The HNSW graph (Malkov & Yashunin, following hnswlib's `HierarchicalNSW`): flat storage,
//! layer search, heuristic neighbour selection, insertion, and in-place replacement of a slot.
//!
//! Distances are `-dot(a, b)` on unit vectors: smaller is closer and the score reported to
//! callers is exactly `-distance`. Internal node numbers ("slots") are `u32`.

use super::distance::DotFn;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Highest layer a node may get (hnswlib has no cap; with m >= 2 reaching it is
/// astronomically unlikely, and the cap keeps the level in one byte).
pub(crate) const MAX_LEVEL: usize = 31;

/// Cache lines of a neighbour's vector prefetched before its distance is computed (the
/// hardware prefetcher follows the rest; 1, 2 and 4 lines measured the same).
const PREFETCH_LINES: usize = 2;

/// A candidate ordered by distance, ties by slot (max-heap order: the farthest on top).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Far {
    pub d: f32,
    pub slot: u32,
}

impl PartialEq for Far {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Far {}
impl PartialOrd for Far {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Far {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.slot.cmp(&o.slot))
    }
}

/// The same pair in min-heap order: the nearest on top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Near(Far);

impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.cmp(&self.0)
    }
}

/// Per-thread search state: a visited list with generation counters and the two heaps, kept
/// between searches so that a query allocates nothing but its result.
struct Scratch {
    visited: Vec<u16>,
    fresh: Vec<u32>,
    generation: u16,
    near: BinaryHeap<Near>,
    far: BinaryHeap<Far>,
}

impl Scratch {
    /// Start a new search over `n` slots: every slot reads as unvisited.
    fn begin(&mut self, n: usize) {
        if self.visited.len() < n {
            self.visited.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.visited.fill(0);
            self.generation = 1;
        }
        self.near.clear();
        self.far.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch {
        visited: Vec::new(),
        fresh: Vec::new(),
        generation: 0,
        near: BinaryHeap::new(),
        far: BinaryHeap::new(),
    }) };
}

fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        // Not reachable (searches do not nest), but a fresh scratch is always correct.
        Err(_) => f(&mut Scratch {
            visited: Vec::new(),
            fresh: Vec::new(),
            generation: 0,
            near: BinaryHeap::new(),
            far: BinaryHeap::new(),
        }),
    })
}

/// splitmix64: a tiny, well-mixed generator; its whole state is one u64 (serialised).
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The graph and everything stored per slot, in flat arrays.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    pub dim: usize,
    /// Links per node on upper layers; layer 0 allows `m0 = 2 m`.
    pub m: usize,
    pub m0: usize,
    pub ef_construction: usize,
    pub level_mult: f64,
    pub rng: u64,
    /// `slot * dim ..` : unit vectors.
    pub vectors: Vec<f32>,
    pub ids: Vec<u64>,
    pub tags: Vec<u32>,
    pub levels: Vec<u8>,
    pub deleted: Vec<bool>,
    pub n_deleted: usize,
    /// `slot * (1 + m0)`: `[count, neighbours...]` of layer 0.
    pub links0: Vec<u32>,
    /// Start in `upper` of a slot's layers 1..=level, each `[count, neighbours...]` of `1 + m`.
    pub upper_at: Vec<usize>,
    pub upper: Vec<u32>,
    pub entry: Option<u32>,
    pub max_level: usize,
    pub dot: DotFn,
}

impl Graph {
    pub fn new(dim: usize, m: usize, ef_construction: usize, seed: u64, dot: DotFn) -> Self {
        Graph {
            dim,
            m,
            m0: 2 * m,
            ef_construction: ef_construction.max(m),
            level_mult: 1.0 / (m as f64).ln(),
            rng: seed,
            vectors: Vec::new(),
            ids: Vec::new(),
            tags: Vec::new(),
            levels: Vec::new(),
            deleted: Vec::new(),
            n_deleted: 0,
            links0: Vec::new(),
            upper_at: Vec::new(),
            upper: Vec::new(),
            entry: None,
            max_level: 0,
            dot,
        }
    }

    /// Number of slots (live and tombstoned).
    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    #[inline]
    pub fn vector(&self, slot: u32) -> &[f32] {
        let s = slot as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    /// Ask the CPU to start loading the first cache lines of a slot's vector.
    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let v = self.vector(slot);
            let n = (v.len() * 4).div_ceil(64).min(PREFETCH_LINES);
            for i in 0..n {
                // SAFETY: a prefetch never faults; the address lies inside `v`.
                #[allow(unused_unsafe)]
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(i * 16).cast());
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    #[inline]
    fn dist(&self, q: &[f32], slot: u32) -> f32 {
        -(self.dot)(q, self.vector(slot))
    }

    #[inline]
    fn block(&self, slot: u32, level: usize) -> (bool, usize) {
        if level == 0 {
            (true, slot as usize * (1 + self.m0))
        } else {
            (
                false,
                self.upper_at[slot as usize] + (level - 1) * (1 + self.m),
            )
        }
    }

    /// Neighbours of `slot` on `level` (the slot must have that level).
    #[inline]
    pub fn links(&self, slot: u32, level: usize) -> &[u32] {
        let (zero, b) = self.block(slot, level);
        let arr = if zero { &self.links0 } else { &self.upper };
        let c = arr[b] as usize;
        &arr[b + 1..b + 1 + c]
    }

    fn set_links(&mut self, slot: u32, level: usize, nb: &[u32]) {
        let (zero, b) = self.block(slot, level);
        let arr = if zero {
            &mut self.links0
        } else {
            &mut self.upper
        };
        arr[b] = nb.len() as u32;
        arr[b + 1..b + 1 + nb.len()].copy_from_slice(nb);
    }

    /// Append `nb` to a list known to have room.
    fn push_link(&mut self, slot: u32, level: usize, nb: u32) {
        let (zero, b) = self.block(slot, level);
        let arr = if zero {
            &mut self.links0
        } else {
            &mut self.upper
        };
        let c = arr[b] as usize;
        arr[b + 1 + c] = nb;
        arr[b] += 1;
    }

    fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// `floor(-ln(U) / ln(m))` with U uniform on (0, 1], as in the paper and hnswlib.
    fn random_level(&mut self) -> usize {
        let u = ((splitmix64(&mut self.rng) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        let l = (-u.ln() * self.level_mult).floor();
        (l as usize).min(MAX_LEVEL)
    }

    /// Reserve room for `n` more slots.
    pub fn reserve(&mut self, n: usize) {
        let exact = n >= self.ids.capacity() / 2;
        let grow = |v: &mut Vec<u32>, k: usize| {
            if exact {
                v.reserve_exact(k)
            } else {
                v.reserve(k)
            }
        };
        grow(&mut self.links0, n * (1 + self.m0));
        grow(&mut self.tags, n);
        if exact {
            self.vectors.reserve_exact(n * self.dim);
            self.ids.reserve_exact(n);
            self.levels.reserve_exact(n);
            self.deleted.reserve_exact(n);
            self.upper_at.reserve_exact(n);
        } else {
            self.vectors.reserve(n * self.dim);
            self.ids.reserve(n);
            self.levels.reserve(n);
            self.deleted.reserve(n);
            self.upper_at.reserve(n);
        }
    }

    /// Greedy descent on one upper layer (ef = 1).
    fn greedy(&self, q: &[f32], cur: &mut u32, cur_d: &mut f32, level: usize) {
        loop {
            let mut changed = false;
            for &c in self.links(*cur, level) {
                let d = self.dist(q, c);
                if d < *cur_d {
                    *cur_d = d;
                    *cur = c;
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// Best-first search of one layer from `ep` keeping the `ef` nearest accepted nodes
    /// (hnswlib's `searchBaseLayer(ST)`): every node is traversed, but only those passing
    /// `accept` (live, filter) enter the result. Stops when the nearest open candidate is
    /// farther than the worst result and the result is full, or after `budget` distance
    /// evaluations (then returns `false`). The result is left in `s.far`.
    #[allow(clippy::too_many_arguments)]
    fn search_layer<A: Fn(u32) -> bool>(
        &self,
        s: &mut Scratch,
        q: &[f32],
        ep: u32,
        ep_d: f32,
        ef: usize,
        level: usize,
        accept: A,
        budget: usize,
    ) -> bool {
        s.begin(self.slots());
        let generation = s.generation;
        let Scratch {
            visited,
            near,
            far,
            fresh,
            ..
        } = s;
        visited[ep as usize] = generation;
        let mut worst = f32::INFINITY;
        if accept(ep) {
            far.push(Far { d: ep_d, slot: ep });
            worst = ep_d;
        }
        near.push(Near(Far { d: ep_d, slot: ep }));
        let mut evals = 0usize;
        while let Some(Near(c)) = near.pop() {
            if c.d > worst && far.len() >= ef {
                break;
            }
            // Mark the unvisited neighbours and prefetch their vectors first, so that the
            // memory loads overlap instead of stalling one distance at a time.
            fresh.clear();
            for &u in self.links(c.slot, level) {
                let seen = &mut visited[u as usize];
                if *seen != generation {
                    *seen = generation;
                    fresh.push(u);
                    self.prefetch(u);
                }
            }
            for &u in fresh.iter() {
                let d = self.dist(q, u);
                evals += 1;
                if far.len() < ef || d < worst {
                    near.push(Near(Far { d, slot: u }));
                    if accept(u) {
                        far.push(Far { d, slot: u });
                        if far.len() > ef {
                            far.pop();
                        }
                        if let Some(w) = far.peek() {
                            worst = w.d;
                        }
                    }
                }
            }
            if evals > budget {
                return false;
            }
        }
        true
    }

    /// Descend from the entry point to layer `stop + 1` greedily; returns the node reached.
    fn descend(&self, q: &[f32], stop: usize) -> Option<(u32, f32)> {
        let mut cur = self.entry?;
        let mut cur_d = self.dist(q, cur);
        let mut level = self.max_level;
        while level > stop {
            self.greedy(q, &mut cur, &mut cur_d, level);
            level -= 1;
        }
        Some((cur, cur_d))
    }

    /// Approximate `ef` nearest accepted slots to `q`, nearest first; `None` when the search
    /// ran past `budget` distance evaluations.
    pub fn knn<A: Fn(u32) -> bool>(
        &self,
        q: &[f32],
        ef: usize,
        accept: A,
        budget: usize,
    ) -> Option<Vec<Far>> {
        let Some((ep, ep_d)) = self.descend(q, 0) else {
            return Some(Vec::new());
        };
        with_scratch(|s| {
            if !self.search_layer(s, q, ep, ep_d, ef, 0, accept, budget) {
                return None;
            }
            let mut out: Vec<Far> = s.far.drain().collect();
            out.sort_unstable();
            Some(out)
        })
    }

    /// Construction-time candidates of `q` on `level` (live nodes only, `ef_construction`).
    fn candidates(&self, q: &[f32], ep: u32, ep_d: f32, level: usize) -> Vec<Far> {
        with_scratch(|s| {
            let deleted = &self.deleted;
            self.search_layer(
                s,
                q,
                ep,
                ep_d,
                self.ef_construction,
                level,
                |u| !deleted[u as usize],
                usize::MAX,
            );
            let mut out: Vec<Far> = s.far.drain().collect();
            out.sort_unstable();
            out
        })
    }

    /// hnswlib's `getNeighborsByHeuristic2`: walk `cands` (nearest first) and keep a candidate
    /// only if it is closer to the base than to every node kept so far, up to `m` nodes. With
    /// fewer than `m` candidates all are kept.
    fn select(&self, cands: &[Far], m: usize) -> Vec<u32> {
        if cands.len() < m {
            return cands.iter().map(|c| c.slot).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for c in cands {
            if kept.len() >= m {
                break;
            }
            let vc = self.vector(c.slot);
            if kept.iter().all(|&s| self.dist(vc, s) >= c.d) {
                kept.push(c.slot);
            }
        }
        kept
    }

    /// Link `slot` to its heuristic neighbours among `cands` on `level` and add the reverse
    /// links (pruning a full list with the heuristic). Returns the nearest neighbour kept.
    fn connect(&mut self, slot: u32, cands: &[Far], level: usize, is_update: bool) -> u32 {
        let sel = self.select(cands, self.m);
        self.set_links(slot, level, &sel);
        let cap = self.cap(level);
        for &n in &sel {
            let list = self.links(n, level);
            if is_update && list.contains(&slot) {
                continue;
            }
            if list.len() < cap {
                self.push_link(n, level, slot);
            } else {
                let vn = self.vector(n);
                let mut c: Vec<Far> = list
                    .iter()
                    .chain(std::iter::once(&slot))
                    .map(|&x| Far {
                        d: self.dist(vn, x),
                        slot: x,
                    })
                    .collect();
                c.sort_unstable();
                let pruned = self.select(&c, cap);
                self.set_links(n, level, &pruned);
            }
        }
        sel.first().copied().unwrap_or(slot)
    }

    /// Append a new slot holding `v` (unit length, `dim` long) and link it into the graph.
    pub fn insert_new(&mut self, id: u64, tag: u32, v: &[f32]) -> u32 {
        let slot = self.ids.len() as u32;
        let level = self.random_level();
        self.vectors.extend_from_slice(v);
        self.ids.push(id);
        self.tags.push(tag);
        self.levels.push(level as u8);
        self.deleted.push(false);
        self.links0.resize(self.links0.len() + 1 + self.m0, 0);
        self.upper_at.push(self.upper.len());
        self.upper
            .resize(self.upper.len() + level * (1 + self.m), 0);
        let Some(entry) = self.entry else {
            self.entry = Some(slot);
            self.max_level = level;
            return slot;
        };
        let q = v.to_vec();
        let (mut cur, mut cur_d) = self.descend(&q, level).unwrap_or((entry, 0.0));
        for l in (0..=level.min(self.max_level)).rev() {
            let mut cands = self.candidates(&q, cur, cur_d, l);
            if cands.is_empty() {
                // Everything reachable is tombstoned: link to the node we stand on so the new
                // node stays reachable (hnswlib adds the deleted entry point for this).
                cands.push(Far {
                    d: cur_d,
                    slot: cur,
                });
            }
            cur = self.connect(slot, &cands, l, false);
            cur_d = self.dist(&q, cur);
        }
        if level > self.max_level {
            self.entry = Some(slot);
            self.max_level = level;
        }
        slot
    }

    /// Give `slot` a new id, tag and vector and repair the graph around it (hnswlib's
    /// `updatePoint` with update probability 1 followed by `repairConnectionsForUpdate`).
    /// Used to reuse a tombstoned slot and to update a live entry in place.
    pub fn replace(&mut self, slot: u32, id: u64, tag: u32, v: &[f32]) {
        let s = slot as usize;
        if self.deleted[s] {
            self.deleted[s] = false;
            self.n_deleted -= 1;
        }
        self.ids[s] = id;
        self.tags[s] = tag;
        self.vectors[s * self.dim..(s + 1) * self.dim].copy_from_slice(v);
        if self.entry == Some(slot) && self.slots() == 1 {
            return;
        }
        let level = self.levels[s] as usize;
        for l in 0..=level {
            self.refresh_neighbourhood(slot, l);
        }
        self.reconnect(slot, v);
    }

    /// Re-select the links of every neighbour of `slot` on `level` among the one- and two-hop
    /// neighbourhood of `slot`.
    fn refresh_neighbourhood(&mut self, slot: u32, level: usize) {
        let one_hop = self.links(slot, level).to_vec();
        if one_hop.is_empty() {
            return;
        }
        let mut pool = vec![slot];
        for &n in &one_hop {
            pool.push(n);
            pool.extend_from_slice(self.links(n, level));
        }
        pool.sort_unstable();
        pool.dedup();
        let cap = self.cap(level);
        for &n in &one_hop {
            let vn = self.vector(n);
            let mut c: Vec<Far> = pool
                .iter()
                .filter(|&&x| x != n)
                .map(|&x| Far {
                    d: self.dist(vn, x),
                    slot: x,
                })
                .collect();
            c.sort_unstable();
            c.truncate(self.ef_construction);
            let sel = self.select(&c, cap);
            self.set_links(n, level, &sel);
        }
    }

    /// Search fresh neighbours for `slot` (never itself) from the entry point and connect.
    fn reconnect(&mut self, slot: u32, v: &[f32]) {
        let level = self.levels[slot as usize] as usize;
        let Some((mut cur, mut cur_d)) = self.descend(v, level) else {
            return;
        };
        for l in (0..=level).rev() {
            let mut cands = self.candidates(v, cur, cur_d, l);
            cands.retain(|c| c.slot != slot);
            if !cands.is_empty() {
                cur = self.connect(slot, &cands, l, true);
                cur_d = self.dist(v, cur);
            }
        }
    }

    /// Tombstone `slot`: it keeps routing searches but is never returned.
    pub fn mark_deleted(&mut self, slot: u32) {
        let s = slot as usize;
        if !self.deleted[s] {
            self.deleted[s] = true;
            self.n_deleted += 1;
        }
    }

    /// Bytes held by the graph's arrays (capacities, not lengths).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.vectors.capacity() * size_of::<f32>()
            + self.ids.capacity() * size_of::<u64>()
            + self.tags.capacity() * size_of::<u32>()
            + self.levels.capacity()
            + self.deleted.capacity()
            + self.links0.capacity() * size_of::<u32>()
            + self.upper_at.capacity() * size_of::<usize>()
            + self.upper.capacity() * size_of::<u32>()
    }
}
