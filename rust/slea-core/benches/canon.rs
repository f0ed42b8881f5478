//! Criterion benches for canonicalisation, hashing and clustering
//! (`cargo bench -p slea-core --bench canon`). Their Python twins are `python -m benches canon`
//! and `python -m benches clustering`; the difference is the FFI cost.
//!
//! Observations are TextWorld-like texts made here (the Python benches use real games): a room
//! header, description paragraphs, exits, a floor listing, an inventory, and for the `full` form
//! a status line and the last action's feedback in front.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slea_core::canon::{preset_rules, CanonSpec, Rule, Scratch};
use slea_core::cluster::{ClusterParams, ObservationClusterer};
use slea_core::hash::{line_hashes, simhash, structural_hash};

const ROOMS: [&str; 6] = [
    "Kitchen",
    "Bar",
    "Studio",
    "Cookhouse",
    "Spare Room",
    "Laundromat",
];
const OBJECTS: [&str; 8] = [
    "a red apple",
    "a knife",
    "a cookbook",
    "a fudge scented key",
    "a pair of pants",
    "a blanket",
    "a controller",
    "an American latchkey",
];
const FEEDBACK: [&str; 4] = [
    "You pick up the knife from the ground.",
    "You open the gateway.",
    "That's not a verb I recognise.",
    "The pair of pants appears to fit in here",
];

/// A small deterministic generator (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        slea_core::hash::mix64(self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn listing(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// One observation: (state text, full text).
fn observation(rng: &mut Rng, step: usize) -> (String, String) {
    let room = ROOMS[rng.below(ROOMS.len())];
    let mut floor: Vec<&str> = OBJECTS
        .iter()
        .copied()
        .filter(|_| rng.below(4) == 0)
        .collect();
    let mut inv: Vec<&str> = OBJECTS
        .iter()
        .copied()
        .filter(|_| rng.below(5) == 0)
        .collect();
    for v in [&mut floor, &mut inv] {
        for i in (1..v.len()).rev() {
            let j = rng.below(i + 1);
            v.swap(i, j);
        }
    }
    let door = if rng.below(2) == 0 { "open" } else { "closed" };
    let mut state = format!(
        "-= {room} =-\nYou arrive in a {}. A normal one. You decide to just list off a complete list \
         of everything you see in the room, because hey, why not?\n\n\n\nThere is an {door} gateway \
         leading west. You don't like doors? Why not try going east, that entranceway is unguarded.",
        room.to_lowercase()
    );
    if !floor.is_empty() {
        state.push_str(&format!("\n\nThere is {} on the floor.", listing(&floor)));
    }
    if inv.is_empty() {
        state.push_str("\n\nYou are carrying nothing.");
    } else {
        state.push_str(&format!("\n\nYou are carrying: {}.", listing(&inv)));
    }
    let feedback = FEEDBACK[rng.below(FEEDBACK.len())];
    let full = format!("Moves: {step}    Score: 0\n{feedback}\n\n{state}");
    (state, full)
}

fn observations(n: usize) -> (Vec<String>, Vec<String>) {
    let mut rng = Rng(7);
    (0..n).map(|i| observation(&mut rng, i)).unzip()
}

fn bytes(texts: &[String]) -> u64 {
    texts.iter().map(|t| t.len() as u64).sum()
}

fn bench_presets(c: &mut Criterion) {
    let (state, full) = observations(256);
    let mut g = c.benchmark_group("canon+hash");
    for (form, texts) in [("state", &state), ("full", &full)] {
        g.throughput(Throughput::Bytes(bytes(texts)));
        for name in ["generic", "textworld"] {
            let spec = CanonSpec::preset(name).unwrap();
            let mut scratch = Scratch::default();
            g.bench_function(BenchmarkId::new(name, form), |b| {
                b.iter(|| {
                    texts
                        .iter()
                        .map(|t| spec.structural_hash(t, &mut scratch))
                        .fold(0u64, |a, h| a ^ h)
                })
            });
        }
    }
    g.finish();
}

fn bench_rules(c: &mut Criterion) {
    let (_, full) = observations(256);
    let mut g = c.benchmark_group("rule");
    g.throughput(Throughput::Bytes(bytes(&full)));
    let mut rules: Vec<Rule> = preset_rules("generic").unwrap();
    rules.extend(preset_rules("textworld").unwrap());
    for (i, rule) in rules.into_iter().enumerate() {
        let name = serde_json::to_value(&rule).unwrap()["rule"]
            .as_str()
            .unwrap()
            .to_string();
        let spec = CanonSpec::new(vec![rule]).unwrap();
        let mut scratch = Scratch::default();
        g.bench_function(BenchmarkId::new(name, i), |b| {
            b.iter(|| {
                full.iter()
                    .map(|t| spec.canonicalize_into(t, &mut scratch).len())
                    .sum::<usize>()
            })
        });
    }
    let canon: Vec<String> = {
        let spec = CanonSpec::preset("generic").unwrap();
        full.iter().map(|t| spec.canonicalize(t)).collect()
    };
    g.bench_function("structural_hash", |b| {
        b.iter(|| {
            canon
                .iter()
                .map(|t| structural_hash(t))
                .fold(0, |a, h| a ^ h)
        })
    });
    g.bench_function("simhash", |b| {
        b.iter(|| canon.iter().map(|t| simhash(t)).fold(0, |a, h| a ^ h))
    });
    g.bench_function("line_hashes", |b| {
        b.iter(|| canon.iter().map(|t| line_hashes(t).len()).sum::<usize>())
    });
    g.finish();
}

fn bench_cluster(c: &mut Criterion) {
    let (state, full) = observations(10_000);
    let mut g = c.benchmark_group("cluster");
    g.sample_size(10);
    for (form, texts) in [("state", &state), ("full", &full)] {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        g.throughput(Throughput::Elements(refs.len() as u64));
        for name in ["generic", "textworld"] {
            let spec = CanonSpec::preset(name).unwrap();
            g.bench_function(BenchmarkId::new(name, form), |b| {
                b.iter(|| {
                    let mut cl =
                        ObservationClusterer::new(spec.clone(), ClusterParams::default()).unwrap();
                    cl.assign_batch(&refs);
                    cl.len()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_presets, bench_rules, bench_cluster);
criterion_main!(benches);
