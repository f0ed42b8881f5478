//! Criterion benches for slea_core::hnsw (`cargo bench -p slea-core --bench hnsw`).
use criterion::{criterion_group, criterion_main, Criterion};

fn placeholder(c: &mut Criterion) {
    c.bench_function("hnsw_version", |b| b.iter(|| slea_core::VERSION.len()));
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
