//! Criterion benches for slea_core::advantage (`cargo bench -p slea-core --bench advantage`).
use criterion::{criterion_group, criterion_main, Criterion};

fn placeholder(c: &mut Criterion) {
    c.bench_function("advantage_version", |b| b.iter(|| slea_core::VERSION.len()));
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
