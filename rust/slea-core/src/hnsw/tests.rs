//! Unit and property tests of the HNSW index.

use super::distance::{dot_portable, push_normalised};
use super::*;
use proptest::prelude::*;

/// Deterministic pseudo-random data (splitmix64), unit vectors.
fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut st = seed;
    let mut raw = Vec::with_capacity(n * dim);
    for _ in 0..n * dim {
        let x = graph::splitmix64(&mut st);
        raw.push((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5);
    }
    let mut out = Vec::with_capacity(n * dim);
    for row in raw.chunks_exact(dim) {
        push_normalised(row, &mut out).unwrap();
    }
    out
}

/// Clustered unit vectors: `c` centres, points spread around them.
fn clustered(n: usize, dim: usize, c: usize, seed: u64) -> Vec<f32> {
    let centres = data(c, dim, seed ^ 0xABCD);
    let noise = data(n, dim, seed);
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let ctr = &centres[(i % c) * dim..(i % c + 1) * dim];
        let row: Vec<f32> = (0..dim)
            .map(|j| ctr[j] + 0.5 * noise[i * dim + j])
            .collect();
        push_normalised(&row, &mut out).unwrap();
    }
    out
}

fn build(n: usize, dim: usize, params: HnswParams, vecs: &[f32]) -> HnswIndex {
    let mut idx = HnswIndex::new(dim, params).unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    let tags: Vec<u32> = (0..n as u32).map(|i| i % 7).collect();
    idx.insert_batch(&ids, &vecs[..n * dim], &tags).unwrap();
    idx
}

/// Plain brute force over a model: `(id, score)` best first, ties by id.
fn brute(
    model: &[(u64, Vec<f32>, u32)],
    q: &[f32],
    k: usize,
    f: &dyn Fn(u32) -> bool,
) -> Vec<(u64, f32)> {
    let mut qn = Vec::new();
    push_normalised(q, &mut qn).unwrap();
    let mut v: Vec<(u64, f32)> = model
        .iter()
        .filter(|e| f(e.2))
        .map(|e| {
            let mut u = Vec::new();
            push_normalised(&e.1, &mut u).unwrap();
            (
                e.0,
                u.iter()
                    .zip(&qn)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>() as f32,
            )
        })
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

fn recall(idx: &HnswIndex, queries: &[f32], k: usize, ef: usize) -> f64 {
    let dim = idx.dim();
    let mut hit = 0usize;
    let mut total = 0usize;
    for q in queries.chunks_exact(dim) {
        let truth: HashSet<u64> = idx
            .search_exact(q, k, None)
            .unwrap()
            .iter()
            .map(|x| x.0)
            .collect();
        let got = idx.search(q, k, Some(ef)).unwrap();
        hit += got.iter().filter(|x| truth.contains(&x.0)).count();
        total += truth.len();
    }
    hit as f64 / total as f64
}

fn small_params() -> HnswParams {
    HnswParams {
        m: 8,
        ef_construction: 64,
        ef_search: 32,
        seed: 7,
        flat_threshold: 0,
    }
}

#[test]
fn kernels_agree() {
    for len in [0usize, 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 384, 385] {
        let a = data(1, len.max(1), len as u64);
        let b = data(1, len.max(1), len as u64 + 99);
        let (a, b) = (&a[..len], &b[..len]);
        let exact: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let p = dot_portable(a, b);
        assert!((f64::from(p) - exact).abs() < 1e-5, "portable len {len}");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let v = distance::dot_avx2(a, b);
            assert!((f64::from(v) - exact).abs() < 1e-5, "avx2 len {len}");
        }
    }
}

