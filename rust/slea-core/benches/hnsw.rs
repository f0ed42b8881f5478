//! Criterion benches for slea_core::hnsw (`cargo bench -p slea-core --bench hnsw`).
//!
//! Build of 5k x 128 clustered unit vectors, single-query search at ef 16/40/80, a filtered
//! search, and the exact scan it falls back to. The Python twin with hnswlib as the reference
//! is `python -m benches hnsw`.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use slea_core::hnsw::{HnswIndex, HnswParams};
use std::hint::black_box;

const N: usize = 5000;
const DIM: usize = 128;

/// Clustered unit vectors from a fixed LCG (no rand dependency).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let centres: Vec<f32> = (0..50 * DIM).map(|_| next()).collect();
    let mut out = Vec::with_capacity(n * DIM);
    for i in 0..n {
        let c = &centres[(i % 50) * DIM..(i % 50 + 1) * DIM];
        let row: Vec<f32> = c.iter().map(|x| x + 0.7 * next()).collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.extend(row.iter().map(|x| x / norm));
    }
    out
}

fn build(vecs: &[f32]) -> HnswIndex {
    let params = HnswParams {
        flat_threshold: 0,
        ..HnswParams::default()
    };
    let mut idx = HnswIndex::new(DIM, params).unwrap();
    let ids: Vec<u64> = (0..N as u64).collect();
    let tags: Vec<u32> = (0..N as u32).map(|i| i % 6).collect();
    idx.insert_batch(&ids, vecs, &tags).unwrap();
    idx
}

fn bench(c: &mut Criterion) {
    let vecs = data(N, 1);
    let queries = data(64, 2);
    let mut g = c.benchmark_group("hnsw_build");
    g.sample_size(10);
    g.bench_function("5k_x_128_m16_efc200", |b| {
        b.iter(|| build(black_box(&vecs)))
    });
    g.finish();

    let idx = build(&vecs);
    let mut g = c.benchmark_group("hnsw_search_k10");
    for ef in [16usize, 40, 80] {
        g.bench_with_input(BenchmarkId::new("ef", ef), &ef, |b, &ef| {
            let mut i = 0;
            b.iter(|| {
                let q = &queries[(i % 64) * DIM..(i % 64 + 1) * DIM];
                i += 1;
                idx.search(black_box(q), 10, Some(ef)).unwrap()
            })
        });
    }
    g.bench_function("filtered_one_tag_of_6", |b| {
        b.iter(|| {
            idx.search_filtered(black_box(&queries[..DIM]), 10, Some(40), &|t| t == 2)
                .unwrap()
        })
    });
    g.bench_function("exact_scan", |b| {
        b.iter(|| {
            idx.search_exact(black_box(&queries[..DIM]), 10, None)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
