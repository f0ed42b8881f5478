"""ExperienceLibrary behaviour through the public Python API."""

from __future__ import annotations

import dataclasses
import pickle
import sys

import numpy as np
import pytest
from reference.library_ref import GridEmbedder, cand, small_config

import slea
from slea.experience.library import ZONES


@pytest.fixture
def lib() -> slea.ExperienceLibrary:
    return slea.ExperienceLibrary(small_config(), embedder=GridEmbedder(12))


def test_defaults_are_the_papers() -> None:
    c = slea.LibraryConfig()
    assert (c.strategy_capacity, c.warning_capacity) == (100, 50)
    assert (c.max_strategies_per_step, c.max_warnings_per_step) == (10, 5)
    assert c.novelty_threshold == 0.85
    assert (c.k_strategy, c.k_warning) == (2, 1)
    assert c.ema_alpha is None
    lib = slea.ExperienceLibrary()
    assert isinstance(lib.embedder, slea.HashingEmbedder) and lib.embedder.dim == 256
    assert len(lib) == 0 and lib.version == 0


def test_every_config_field_has_a_docstring() -> None:
    import inspect

    src = inspect.getsource(slea.LibraryConfig)
    for f in dataclasses.fields(slea.LibraryConfig):
        after = src.split(f"    {f.name}:", 1)[1].split("\n", 2)[1]
        assert after.strip().startswith('"""'), f.name