#[test]
fn normalisation_rejects_bad_vectors() {
    let mut out = Vec::new();
    assert!(push_normalised(&[0.0, 0.0], &mut out).is_err());
    assert!(push_normalised(&[f32::NAN, 1.0], &mut out).is_err());
    assert!(push_normalised(&[f32::INFINITY, 1.0], &mut out).is_err());
    assert!(out.is_empty());
    push_normalised(&[f32::MAX, f32::MAX], &mut out).unwrap();
    assert!((out[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    out.clear();
    push_normalised(&[1e-45, 0.0], &mut out).unwrap();
    assert_eq!(out, vec![1.0, 0.0]);
}

#[test]
fn exact_roundtrip_and_remove() {
    let mut idx = HnswIndex::new(2, HnswParams::default()).unwrap();
    idx.insert(1, &[1.0, 0.0], 0).unwrap();
    idx.insert(2, &[0.0, 1.0], 1).unwrap();
    idx.insert(3, &[0.6, 0.8], 1).unwrap();
    let r = idx.search(&[1.0, 0.0], 2, None).unwrap();
    assert_eq!(r[0].0, 1);
    assert_eq!(r[1].0, 3);
    let f = idx
        .search_filtered(&[1.0, 0.0], 5, None, &|t| t == 1)
        .unwrap();
    assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 2]);
    assert!(idx.remove(1));
    assert!(!idx.remove(1));
    let back = HnswIndex::from_bytes(&idx.to_bytes()).unwrap();
    assert_eq!(back.search(&[1.0, 0.0], 1, None).unwrap()[0].0, 3);
    assert!(HnswIndex::from_bytes(&idx.to_bytes()[..10]).is_err());
}

#[test]
fn recall_on_random_data() {
    // Kept small for debug builds; tests/test_hnsw.py checks 5k points at ef=80 in release.
    let (n, dim) = (2000, 16);
    let vecs = data(n + 200, dim, 1);
    let idx = build(
        n,
        dim,
        HnswParams {
            flat_threshold: 0,
            ef_construction: 100,
            ..HnswParams::default()
        },
        &vecs,
    );
    let r = recall(&idx, &vecs[n * dim..], 10, 80);
    assert!(r >= 0.95, "recall@10 at ef=80 is {r}");
    let s = idx.stats();
    assert_eq!(s.slots, n);
    assert!(s.max_level >= 1 && s.nodes_per_level[1] > 0);
    assert!(s.mean_degree0 > 4.0 && s.mean_degree0 <= 32.0);
}

#[test]
fn level_distribution_follows_one_over_ln_m() {
    let (n, dim) = (3000, 4);
    let idx = build(
        n,
        dim,
        HnswParams {
            m: 4,
            ef_construction: 8,
            ..HnswParams::default()
        },
        &data(n, dim, 3),
    );
    // P(level >= 1) = 1/m.
    let frac = idx.stats().nodes_per_level[1] as f64 / n as f64;
    assert!((frac - 0.25).abs() < 0.04, "fraction on layer 1: {frac}");
}

#[test]
fn same_seed_same_bytes() {
    let (n, dim) = (600, 16);
    let vecs = data(n, dim, 5);
    let a = build(n, dim, small_params(), &vecs);
    let b = build(n, dim, small_params(), &vecs);
    assert_eq!(a.to_bytes(), b.to_bytes());
    let c = build(
        n,
        dim,
        HnswParams {
            seed: 8,
            ..small_params()
        },
        &vecs,
    );
    assert_ne!(a.to_bytes(), c.to_bytes());
}

#[test]
fn roundtrip_is_canonical_and_continues_identically() {
    let (n, dim) = (500, 12);
    let vecs = data(n + 100, dim, 9);
    let mut a = build(n, dim, small_params(), &vecs);
    for id in (0..n as u64).step_by(3) {
        a.remove(id);
    }
    a.set_max_elements(Some(10_000)).unwrap();
    let bytes = a.to_bytes();
    let mut b = HnswIndex::from_bytes(&bytes).unwrap();
    assert_eq!(b.to_bytes(), bytes);
    assert_eq!(b.len(), a.len());
    assert_eq!(b.max_elements(), Some(10_000));
    let ids: Vec<u64> = (n as u64..n as u64 + 100).collect();
    let tags = vec![1u32; 100];
    a.insert_batch(&ids, &vecs[n * dim..], &tags).unwrap();
    b.insert_batch(&ids, &vecs[n * dim..], &tags).unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes());
    let q = &vecs[..dim];
    assert_eq!(
        a.search(q, 10, None).unwrap(),
        b.search(q, 10, None).unwrap()
    );
}

