//! Bindings for slea_core::cluster: the `ObservationClusterer` class. Every call takes the lock
//! with the GIL released, so a batch running in one thread never deadlocks another.

use std::path::PathBuf;
use std::sync::Mutex;

use numpy::PyArray1;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use slea_core::cluster::{ClusterParams, ObservationClusterer};

use crate::canon::{str_arg, str_items, str_slices, PyCanonSpec};
use crate::error::PyCoreErr;

/// Rust side of `slea.ObservationClusterer`.
#[pyclass(module = "slea._core", name = "ObservationClusterer", frozen)]
pub struct PyClusterer {
    inner: Mutex<ObservationClusterer>,
}

impl PyClusterer {
    /// Run `f` on the clusterer with the GIL released and the lock held.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut ObservationClusterer) -> T + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self.inner.lock().map_err(|_| ())?;
            Ok(f(&mut guard))
        })
        .map_err(|()| PyRuntimeError::new_err("the clusterer is unusable after an internal error"))
    }
}

#[pymethods]
impl PyClusterer {
    #[new]
    #[pyo3(signature = (spec, threshold, max_clusters, bands, bucket_cap))]
    fn new(
        spec: &Bound<'_, PyCanonSpec>,
        threshold: f64,
        max_clusters: Option<usize>,
        bands: u32,
        bucket_cap: usize,
    ) -> Result<Self, PyCoreErr> {
        let params = ClusterParams {
            threshold,
            max_clusters,
            bands,
            bucket_cap,
        };
        let inner = ObservationClusterer::new(spec.get().inner.clone(), params)?;
        Ok(PyClusterer {
            inner: Mutex::new(inner),
        })
    }

    fn assign(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<u64> {
        let text = str_arg(text, "text")?;
        self.with(py, |c| c.assign(text))
    }

    fn assign_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let items = str_items(texts, "texts")?;
        let slices = str_slices(&items, "texts")?;
        let ids = self.with(py, |c| c.assign_batch(&slices))?;
        Ok(PyArray1::from_vec(py, ids))
    }

    fn prototype(&self, py: Python<'_>, cluster_id: u64) -> PyResult<String> {
        let r = self.with(py, |c| c.prototype(cluster_id).map(str::to_owned))?;
        Ok(r.map_err(PyCoreErr)?)
    }

    fn size(&self, py: Python<'_>, cluster_id: u64) -> PyResult<u64> {
        let r = self.with(py, |c| c.size(cluster_id))?;
        Ok(r.map_err(PyCoreErr)?)
    }

    fn contains(&self, py: Python<'_>, cluster_id: u64) -> PyResult<bool> {
        self.with(py, |c| c.contains(cluster_id))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |c| c.len())
    }

    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let ids = self.with(py, |c| c.ids())?;
        Ok(PyArray1::from_vec(py, ids))
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.with(py, |c| c.stats())?;
        let d = PyDict::new(py);
        d.set_item("clusters", s.clusters)?;
        d.set_item("observations", s.observations)?;
        d.set_item("exact_hits", s.exact_hits)?;
        d.set_item("near_hits", s.near_hits)?;
        d.set_item("new_clusters", s.new_clusters)?;
        d.set_item("evictions", s.evictions)?;
        let hist = PyDict::new(py);
        for (k, n) in s.size_histogram {
            hist.set_item(k, n)?;
        }
        d.set_item("size_histogram", hist)?;
        Ok(d)
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let r = self.with(py, |c| c.save(&path))?;
        Ok(r.map_err(PyCoreErr)?)
    }

    #[staticmethod]
    #[pyo3(signature = (path, spec=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        spec: Option<&Bound<'_, PyCanonSpec>>,
    ) -> PyResult<Self> {
        let spec = spec.map(|s| &s.get().inner);
        let inner = py
            .detach(|| ObservationClusterer::load(&path, spec))
            .map_err(PyCoreErr)?;
        Ok(PyClusterer {
            inner: Mutex::new(inner),
        })
    }

    #[getter]
    fn spec(&self, py: Python<'_>) -> PyResult<PyCanonSpec> {
        let inner = self.with(py, |c| c.spec().clone())?;
        Ok(PyCanonSpec { inner })
    }

    #[getter]
    fn threshold(&self, py: Python<'_>) -> PyResult<f64> {
        self.with(py, |c| c.params().threshold)
    }

    #[getter]
    fn max_clusters(&self, py: Python<'_>) -> PyResult<Option<usize>> {
        self.with(py, |c| c.params().max_clusters)
    }

    #[getter]
    fn bands(&self, py: Python<'_>) -> PyResult<u32> {
        self.with(py, |c| c.params().bands)
    }

    #[getter]
    fn bucket_cap(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |c| c.params().bucket_cap)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClusterer>()?;
    Ok(())
}