@pytest.mark.parametrize(
    "field,value",
    [
        ("strategy_capacity", -1),
        ("warning_capacity", 1.5),
        ("max_strategies_per_step", True),
        ("novelty_threshold", 1.5),
        ("fallback_threshold", float("nan")),
        ("max_text_chars", 0),
        ("cluster_pool_size", 0),
        ("max_clusters", 0),
        ("ema_alpha", 0.0),
        ("ema_alpha", 2.0),
        ("k_strategy", -1),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(slea.ConfigError, match=field):
        slea.LibraryConfig(**{field: value})  # type: ignore[arg-type]


def test_admit_report(lib: slea.ExperienceLibrary) -> None:
    r = lib.admit(
        [
            cand("t1", score=1.0, cluster_ids=(5,), episode_ids=(11,)),
            cand("t1 v1", score=2.0, cluster_ids=(6,), episode_ids=(12,)),  # cos 0.9: duplicate
            cand("t2 v2", score=0.5),  # cos 0.8 to nothing else: admitted
            cand("system:", zone="warning", level="example", score=0.0),
        ],
        iteration=3,
    )
    assert [d.outcome for d in r.decisions] == ["admitted", "duplicate", "admitted", "invalid"]
    assert r.decisions[1].entry_id == r.decisions[0].entry_id == 1
    assert "empty after sanitising" in r.decisions[3].reason
    assert r.admitted_ids == (1, 2)
    assert r.summary() == {
        "admitted": 2,
        "duplicate": 1,
        "rate_limited": 0,
        "below_floor": 0,
        "invalid": 1,
    }
    assert r.counts[("warning", "example", "invalid")] == 1
    assert r.count(zone="strategy") == 3 and len(r) == 4
    e = lib.get(1)
    assert (e.score, e.episode_ids, e.cluster_ids) == (2.0, (11, 12), (5, 6))
    assert (e.iteration, e.created_iteration) == (3, 3)
    assert lib.linked_clusters(1) == (5, 6)
    assert lib.admit([], iteration=4).decisions == ()


def test_eviction_and_below_floor(lib: slea.ExperienceLibrary) -> None:
    lib.admit(
        [cand(f"t{j}", level="pattern", score=s) for j, s in [(1, 0.5), (2, 0.5), (3, 0.7)]], 0
    )
    r = lib.admit(
        [cand("t4", level="pattern", score=0.5), cand("t5", level="pattern", score=0.6)], 1
    )
    assert [d.outcome for d in r.decisions] == ["below_floor", "admitted"]
    assert r.decisions[1].evicted == (1,), "ties on the lowest score: the oldest goes"
    assert "not above its lowest" in r.decisions[0].reason
    assert 1 not in lib and 2 in lib


def test_retrieve_pool_hit_then_fallback(lib: slea.ExperienceLibrary) -> None:
    lib.admit(
        [
            cand("t1", score=0.3, cluster_ids=(9,)),
            cand("t3", score=0.9, cluster_ids=(9,)),
            cand("t5", zone="warning", score=0.1, cluster_ids=(9,)),
            cand("t7", zone="warning", score=0.2),
        ],
        0,
    )
    hit = lib.retrieve(9, "anything")
    assert [(e.text, e.zone) for e in hit] == [
        ("t3", "strategy"),
        ("t1", "strategy"),
        ("t5", "warning"),
    ]
    assert [e.id for e in lib.retrieve(9, "x", k_strategy=1, k_warning=0)] == [2]
    # Cluster 4 has no pool: the fallback finds t7 (same direction as q7) and links it.
    v = lib.version
    got = lib.retrieve(4, "q7")
    assert [e.text for e in got] == ["t7"]
    assert lib.pool(4) == ((), (4,)) and lib.version > v
    st = lib.stats()["retrieval"]
    assert (st["hits"], st["fallbacks"], st["fallback_empty"]) == (2, 1, 0)
    assert lib.retrieve(8, "q11") == []  # nothing above the threshold
    assert lib.stats()["retrieval"]["fallback_empty"] == 1


def test_retrieve_batch_matches_single_calls() -> None:
    def build() -> slea.ExperienceLibrary:
        lib = slea.ExperienceLibrary(small_config(), embedder=GridEmbedder(12))
        lib.admit([cand(f"t{j}", score=j / 10, cluster_ids=(j % 3,)) for j in range(0, 12, 2)], 0)
        return lib

    clusters = [0, 1, 2, 7, 8, 7]
    texts = ["q0", "q1", "q2", "q4", "q6", "q9"]
    a, b = build(), build()
    batch = a.retrieve_batch(clusters, texts)
    single = [b.retrieve(c, t) for c, t in zip(clusters, texts, strict=True)]
    assert [[e.id for e in r] for r in batch] == [[e.id for e in r] for r in single]
    assert a.retrieve_batch(np.array([], dtype=np.uint64), []) == []
    as_int64 = a.retrieve_batch(np.array([1, 2], dtype=np.int64), ["q1", "q2"])
    assert [[e.id for e in r] for r in as_int64] == [[e.id for e in r] for r in batch[1:3]]


def test_cache_is_invalidated_by_mutations(lib: slea.ExperienceLibrary) -> None:
    lib.admit([cand("t1", score=0.5, cluster_ids=(1,)), cand("t2", score=0.6, cluster_ids=(1,))], 0)
    assert [e.id for e in lib.retrieve(1, "")] == [2, 1]
    assert [e.id for e in lib.retrieve(1, "")] == [2, 1]
    assert lib.stats()["retrieval"]["cache_hits"] == 1
    lib.remove(2)
    assert [e.id for e in lib.retrieve(1, "")] == [1]
    lib.admit([cand("t3", score=0.9, cluster_ids=(1,))], 1)
    assert [e.id for e in lib.retrieve(1, "")] == [3, 1]
    lib.record_outcome([1], True)
    assert lib.retrieve(1, "")[1].successes == 1, "usage stats are not served stale"


def test_record_outcome_and_ema() -> None:
    lib = slea.ExperienceLibrary(small_config(ema_alpha=0.5), embedder=GridEmbedder(12))
    lib.admit([cand("t1", score=1.0), cand("t2", score=0.4)], 0)
    assert lib.record_outcome([1, 1, 2], success=False) == 2
    e1, e2 = lib.get(1), lib.get(2)
    assert (e1.retrieved, e1.successes, e1.failures, e1.score) == (2, 0, 1, 0.5)
    assert e1.utility == 0.0 and e2.score == 0.2
    lib.record_outcome([2], success=True, reward=3.0)
    assert lib.get(2).score == pytest.approx(1.6)
    assert lib.get(2).utility == 0.5
    with pytest.raises(KeyError, match="99"):
        lib.record_outcome([1, 99], True)
    assert lib.get(1).retrieved == 2, "failed call changed nothing"
    assert lib.record_outcome([1, 99], True, ignore_missing=True) == 1
    plain = slea.ExperienceLibrary(small_config(), embedder=GridEmbedder(12))
    plain.admit([cand("t1", score=1.0)], 0)
    plain.record_outcome([1], False)
    assert plain.get(1).score == 1.0, "no EMA by default"


def test_demonstrations_on_example_entries(lib: slea.ExperienceLibrary) -> None:
    r = lib.admit(
        [
            cand(
                "t1",
                level="example",
                observation="You see a fridge.\nuser: x",
                action="open fridge",
            )
        ],
        0,
    )
    e = lib.get(r.admitted_ids[0])
    assert (e.observation, e.action) == ("You see a fridge.\nx", "open fridge")
    with pytest.raises(ValueError, match="only example"):
        cand("t2", level="pattern", observation="o", action="a")
    with pytest.raises(ValueError, match="both or neither"):
        cand("t2", level="example", observation="o")


def test_link_get_remove_entries(lib: slea.ExperienceLibrary) -> None:
    lib.admit([cand("t1"), cand("t2", zone="warning", level="example")], 0)
    assert lib.link(77, [1, 2]) == 2
    assert lib.pool(77) == ((1,), (2,))
    assert [e.id for e in lib.entries(zone="warning")] == [2]
    assert [e.id for e in lib.entries(level="principle")] == [1]
    lib.remove(1)
    assert lib.pool(77) == ((), (2,)) and lib.linked_clusters(2) == (77,)
    with pytest.raises(KeyError):
        lib.get(1)
    with pytest.raises(KeyError):
        lib.remove(1)
    with pytest.raises(KeyError):
        lib.link(77, [2, 1])
    assert lib.pool(77) == ((), (2,))


def test_cluster_pools_are_bounded(lib: slea.ExperienceLibrary) -> None:
    # pool size 2 per zone, 4 clusters at most
    lib.admit([cand(f"t{j}", score=j, cluster_ids=(1,)) for j in range(1, 4)], 0)
    assert lib.pool(1) == ((3, 2), ())  # t1 (lowest) replaced in place by t3
    for c in (2, 3, 4, 5):
        lib.link(c, [1])
    assert lib.pool(1) == ((), ()), "least recently used pool dropped"
    assert lib.stats()["clusters"] == 4


def test_experience_is_frozen_and_picklable(lib: slea.ExperienceLibrary) -> None:
    lib.admit([cand("t1", episode_ids=(4,))], 0)
    e = lib.get(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.text = "x"  # type: ignore[misc]
    assert e == lib.get(1) and hash(e) == hash(lib.get(1))
    back = pickle.loads(pickle.dumps(e))
    assert back == e and np.array_equal(back.embedding, e.embedding)
    assert e.embedding.dtype == np.float32 and e.embedding.shape == (12,)
    assert "t1" in repr(e) and e.to_dict()["episode_ids"] == [4]
    made = slea.Experience(5, "hand made", "warning", "example", 0.5, observation="o", action="a")
    assert made.zone == "warning" and made.embedding.shape == (0,) and made.utility is None
    with pytest.raises(ValueError, match="zone"):
        slea.Experience(5, "x", "nope", "example", 0.5)


def test_experience_is_a_plain_value(lib: slea.ExperienceLibrary) -> None:
    lib.admit([cand("t1", cluster_ids=(3,))], 0)
    e = lib.retrieve(3, "q1")[0]
    assert type(e) is slea.Experience and not hasattr(slea._core, "ExperienceRecord")
    # Values cross the boundary once per entry version: an unchanged entry hands back the same
    # values, a changed one new values (and the old snapshot keeps its own).
    assert lib.get(e.id)._v is e._v and lib.entries()[0]._v is e._v
    lib.record_outcome([e.id], True)
    after = lib.get(e.id)
    assert after._v is not e._v and (after.successes, e.successes) == (1, 0)
    assert after == lib.retrieve(3, "q1")[0] and after != e
    same = slea.Experience(**e.to_dict(), embedding=e.embedding)
    assert same == e and hash(same) == hash(e) and np.array_equal(same.embedding, e.embedding)
    with pytest.raises(dataclasses.FrozenInstanceError):
        del e.text  # type: ignore[misc]
    e.embedding[0] = 9.0  # a copy: the value does not change
    assert e.embedding[0] != 9.0


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"id": -1}, ValueError, "Experience.id"),
        ({"text": b"x"}, TypeError, "Experience.text"),
        ({"level": "meta"}, ValueError, "Experience.level"),
        ({"score": "1"}, TypeError, "Experience.score"),
        ({"episode_ids": [1 << 64]}, ValueError, r"Experience.episode_ids\[0\]"),
        ({"successes": 1.5}, TypeError, "Experience.successes"),
        ({"observation": 3}, TypeError, "Experience.observation"),
        ({"embedding": [[1.0]]}, ValueError, "Experience.embedding"),
        ({"embedding": [np.nan]}, ValueError, "Experience.embedding"),
    ],
)
def test_a_hand_made_experience_is_validated(kwargs: dict, exc: type, match: str) -> None:
    args = {"id": 1, "text": "t", "zone": "strategy", "level": "pattern", "score": 1.0, **kwargs}
    with pytest.raises(exc, match=match):
        slea.Experience(**args)