#[test]
fn tombstones_are_never_returned_and_slots_are_reused() {
    let (n, dim) = (800, 8);
    let vecs = data(n * 2, dim, 11);
    let mut idx = build(n, dim, small_params(), &vecs);
    let removed: HashSet<u64> = (0..n as u64).filter(|i| i % 2 == 0).collect();
    for &id in &removed {
        assert!(idx.remove(id));
        assert!(!idx.contains(id));
    }
    assert_eq!(idx.len(), n / 2);
    for q in vecs.chunks_exact(dim).take(50) {
        let got = idx.search(q, 10, None).unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|x| !removed.contains(&x.0)));
    }
    // Reuse: inserting as many as were removed adds no slot.
    let ids: Vec<u64> = (10_000..10_000 + removed.len() as u64).collect();
    let tags = vec![0u32; ids.len()];
    idx.insert_batch(&ids, &vecs[n * dim..(n + ids.len()) * dim], &tags)
        .unwrap();
    assert_eq!(idx.stats().slots, n);
    assert_eq!(idx.stats().deleted, 0);
    // The new entries are found by their own vectors.
    let mut found = 0;
    for (i, q) in vecs[n * dim..]
        .chunks_exact(dim)
        .take(ids.len())
        .enumerate()
    {
        found += usize::from(idx.search(q, 1, Some(64)).unwrap()[0].0 == ids[i]);
    }
    assert!(
        found as f64 >= 0.95 * ids.len() as f64,
        "found {found} of {}",
        ids.len()
    );
    assert!(recall(&idx, &vecs[..200 * dim], 10, 64) > 0.9);
}

#[test]
fn everything_deleted_returns_empty_then_recovers() {
    let (n, dim) = (300, 6);
    let vecs = data(n + 1, dim, 13);
    let mut idx = build(n, dim, small_params(), &vecs);
    for id in 0..n as u64 {
        idx.remove(id);
    }
    assert!(idx.is_empty());
    assert!(idx.search(&vecs[..dim], 5, None).unwrap().is_empty());
    assert!(idx
        .search_filtered(&vecs[..dim], 5, None, &|_| true)
        .unwrap()
        .is_empty());
    let b = idx
        .search_batch(&vecs[..2 * dim], 5, None, None, 1)
        .unwrap();
    assert_eq!((b.width, b.ids.len()), (0, 0));
    idx.insert(0, &vecs[n * dim..], 3).unwrap();
    assert_eq!(idx.search(&vecs[..dim], 5, None).unwrap().len(), 1);
    assert_eq!(idx.stats().slots, n);
}

#[test]
fn filtered_search_matches_brute_force() {
    let (n, dim) = (3000, 16);
    let vecs = clustered(n + 50, dim, 20, 17);
    let idx = build(n, dim, small_params(), &vecs);
    let model: Vec<(u64, Vec<f32>, u32)> = (0..n)
        .map(|i| {
            (
                i as u64,
                vecs[i * dim..(i + 1) * dim].to_vec(),
                (i % 7) as u32,
            )
        })
        .collect();
    // Broad (3/7), narrow (1/7) and very narrow (a handful) filters.
    let filters: Vec<Box<dyn Fn(u32) -> bool>> = vec![
        Box::new(|t| t < 3),
        Box::new(|t| t == 4),
        Box::new(|t| t == 99),
    ];
    for f in &filters {
        let mut hit = 0;
        let mut total = 0;
        for q in vecs[n * dim..].chunks_exact(dim) {
            let truth = brute(&model, q, 10, f.as_ref());
            let got = idx.search_filtered(q, 10, Some(64), f.as_ref()).unwrap();
            assert_eq!(got.len(), truth.len());
            assert!(got.iter().all(|x| f(idx.tag(x.0).unwrap())));
            let t: HashSet<u64> = truth.iter().map(|x| x.0).collect();
            hit += got.iter().filter(|x| t.contains(&x.0)).count();
            total += t.len();
        }
        if total > 0 {
            assert!(
                hit as f64 / total as f64 > 0.95,
                "filtered recall {hit}/{total}"
            );
        }
    }
}

#[test]
fn flat_threshold_path_is_exact() {
    let (n, dim) = (200, 10);
    let vecs = data(n + 30, dim, 19);
    let idx = build(n, dim, HnswParams::default(), &vecs);
    let model: Vec<(u64, Vec<f32>, u32)> = (0..n)
        .map(|i| {
            (
                i as u64,
                vecs[i * dim..(i + 1) * dim].to_vec(),
                (i % 7) as u32,
            )
        })
        .collect();
    for q in vecs[n * dim..].chunks_exact(dim) {
        for k in [1, 5, 10, 250] {
            let got = idx.search(q, k, Some(1)).unwrap();
            let truth = brute(&model, q, k, &|_| true);
            assert_eq!(got.len(), truth.len());
            for (g, t) in got.iter().zip(&truth) {
                assert!((g.1 - t.1).abs() < 1e-5);
            }
            let ids: Vec<u64> = got.iter().map(|x| x.0).collect();
            let exact: Vec<u64> = idx
                .search_exact(q, k, None)
                .unwrap()
                .iter()
                .map(|x| x.0)
                .collect();
            assert_eq!(ids, exact);
        }
    }
}

