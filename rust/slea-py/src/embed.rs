//! Bindings for slea_core::embed: the feature-hashing embedder behind `slea.HashingEmbedder`.

use crate::canon::{str_items, str_slices};
use crate::error::CoreResult;
use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;

/// Embed texts into an `(n, dim)` float32 array of unit rows (zero rows for texts without
/// features). GIL released.
#[pyfunction]
fn hashing_embed<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    dim: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let items = str_items(texts, "texts")?;
    let texts = str_slices(&items, "texts")?;
    let n = texts.len();
    let flat: CoreResult<Vec<f32>> =
        py.detach(|| Ok(slea_core::embed::hashing_embed_batch(&texts, dim)?));
    PyArray1::from_vec(py, flat?).reshape([n, dim])
}

/// Fingerprint of the hashing embedder of dimension `dim` (stored in snapshots).
#[pyfunction]
fn hashing_fingerprint(dim: usize) -> String {
    slea_core::embed::hashing_fingerprint(dim)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hashing_embed, m)?)?;
    m.add_function(wrap_pyfunction!(hashing_fingerprint, m)?)?;
    m.add("HASHING_MAX_DIM", slea_core::embed::MAX_DIM)?;
    Ok(())
}
