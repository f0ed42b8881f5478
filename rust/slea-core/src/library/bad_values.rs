//! Property tests: no number a caller passes (scores, rewards, parameters, vector components)
//! corrupts the library. A call either succeeds, leaving every score finite and within
//! [`MAX_ABS_SCORE`], or fails and changes nothing; the snapshot always loads again.

use super::tests::{cand, check_invariants, onehot, params};
use super::*;
use proptest::prelude::*;

/// Any `f64`, with the values that break arithmetic weighted up.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        3 => -2.0 * MAX_ABS_SCORE..2.0 * MAX_ABS_SCORE,
        2 => prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            1e308,
            -0.0,
            5e-324,
            MAX_ABS_SCORE,
            -MAX_ABS_SCORE,
            MAX_ABS_SCORE * (1.0 + f64::EPSILON),
        ]),
    ]
}

/// Any `f32` (vector components, thresholds).
fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => any::<f32>(),
        3 => -1.5f32..1.5,
        1 => prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::MAX, 1e-45, 0.0]),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Admit(f64, u8, u8, Option<Vec<f32>>),
    Outcome(Option<f64>, Vec<u8>, bool),
    Import(f64, u8),
    RoundTrip,
}

fn op() -> impl Strategy<Value = Op> {
    let vector = proptest::option::weighted(0.3, proptest::collection::vec(any_f32(), DIM));
    prop_oneof![
        3 => (any_f64(), 0u8..2, 0u8..8, vector).prop_map(|(s, z, d, v)| Op::Admit(s, z, d, v)),
        3 => (proptest::option::of(any_f64()), proptest::collection::vec(1u8..12, 0..4), any::<bool>())
            .prop_map(|(r, ids, ok)| Op::Outcome(r, ids, ok)),
        1 => (any_f64(), 0u8..8).prop_map(|(s, d)| Op::Import(s, d)),
        1 => Just(Op::RoundTrip),
    ]
}

const DIM: usize = 8;

fn import_item(score: f64, dir: u8) -> ImportEntry {
    ImportEntry {
        id: None,
        text: format!("imported {dir}"),
        zone: Zone::Warning,
        level: Level::Pattern,
        score,
        episode_ids: vec![],
        iteration: 0,
        cluster_ids: vec![],
        created_iteration: 0,
        retrieved: 0,
        successes: 0,
        failures: 0,
        observation: None,
        action: None,
        embedding: onehot(dir as usize),
        linked_clusters: vec![1],
    }
}

fn scores_in_bound(lib: &Library) -> bool {
    lib.entries(None, None)
        .iter()
        .all(|e| e.score.is_finite() && e.score.abs() <= MAX_ABS_SCORE)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn bad_numbers_never_corrupt_the_library(
        ops in proptest::collection::vec(op(), 1..30),
        alpha in proptest::option::of(any_f64()),
    ) {
        let mut p = params(3, 2);
        p.ema_alpha = alpha;
        let Ok(mut lib) = Library::new(p) else {
            let a = alpha.unwrap();
            prop_assert!(!(a > 0.0 && a <= 1.0), "a valid ema_alpha {a} was refused");
            return Ok(());
        };
        for (k, op) in ops.into_iter().enumerate() {
            let before = lib.to_snapshot_bytes().unwrap();
            let (result, in_range) = match op {
                Op::Admit(score, z, dir, vector) => {
                    let mut c = cand(&format!("t{dir}"), Zone::ALL[z as usize], Level::Example, score, dir as usize);
                    c.cluster_ids = vec![1];
                    let finite = vector.as_ref().map_or(true, |v| v.iter().all(|x| x.is_finite()));
                    if let Some(v) = vector {
                        c.embedding = v;
                    }
                    let ok = score.is_finite() && score.abs() <= MAX_ABS_SCORE && finite;
                    (lib.admit(vec![c], k as u64).map(|_| ()), ok)
                }
                Op::Outcome(reward, ids, ok) => {
                    let ids: Vec<u64> = ids.into_iter().map(u64::from).collect();
                    let fine = reward.map_or(true, |r| r.is_finite() && r.abs() <= MAX_ABS_SCORE);
                    (lib.record_outcome(&ids, ok, reward, true).map(|_| ()), fine)
                }
                Op::Import(score, dir) => {
                    let r = lib.import_entries(vec![import_item(score, dir)]).map(|_| ());
                    let fine = score.is_finite() && score.abs() <= MAX_ABS_SCORE;
                    // A full level is a legitimate refusal; a bad score must be one.
                    if fine && r.is_err() {
                        (Ok(()), true)
                    } else {
                        (r, fine)
                    }
                }
                Op::RoundTrip => {
                    lib = Library::from_snapshot_bytes(&before).unwrap();
                    (Ok(()), true)
                }
            };
            match result {
                Ok(()) => prop_assert!(in_range, "an out-of-range value was accepted"),
                Err(e) => {
                    prop_assert!(!in_range, "an in-range value was refused: {e}");
                    prop_assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
                    prop_assert_eq!(lib.to_snapshot_bytes().unwrap(), before, "a failed call changed the library");
                }
            }
            prop_assert!(scores_in_bound(&lib));
            check_invariants(&lib);
            let b = lib.to_snapshot_bytes().unwrap();
            prop_assert_eq!(Library::from_snapshot_bytes(&b).unwrap().to_snapshot_bytes().unwrap(), b);
        }
    }

    #[test]
    fn bad_parameters_are_refused_at_construction(
        novelty in any_f32(),
        fallback in any_f32(),
        rate in any_f64(),
        alpha in proptest::option::of(any_f64()),
    ) {
        let mut p = params(2, 2);
        p.novelty_threshold = novelty;
        p.fallback_threshold = fallback;
        p.rate_per_step = [rate, 1.0];
        p.ema_alpha = alpha;
        let valid = (-1.0..=1.0).contains(&novelty)
            && (-1.0..=1.0).contains(&fallback)
            && rate.is_finite()
            && (0.0..=4_294_967_296.0).contains(&rate)
            && alpha.map_or(true, |a| a > 0.0 && a <= 1.0);
        match Library::new(p) {
            Err(e) => prop_assert!(!valid, "valid parameters refused: {e}"),
            Ok(mut lib) => {
                prop_assert!(valid);
                lib.admit(vec![cand("a", Zone::Strategy, Level::Principle, 1.0, 0)], 0).unwrap();
                lib.retrieve_fallback(3, &onehot(0), 2, 1).unwrap();
                lib.record_outcome(&[1], true, Some(MAX_ABS_SCORE), true).unwrap();
                let b = lib.to_snapshot_bytes().unwrap();
                prop_assert!(scores_in_bound(&Library::from_snapshot_bytes(&b).unwrap()));
            }
        }
    }
}

#[test]
fn a_crafted_snapshot_with_a_huge_score_is_refused() {
    let mut lib = Library::new(params(2, 2)).unwrap();
    lib.admit(vec![cand("a", Zone::Strategy, Level::Principle, 1.0, 0)], 0)
        .unwrap();
    // Reach in as a crafted file would: the entry's score beyond the bound.
    let e = Arc::make_mut(lib.entries.get_mut(&1).unwrap());
    e.score = 1e308;
    let b = lib.to_snapshot_bytes().unwrap();
    let err = Library::from_snapshot_bytes(&b).unwrap_err();
    assert!(matches!(err, Error::Snapshot(_)), "{err}");
    assert!(err.to_string().contains("score 1"), "{err}");
}
