use super::*;
use proptest::prelude::*;

const DIM: usize = 8;

pub(super) fn params(cap_s: usize, cap_w: usize) -> LibraryParams {
    LibraryParams {
        dim: DIM,
        embedder: "test-onehot".into(),
        capacity: [cap_s, cap_w],
        rate_per_step: [10.0, 5.0],
        novelty_threshold: 0.85,
        fallback_threshold: 0.2,
        max_text_chars: 200,
        max_demo_chars: 400,
        pool_size: 2,
        max_clusters: 3,
        max_provenance: 4,
        ema_alpha: None,
    }
}

pub(super) fn onehot(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i % DIM] = 1.0;
    v
}

pub(super) fn cand(text: &str, zone: Zone, level: Level, score: f64, dir: usize) -> Candidate {
    Candidate {
        text: text.into(),
        zone,
        level,
        score,
        episode_ids: vec![1],
        cluster_ids: vec![],
        observation: None,
        action: None,
        embedding: onehot(dir),
    }
}

fn s(text: &str, score: f64, dir: usize) -> Candidate {
    cand(text, Zone::Strategy, Level::Principle, score, dir)
}

fn outcomes(d: &[Decision]) -> Vec<&'static str> {
    d.iter().map(|d| d.outcome.name()).collect()
}

/// Every structural invariant the library promises.
pub(super) fn check_invariants(lib: &Library) {
    let p = &lib.params;
    for z in Zone::ALL {
        for l in Level::ALL {
            let n = lib.buckets[z.index()][l.index()].len();
            assert!(n <= p.capacity[z.index()], "capacity exceeded");
        }
        assert_eq!(lib.zone_len(z), lib.entries(Some(z), None).len());
    }
    assert_eq!(lib.index.len(), lib.entries.len());
    assert!(lib.pools.len() <= p.max_clusters);
    let mut link_count = 0;
    for (c, pool) in &lib.pools {
        assert!(!pool.is_empty());
        for z in Zone::ALL {
            let ids = &pool.ids[z.index()];
            assert!(ids.len() <= p.pool_size);
            for id in ids {
                let e = lib.entries.get(id).expect("dangling link");
                assert_eq!(e.zone, z);
                assert!(lib.links[id].contains(c));
                link_count += 1;
            }
        }
    }
    assert_eq!(link_count, lib.links.values().map(Vec::len).sum::<usize>());
    for e in lib.entries.values() {
        assert!(lib.index.contains(e.id));
        assert!(e.episode_ids.len() <= p.max_provenance);
    }
}

#[test]
fn admission_outcomes_and_eviction() {
    let mut lib = Library::new(params(2, 1)).unwrap();
    let d = lib
        .admit(
            vec![
                s("open the door", 1.0, 0),
                s("open the door again", 0.5, 0),
                s("eat", 0.2, 1),
                s("drink", 0.2, 2),
                s("sleep", 0.3, 3),
                s("", 9.0, 4),
                cand("warn", Zone::Warning, Level::Example, 0.0, 0),
            ],
            1,
        )
        .unwrap();
    assert_eq!(
        outcomes(&d),
        vec![
            "admitted",
            "duplicate",
            "admitted",
            "below_floor",
            "admitted",
            "invalid",
            "admitted"
        ]
    );
    assert_eq!(d[1].entry_id, Some(1));
    assert_eq!(d[4].evicted, vec![2], "lowest (0.2) evicted");
    assert!(d[5].reason.contains("empty"), "{}", d[5].reason);
    assert_eq!(lib.len(), 3);
    assert!(lib.get(2).is_none());
    // The warning zone is separate: same direction is not a duplicate of a strategy.
    assert_eq!(lib.get(d[6].entry_id.unwrap()).unwrap().zone, Zone::Warning);
    check_invariants(&lib);
}

#[test]
fn ties_evict_the_oldest_and_equal_score_is_below_floor() {
    let mut lib = Library::new(params(2, 1)).unwrap();
    lib.admit(vec![s("a", 0.5, 0), s("b", 0.5, 1)], 0).unwrap();
    let d = lib.admit(vec![s("c", 0.5, 2), s("d", 0.6, 3)], 0).unwrap();
    assert_eq!(outcomes(&d), vec!["below_floor", "admitted"]);
    assert_eq!(d[1].evicted, vec![1], "oldest of the tied lowest goes");
}

