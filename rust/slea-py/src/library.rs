//! Bindings for slea_core::library: `slea._core.Library`, wrapped by `slea.ExperienceLibrary`.
//! Entries come out as tuples of plain values (`crate::entry`), from which Python builds
//! `slea.Experience`.
//!
//! The library sits behind a `Mutex`. Batch calls take it with the GIL released; a single
//! retrieval first tries the lock with the GIL held (no thread switch when uncontended) and
//! falls back to waiting with the GIL released. Python objects are built only after the lock is
//! dropped, so no thread ever needs the GIL while holding the lock.

use crate::canon::{str_items, str_slices};
use crate::entry::{Converted, Values};
use crate::error::{CoreResult, PyCoreErr};
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use slea_core::library::{sanitize, Candidate, ImportEntry, Level, Library, LibraryParams, Zone};
use slea_core::Error;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, TryLockError};

fn slice1<'a, T: numpy::Element + Copy>(a: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

fn rows<'a>(a: &'a PyReadonlyArray2<'_, f32>) -> (Cow<'a, [f32]>, usize, usize) {
    let shape = a.shape();
    let (n, d) = (shape[0], shape[1]);
    let data = match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    };
    (data, n, d)
}

fn check_rows(arg: &str, n: usize, d: usize, want_n: usize, dim: usize) -> Result<(), Error> {
    if n != want_n || d != dim {
        return Err(Error::invalid(
            arg,
            format!("has shape ({n}, {d}), expected ({want_n}, {dim})"),
        ));
    }
    Ok(())
}

/// A candidate as the Python `Candidate` dataclass exposes it.
#[derive(FromPyObject)]
struct PyCandidate {
    #[pyo3(attribute)]
    text: String,
    #[pyo3(attribute)]
    zone: String,
    #[pyo3(attribute)]
    level: String,
    #[pyo3(attribute)]
    score: f64,
    #[pyo3(attribute)]
    episode_ids: Vec<u64>,
    #[pyo3(attribute)]
    cluster_ids: Vec<u64>,
    #[pyo3(attribute)]
    observation: Option<String>,
    #[pyo3(attribute)]
    action: Option<String>,
}

/// An entry to import, as a dict of the JSONL fields.
#[derive(FromPyObject)]
struct PyImport {
    #[pyo3(item)]
    id: Option<u64>,
    #[pyo3(item)]
    text: String,
    #[pyo3(item)]
    zone: String,
    #[pyo3(item)]
    level: String,
    #[pyo3(item)]
    score: f64,
    #[pyo3(item)]
    episode_ids: Vec<u64>,
    #[pyo3(item)]
    iteration: u64,
    #[pyo3(item)]
    cluster_ids: Vec<u64>,
    #[pyo3(item)]
    created_iteration: u64,
    #[pyo3(item)]
    retrieved: u64,
    #[pyo3(item)]
    successes: u64,
    #[pyo3(item)]
    failures: u64,
    #[pyo3(item)]
    observation: Option<String>,
    #[pyo3(item)]
    action: Option<String>,
    #[pyo3(item)]
    linked_clusters: Vec<u64>,
}

type DecisionTuple = (&'static str, Option<u64>, String, Vec<u64>);
type SnapshotInfo = (String, u32, u32, Vec<(String, usize)>);

/// The experience library (see `slea.ExperienceLibrary`).
#[pyclass(module = "slea._core", name = "Library", frozen)]
pub struct PyLibrary {
    inner: Mutex<Library>,
    converted: Converted,
}

impl PyLibrary {
    fn lock(&self) -> MutexGuard<'_, Library> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the library: try the lock with the GIL held, else wait with it released.
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Library) -> R + Send) -> R {
        match self.inner.try_lock() {
            Ok(mut g) => f(&mut g),
            Err(TryLockError::Poisoned(p)) => f(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => py.detach(|| f(&mut self.lock())),
        }
    }

    fn wrap(lib: Library) -> Self {
        PyLibrary {
            inner: Mutex::new(lib),
            converted: Converted::default(),
        }
    }
}

