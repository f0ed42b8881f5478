//! Byte format of [`HnswIndex::to_bytes`] (little-endian, version 1):
//!
//! ```text
//! magic "SLEAHNSW" | version u32 | dim, m, ef_construction, ef_search, seed, flat_threshold,
//! max_elements (u64::MAX = none), rng state, slots, entry (u64::MAX = none) as u64
//! per slot: id u64, tag u32, level u8, deleted u8
//! vectors: slots * dim f32 | layer-0 lists: slots * (1 + 2m) u32
//! upper lists: for each slot, level * (1 + m) u32
//! xxh3-64 of everything above, u64
//! ```
//!
//! Reading checks the checksum, then every count against the bytes that remain before
//! allocating, then every structural invariant the search code relies on (neighbour numbers in
//! range and present on the layer, list lengths within their caps, the entry point on the top
//! layer, live ids distinct, vectors finite). Any failure is an [`Error::Snapshot`].

use super::distance;
use super::graph::{Graph, MAX_LEVEL};
use super::{HnswIndex, HnswParams, MAX_DIM, MAX_M, MAX_SLOTS};
use crate::error::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 8] = b"SLEAHNSW";
const VERSION: u32 = 1;
const NONE: u64 = u64::MAX;
/// Bytes of one slot's fixed record (id, tag, level, deleted).
const SLOT_RECORD: usize = 8 + 4 + 1 + 1;