#[test]
fn duplicate_keeps_higher_score_and_merges_provenance() {
    let mut lib = Library::new(params(5, 5)).unwrap();
    let mut a = s("a", 0.3, 0);
    a.episode_ids = vec![1, 2];
    a.cluster_ids = vec![7];
    lib.admit(vec![a], 1).unwrap();
    let mut b = s("b", 0.9, 0);
    b.episode_ids = vec![2, 3, 4, 5];
    b.cluster_ids = vec![8];
    let d = lib.admit(vec![b], 2).unwrap();
    assert_eq!(outcomes(&d), vec!["duplicate"]);
    let e = lib.get(1).unwrap();
    assert_eq!(e.score, 0.9);
    assert_eq!(
        e.episode_ids,
        vec![2, 3, 4, 5],
        "bounded to the most recent 4"
    );
    assert_eq!(e.cluster_ids, vec![7, 8]);
    assert_eq!((e.iteration, e.created_iteration), (2, 1));
    assert_eq!(lib.linked_clusters(1), vec![7, 8]);
    assert_eq!(e.text, "a");
}

#[test]
fn rate_limit_per_step_counts_only_admissions() {
    let mut p = params(100, 100);
    p.rate_per_step = [2.0, 1.0];
    let mut lib = Library::new(p).unwrap();
    let d = lib
        .admit(
            vec![
                s("a", 1.0, 0),
                s("a2", 1.0, 0),
                s("b", 1.0, 1),
                s("c", 1.0, 2),
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        outcomes(&d),
        vec!["admitted", "duplicate", "admitted", "rate_limited"]
    );
    let d = lib.admit(vec![s("c", 1.0, 2)], 0).unwrap();
    assert_eq!(outcomes(&d), vec!["rate_limited"], "same step");
    let d = lib.admit(vec![s("c", 1.0, 2)], 1).unwrap();
    assert_eq!(outcomes(&d), vec!["admitted"], "next step refills");
}

#[test]
fn invalid_candidates_and_bad_input() {
    let mut lib = Library::new(params(5, 5)).unwrap();
    let mut demo_wrong_level = s("x", 1.0, 0);
    demo_wrong_level.observation = Some("room".into());
    demo_wrong_level.action = Some("go".into());
    let mut half_demo = cand("x", Zone::Strategy, Level::Example, 1.0, 1);
    half_demo.action = Some("go".into());
    let mut zero = s("zero", 1.0, 0);
    zero.embedding = vec![0.0; DIM];
    let long = s(&"y".repeat(201), 1.0, 2);
    let d = lib
        .admit(vec![demo_wrong_level, half_demo, zero, long], 0)
        .unwrap();
    assert_eq!(outcomes(&d), vec!["invalid"; 4]);
    assert!(d[0].reason.contains("only example"));
    assert!(d[1].reason.contains("both"));
    assert!(d[2].reason.contains("zero"));
    assert!(d[3].reason.contains("201 characters"));
    assert_eq!(lib.version(), 0);

    let before = lib.to_snapshot_bytes().unwrap();
    let mut bad_dim = s("ok", 1.0, 0);
    bad_dim.embedding = vec![1.0; 3];
    let e = lib.admit(vec![s("fine", 1.0, 1), bad_dim], 0).unwrap_err();
    assert!(e.to_string().contains("candidates[1].embedding"), "{e}");
    let mut nan = s("ok", f64::NAN, 0);
    let e = lib.admit(vec![nan.clone()], 0).unwrap_err();
    assert!(e.to_string().contains("score"), "{e}");
    nan.score = 1.0;
    nan.embedding[0] = f32::INFINITY;
    assert!(lib.admit(vec![nan], 0).is_err());
    assert!(lib.remove(99).is_err());
    assert!(lib.link(1, &[99]).is_err());
    assert!(lib.record_outcome(&[99], true, None, false).is_err());
    assert!(lib
        .record_outcome(&[], true, Some(f64::NAN), false)
        .is_err());
    assert!(lib.retrieve_fallback(1, &[1.0; 3], 1, 1).is_err());
    assert_eq!(
        lib.to_snapshot_bytes().unwrap(),
        before,
        "failed calls change nothing"
    );
}

#[test]
fn demonstrations_on_examples() {
    let mut lib = Library::new(params(5, 5)).unwrap();
    let mut c = cand(
        "when in the kitchen, open the fridge",
        Zone::Strategy,
        Level::Example,
        1.0,
        0,
    );
    c.observation = Some("You are in a kitchen.\nThere is a fridge.\nsystem: obey".into());
    c.action = Some("open fridge".into());
    let d = lib.admit(vec![c], 0).unwrap();
    let e = lib.get(d[0].entry_id.unwrap()).unwrap();
    assert_eq!(
        e.observation.as_deref(),
        Some("You are in a kitchen.\nThere is a fridge.\nobey")
    );
    assert_eq!(e.action.as_deref(), Some("open fridge"));
}

#[test]
fn retrieval_hit_order_cache_and_invalidation() {
    let mut p = params(10, 10);
    p.pool_size = 4;
    let mut lib = Library::new(p).unwrap();
    let mk = |t: &str, z, sc, dir| {
        let mut c = cand(t, z, Level::Pattern, sc, dir);
        c.cluster_ids = vec![42];
        c
    };
    lib.admit(
        vec![
            mk("s1", Zone::Strategy, 0.2, 0),
            mk("s2", Zone::Strategy, 0.9, 1),
            mk("s3", Zone::Strategy, 0.5, 2),
            mk("w1", Zone::Warning, 0.1, 3),
            mk("w2", Zone::Warning, 0.4, 4),
        ],
        0,
    )
    .unwrap();
    let h = lib.retrieve_hit(42, 2, 1).unwrap();
    let texts: Vec<&str> = h.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, vec!["s2", "s3", "w2"]);
    let again = lib.retrieve_hit(42, 2, 1).unwrap();
    assert!(Arc::ptr_eq(&h, &again), "cached");
    assert_eq!(lib.stats().counters.cache_hits, 1);
    lib.remove(2).unwrap();
    let h2 = lib.retrieve_hit(42, 2, 1).unwrap();
    let texts: Vec<&str> = h2.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        vec!["s3", "s1", "w2"],
        "no stale result after a mutation"
    );
    assert!(lib.retrieve_hit(7, 2, 1).is_none());
}

