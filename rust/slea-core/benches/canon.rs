//! Criterion benches for slea_core::canon (`cargo bench -p slea-core --bench canon`).
use criterion::{criterion_group, criterion_main, Criterion};

fn placeholder(c: &mut Criterion) {
    c.bench_function("canon_version", |b| b.iter(|| slea_core::VERSION.len()));
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