impl HnswIndex {
    /// Serialise to bytes (format owned by this module; the library wraps it in a snapshot).
    pub fn to_bytes(&self) -> Vec<u8> {
        let g = &self.graph;
        let n = g.slots();
        let mut out = Vec::with_capacity(
            128 + n * (SLOT_RECORD + 4 * g.dim + 4 * (1 + g.m0)) + 4 * g.upper.len(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let p = &self.params;
        for v in [
            g.dim as u64,
            p.m as u64,
            p.ef_construction as u64,
            p.ef_search as u64,
            p.seed,
            p.flat_threshold as u64,
            self.max_elements.map_or(NONE, |x| x as u64),
            g.rng,
            n as u64,
            g.entry.map_or(NONE, u64::from),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for s in 0..n {
            out.extend_from_slice(&g.ids[s].to_le_bytes());
            out.extend_from_slice(&g.tags[s].to_le_bytes());
            out.push(g.levels[s]);
            out.push(u8::from(g.deleted[s]));
        }
        for x in &g.vectors {
            out.extend_from_slice(&x.to_le_bytes());
        }
        for x in g.links0.iter().chain(&g.upper) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Inverse of [`HnswIndex::to_bytes`]; any malformed input is a [`Error::Snapshot`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < MAGIC.len() + 4 + 8 {
            return Err(Error::snapshot("hnsw: truncated"));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let mut r = Reader { b: body, pos: 0 };
        if &r.take::<8>()? != MAGIC {
            return Err(Error::snapshot("hnsw: not an HNSW index (bad magic)"));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(Error::snapshot(format!(
                "hnsw: format version {version} is not supported (this build reads {VERSION})"
            )));
        }
        let mut sum = [0u8; 8];
        sum.copy_from_slice(tail);
        if u64::from_le_bytes(sum) != xxh3_64(body) {
            return Err(Error::snapshot("hnsw: checksum mismatch (corrupt data)"));
        }
        decode(r)
    }
}

/// Parse a checksummed body (the reader stands after magic and version).
pub(super) fn decode(mut r: Reader<'_>) -> Result<HnswIndex> {
    let dim = r.usize_in("dim", 1, MAX_DIM)?;
    let params = HnswParams {
        m: r.usize_in("m", 2, MAX_M)?,
        ef_construction: r.usize_in("ef_construction", 1, usize::MAX)?,
        ef_search: r.usize_in("ef_search", 1, usize::MAX)?,
        seed: r.u64()?,
        flat_threshold: r.usize_in("flat_threshold", 0, usize::MAX)?,
    };
    let max_elements = match r.u64()? {
        NONE => None,
        x => Some(usize::try_from(x).map_err(|_| Error::snapshot("hnsw: bad max_elements"))?),
    };
    let rng = r.u64()?;
    let m0 = 2 * params.m;
    let per_slot = SLOT_RECORD + 4 * dim + 4 * (1 + m0);
    let n = r.usize_in("slots", 0, MAX_SLOTS)?;
    let entry = r.u64()?;
    if n > r.remaining() / per_slot {
        return Err(Error::snapshot("hnsw: slot count exceeds the data"));
    }
    let mut g = Graph::new(
        dim,
        params.m,
        params.ef_construction,
        params.seed,
        distance::best_kernel(),
    );
    g.rng = rng;
    g.reserve(n);
    for _ in 0..n {
        g.ids.push(r.u64()?);
        g.tags.push(r.u32()?);
        let [level] = r.take::<1>()?;
        if level as usize > MAX_LEVEL {
            return Err(Error::snapshot("hnsw: node level out of range"));
        }
        g.levels.push(level);
        g.deleted.push(match r.take::<1>()? {
            [0] => false,
            [1] => true,
            _ => return Err(Error::snapshot("hnsw: bad deletion flag")),
        });
    }
    for _ in 0..n * dim {
        let x = f32::from_le_bytes(r.take::<4>()?);
        if !x.is_finite() {
            return Err(Error::snapshot("hnsw: vector component is not finite"));
        }
        g.vectors.push(x);
    }
    for _ in 0..n * (1 + m0) {
        g.links0.push(r.u32()?);
    }
    let mut upper_len = 0usize;
    for &l in &g.levels {
        g.upper_at.push(upper_len);
        upper_len += l as usize * (1 + params.m);
    }
    if upper_len > r.remaining() / 4 {
        return Err(Error::snapshot("hnsw: upper layers exceed the data"));
    }
    g.upper.reserve_exact(upper_len);
    for _ in 0..upper_len {
        g.upper.push(r.u32()?);
    }
    if r.remaining() != 0 {
        return Err(Error::snapshot("hnsw: trailing bytes"));
    }
    check_graph(&g, entry)?;
    g.n_deleted = g.deleted.iter().filter(|&&d| d).count();
    g.entry = (entry != NONE).then_some(entry as u32);
    g.max_level = g.entry.map_or(0, |e| g.levels[e as usize] as usize);
    index_from_graph(params, max_elements, g)
}

/// Structural invariants the search relies on.
fn check_graph(g: &Graph, entry: u64) -> Result<()> {
    let n = g.slots();
    let bad = |what: &str| Err(Error::snapshot(format!("hnsw: {what}")));
    if n == 0 {
        return if entry == NONE {
            Ok(())
        } else {
            bad("entry point in an empty index")
        };
    }
    let top = g.levels.iter().copied().max().unwrap_or(0);
    if entry >= n as u64 || g.levels[entry as usize] != top {
        return bad("entry point is not a node of the top layer");
    }
    for s in 0..n {
        for l in 0..=g.levels[s] as usize {
            let (arr, b, cap) = if l == 0 {
                (&g.links0, s * (1 + g.m0), g.m0)
            } else {
                (&g.upper, g.upper_at[s] + (l - 1) * (1 + g.m), g.m)
            };
            let c = arr[b] as usize;
            if c > cap {
                return bad("neighbour list longer than its cap");
            }
            for &u in &arr[b + 1..b + 1 + c] {
                let u = u as usize;
                if u >= n || u == s || (g.levels[u] as usize) < l {
                    return bad("neighbour out of range or missing on its layer");
                }
            }
        }
    }
    Ok(())
}

fn index_from_graph(
    params: HnswParams,
    max_elements: Option<usize>,
    graph: Graph,
) -> Result<HnswIndex> {
    let mut slot_of = HashMap::with_capacity(graph.slots() - graph.n_deleted);
    let mut free = BTreeSet::new();
    let mut tag_counts: HashMap<u32, usize> = HashMap::new();
    for s in 0..graph.slots() {
        if graph.deleted[s] {
            free.insert(s as u32);
        } else {
            if slot_of.insert(graph.ids[s], s as u32).is_some() {
                return Err(Error::snapshot("hnsw: duplicate live id"));
            }
            *tag_counts.entry(graph.tags[s]).or_insert(0) += 1;
        }
    }
    if max_elements.is_some_and(|mx| slot_of.len() > mx) {
        return Err(Error::snapshot("hnsw: more entries than max_elements"));
    }
    Ok(HnswIndex {
        params,
        max_elements,
        graph,
        slot_of,
        free,
        tag_counts,
    })
}

pub(super) struct Reader<'a> {
    pub b: &'a [u8],
    pub pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| Error::snapshot("hnsw: truncated"))?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[self.pos..end]);
        self.pos = end;
        Ok(a)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take::<8>()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take::<4>()?))
    }
    fn usize_in(&mut self, what: &str, lo: usize, hi: usize) -> Result<usize> {
        let x = self.u64()?;
        match usize::try_from(x) {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(Error::snapshot(format!(
                "hnsw: {what} = {x} is out of range"
            ))),
        }
    }
}