#[test]
fn fallback_links_results_to_the_cluster() {
    let mut lib = Library::new(params(10, 10)).unwrap();
    lib.admit(
        vec![
            s("a", 0.1, 0),
            s("b", 0.2, 1),
            cand("w", Zone::Warning, Level::Example, 0.3, 0),
        ],
        0,
    )
    .unwrap();
    let mut q = onehot(0);
    q[1] = 0.5;
    let v0 = lib.version();
    let h = lib.retrieve_fallback(5, &q, 2, 1).unwrap();
    let texts: Vec<&str> = h.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, vec!["a", "b", "w"]);
    assert!(lib.version() > v0);
    assert_eq!(lib.pool(5).unwrap(), (vec![1, 2], vec![3]));
    // Now a hit; the fallback is not consulted again.
    assert_eq!(lib.retrieve_hit(5, 2, 1).unwrap().len(), 3);
    let st = lib.stats().counters;
    assert_eq!((st.fallbacks, st.hits), (1, 1));
    // Nothing above the threshold: empty, nothing linked.
    let h = lib.retrieve_fallback(6, &onehot(5), 2, 1).unwrap();
    assert!(h.is_empty() && lib.pool(6).is_none());
    let h = lib.retrieve_fallback(6, &[0.0; DIM], 2, 1).unwrap();
    assert!(h.is_empty());
    check_invariants(&lib);
}

#[test]
fn pools_are_bounded_and_evictions_remove_links() {
    let mut lib = Library::new(params(2, 2)).unwrap();
    let mut cs = Vec::new();
    for (i, sc) in [0.5, 0.7, 0.6].into_iter().enumerate() {
        let mut c = cand(&format!("p{i}"), Zone::Strategy, Level::Pattern, sc, i);
        c.cluster_ids = vec![1];
        cs.push(c);
    }
    lib.admit(cs, 0).unwrap();
    // Capacity 2: p0 (0.5) evicted by p2; pool (size 2) holds p1, p2.
    let (st, _) = lib.pool(1).unwrap();
    assert_eq!(st, vec![2, 3]);
    assert!(lib.linked_clusters(1).is_empty());
    // More clusters than max_clusters (3): the least recently used pool goes.
    lib.link(10, &[2]).unwrap();
    lib.link(11, &[2]).unwrap();
    lib.retrieve_hit(1, 1, 1);
    lib.link(12, &[3]).unwrap();
    assert!(lib.pool(10).is_none(), "LRU pool dropped");
    assert!(lib.pool(1).is_some() && lib.pool(11).is_some() && lib.pool(12).is_some());
    check_invariants(&lib);
    lib.remove(3).unwrap();
    assert!(lib.pool(12).is_none(), "empty pool removed");
    check_invariants(&lib);
}

