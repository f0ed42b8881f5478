//! Error mapping: `slea_core::Error` -> Python exceptions, exhaustively.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyError, PyOSError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _core,
    SleaError,
    PyException,
    "Base class of every error slea raises on purpose."
);
create_exception!(
    _core,
    SnapshotError,
    SleaError,
    "A snapshot file is corrupt, truncated, of another format version or of another spec."
);

/// Newtype so that `?` converts core errors into Python exceptions (orphan rule).
pub struct PyCoreErr(pub slea_core::Error);

impl From<slea_core::Error> for PyCoreErr {
    fn from(e: slea_core::Error) -> Self {
        PyCoreErr(e)
    }
}

impl From<PyCoreErr> for PyErr {
    fn from(e: PyCoreErr) -> PyErr {
        use slea_core::Error as E;
        let msg = e.0.to_string();
        match e.0 {
            E::InvalidArgument { .. } => PyValueError::new_err(msg),
            E::Snapshot(_) => SnapshotError::new_err(msg),
            E::NotFound { .. } => PyKeyError::new_err(msg),
            E::Io { source, .. } => PyOSError::new_err((source.raw_os_error().unwrap_or(0), msg)),
        }
    }
}

/// Result alias for binding functions that call into the core.
#[allow(dead_code)]
pub type CoreResult<T> = Result<T, PyCoreErr>;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SleaError", m.py().get_type::<SleaError>())?;
    m.add("SnapshotError", m.py().get_type::<SnapshotError>())?;
    Ok(())
}
