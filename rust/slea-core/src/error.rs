//! The one error type of slea-core. The Python bindings map every variant exhaustively
//! (`rust/slea-py/src/error.rs`), so adding a variant fails to compile until it is mapped.

use std::fmt;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure slea-core can report. Messages name the argument and, where possible, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed a value that is out of range, malformed or inconsistent (maps to `ValueError`).
    #[error("{arg}: {msg}")]
    InvalidArgument { arg: String, msg: String },
    /// A snapshot file is corrupt, truncated, of another format version or of another spec
    /// (maps to `slea.SnapshotError`).
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// A lookup by id found nothing (maps to `KeyError`).
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    /// An operating-system I/O failure (maps to `OSError`).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(arg: impl Into<String>, msg: impl fmt::Display) -> Self {
        Error::InvalidArgument {
            arg: arg.into(),
            msg: msg.to_string(),
        }
    }

    /// Shorthand for [`Error::Snapshot`].
    pub fn snapshot(msg: impl fmt::Display) -> Self {
        Error::Snapshot(msg.to_string())
    }

    /// Shorthand for [`Error::Io`] with a context (usually the path).
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }
}