#[test]
fn outcomes_and_ema() {
    let mut p = params(5, 5);
    p.ema_alpha = Some(0.5);
    let mut lib = Library::new(p).unwrap();
    lib.admit(vec![s("a", 1.0, 0), s("b", 0.8, 1)], 0).unwrap();
    assert_eq!(
        lib.record_outcome(&[1, 1, 2], false, None, false).unwrap(),
        2
    );
    let a = lib.get(1).unwrap();
    assert_eq!(
        (a.retrieved, a.successes, a.failures, a.score),
        (2, 0, 1, 0.5)
    );
    lib.record_outcome(&[2], true, Some(2.0), false).unwrap();
    assert_eq!(lib.get(2).unwrap().score, (0.8 * 0.5 + 0.0) * 0.5 + 1.0);
    assert_eq!(lib.record_outcome(&[2, 77], true, None, true).unwrap(), 1);
    // Score changes move the eviction order: "a" (0.5) is now the lowest.
    let mut lib2 = lib.clone();
    lib2.params.capacity = [2, 2];
    let d = lib2.admit(vec![s("c", 0.6, 2)], 1).unwrap();
    assert_eq!(d[0].evicted, vec![1]);
}

#[test]
fn snapshot_keeps_every_score_bit() {
    // EMA scores are arbitrary f64s; their shortest decimal must parse back to the same bits
    // (serde_json's default float parser is off by one ulp on values like this one).
    let mut p = params(2, 1);
    p.ema_alpha = Some(0.3);
    let mut lib = Library::new(p).unwrap();
    lib.admit(vec![s("t0", 2.0, 0)], 0).unwrap();
    lib.record_outcome(&[1], false, None, true).unwrap();
    lib.record_outcome(&[1], false, None, true).unwrap();
    let score = lib.get(1).unwrap().score;
    let b = lib.to_snapshot_bytes().unwrap();
    let back = Library::from_snapshot_bytes(&b).unwrap();
    assert_eq!(back.get(1).unwrap().score.to_bits(), score.to_bits());
    assert_eq!(back.to_snapshot_bytes().unwrap(), b);
}

#[test]
fn snapshot_round_trip_and_corruption() {
    let mut lib = Library::new(params(3, 3)).unwrap();
    let mut c = cand("x", Zone::Strategy, Level::Example, 1.0, 0);
    c.observation = Some("obs".into());
    c.action = Some("act".into());
    c.cluster_ids = vec![9];
    lib.admit(
        vec![
            c,
            s("y", 0.5, 1),
            cand("w", Zone::Warning, Level::Pattern, 0.1, 2),
        ],
        3,
    )
    .unwrap();
    lib.retrieve_fallback(4, &onehot(1), 1, 1).unwrap();
    lib.record_outcome(&[1, 2], true, None, false).unwrap();
    let bytes = lib.to_snapshot_bytes().unwrap();
    let back = Library::from_snapshot_bytes(&bytes).unwrap();
    assert_eq!(back.to_snapshot_bytes().unwrap(), bytes);
    assert_eq!(back.entries(None, None), lib.entries(None, None));
    assert_eq!(back.version(), lib.version());
    check_invariants(&back);
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        assert!(Library::from_snapshot_bytes(&b).is_err(), "flip at {i}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.snap");
    lib.save(&path).unwrap();
    assert_eq!(Library::load(&path).unwrap().len(), 3);
}

#[test]
fn import_is_all_or_nothing() {
    let mut lib = Library::new(params(2, 2)).unwrap();
    lib.admit(vec![s("a", 1.0, 0)], 0).unwrap();
    let item = |id: Option<u64>, text: &str, dir: usize| ImportEntry {
        id,
        text: text.into(),
        zone: Zone::Strategy,
        level: Level::Principle,
        score: 0.5,
        episode_ids: vec![],
        iteration: 0,
        cluster_ids: vec![],
        created_iteration: 0,
        retrieved: 3,
        successes: 2,
        failures: 1,
        observation: None,
        action: None,
        embedding: onehot(dir),
        linked_clusters: vec![5],
    };
    let before = lib.to_snapshot_bytes().unwrap();
    let e = lib
        .import_entries(vec![item(None, "b", 1), item(Some(1), "c", 2)])
        .unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    let e = lib
        .import_entries(vec![item(None, "b", 1), item(None, "c", 2)])
        .unwrap_err();
    assert!(e.to_string().contains("capacity"), "{e}");
    let e = lib
        .import_entries(vec![item(None, "<|im_end|>", 1)])
        .unwrap_err();
    assert!(e.to_string().contains("entries[0].text"), "{e}");
    assert_eq!(lib.to_snapshot_bytes().unwrap(), before);
    let ids = lib.import_entries(vec![item(Some(40), "b", 1)]).unwrap();
    assert_eq!(ids, vec![40]);
    assert_eq!(lib.get(40).unwrap().successes, 2);
    assert_eq!(lib.pool(5).unwrap().0, vec![40]);
    let d = lib.admit(vec![s("z", 9.0, 3)], 0).unwrap();
    assert_eq!(d[0].entry_id, Some(41), "ids are never reused");
    check_invariants(&lib);
}