#[test]
fn ties_are_ordered_by_id() {
    let mut idx = HnswIndex::new(2, HnswParams::default()).unwrap();
    for id in [9u64, 3, 5, 1] {
        idx.insert(id, &[1.0, 1.0], 0).unwrap();
    }
    let got: Vec<u64> = idx
        .search(&[1.0, 0.0], 3, None)
        .unwrap()
        .iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(got, vec![1, 3, 5]);
}

#[test]
fn k_zero_and_small_ef() {
    let (n, dim) = (1000, 8);
    let vecs = data(n, dim, 23);
    let idx = build(n, dim, small_params(), &vecs);
    assert!(idx.search(&vecs[..dim], 0, None).unwrap().is_empty());
    // ef below k is raised to k.
    assert_eq!(idx.search(&vecs[..dim], 50, Some(1)).unwrap().len(), 50);
}

#[test]
fn bad_input_leaves_index_unchanged() {
    let (n, dim) = (300, 4);
    let vecs = data(n, dim, 29);
    let mut idx = build(n, dim, small_params(), &vecs);
    let before = idx.to_bytes();
    assert!(idx.insert(1, &vecs[..dim], 0).is_err()); // duplicate
    assert!(idx.insert(5000, &[1.0, 2.0], 0).is_err()); // dimension
    assert!(idx.insert(5000, &[0.0; 4], 0).is_err()); // zero
    assert!(idx.insert(5000, &[f32::NAN, 0.0, 0.0, 1.0], 0).is_err());
    let bad_batch = [vecs[..dim].to_vec(), vec![f32::INFINITY, 0.0, 0.0, 0.0]].concat();
    assert!(idx
        .insert_batch(&[7000, 7001], &bad_batch, &[0, 0])
        .is_err());
    assert!(idx
        .insert_batch(&[7000, 7000], &vecs[..2 * dim], &[0, 0])
        .is_err());
    assert!(idx
        .insert_batch(&[7000, 7001], &vecs[..2 * dim], &[0])
        .is_err());
    assert!(idx.insert_batch(&[7000], &vecs[..2 * dim], &[0]).is_err());
    assert!(idx.remove_batch(&[1, 2, 99_999]).is_err());
    assert!(idx.remove_batch(&[1, 1]).is_err());
    assert!(idx.search(&[1.0], 3, None).is_err());
    assert!(idx.search(&[0.0; 4], 3, None).is_err());
    assert!(idx.search_batch(&[1.0; 5], 3, None, None, 1).is_err());
    assert!(idx.set_ef(0).is_err());
    assert!(idx.set_max_elements(Some(10)).is_err());
    assert_eq!(idx.to_bytes(), before);
    assert!(HnswIndex::new(0, HnswParams::default()).is_err());
    assert!(HnswIndex::new(
        4,
        HnswParams {
            m: 1,
            ..HnswParams::default()
        }
    )
    .is_err());
    assert!(HnswIndex::new(
        4,
        HnswParams {
            ef_search: 0,
            ..HnswParams::default()
        }
    )
    .is_err());
}

#[test]
fn max_elements_bounds_live_entries() {
    let dim = 3;
    let vecs = data(10, dim, 31);
    let mut idx = HnswIndex::new(dim, HnswParams::default()).unwrap();
    idx.set_max_elements(Some(2)).unwrap();
    idx.insert_batch(&[1, 2], &vecs[..2 * dim], &[0, 0])
        .unwrap();
    assert!(idx.insert(3, &vecs[2 * dim..3 * dim], 0).is_err());
    idx.upsert(2, &vecs[3 * dim..4 * dim], 1).unwrap();
    assert!(idx.remove(1));
    idx.insert(3, &vecs[2 * dim..3 * dim], 0).unwrap();
    assert_eq!(idx.len(), 2);
}