#[pymethods]
impl PyLibrary {
    #[new]
    #[pyo3(signature = (*, dim, embedder, capacity, rate_per_step, novelty_threshold,
                        fallback_threshold, max_text_chars, max_demo_chars, pool_size,
                        max_clusters, max_provenance, ema_alpha=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        dim: usize,
        embedder: String,
        capacity: [usize; 2],
        rate_per_step: [f64; 2],
        novelty_threshold: f32,
        fallback_threshold: f32,
        max_text_chars: usize,
        max_demo_chars: usize,
        pool_size: usize,
        max_clusters: usize,
        max_provenance: usize,
        ema_alpha: Option<f64>,
    ) -> CoreResult<Self> {
        let params = LibraryParams {
            dim,
            embedder,
            capacity,
            rate_per_step,
            novelty_threshold,
            fallback_threshold,
            max_text_chars,
            max_demo_chars,
            pool_size,
            max_clusters,
            max_provenance,
            ema_alpha,
        };
        Ok(Self::wrap(Library::new(params)?))
    }

    /// Read and verify a snapshot file. GIL released.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> CoreResult<Self> {
        Ok(Self::wrap(py.detach(|| Library::load(&path))?))
    }

    /// Parse and verify snapshot bytes. GIL released.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> CoreResult<Self> {
        Ok(Self::wrap(
            py.detach(|| Library::from_snapshot_bytes(data))?,
        ))
    }

    /// Snapshot bytes. GIL released.
    fn to_bytes<'py>(&self, py: Python<'py>) -> CoreResult<Bound<'py, PyBytes>> {
        let b = py.detach(|| self.lock().to_snapshot_bytes())?;
        Ok(PyBytes::new(py, &b))
    }

    /// Write a snapshot atomically; the lock is held only while encoding. GIL released.
    fn save(&self, py: Python<'_>, path: PathBuf) -> CoreResult<()> {
        py.detach(|| {
            let bytes = self.lock().to_snapshot_bytes()?;
            slea_core::snapshot::write_atomic(&path, &bytes)
        })?;
        Ok(())
    }

    /// Parameters as JSON (the Python side rebuilds its config from them).
    fn params_json(&self) -> CoreResult<String> {
        Ok(self.lock().params_json()?)
    }

    /// Admit candidates with the embeddings of their sanitised texts (`(n, dim)` float32).
    /// Returns `(outcome, entry id, reason, evicted ids)` per candidate. GIL released.
    fn admit(
        &self,
        py: Python<'_>,
        candidates: Vec<PyCandidate>,
        embeddings: PyReadonlyArray2<'_, f32>,
        iteration: u64,
    ) -> CoreResult<Vec<DecisionTuple>> {
        let (data, n, d) = rows(&embeddings);
        let dim = self.lock().params().dim;
        check_rows("embeddings", n, d, candidates.len(), dim)?;
        let mut cs = Vec::with_capacity(n);
        for (c, row) in candidates.into_iter().zip(data.chunks_exact(dim.max(1))) {
            cs.push(Candidate {
                text: c.text,
                zone: Zone::parse(&c.zone)?,
                level: Level::parse(&c.level)?,
                score: c.score,
                episode_ids: c.episode_ids,
                cluster_ids: c.cluster_ids,
                observation: c.observation,
                action: c.action,
                embedding: row.to_vec(),
            });
        }
        let decisions = py.detach(|| self.lock().admit(cs, iteration))?;
        Ok(decisions
            .into_iter()
            .map(|d| (d.outcome.name(), d.entry_id, d.reason, d.evicted))
            .collect())
    }

    /// Retrieve for one cluster: the pool answer, else (with `query`) the semantic fallback,
    /// else `None`.
    #[pyo3(signature = (cluster_id, k_strategy, k_warning, query=None))]
    fn retrieve<'py>(
        &self,
        py: Python<'py>,
        cluster_id: u64,
        k_strategy: usize,
        k_warning: usize,
        query: Option<PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<Option<Values<'py>>> {
        let hits = match query {
            None => self.with(py, |l| l.retrieve_hit(cluster_id, k_strategy, k_warning)),
            Some(q) => {
                let q = slice1(&q);
                let q: &[f32] = &q;
                let found = self.with(py, |l| {
                    l.retrieve_fallback(cluster_id, q, k_strategy, k_warning)
                });
                Some(found.map_err(PyCoreErr::from)?)
            }
        };
        hits.map(|h| self.converted.values(py, &h)).transpose()
    }

    /// Pool answers for many clusters (`None` where the pool is empty). GIL released.
    fn retrieve_hits<'py>(
        &self,
        py: Python<'py>,
        cluster_ids: PyReadonlyArray1<'_, u64>,
        k_strategy: usize,
        k_warning: usize,
    ) -> PyResult<Vec<Option<Values<'py>>>> {
        let cs = slice1(&cluster_ids);
        let cs: &[u64] = &cs;
        let hits = py.detach(|| self.lock().retrieve_hits(cs, k_strategy, k_warning));
        hits.iter()
            .map(|h| h.as_ref().map(|h| self.converted.values(py, h)).transpose())
            .collect()
    }

    /// Fallback answers for many clusters with `(n, dim)` float32 queries. GIL released.
    fn retrieve_fallbacks<'py>(
        &self,
        py: Python<'py>,
        cluster_ids: PyReadonlyArray1<'_, u64>,
        queries: PyReadonlyArray2<'_, f32>,
        k_strategy: usize,
        k_warning: usize,
    ) -> PyResult<Vec<Values<'py>>> {
        let cs = slice1(&cluster_ids);
        let cs: &[u64] = &cs;
        let (data, n, d) = rows(&queries);
        let dim = self.lock().params().dim;
        check_rows("queries", n, d, cs.len(), dim).map_err(PyCoreErr::from)?;
        let data: &[f32] = &data;
        let hits = py
            .detach(|| {
                self.lock()
                    .retrieve_fallbacks(cs, data, k_strategy, k_warning)
            })
            .map_err(PyCoreErr::from)?;
        hits.iter().map(|h| self.converted.values(py, h)).collect()
    }

    /// Credit retrieved entries with an episode outcome. GIL released.
    #[pyo3(signature = (entry_ids, success, reward=None, ignore_missing=false))]
    fn record_outcome(
        &self,
        py: Python<'_>,
        entry_ids: Vec<u64>,
        success: bool,
        reward: Option<f64>,
        ignore_missing: bool,
    ) -> CoreResult<usize> {
        Ok(py.detach(|| {
            self.lock()
                .record_outcome(&entry_ids, success, reward, ignore_missing)
        })?)
    }

    /// Link entries to a cluster's pool.
    fn link(&self, py: Python<'_>, cluster_id: u64, entry_ids: Vec<u64>) -> CoreResult<usize> {
        Ok(py.detach(|| self.lock().link(cluster_id, &entry_ids))?)
    }

    /// Insert complete entries (dicts of the JSONL fields) with their `(n, dim)` embeddings;
    /// all-or-nothing. Returns the ids. GIL released.
    fn import_entries(
        &self,
        py: Python<'_>,
        items: Vec<PyImport>,
        embeddings: PyReadonlyArray2<'_, f32>,
    ) -> CoreResult<Vec<u64>> {
        let (data, n, d) = rows(&embeddings);
        let dim = self.lock().params().dim;
        check_rows("embeddings", n, d, items.len(), dim)?;
        let mut out = Vec::with_capacity(n);
        for (it, row) in items.into_iter().zip(data.chunks_exact(dim.max(1))) {
            out.push(ImportEntry {
                id: it.id,
                text: it.text,
                zone: Zone::parse(&it.zone)?,
                level: Level::parse(&it.level)?,
                score: it.score,
                episode_ids: it.episode_ids,
                iteration: it.iteration,
                cluster_ids: it.cluster_ids,
                created_iteration: it.created_iteration,
                retrieved: it.retrieved,
                successes: it.successes,
                failures: it.failures,
                observation: it.observation,
                action: it.action,
                embedding: row.to_vec(),
                linked_clusters: it.linked_clusters,
            });
        }
        Ok(py.detach(|| self.lock().import_entries(out))?)
    }

    /// Entry by id, or `None`.
    fn get<'py>(&self, py: Python<'py>, entry_id: u64) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let e = self.lock().get(entry_id);
        let v = e.map(|e| self.converted.values(py, &[e])).transpose()?;
        Ok(v.and_then(|v| v.into_iter().next()))
    }

    /// Remove an entry (`KeyError` if absent).
    fn remove(&self, entry_id: u64) -> CoreResult<()> {
        Ok(self.lock().remove(entry_id)?)
    }

    /// Entries sorted by id, optionally of one zone and/or level.
    #[pyo3(signature = (zone=None, level=None))]
    fn entries<'py>(
        &self,
        py: Python<'py>,
        zone: Option<&str>,
        level: Option<&str>,
    ) -> PyResult<Values<'py>> {
        let z = zone.map(Zone::parse).transpose().map_err(PyCoreErr::from)?;
        let l = level
            .map(Level::parse)
            .transpose()
            .map_err(PyCoreErr::from)?;
        let es = self.lock().entries(z, l);
        self.converted.values(py, &es)
    }

    /// Clusters whose pools hold the entry.
    fn linked_clusters(&self, entry_id: u64) -> Vec<u64> {
        self.lock().linked_clusters(entry_id)
    }

    /// `(strategy ids, warning ids)` of a cluster's pool, or `None`.
    fn pool(&self, cluster_id: u64) -> Option<(Vec<u64>, Vec<u64>)> {
        self.lock().pool(cluster_id)
    }

    fn __len__(&self) -> usize {
        self.lock().len()
    }

    /// Version; increases with every mutation.
    #[getter]
    fn version(&self) -> u64 {
        self.lock().version()
    }

    /// Sizes, counters and memory estimate as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.lock().stats();
        let d = PyDict::new(py);
        d.set_item("sizes", s.sizes.to_vec())?;
        d.set_item("clusters", s.clusters)?;
        d.set_item("links", s.links)?;
        d.set_item("version", s.version)?;
        d.set_item("hits", s.counters.hits)?;
        d.set_item("cache_hits", s.counters.cache_hits)?;
        d.set_item("fallbacks", s.counters.fallbacks)?;
        d.set_item("fallback_empty", s.counters.fallback_empty)?;
        d.set_item("outcomes", s.counters.outcomes.to_vec())?;
        d.set_item("evicted", s.counters.evicted)?;
        d.set_item("memory_bytes", s.memory_bytes)?;
        Ok(d)
    }
}

