//! Criterion benches for slea_core::library (`cargo bench -p slea-core --bench library`).
use criterion::{criterion_group, criterion_main, Criterion};

fn texts(n: usize, words: usize) -> Vec<String> {
    let mut state = 0x1234_5678_u64;
    (0..n)
        .map(|_| {
            (0..words)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    format!("w{}", (state >> 33) % 5000)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn embed(c: &mut Criterion) {
    let t = texts(100, 500);
    c.bench_function("hashing_embed_100x500words", |b| {
        b.iter(|| slea_core::embed::hashing_embed_batch(&t, 32).unwrap())
    });
    c.bench_function("sanitize_100x500words", |b| {
        b.iter(|| {
            t.iter()
                .map(|s| slea_core::library::sanitize(s, 4000, false).map(|x| x.len()))
                .count()
        })
    });
}

criterion_group!(benches, embed);
criterion_main!(benches);