def test_snapshot_of_an_experience_is_immutable(lib: slea.ExperienceLibrary) -> None:
    lib.admit([cand("t1", score=1.0)], 0)
    before = lib.get(1)
    lib.record_outcome([1], True)
    assert before.successes == 0 and lib.get(1).successes == 1


def test_stats(lib: slea.ExperienceLibrary) -> None:
    lib.admit([cand("t1"), cand("t2", zone="warning", level="pattern")], 0)
    st = lib.stats()
    assert st["entries"] == 2
    assert st["sizes"]["warning"]["pattern"] == 1
    assert set(st["sizes"]) == set(ZONES)
    assert st["admission"]["admitted"] == 2
    assert 0 < st["bytes_per_entry"] < 10_000
    assert st["embedder"] == "grid-test-12"
    assert "2 entries" in repr(lib)


def test_version_bumps_on_every_mutation(lib: slea.ExperienceLibrary) -> None:
    seen = [lib.version]

    def step() -> None:
        assert lib.version > seen[-1]
        seen.append(lib.version)

    lib.admit([cand("t1")], 0)
    step()
    lib.admit([cand("t1 v1", score=5.0)], 0)  # duplicate merge
    step()
    lib.link(3, [1])
    step()
    lib.record_outcome([1], True)
    step()
    lib.remove(1)
    step()
    v = lib.version
    lib.admit([cand("system:")], 0)
    assert lib.version == v, "only invalid candidates: nothing changed"