/// Sanitise texts as admission does: `(clean text or None, reason)` per text.
#[pyfunction]
#[pyo3(signature = (texts, max_chars, keep_newlines=false))]
fn sanitize_texts(
    py: Python<'_>,
    texts: &Bound<'_, PyAny>,
    max_chars: usize,
    keep_newlines: bool,
) -> PyResult<Vec<(Option<String>, String)>> {
    let items = str_items(texts, "texts")?;
    let texts = str_slices(&items, "texts")?;
    Ok(py.detach(|| {
        texts
            .iter()
            .map(|t| match sanitize(t, max_chars, keep_newlines) {
                Ok(s) => (Some(s), String::new()),
                Err(r) => (None, r),
            })
            .collect()
    }))
}

/// Write bytes to a file atomically (temporary file, fsync, rename, fsync of the directory).
#[pyfunction]
fn write_file_atomic(py: Python<'_>, path: PathBuf, data: &[u8]) -> CoreResult<()> {
    Ok(py.detach(|| slea_core::snapshot::write_atomic(&path, data))?)
}

/// Describe a snapshot file: `(kind, format version, schema version, [(section, bytes)])`.
#[pyfunction]
fn snapshot_info(py: Python<'_>, path: PathBuf) -> CoreResult<SnapshotInfo> {
    Ok(py.detach(|| {
        let bytes = slea_core::snapshot::read_file(&path)?;
        let s = slea_core::snapshot::Snapshot::parse_any(&bytes)?;
        Ok::<_, Error>((
            s.kind().to_string(),
            s.format_version(),
            s.schema_version(),
            s.section_sizes(),
        ))
    })?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLibrary>()?;
    m.add_function(wrap_pyfunction!(sanitize_texts, m)?)?;
    m.add_function(wrap_pyfunction!(write_file_atomic, m)?)?;
    m.add_function(wrap_pyfunction!(snapshot_info, m)?)?;
    m.add(
        "SNAPSHOT_FORMAT_VERSION",
        slea_core::snapshot::FORMAT_VERSION,
    )?;
    m.add("LIBRARY_SCHEMA_VERSION", slea_core::library::SCHEMA_VERSION)?;
    m.add("LIBRARY_MAX_ABS_SCORE", slea_core::library::MAX_ABS_SCORE)?;
    Ok(())
}
