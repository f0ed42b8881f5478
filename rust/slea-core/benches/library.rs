//! Criterion benches for slea_core::library (`cargo bench -p slea-core --bench library`).
//!
//! The Python twin is `python -m benches library`; the difference between the two is the cost
//! of the bindings and the Python facade.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use slea_core::embed::{hashing_embed, hashing_embed_batch, hashing_fingerprint};
use slea_core::library::{sanitize, Candidate, Level, Library, LibraryParams, Zone};

const DIM: usize = 256;

fn params() -> LibraryParams {
    LibraryParams {
        dim: DIM,
        embedder: hashing_fingerprint(DIM),
        capacity: [100, 50],
        rate_per_step: [1e9, 1e9],
        novelty_threshold: 0.85,
        fallback_threshold: 0.2,
        max_text_chars: 500,
        max_demo_chars: 2000,
        pool_size: 16,
        max_clusters: 10_000,
        max_provenance: 32,
        ema_alpha: None,
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn text(rng: &mut Lcg, words: usize) -> String {
    (0..words)
        .map(|_| format!("w{}", rng.next() % 3000))
        .collect::<Vec<_>>()
        .join(" ")
}

fn candidate(rng: &mut Lcg, i: usize) -> Candidate {
    let t = text(rng, 12);
    Candidate {
        embedding: hashing_embed(&t, DIM).unwrap(),
        text: t,
        zone: if i % 3 == 0 {
            Zone::Warning
        } else {
            Zone::Strategy
        },
        level: Level::ALL[i % 3],
        score: (rng.next() % 1000) as f64 / 1000.0,
        episode_ids: vec![i as u64],
        cluster_ids: vec![rng.next() % 1000],
        observation: None,
        action: None,
    }
}

/// A full library (default capacities: 450 entries) linked to 1000 clusters.
fn full_library() -> Library {
    let mut lib = Library::new(params()).unwrap();
    let mut rng = Lcg(7);
    let cands: Vec<Candidate> = (0..2000).map(|i| candidate(&mut rng, i)).collect();
    lib.admit(cands, 0).unwrap();
    lib
}

fn retrieval(c: &mut Criterion) {
    let mut lib = full_library();
    let clusters: Vec<u64> = (0..1000).filter(|&c| lib.pool(c).is_some()).collect();
    let mut i = 0;
    c.bench_function("retrieve_hit_cached", |b| {
        b.iter(|| {
            i = (i + 1) % clusters.len();
            lib.retrieve_hit(clusters[i], 2, 1)
        })
    });
    let mut lib2 = full_library();
    let some_id = lib2.entries(None, None)[0].id;
    c.bench_function("record_outcome_1", |b| {
        b.iter(|| lib2.record_outcome(&[some_id], true, None, false).unwrap())
    });
    c.bench_function("record_outcome_then_retrieve_hit_uncached", |b| {
        b.iter(|| {
            i = (i + 1) % clusters.len();
            // An outcome bumps the version, so the retrieval below misses the cache.
            lib2.record_outcome(&[some_id], true, None, false).unwrap();
            lib2.retrieve_hit(clusters[i], 2, 1)
        })
    });
    let mut rng = Lcg(11);
    let queries: Vec<Vec<f32>> = (0..256)
        .map(|_| hashing_embed(&text(&mut rng, 20), DIM).unwrap())
        .collect();
    let base = full_library();
    c.bench_function("retrieve_fallback_450", |b| {
        b.iter_batched(
            || base.clone(),
            |mut l| {
                for (j, q) in queries.iter().enumerate().take(16) {
                    let _ = l.retrieve_fallback(1_000_000 + j as u64, q, 2, 1);
                }
                l
            },
            BatchSize::LargeInput,
        )
    });
}

fn admission(c: &mut Criterion) {
    let base = full_library();
    let mut rng = Lcg(3);
    let batch: Vec<Candidate> = (0..15).map(|i| candidate(&mut rng, i)).collect();
    c.bench_function("admit_15_into_full_library", |b| {
        b.iter_batched(
            || (base.clone(), batch.clone()),
            |(mut l, cs)| {
                l.admit(cs, 1).unwrap();
                l
            },
            BatchSize::LargeInput,
        )
    });
    c.bench_function("snapshot_to_bytes_450", |b| {
        b.iter(|| base.to_snapshot_bytes().unwrap())
    });
    let bytes = base.to_snapshot_bytes().unwrap();
    c.bench_function("snapshot_from_bytes_450", |b| {
        b.iter(|| Library::from_snapshot_bytes(&bytes).unwrap())
    });
}

fn text_kernels(c: &mut Criterion) {
    let mut rng = Lcg(5);
    let t: Vec<String> = (0..100).map(|_| text(&mut rng, 40)).collect();
    c.bench_function("hashing_embed_100x40words", |b| {
        b.iter(|| hashing_embed_batch(&t, DIM).unwrap())
    });
    c.bench_function("sanitize_100x40words", |b| {
        b.iter(|| {
            t.iter()
                .filter(|s| sanitize(s, 4000, false).is_ok())
                .count()
        })
    });
}

criterion_group!(benches, retrieval, admission, text_kernels);
criterion_main!(benches);
