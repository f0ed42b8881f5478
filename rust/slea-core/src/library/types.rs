//! Value types of the library: zones, levels, parameters, entries, candidates, decisions.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Zone of an experience: what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    /// Learned from successful episodes.
    Strategy,
    /// Learned from failed episodes.
    Warning,
}

/// Abstraction level of an experience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// General rule.
    Principle,
    /// Recurring reasoning or action pattern.
    Pattern,
    /// Concrete worked step; may carry an (observation, action) demonstration.
    Example,
}

impl Zone {
    /// Both zones, in index order.
    pub const ALL: [Zone; 2] = [Zone::Strategy, Zone::Warning];
    /// 0 for strategy, 1 for warning.
    pub fn index(self) -> usize {
        self as usize
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Zone::Strategy => "strategy",
            Zone::Warning => "warning",
        }
    }
    /// Parse a name; errors name the argument `zone` and list the choices.
    pub fn parse(s: &str) -> Result<Zone> {
        Zone::ALL
            .into_iter()
            .find(|z| z.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "zone",
                    format!("unknown zone {s:?}; choose strategy or warning"),
                )
            })
    }
}

impl Level {
    /// The three levels, in index order.
    pub const ALL: [Level; 3] = [Level::Principle, Level::Pattern, Level::Example];
    /// 0, 1, 2 for principle, pattern, example.
    pub fn index(self) -> usize {
        self as usize
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Principle => "principle",
            Level::Pattern => "pattern",
            Level::Example => "example",
        }
    }
    /// Parse a name; errors name the argument `level` and list the choices.
    pub fn parse(s: &str) -> Result<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "level",
                    format!("unknown level {s:?}; choose principle, pattern or example"),
                )
            })
    }
}

/// Largest magnitude of a score, and of an outcome reward (the target the score's moving average
/// moves to). A score is an episode return: the source episode's total reward, a mean of such
/// returns for a regularity, or a moving average towards rewards. The paper's environments give
/// returns within +-100 (ALFWorld and WebShop 10 on success, ScienceWorld -100..100, Sokoban
/// about -20..13), so 1e6 leaves four orders of magnitude for reward scaling, while a value
/// beyond it (1e308, `f64::MAX` used as a sentinel) is a bug that would outrank every real
/// entry for good. Within the bound every sum and moving average stays exact enough to order.
pub const MAX_ABS_SCORE: f64 = 1e6;

/// `Ok` when `v` is a finite number within [`MAX_ABS_SCORE`] in magnitude, else an error
/// naming `arg`.
pub fn check_score(arg: impl Into<String>, v: f64) -> Result<()> {
    if v.is_finite() && v.abs() <= MAX_ABS_SCORE {
        Ok(())
    } else {
        Err(Error::invalid(
            arg,
            format!(
                "must be a finite number in [-{MAX_ABS_SCORE:e}, {MAX_ABS_SCORE:e}], got {}",
                number(v)
            ),
        ))
    }
}

/// `v` as a short decimal (exponent notation for huge or tiny magnitudes).
pub(super) fn number(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-6..1e16).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

pub(super) fn tag(zone: Zone, level: Level) -> u32 {
    (zone.index() * 3 + level.index()) as u32
}

/// Largest admission rate per step (the Python side passes ints up to 2**31).
const MAX_RATE: f64 = 4_294_967_296.0;

/// Library parameters (validated by [`LibraryParams::validate`]; Python owns the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryParams {
    /// Embedding dimension.
    pub dim: usize,
    /// Fingerprint of the embedder that made the vectors (checked on load).
    pub embedder: String,
    /// Capacity of each level, by zone (strategy, warning).
    pub capacity: [usize; 2],
    /// Admissions allowed per evolution step, by zone.
    pub rate_per_step: [f64; 2],
    /// Cosine at or above which a candidate duplicates an entry of its zone.
    pub novelty_threshold: f32,
    /// Fallback retrieval keeps results with cosine strictly above this.
    pub fallback_threshold: f32,
    /// Maximum characters of an entry's text.
    pub max_text_chars: usize,
    /// Maximum characters of a demonstration observation or action.
    pub max_demo_chars: usize,
    /// Entries per zone in one cluster pool.
    pub pool_size: usize,
    /// Cluster pools kept (least recently used dropped beyond this).
    pub max_clusters: usize,
    /// Episode ids and cluster ids kept in an entry's provenance (most recent).
    pub max_provenance: usize,
    /// Weight of an outcome in the score's moving average; `None` keeps scores fixed.
    pub ema_alpha: Option<f64>,
}

impl LibraryParams {
    /// Check every field; errors name the field.
    pub fn validate(&self) -> Result<()> {
        crate::embed::check_dim(self.dim)?;
        let positive = [
            ("max_text_chars", self.max_text_chars),
            ("max_demo_chars", self.max_demo_chars),
            ("pool_size", self.pool_size),
            ("max_clusters", self.max_clusters),
            ("max_provenance", self.max_provenance),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::invalid(name, "must be at least 1"));
            }
        }
        for (name, v) in [
            ("rate_per_step[strategy]", self.rate_per_step[0]),
            ("rate_per_step[warning]", self.rate_per_step[1]),
        ] {
            if !(v.is_finite() && (0.0..=MAX_RATE).contains(&v)) {
                return Err(Error::invalid(
                    name,
                    format!("must be in [0, 2**32], got {v}"),
                ));
            }
        }
        for (name, v) in [
            ("novelty_threshold", self.novelty_threshold),
            ("fallback_threshold", self.fallback_threshold),
        ] {
            if !(-1.0..=1.0).contains(&v) {
                return Err(Error::invalid(name, format!("must be in [-1, 1], got {v}")));
            }
        }
        if let Some(a) = self.ema_alpha {
            if !(a > 0.0 && a <= 1.0) {
                return Err(Error::invalid(
                    "ema_alpha",
                    format!("must be in (0, 1], got {a}"),
                ));
            }
        }
        if self.embedder.is_empty() || self.embedder.len() > 256 {
            return Err(Error::invalid(
                "embedder",
                "fingerprint must be 1..=256 bytes",
            ));
        }
        Ok(())
    }
}