#[test]
fn upsert_moves_an_entry() {
    let (n, dim) = (1000, 8);
    let vecs = data(n + 1, dim, 37);
    let mut idx = build(n, dim, small_params(), &vecs);
    let target = &vecs[n * dim..];
    idx.upsert(17, target, 42).unwrap();
    assert_eq!(idx.len(), n);
    assert_eq!(idx.tag(17), Some(42));
    let hit = idx.search(target, 1, None).unwrap();
    assert_eq!(hit[0].0, 17);
    assert!((hit[0].1 - 1.0).abs() < 1e-5);
    assert_eq!(
        idx.search_filtered(target, 3, None, &|t| t == 42)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn batch_search_matches_single_and_threads() {
    let (n, dim) = (2000, 16);
    let vecs = data(n + 64, dim, 41);
    let idx = build(n, dim, small_params(), &vecs);
    let qs = &vecs[n * dim..];
    let filter = |t: u32| t != 2;
    let one = idx.search_batch(qs, 7, Some(40), Some(&filter), 1).unwrap();
    let four = idx.search_batch(qs, 7, Some(40), Some(&filter), 4).unwrap();
    assert_eq!(one, four);
    assert_eq!(one.width, 7);
    for (r, q) in qs.chunks_exact(dim).enumerate() {
        let s = idx.search_filtered(q, 7, Some(40), &filter).unwrap();
        let ids: Vec<u64> = s.iter().map(|x| x.0).collect();
        assert_eq!(ids, one.ids[r * 7..(r + 1) * 7].to_vec());
    }
}

fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
    let sum = xxhash_rust::xxh3::xxh3_64(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

/// A decoded index must be safe to use.
fn exercise(idx: &mut HnswIndex) {
    let dim = idx.dim();
    let q = vec![0.5f32; dim];
    let _ = idx.search(&q, 5, None);
    let _ = idx.search_filtered(&q, 5, Some(3), &|t| t % 2 == 0);
    let _ = idx.insert(u64::MAX - 1, &q, 1);
    if let Some(&id) = idx.ids().first() {
        idx.remove(id);
    }
    let _ = idx.search(&q, 5, None);
    let _ = idx.to_bytes();
}

#[test]
fn every_truncation_and_flip_is_detected() {
    let (n, dim) = (40, 3);
    let vecs = data(n, dim, 43);
    let mut idx = build(
        n,
        dim,
        HnswParams {
            m: 2,
            ef_construction: 4,
            flat_threshold: 0,
            ..HnswParams::default()
        },
        &vecs,
    );
    idx.remove(3);
    let bytes = idx.to_bytes();
    for cut in 0..bytes.len() {
        assert!(
            HnswIndex::from_bytes(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    for i in 0..bytes.len() {
        for bit in [0u8, 3, 7] {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(HnswIndex::from_bytes(&b).is_err(), "flip at byte {i}");
        }
    }
}

#[test]
fn structural_corruption_never_panics() {
    let (n, dim) = (60, 3);
    let vecs = data(n, dim, 47);
    let mut idx = build(
        n,
        dim,
        HnswParams {
            m: 2,
            ef_construction: 4,
            flat_threshold: 0,
            ..HnswParams::default()
        },
        &vecs,
    );
    idx.remove(5);
    let bytes = idx.to_bytes();
    let body = &bytes[..bytes.len() - 8];
    let mut st = 1u64;
    let mut accepted = 0;
    for _ in 0..2000 {
        let mut b = body.to_vec();
        let flips = 1 + graph::splitmix64(&mut st) % 3;
        for _ in 0..flips {
            let i = (graph::splitmix64(&mut st) % b.len() as u64) as usize;
            b[i] = graph::splitmix64(&mut st) as u8;
        }
        if let Ok(mut got) = HnswIndex::from_bytes(&with_checksum(b)) {
            accepted += 1;
            exercise(&mut got);
        }
    }
    // Flips in vectors, ids, tags or the seed decode to valid (different) indexes.
    assert!(accepted > 0);
    // Every single-byte change of the header fields is handled.
    for i in 8..100.min(body.len()) {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = body.to_vec();
            b[i] = v;
            if let Ok(mut got) = HnswIndex::from_bytes(&with_checksum(b)) {
                exercise(&mut got);
            }
        }
    }
}

#[test]
fn huge_counts_do_not_allocate() {
    let idx = HnswIndex::new(4, HnswParams::default()).unwrap();
    let bytes = idx.to_bytes();
    let mut body = bytes[..bytes.len() - 8].to_vec();
    // slots field: after magic(8) + version(4) + 8 u64 fields.
    let at = 12 + 8 * 8;
    body[at..at + 8].copy_from_slice(&(u32::MAX as u64).to_le_bytes());
    assert!(HnswIndex::from_bytes(&with_checksum(body.clone())).is_err());
    body[12..20].copy_from_slice(&u64::MAX.to_le_bytes()); // dim
    assert!(HnswIndex::from_bytes(&with_checksum(body)).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, Vec<f32>, u32),
    Upsert(u64, Vec<f32>, u32),
    Remove(u64),
    Search(Vec<f32>, usize, Option<u32>),
}

fn op() -> impl Strategy<Value = Op> {
    let v = prop::collection::vec(-1.0f32..1.0, 3);
    prop_oneof![
        3 => (0u64..40, v.clone(), 0u32..3).prop_map(|(i, v, t)| Op::Insert(i, v, t)),
        1 => (0u64..40, v.clone(), 0u32..3).prop_map(|(i, v, t)| Op::Upsert(i, v, t)),
        2 => (0u64..40).prop_map(Op::Remove),
        2 => (v, 0usize..12, prop::option::of(0u32..3)).prop_map(|(v, k, f)| Op::Search(v, k, f)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random operation streams against a plain model: membership, counts and (on the exact
    /// path below flat_threshold, and always for the result count) the results themselves.
    #[test]
    fn behaves_like_a_model(ops in prop::collection::vec(op(), 1..120), flat in prop_oneof![Just(0usize), Just(1000)]) {
        let params = HnswParams { m: 2, ef_construction: 8, ef_search: 4, seed: 1, flat_threshold: flat };
        let mut idx = HnswIndex::new(3, params).unwrap();
        let mut model: Vec<(u64, Vec<f32>, u32)> = Vec::new();
        for o in ops {
            let nonzero = |v: &Vec<f32>| v.iter().any(|x| *x != 0.0);
            match o {
                Op::Insert(id, v, t) => {
                    let ok = idx.insert(id, &v, t).is_ok();
                    let expect = !model.iter().any(|e| e.0 == id) && nonzero(&v);
                    prop_assert_eq!(ok, expect);
                    if ok { model.push((id, v, t)); }
                }
                Op::Upsert(id, v, t) => {
                    let ok = idx.upsert(id, &v, t).is_ok();
                    prop_assert_eq!(ok, nonzero(&v));
                    if ok {
                        model.retain(|e| e.0 != id);
                        model.push((id, v, t));
                    }
                }
                Op::Remove(id) => {
                    let present = model.iter().any(|e| e.0 == id);
                    prop_assert_eq!(idx.remove(id), present);
                    model.retain(|e| e.0 != id);
                }
                Op::Search(q, k, f) => {
                    if !nonzero(&q) { continue; }
                    let filt = move |t: u32| f.is_none_or(|x| x == t);
                    let got = idx.search_filtered(&q, k, None, &filt).unwrap();
                    let truth = brute(&model, &q, k, &filt);
                    prop_assert_eq!(got.len(), truth.len());
                    for g in &got {
                        let e = model.iter().find(|e| e.0 == g.0);
                        prop_assert!(e.is_some_and(|e| filt(e.2)));
                    }
                    if flat > 0 {
                        for (g, t) in got.iter().zip(&truth) {
                            prop_assert!((g.1 - t.1).abs() < 1e-5);
                        }
                    }
                }
            }
            prop_assert_eq!(idx.len(), model.len());
        }
        let back = HnswIndex::from_bytes(&idx.to_bytes()).unwrap();
        prop_assert_eq!(back.ids(), { let mut v: Vec<u64> = model.iter().map(|e| e.0).collect(); v.sort_unstable(); v });
        prop_assert!(idx.stats().slots <= 40);
    }
}

#[test]
fn newer_format_version_is_named() {
    let idx = HnswIndex::new(4, HnswParams::default()).unwrap();
    let mut b = idx.to_bytes();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    let err = HnswIndex::from_bytes(&b).unwrap_err().to_string();
    assert!(err.contains("version 2 is not supported"), "{err}");
    let mut b = idx.to_bytes();
    b[0] = b'X';
    let err = HnswIndex::from_bytes(&b).unwrap_err().to_string();
    assert!(err.contains("bad magic"), "{err}");
}

#[test]
fn index_is_send_and_sync() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<HnswIndex>();
}
