//! Bindings for slea_core::hnsw: `slea._core.HnswIndex`, wrapped by `slea.HnswIndex`.
//!
//! The index sits behind a `RwLock` taken with the GIL released, so searches from several
//! Python threads run in parallel and never wait on the GIL while holding the lock.

use crate::error::CoreResult;
use numpy::ndarray::Array2;
use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use slea_core::hnsw::{HnswIndex, HnswParams};
use std::borrow::Cow;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[pyclass(module = "slea._core", name = "HnswIndex", frozen)]
pub struct PyHnswIndex {
    inner: RwLock<HnswIndex>,
}

type Hits<'py> = (Bound<'py, PyArray2<u64>>, Bound<'py, PyArray2<f32>>);
type Hits1<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<f32>>);

fn slice<'a, T: numpy::Element + Copy>(a: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

fn slice2<'a>(a: &'a PyReadonlyArray2<'_, f32>) -> Cow<'a, [f32]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

fn allowed_filter(allowed: &[u32]) -> impl Fn(u32) -> bool + Sync + '_ {
    move |t| allowed.binary_search(&t).is_ok()
}

impl PyHnswIndex {
    fn read(&self) -> RwLockReadGuard<'_, HnswIndex> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, HnswIndex> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyHnswIndex {
    #[new]
    #[pyo3(signature = (dim, m, ef_construction, ef, seed, flat_threshold, max_elements=None))]
    fn new(
        dim: usize,
        m: usize,
        ef_construction: usize,
        ef: usize,
        seed: u64,
        flat_threshold: usize,
        max_elements: Option<usize>,
    ) -> CoreResult<Self> {
        let params = HnswParams {
            m,
            ef_construction,
            ef_search: ef,
            seed,
            flat_threshold,
        };
        let mut idx = HnswIndex::new(dim, params)?;
        idx.set_max_elements(max_elements)?;
        Ok(PyHnswIndex {
            inner: RwLock::new(idx),
        })
    }

    /// Insert (or with `upsert`, insert or replace) rows; all-or-nothing. GIL released.
    fn add(
        &self,
        py: Python<'_>,
        ids: PyReadonlyArray1<'_, u64>,
        vectors: PyReadonlyArray2<'_, f32>,
        tags: PyReadonlyArray1<'_, u32>,
        upsert: bool,
    ) -> CoreResult<()> {
        let (ids, vectors, tags) = (slice(&ids), slice2(&vectors), slice(&tags));
        py.detach(|| {
            let mut g = self.write();
            if upsert {
                g.upsert_batch(&ids, &vectors, &tags)
            } else {
                g.insert_batch(&ids, &vectors, &tags)
            }
        })?;
        Ok(())
    }

    /// Remove ids; all-or-nothing (KeyError if one is absent).
    fn remove(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, u64>) -> CoreResult<()> {
        let ids = slice(&ids);
        py.detach(|| self.write().remove_batch(&ids))?;
        Ok(())
    }

    /// Batch search: `(ids, scores)` of shape `(rows, width)`. GIL released.
    #[pyo3(signature = (queries, k, ef=None, allowed=None, threads=1))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        ef: Option<usize>,
        allowed: Option<PyReadonlyArray1<'py, u32>>,
        threads: usize,
    ) -> PyResult<Hits<'py>> {
        let rows = queries.shape()[0];
        let q = slice2(&queries);
        let allowed = allowed.as_ref().map(slice);
        let res = py.detach(|| {
            let g = self.read();
            match &allowed {
                Some(a) => g.search_batch(&q, k, ef, Some(&allowed_filter(a)), threads),
                None => g.search_batch(&q, k, ef, None, threads),
            }
        });
        let res = res.map_err(crate::error::PyCoreErr::from)?;
        let shape = (rows, res.width);
        let ids = Array2::from_shape_vec(shape, res.ids)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("result shape: {e}")))?;
        let scores = Array2::from_shape_vec(shape, res.scores)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("result shape: {e}")))?;
        Ok((
            PyArray2::from_owned_array(py, ids),
            PyArray2::from_owned_array(py, scores),
        ))
    }

    /// One query: `(ids, scores)` of shape `(width,)`. GIL released.
    #[pyo3(signature = (query, k, ef=None, allowed=None))]
    fn search_one<'py>(
        &self,
        py: Python<'py>,
        query: PyReadonlyArray1<'py, f32>,
        k: usize,
        ef: Option<usize>,
        allowed: Option<PyReadonlyArray1<'py, u32>>,
    ) -> CoreResult<Hits1<'py>> {
        let q = slice(&query);
        let allowed = allowed.as_ref().map(slice);
        let hits = py.detach(|| {
            let g = self.read();
            match &allowed {
                Some(a) => g.search_filtered(&q, k, ef, &allowed_filter(a)),
                None => g.search(&q, k, ef),
            }
        })?;
        let (ids, scores): (Vec<u64>, Vec<f32>) = hits.into_iter().unzip();
        Ok((PyArray1::from_vec(py, ids), PyArray1::from_vec(py, scores)))
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    fn contains(&self, id: u64) -> bool {
        self.read().contains(id)
    }

    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, self.read().ids())
    }

    fn set_ef(&self, ef: usize) -> CoreResult<()> {
        Ok(self.write().set_ef(ef)?)
    }

    /// `(dim, m, ef_construction, ef, seed, flat_threshold, max_elements)`.
    fn params(&self) -> (usize, usize, usize, usize, u64, usize, Option<usize>) {
        let g = self.read();
        let p = g.params();
        (
            g.dim(),
            p.m,
            p.ef_construction,
            p.ef_search,
            p.seed,
            p.flat_threshold,
            g.max_elements(),
        )
    }

    fn memory_bytes(&self) -> usize {
        self.read().memory_bytes()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.read().stats();
        let d = PyDict::new(py);
        d.set_item("slots", s.slots)?;
        d.set_item("live", s.live)?;
        d.set_item("deleted", s.deleted)?;
        d.set_item("max_level", s.max_level)?;
        d.set_item("nodes_per_level", s.nodes_per_level)?;
        d.set_item("mean_degree0", s.mean_degree0)?;
        d.set_item("kernel", s.kernel)?;
        Ok(d)
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let b = py.detach(|| self.read().to_bytes());
        PyBytes::new(py, &b)
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> CoreResult<Self> {
        let idx = py.detach(|| HnswIndex::from_bytes(data))?;
        Ok(PyHnswIndex {
            inner: RwLock::new(idx),
        })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHnswIndex>()?;
    Ok(())
}