/// One experience. Shared as `Arc<Entry>`; a mutation copies it if a reader still holds it, so
/// a returned entry is an immutable snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Stable id (assigned in admission order, never reused).
    pub id: u64,
    /// Sanitised text.
    pub text: String,
    /// Zone.
    pub zone: Zone,
    /// Level.
    pub level: Level,
    /// Quality score (source episode reward; moved by outcomes when EMA is on).
    pub score: f64,
    /// Source episode ids (most recent `max_provenance`).
    pub episode_ids: Vec<u64>,
    /// Iteration of the latest provenance merged in.
    pub iteration: u64,
    /// Cluster ids of the steps it was drawn from (most recent `max_provenance`).
    pub cluster_ids: Vec<u64>,
    /// Iteration at which it was admitted.
    pub created_iteration: u64,
    /// Admission order (age); smaller is older.
    pub seq: u64,
    /// Retrievals reported through [`Library::record_outcome`].
    pub retrieved: u64,
    /// Episodes that used it and succeeded.
    pub successes: u64,
    /// Episodes that used it and failed.
    pub failures: u64,
    /// Demonstration observation (`example` level only).
    pub observation: Option<String>,
    /// Demonstration action (`example` level only).
    pub action: Option<String>,
    /// Unit embedding.
    pub embedding: Arc<[f32]>,
}

impl Entry {
    pub(super) fn key(&self) -> Key {
        Key {
            score: self.score,
            seq: self.seq,
            id: self.id,
        }
    }
}

/// A candidate for admission; `embedding` is the embedding of the sanitised text.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Proposed text (sanitised on admission).
    pub text: String,
    /// Zone.
    pub zone: Zone,
    /// Level.
    pub level: Level,
    /// Score (source episode reward); finite, at most [`MAX_ABS_SCORE`] in magnitude.
    pub score: f64,
    /// Source episode ids.
    pub episode_ids: Vec<u64>,
    /// Cluster ids of the source steps (the entry is linked to them).
    pub cluster_ids: Vec<u64>,
    /// Demonstration observation (`example` level only).
    pub observation: Option<String>,
    /// Demonstration action (`example` level only).
    pub action: Option<String>,
    /// Embedding of the sanitised text (`dim` values; normalised here).
    pub embedding: Vec<f32>,
}

/// What happened to a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Entered the library.
    Admitted,
    /// Merged into a near-identical entry of the same zone.
    Duplicate,
    /// The zone's per-step budget was spent.
    RateLimited,
    /// The level is full and the score was not above its lowest.
    BelowFloor,
    /// Failed validation.
    Invalid,
}

impl Outcome {
    /// Name used in reports (`admitted`, `duplicate`, `rate_limited`, `below_floor`, `invalid`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Admitted => "admitted",
            Outcome::Duplicate => "duplicate",
            Outcome::RateLimited => "rate_limited",
            Outcome::BelowFloor => "below_floor",
            Outcome::Invalid => "invalid",
        }
    }
}

/// The decision for one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Outcome.
    pub outcome: Outcome,
    /// The new entry (admitted) or the entry it merged into (duplicate).
    pub entry_id: Option<u64>,
    /// Human-readable reason.
    pub reason: String,
    /// Entries evicted to make room.
    pub evicted: Vec<u64>,
}

/// Retrieval and admission counters since creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    /// Retrievals answered from a cluster pool.
    pub hits: u64,
    /// Of those, answered from the cache.
    pub cache_hits: u64,
    /// Retrievals that went to the semantic fallback.
    pub fallbacks: u64,
    /// Fallbacks that found nothing above the threshold.
    pub fallback_empty: u64,
    /// Candidates by outcome: admitted, duplicate, rate limited, below floor, invalid.
    pub outcomes: [u64; 5],
    /// Entries evicted by admission.
    pub evicted: u64,
}

/// A summary of the library (see [`Library::stats`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Entries per zone and level.
    pub sizes: [[usize; 3]; 2],
    /// Cluster pools.
    pub clusters: usize,
    /// Links (entry ids summed over pools).
    pub links: usize,
    /// Version.
    pub version: u64,
    /// Counters.
    pub counters: Counters,
    /// Estimated heap bytes of entries, index, pools and cache.
    pub memory_bytes: usize,
}

/// Result of a retrieval: strategies (best first) then warnings (best first).
pub type Hits = Arc<[Arc<Entry>]>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Key {
    pub(super) score: f64,
    pub(super) seq: u64,
    pub(super) id: u64,
}

impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&o.score)
            .then(self.seq.cmp(&o.seq))
            .then(self.id.cmp(&o.id))
    }
}

pub(super) fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Admitted => 0,
        Outcome::Duplicate => 1,
        Outcome::RateLimited => 2,
        Outcome::BelowFloor => 3,
        Outcome::Invalid => 4,
    }
}

/// `old` followed by the ids of `new` not yet present, keeping the last `max`.
pub(super) fn merged(old: &[u64], new: &[u64], max: usize) -> Vec<u64> {
    let mut v = old.to_vec();
    for &x in new {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    if v.len() > max {
        v.drain(..v.len() - max);
    }
    v
}
