//! Library entries as Python values: one tuple per entry version, built once and handed out
//! again while the entry is unchanged (`slea.Experience` wraps the tuple).
//!
//! [`Converted`] keeps, per entry id, the `Arc<Entry>` a tuple was built from. Holding that
//! `Arc` means any later change to the entry copies it (`Arc::make_mut` in the core), so pointer
//! equality with the library's current `Arc` says "unchanged", and the pointer cannot be reused
//! by another entry while it is kept. The cache lock is only taken with the GIL held and never
//! while Python objects are made or freed, so it cannot deadlock with the GIL.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyString, PyTuple};
use slea_core::library::{Entry, Level, Zone};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// Tuples of entry values, one per entry.
pub type Values<'py> = Vec<Bound<'py, PyTuple>>;

type Kept = (Arc<Entry>, Py<PyTuple>);

/// The entry as the plain values `slea.Experience` is built from, in its field order: `(id,
/// text, zone, level, score, episode_ids, iteration, cluster_ids, created_iteration, retrieved,
/// successes, failures, observation, action, embedding)`, the embedding as little-endian
/// float32 bytes.
fn build<'py>(py: Python<'py>, e: &Entry) -> PyResult<Bound<'py, PyTuple>> {
    let zone = match e.zone {
        Zone::Strategy => intern!(py, "strategy"),
        Zone::Warning => intern!(py, "warning"),
    };
    let level = match e.level {
        Level::Principle => intern!(py, "principle"),
        Level::Pattern => intern!(py, "pattern"),
        Level::Example => intern!(py, "example"),
    };
    let embedding = PyBytes::new_with(py, 4 * e.embedding.len(), |buf| {
        for (out, x) in buf.chunks_exact_mut(4).zip(e.embedding.iter()) {
            out.copy_from_slice(&x.to_le_bytes());
        }
        Ok(())
    })?;
    let items: [Bound<'py, PyAny>; 15] = [
        e.id.into_pyobject(py)?.into_any(),
        PyString::new(py, &e.text).into_any(),
        zone.clone().into_any(),
        level.clone().into_any(),
        PyFloat::new(py, e.score).into_any(),
        PyTuple::new(py, &e.episode_ids)?.into_any(),
        e.iteration.into_pyobject(py)?.into_any(),
        PyTuple::new(py, &e.cluster_ids)?.into_any(),
        e.created_iteration.into_pyobject(py)?.into_any(),
        e.retrieved.into_pyobject(py)?.into_any(),
        e.successes.into_pyobject(py)?.into_any(),
        e.failures.into_pyobject(py)?.into_any(),
        e.observation.as_deref().into_pyobject(py)?.into_any(),
        e.action.as_deref().into_pyobject(py)?.into_any(),
        embedding.into_any(),
    ];
    PyTuple::new(py, items)
}

/// Hashes entry ids (small, distinct integers) with one multiplication.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Tuples already built, by entry id (see the module docs).
#[derive(Default)]
pub struct Converted {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    kept: HashMap<u64, Kept, BuildHasherDefault<IdHasher>>,
    /// Size beyond which tuples of entries the library dropped are let go.
    limit: usize,
}

impl Converted {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The values of `entries`, in order: kept tuples where the entry is unchanged, new ones
    /// (then kept) otherwise.
    pub fn values<'py>(&self, py: Python<'py>, entries: &[Arc<Entry>]) -> PyResult<Values<'py>> {
        let mut out = Vec::with_capacity(entries.len());
        let mut missing = Vec::new();
        {
            let s = self.lock();
            for (i, e) in entries.iter().enumerate() {
                match s.kept.get(&e.id) {
                    Some((a, t)) if Arc::ptr_eq(a, e) => out.push(t.bind(py).clone()),
                    _ => {
                        out.push(PyTuple::empty(py));
                        missing.push(i);
                    }
                }
            }
        }
        let mut new = Vec::with_capacity(missing.len());
        for i in missing {
            let t = build(py, &entries[i])?;
            new.push((entries[i].clone(), t.clone().unbind()));
            out[i] = t;
        }
        if !new.is_empty() {
            let stale = self.keep(new);
            drop(stale); // freed outside the lock
        }
        Ok(out)
    }

    /// Keep `new` tuples. Returns the ones they replace and, once the map outgrows its limit,
    /// those of entries the library no longer holds (then the limit becomes twice the size).
    fn keep(&self, new: Vec<Kept>) -> Vec<Kept> {
        let mut s = self.lock();
        let mut stale: Vec<Kept> = new
            .into_iter()
            .filter_map(|(e, t)| s.kept.insert(e.id, (e, t)))
            .collect();
        if s.kept.len() > s.limit {
            // A count of one: only this map holds the Arc (the entry was removed or changed).
            let gone: Vec<u64> = s
                .kept
                .iter()
                .filter(|(_, (a, _))| Arc::strong_count(a) == 1)
                .map(|(&id, _)| id)
                .collect();
            stale.extend(gone.iter().filter_map(|id| s.kept.remove(id)));
            s.limit = (2 * s.kept.len()).max(64);
        }
        stale
    }
}
