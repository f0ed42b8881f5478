//! Criterion benches for slea_core::advantage (`cargo bench -p slea-core --bench advantage`).
//!
//! Rollout-like batches (groups of 8 episodes of 5..50 steps, sparse rewards, 10 % invalid,
//! repeated states) of 1k, 10k and 100k rows: building the `StepBatch` (validation + layout) and
//! computing `gigpo` and `salt` advantages, in episode order and with shuffled rows.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slea_core::advantage::{compute_advantages, Columns, Estimator, Params, StepBatch};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rollout_columns(n_rows: usize, shuffled: bool) -> Columns {
    let mut rng = Rng(0x5eed);
    let mut c = Columns {
        action_key: Some(Vec::new()),
        ..Columns::default()
    };
    let (mut episode, mut group) = (0i64, 0i64);
    while c.len() < n_rows {
        let n_states = 8 + rng.below(32);
        for _ in 0..8 {
            let len = 5 + rng.below(46) as usize;
            let success = rng.below(10) < 4;
            for t in 0..len {
                c.group.push(group);
                c.episode.push(episode);
                c.step.push(t as i64);
                c.reward
                    .push(if t + 1 == len && success { 1.0 } else { 0.0 });
                c.key.push(((group as u64) << 20) + rng.below(n_states));
                c.invalid.push(rng.below(10) == 0);
                if let Some(actions) = c.action_key.as_mut() {
                    actions.push(rng.below(6));
                }
            }
            episode += 1;
        }
        group += 1;
    }
    let mut order: Vec<usize> = (0..n_rows).collect();
    if shuffled {
        for i in (1..n_rows).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    let actions = c
        .action_key
        .as_ref()
        .map(|a| order.iter().map(|&i| a[i]).collect());
    Columns {
        group: order.iter().map(|&i| c.group[i]).collect(),
        episode: order.iter().map(|&i| c.episode[i]).collect(),
        step: order.iter().map(|&i| c.step[i]).collect(),
        reward: order.iter().map(|&i| c.reward[i]).collect(),
        key: order.iter().map(|&i| c.key[i]).collect(),
        invalid: order.iter().map(|&i| c.invalid[i]).collect(),
        action_key: actions,
    }
}

fn advantages(c: &mut Criterion) {
    let mut g = c.benchmark_group("advantage");
    for n in [1_000usize, 10_000, 100_000] {
        g.throughput(Throughput::Elements(n as u64));
        for shuffled in [false, true] {
            let cols = rollout_columns(n, shuffled);
            let tag = if shuffled { "shuffled" } else { "ordered" };
            g.bench_with_input(
                BenchmarkId::new(format!("build_{tag}"), n),
                &cols,
                |b, cols| b.iter(|| StepBatch::new(cols.clone()).map(|s| s.len())),
            );
            let batch = StepBatch::new(cols).expect("valid bench batch");
            for estimator in [Estimator::Gigpo, Estimator::Salt] {
                let p = Params {
                    estimator,
                    ..Params::default()
                };
                let name = format!("{estimator:?}_{tag}").to_lowercase();
                g.bench_with_input(BenchmarkId::new(name, n), &batch, |b, batch| {
                    b.iter(|| compute_advantages(batch, &p).map(|a| a.advantage.len()))
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, advantages);
criterion_main!(benches);