def test_beyond_max_clusters_the_least_recent_eighth_goes() -> None:
    lib = slea.ExperienceLibrary(small_config(max_clusters=16), embedder=GridEmbedder(12))
    lib.admit([cand("t1")], 0)
    for c in range(16):
        lib.link(c, [1])
    lib.retrieve(0, "")  # cluster 0 becomes the most recently used
    lib.link(99, [1])
    assert lib.stats()["clusters"] == 15
    assert lib.pool(1) == ((), ()) and lib.pool(2) == ((), ())
    assert lib.pool(0) == ((1,), ()) and lib.pool(3) == ((1,), ()) and lib.pool(99) == ((1,), ())


def test_values_of_removed_entries_are_let_go() -> None:
    cfg = slea.LibraryConfig(
        strategy_capacity=1000, max_strategies_per_step=1000, novelty_threshold=1.0
    )
    lib = slea.ExperienceLibrary(cfg, embedder=slea.HashingEmbedder(16))
    lib.admit([cand(f"first tip {j}") for j in range(3)], 0)
    v = lib.get(1)._v
    kept = sys.getrefcount(v)  # this name, the binding's kept copy, the call's argument
    lib.remove(1)
    for it in range(1, 9):  # convert enough new entries to pass the kept map's size limit
        lib.admit([cand(f"tip {it} {j}") for j in range(20)], it)
        lib.entries()
    assert sys.getrefcount(v) == kept - 1, "the removed entry's values are still kept"
    assert lib.get(2)._v is lib.get(2)._v, "live entries stay converted"
