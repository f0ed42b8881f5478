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
//! The current body is an exact flat scan (correct, O(n) per query); the HNSW graph replaces it.

use crate::error::{Error, Result};
use std::collections::HashMap;

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

/// HNSW index. See the module docs for the contract.
#[derive(Debug, Clone)]
pub struct HnswIndex {
    dim: usize,
    params: HnswParams,
    ids: Vec<u64>,
    tags: Vec<u32>,
    data: Vec<f32>,
    slot_of: HashMap<u64, usize>,
}

impl HnswIndex {
    /// New empty index of vectors with `dim` components.
    pub fn new(dim: usize, params: HnswParams) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("dim", "must be at least 1"));
        }
        if params.m < 2 {
            return Err(Error::invalid("m", "must be at least 2"));
        }
        Ok(HnswIndex {
            dim,
            params,
            ids: Vec::new(),
            tags: Vec::new(),
            data: Vec::new(),
            slot_of: HashMap::new(),
        })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Parameters the index was built with.
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

    fn check_vector(&self, arg: &str, v: &[f32]) -> Result<()> {
        if v.len() != self.dim {
            return Err(Error::invalid(
                arg,
                format!("has dimension {}, the index expects {}", v.len(), self.dim),
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(arg, "contains NaN or infinity"));
        }
        Ok(())
    }

    /// Insert `vector` (unit length expected) under `id` with `tag`.
    /// Errors if `id` is already present or the vector is malformed; the index is unchanged then.
    pub fn insert(&mut self, id: u64, vector: &[f32], tag: u32) -> Result<()> {
        self.check_vector("vector", vector)?;
        if self.slot_of.contains_key(&id) {
            return Err(Error::invalid(
                "id",
                format!("{id} is already in the index"),
            ));
        }
        let slot = self.ids.len();
        self.ids.push(id);
        self.tags.push(tag);
        self.data.extend_from_slice(vector);
        self.slot_of.insert(id, slot);
        Ok(())
    }

    /// Remove `id`. Returns false when it was not present.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if slot != last {
            self.ids.swap(slot, last);
            self.tags.swap(slot, last);
            let (d, s) = (self.dim, slot);
            for j in 0..d {
                self.data.swap(s * d + j, last * d + j);
            }
            self.slot_of.insert(self.ids[slot], slot);
        }
        self.ids.pop();
        self.tags.pop();
        self.data.truncate(last * self.dim);
        true
    }

    /// The `k` most similar live entries to `query`: `(id, cosine)`, best first.
    pub fn search(&self, query: &[f32], k: usize, ef: Option<usize>) -> Result<Vec<(u64, f32)>> {
        self.search_filtered(query, k, ef, &|_| true)
    }

    /// As [`HnswIndex::search`], keeping only entries whose tag passes `filter`.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        _ef: Option<usize>,
        filter: &dyn Fn(u32) -> bool,
    ) -> Result<Vec<(u64, f32)>> {
        self.check_vector("query", query)?;
        let mut out: Vec<(u64, f32)> = (0..self.ids.len())
            .filter(|&s| filter(self.tags[s]))
            .map(|s| {
                let v = &self.data[s * self.dim..(s + 1) * self.dim];
                let dot: f32 = v.iter().zip(query).map(|(a, b)| a * b).sum();
                (self.ids[s], dot)
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        Ok(out)
    }

    /// Serialise to bytes (format owned by this module; the library wraps it in a snapshot).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.data.len() * 4 + self.ids.len() * 12);
        for v in [
            self.dim as u64,
            self.params.m as u64,
            self.params.ef_construction as u64,
            self.params.ef_search as u64,
            self.params.seed,
            self.params.flat_threshold as u64,
            self.ids.len() as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for s in 0..self.ids.len() {
            out.extend_from_slice(&self.ids[s].to_le_bytes());
            out.extend_from_slice(&self.tags[s].to_le_bytes());
        }
        for x in &self.data {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Inverse of [`HnswIndex::to_bytes`]; any malformed input is a [`Error::Snapshot`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { b: bytes, pos: 0 };
        let dim = r.u64()? as usize;
        let params = HnswParams {
            m: r.u64()? as usize,
            ef_construction: r.u64()? as usize,
            ef_search: r.u64()? as usize,
            seed: r.u64()?,
            flat_threshold: r.u64()? as usize,
        };
        let n = r.u64()? as usize;
        let mut idx = HnswIndex::new(dim, params).map_err(|e| Error::snapshot(e.to_string()))?;
        let mut ids = Vec::with_capacity(n.min(1 << 20));
        let mut tags = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            ids.push(r.u64()?);
            tags.push(r.u32()?);
        }
        let mut vec = vec![0f32; dim];
        for s in 0..n {
            for x in vec.iter_mut() {
                *x = f32::from_le_bytes(r.take::<4>()?);
            }
            idx.insert(ids[s], &vec, tags[s])
                .map_err(|e| Error::snapshot(format!("hnsw entry {s}: {e}")))?;
        }
        if r.pos != bytes.len() {
            return Err(Error::snapshot("hnsw: trailing bytes"));
        }
        Ok(idx)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_roundtrip_and_remove() {
        let mut idx = HnswIndex::new(2, HnswParams::default()).unwrap();
        idx.insert(1, &[1.0, 0.0], 0).unwrap();
        idx.insert(2, &[0.0, 1.0], 1).unwrap();
        idx.insert(3, &[0.6, 0.8], 1).unwrap();
        let r = idx.search(&[1.0, 0.0], 2, None).unwrap();
        assert_eq!(r[0].0, 1);
        assert_eq!(r[1].0, 3);
        let f = idx
            .search_filtered(&[1.0, 0.0], 5, None, &|t| t == 1)
            .unwrap();
        assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 2]);
        assert!(idx.remove(1));
        assert!(!idx.remove(1));
        let back = HnswIndex::from_bytes(&idx.to_bytes()).unwrap();
        assert_eq!(back.search(&[1.0, 0.0], 1, None).unwrap()[0].0, 3);
        assert!(HnswIndex::from_bytes(&idx.to_bytes()[..10]).is_err());
    }
}
