//! slea-core: the algorithms of slea, free of any Python dependency.
//!
//! Modules:
//! - [`canon`]: observation canonicalisation rules and presets.
//! - [`hash`]: structural hash (xxh3-64 of canonical text) and SimHash-64 fingerprints.
//! - [`cluster`]: the observation clusterer (exact hash, banded SimHash LSH, new cluster).
//! - [`advantage`]: discounted returns and the GRPO / GiGPO / SLEA / SALT estimators.
//! - [`hnsw`]: HNSW approximate nearest-neighbour index on unit vectors (cosine).
//! - [`embed`]: feature-hashing text embedder.
//! - [`ratelimit`]: token buckets on an explicit clock.
//! - [`library`]: the experience library (zones, levels, admission, retrieval).
//! - [`snapshot`]: versioned, checksummed, atomic on-disk format.
//! - [`error`]: the crate's one error type.

pub mod advantage;
pub mod canon;
pub mod cluster;
pub mod embed;
pub mod error;
pub mod hash;
pub mod hnsw;
pub mod library;
pub mod ratelimit;
pub mod snapshot;

pub use error::{Error, Result};

/// Version of the crate (the single version source of the project).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
