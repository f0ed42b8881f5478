//! Python bindings of slea-core (module `slea._core`).
//!
//! House rule: this crate converts types, releases the GIL (`py.detach`), takes locks and maps
//! errors. Algorithms and domain logic live in `slea-core`.

use pyo3::prelude::*;

mod advantage;
mod canon;
mod cluster;
mod embed;
mod entry;
mod error;
mod hnsw;
mod library;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", slea_core::VERSION)?;
    error::register(m)?;
    canon::register(m)?;
    cluster::register(m)?;
    advantage::register(m)?;
    hnsw::register(m)?;
    embed::register(m)?;
    library::register(m)?;
    Ok(())
}
