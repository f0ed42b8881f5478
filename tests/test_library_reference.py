"""The Rust library against the plain-Python reference model on random operation streams."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.library_ref import INVALID_TEXTS, LEVELS, ZONES, GridEmbedder, RefLibrary

import slea

DIM = 12
CLUSTERS = range(6)

configs = st.fixed_dictionaries(
    {
        "strategy_capacity": st.integers(1, 3),
        "warning_capacity": st.integers(1, 3),
        "max_strategies_per_step": st.integers(1, 5),
        "max_warnings_per_step": st.integers(1, 3),
        "cluster_pool_size": st.integers(1, 3),
        "max_clusters": st.integers(1, 4),
        "max_provenance": st.integers(1, 3),
        "ema_alpha": st.sampled_from([None, 0.5]),
    }
)

candidates = st.tuples(
    st.integers(0, DIM - 1),  # direction
    st.integers(0, 2),  # variant
    st.sampled_from(ZONES),
    st.sampled_from(["example", "example", "pattern", "principle"]),
    st.sampled_from([0.0, 0.5, 0.5, 1.0, 1.0, 2.0]),
    st.lists(st.integers(0, 5), max_size=3),  # episode ids
    st.lists(st.sampled_from(list(CLUSTERS)), max_size=3),  # cluster ids
    st.integers(0, 40),  # below 5: an invalid text
)

ops = st.one_of(
    st.tuples(st.just("admit"), st.lists(candidates, min_size=1, max_size=8), st.integers(0, 2)),
    st.tuples(
        st.just("retrieve"),
        st.sampled_from(list(CLUSTERS)),
        st.integers(0, DIM - 1),
        st.integers(0, 3),
        st.integers(0, 2),
    ),
    st.tuples(st.just("outcome"), st.lists(st.integers(1, 25), max_size=4), st.booleans()),
)


def text_of(j: int, var: int, invalid: int) -> str:
    if invalid < len(INVALID_TEXTS):
        return INVALID_TEXTS[invalid]
    if invalid == len(INVALID_TEXTS):
        return "x" * 41
    return f"t{j} v{var}"


def check_same(lib: slea.ExperienceLibrary, ref: RefLibrary) -> None:
    got = {
        e.id: (
            e.zone,
            e.level,
            e.score,
            e.episode_ids,
            e.cluster_ids,
            e.iteration,
            e.created_iteration,
            e.retrieved,
            e.successes,
            e.failures,
        )
        for e in lib.entries()
    }
    want = {
        e["id"]: (
            e["zone"],
            e["level"],
            e["score"],
            tuple(e["episode_ids"]),
            tuple(e["cluster_ids"]),
            e["iteration"],
            e["created_iteration"],
            e["retrieved"],
            e["successes"],
            e["failures"],
        )
        for e in ref.entries.values()
    }
    assert got == want
    for c in CLUSTERS:
        p = ref.pools.get(c)
        want_pool = ((), ()) if p is None else (tuple(p["strategy"]), tuple(p["warning"]))
        assert lib.pool(c) == want_pool, f"pool of cluster {c}"
    st_ = lib.stats()
    for z in ZONES:
        assert sum(st_["sizes"][z].values()) <= 3 * st_["capacity"][z]
        assert max(st_["sizes"][z].values()) <= st_["capacity"][z]


@settings(max_examples=150)
@given(configs, st.lists(ops, min_size=3, max_size=30))
def test_rust_admits_evicts_and_retrieves_like_the_reference(cfg, stream):
    config = slea.LibraryConfig(max_text_chars=40, **cfg)
    emb = GridEmbedder(DIM)
    lib = slea.ExperienceLibrary(config, embedder=emb)
    ref = RefLibrary(
        capacity=(cfg["strategy_capacity"], cfg["warning_capacity"]),
        rate=(cfg["max_strategies_per_step"], cfg["max_warnings_per_step"]),
        novelty=config.novelty_threshold,
        fallback=config.fallback_threshold,
        max_chars=40,
        pool_size=cfg["cluster_pool_size"],
        max_clusters=cfg["max_clusters"],
        max_provenance=cfg["max_provenance"],
        ema_alpha=cfg["ema_alpha"],
    )
    iteration = 0
    for op in stream:
        if op[0] == "admit":
            iteration += op[2]
            cands = []
            for j, var, zone, level, score, eps, cls, bad in op[1]:
                text = text_of(j, var, bad)
                cands.append(slea.Candidate(text, zone, level, score, eps, cls))
            report = lib.admit(cands, iteration)
            want = ref.admit(
                [
                    {
                        "text": c.text,
                        "zone": c.zone,
                        "level": c.level,
                        "score": c.score,
                        "episode_ids": list(c.episode_ids),
                        "cluster_ids": list(c.cluster_ids),
                        "vector": emb.vector(c.text).tolist(),
                    }
                    for c in cands
                ],
                iteration,
            )
            got = [(d.outcome, d.entry_id, list(d.evicted)) for d in report.decisions]
            assert got == want
        elif op[0] == "retrieve":
            _, cluster, qj, ks, kw = op
            got = [e.id for e in lib.retrieve(cluster, f"q{qj}", ks, kw)]
            assert got == ref.retrieve(cluster, emb.vector(f"q{qj}").tolist(), ks, kw)
        else:
            _, ids, ok = op
            n = lib.record_outcome(ids, ok, ignore_missing=True)
            assert n == ref.record_outcome(ids, ok)
        check_same(lib, ref)


@settings(max_examples=60)
@given(
    st.integers(1, 5),
    st.integers(1, 4),
    st.lists(
        st.tuples(
            st.integers(0, 400), st.sampled_from(ZONES), st.sampled_from(LEVELS), st.floats(-5, 5)
        ),
        max_size=80,
    ),
)
def test_capacities_never_exceeded(cap_s, cap_w, stream):
    lib = slea.ExperienceLibrary(
        slea.LibraryConfig(
            strategy_capacity=cap_s,
            warning_capacity=cap_w,
            max_strategies_per_step=3,
            max_warnings_per_step=3,
        ),
        embedder=GridEmbedder(64),
    )
    for i in range(0, len(stream), 7):
        batch = [slea.Candidate(f"t{j} v{j % 3}", z, lv, s) for j, z, lv, s in stream[i : i + 7]]
        lib.admit(batch, iteration=i)
        sizes = lib.stats()["sizes"]
        for lv in LEVELS:
            assert sizes["strategy"][lv] <= cap_s
            assert sizes["warning"][lv] <= cap_w
        assert len(lib) <= 3 * (cap_s + cap_w)
        # Bounded memory too: the estimate never exceeds what the capacities allow.
        assert lib.stats()["memory_bytes"] <= 3 * (cap_s + cap_w) * 8_000 + 4_096


def test_rate_limit_is_per_zone_and_step():
    lib = slea.ExperienceLibrary(slea.LibraryConfig(), embedder=GridEmbedder(64))
    cands = [slea.Candidate(f"t{j}", "strategy", "example", 1.0) for j in range(12)]
    cands += [slea.Candidate(f"t{j}", "warning", "example", 0.0) for j in range(12, 20)]
    r = lib.admit(cands, iteration=0)
    assert r.count("admitted", zone="strategy") == 10
    assert r.count("rate_limited", zone="strategy") == 2
    assert r.count("admitted", zone="warning") == 5
    assert r.count("rate_limited", zone="warning") == 3
    r = lib.admit([slea.Candidate("t30", "strategy", "example", 1.0)], iteration=0)
    assert r.summary()["rate_limited"] == 1
    r = lib.admit([slea.Candidate("t30", "strategy", "example", 1.0)], iteration=1)
    assert r.summary()["admitted"] == 1
    assert np.isclose(lib.get(r.admitted_ids[0]).embedding[30], 1.0)