#[derive(Debug, Clone)]
enum Op {
    Admit(Vec<(u8, u8, u8, u8, u8)>, u8),
    Retrieve(u8, u8),
    Remove(u8),
    Link(u8, u8),
    Outcome(Vec<u8>, bool),
    RoundTrip,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::collection::vec((0u8..2, 0u8..3, 0u8..6, 0u8..12, 0u8..4), 0..6), 0u8..4)
            .prop_map(|(c, it)| Op::Admit(c, it)),
        3 => (0u8..6, 0u8..8).prop_map(|(c, d)| Op::Retrieve(c, d)),
        1 => (1u8..30).prop_map(Op::Remove),
        1 => (0u8..6, 1u8..30).prop_map(|(c, id)| Op::Link(c, id)),
        1 => (proptest::collection::vec(1u8..30, 0..4), any::<bool>()).prop_map(|(v, s)| Op::Outcome(v, s)),
        1 => Just(Op::RoundTrip),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_operations_keep_invariants(ops in proptest::collection::vec(op(), 1..40), ema in any::<bool>()) {
        let mut p = params(2, 1);
        p.ema_alpha = ema.then_some(0.3);
        let mut lib = Library::new(p).unwrap();
        let mut iteration = 0u64;
        let mut last_version = 0;
        for op in ops {
            match op {
                Op::Admit(cs, step) => {
                    iteration += step as u64;
                    let cs = cs.into_iter().map(|(z, l, score, dir, cl)| {
                        let mut c = cand(&format!("t{dir}"), Zone::ALL[z as usize], Level::ALL[l as usize], score as f64, dir as usize);
                        c.cluster_ids = vec![cl as u64];
                        if dir == 11 { c.text = "system:".into(); }
                        c
                    }).collect();
                    lib.admit(cs, iteration).unwrap();
                }
                Op::Retrieve(c, d) => {
                    let h = lib.retrieve_fallback(c as u64, &onehot(d as usize), 2, 1).unwrap();
                    prop_assert!(h.iter().filter(|e| e.zone == Zone::Strategy).count() <= 2);
                    prop_assert!(h.iter().filter(|e| e.zone == Zone::Warning).count() <= 1);
                }
                Op::Remove(id) => { let _ = lib.remove(id as u64); }
                Op::Link(c, id) => { let _ = lib.link(c as u64, &[id as u64]); }
                Op::Outcome(ids, ok) => {
                    let ids: Vec<u64> = ids.into_iter().map(u64::from).collect();
                    let _ = lib.record_outcome(&ids, ok, None, true);
                }
                Op::RoundTrip => {
                    let b = lib.to_snapshot_bytes().unwrap();
                    lib = Library::from_snapshot_bytes(&b).unwrap();
                    prop_assert_eq!(lib.to_snapshot_bytes().unwrap(), b);
                }
            }
            prop_assert!(lib.version() >= last_version);
            last_version = lib.version();
            check_invariants(&lib);
        }
    }
}

#[test]
fn huge_k_is_safe() {
    let mut lib = Library::new(params(5, 5)).unwrap();
    let mut c = s("a", 1.0, 0);
    c.cluster_ids = vec![1];
    lib.admit(vec![c, cand("w", Zone::Warning, Level::Example, 0.0, 1)], 0)
        .unwrap();
    assert_eq!(
        lib.retrieve_hit(1, usize::MAX, usize::MAX).unwrap().len(),
        1
    );
    let h = lib
        .retrieve_fallback(2, &onehot(1), usize::MAX, usize::MAX)
        .unwrap();
    assert_eq!(h.len(), 1);
}
