"""slea.HnswIndex: recall, exactness, deletion, filters, persistence and bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference.hnsw_ref import knn

import slea
from slea import HnswIndex


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_ids(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :k]


def build(n: int, dim: int, seed: int = 0, **kw: object) -> tuple[HnswIndex, np.ndarray]:
    data = unit_rows(n, dim, seed)
    index = HnswIndex(dim, **kw)  # type: ignore[arg-type]
    index.add(np.arange(n, dtype=np.uint64), data, tags=np.arange(n) % 5)
    return index, data


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(g.tolist()) & set(t.tolist())) for g, t in zip(got, truth, strict=True))
    return hits / truth.size


def test_public_name() -> None:
    assert slea.HnswIndex is HnswIndex
    assert "HnswIndex" in slea.__all__


def test_recall_on_random_data() -> None:
    index, data = build(5000, 32, flat_threshold=0)
    queries = unit_rows(200, 32, 99)
    got, scores = index.search(queries, k=10, ef=80)
    assert got.shape == (200, 10) and got.dtype == np.uint64
    assert scores.dtype == np.float32
    assert recall(got, brute_ids(data, queries, 10)) >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 0)
    # Scores are the cosines of the returned entries.
    np.testing.assert_allclose(
        scores, np.einsum("qd,qkd->qk", queries, data[got.astype(np.int64)]), atol=1e-5
    )


def test_single_and_batch_agree_and_threads_agree() -> None:
    index, _ = build(2000, 16, flat_threshold=0)
    queries = unit_rows(40, 16, 5)
    ids, scores = index.search(queries, k=7)
    ids4, scores4 = index.search(queries, k=7, num_threads=4)
    np.testing.assert_array_equal(ids, ids4)
    np.testing.assert_array_equal(scores, scores4)
    for row, q in enumerate(queries):
        one_ids, _one_scores = index.search(q, k=7)
        assert one_ids.shape == (7,)
        np.testing.assert_array_equal(one_ids, ids[row])
    # A list query goes through the same path.
    np.testing.assert_array_equal(index.search(queries[0].tolist(), k=7)[0], ids[0])


def test_same_seed_same_bytes() -> None:
    a, _ = build(800, 8, m=8, ef_construction=50, seed=3)
    b, _ = build(800, 8, m=8, ef_construction=50, seed=3)
    c, _ = build(800, 8, m=8, ef_construction=50, seed=4)
    assert a.to_bytes() == b.to_bytes()
    assert a.to_bytes() != c.to_bytes()


def test_flat_threshold_path_is_exact() -> None:
    index, data = build(200, 12)  # 200 <= flat_threshold 256: exact scan
    entries = {i: (data[i].tolist(), i % 5) for i in range(200)}
    for q in unit_rows(20, 12, 7):
        ids, scores = index.search(q, k=15, ef=1)
        ref = knn(entries, q.tolist(), 15)
        assert ids.tolist() == [i for i, _ in ref]
        np.testing.assert_allclose(scores, [s for _, s in ref], atol=1e-5)


def test_deleted_entries_are_never_returned_and_slots_are_reused() -> None:
    index, data = build(1000, 8, flat_threshold=0)
    gone = np.arange(0, 1000, 2, dtype=np.uint64)
    index.remove(gone)
    assert len(index) == 500
    assert 0 not in index and 1 in index
    ids, _ = index.search(data[:100], k=10)
    assert ids.shape == (100, 10)
    assert not np.isin(ids, gone).any()
    fresh = unit_rows(500, 8, 11)
    index.add(np.arange(5000, 5500, dtype=np.uint64), fresh)
    stats = index.stats()
    assert stats["slots"] == 1000 and stats["deleted"] == 0
    found, _ = index.search(fresh, k=1, ef=64)
    assert np.mean(found[:, 0] == np.arange(5000, 5500)) >= 0.95
    # A removed id can come back.
    index.add(0, data[0])
    assert 0 in index


def test_everything_deleted_searches_empty() -> None:
    index, data = build(300, 6, flat_threshold=0)
    index.remove(index.ids())
    assert len(index) == 0
    ids, scores = index.search(data[0], k=5)
    assert ids.shape == (0,) and scores.shape == (0,)
    ids, scores = index.search(data[:3], k=5)
    assert ids.shape == (3, 0)
    index.add(7, data[1], tags=2)
    assert index.search(data[1], k=5)[0].tolist() == [7]


def test_filtered_search_matches_brute_force() -> None:
    index, data = build(3000, 16, flat_threshold=0)
    tags = np.arange(3000) % 5
    queries = unit_rows(50, 16, 13)
    for allowed in ({0}, {1, 3}, [0, 1, 2, 3], np.array([4], dtype=np.uint32), {77}):
        keep = np.isin(tags, list(np.atleast_1d(np.asarray(list(allowed)))))
        ids, _ = index.search(queries, k=10, ef=64, tag_filter=allowed)
        want = min(10, int(keep.sum()))
        assert ids.shape == (50, want)
        if want == 0:
            continue
        assert keep[ids.astype(np.int64)].all()
        sub = np.flatnonzero(keep)
        truth = sub[brute_ids(data[sub], queries, 10)]
        assert recall(ids, truth) >= 0.95


def test_upsert_replaces_vector_and_tag() -> None:
    index, _data = build(500, 8, flat_threshold=0)
    target = unit_rows(1, 8, 17)[0]
    with pytest.raises(ValueError, match="already in the index"):
        index.add(3, target)
    index.upsert(3, target, tags=4)
    assert len(index) == 500
    ids, scores = index.search(target, k=1)
    assert ids.tolist() == [3] and scores[0] == pytest.approx(1.0, abs=1e-5)
    ids, _ = index.search(target, k=1, tag_filter={4})
    assert ids.tolist() == [3]


def test_inputs_are_normalised() -> None:
    index = HnswIndex(3)
    index.add([1, 2], np.array([[10.0, 0.0, 0.0], [0.0, 0.0, 1e-30]]))
    ids, scores = index.search([5, 0, 0], k=2)
    assert ids.tolist() == [1, 2]
    np.testing.assert_allclose(scores, [1.0, 0.0], atol=1e-6)


def test_save_load_roundtrip_and_atomic(tmp_path) -> None:
    index, _data = build(700, 8, flat_threshold=0, max_elements=2000)
    index.remove([5, 6])
    index.set_ef(77)
    path = tmp_path / "index.hnsw"
    path.write_bytes(b"old")
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.hnsw"]
    again = HnswIndex.load(path)
    assert again.to_bytes() == index.to_bytes()
    assert (again.ef, again.max_elements, len(again)) == (77, 2000, 698)
    q = unit_rows(10, 8, 3)
    np.testing.assert_array_equal(again.search(q, k=5)[0], index.search(q, k=5)[0])


def test_corrupt_bytes_raise_snapshot_error(tmp_path) -> None:
    index, _ = build(30, 3, m=2, ef_construction=4, flat_threshold=0)
    blob = index.to_bytes()
    for cut in range(len(blob)):
        with pytest.raises(slea.SnapshotError):
            HnswIndex.from_bytes(blob[:cut])
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(blob), 300):
        bad = bytearray(blob)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(slea.SnapshotError):
            HnswIndex.from_bytes(bytes(bad))
    newer = bytearray(blob)
    newer[8:12] = (2).to_bytes(4, "little")
    with pytest.raises(slea.SnapshotError, match="version 2 is not supported"):
        HnswIndex.from_bytes(bytes(newer))
    path = tmp_path / "bad.hnsw"
    path.write_bytes(blob[:-1])
    with pytest.raises(slea.SnapshotError):
        HnswIndex.load(path)
    with pytest.raises(FileNotFoundError):
        HnswIndex.load(tmp_path / "missing.hnsw")
    with pytest.raises(TypeError):
        HnswIndex.from_bytes("not bytes")  # type: ignore[arg-type]


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(blob: bytes) -> None:
    try:
        HnswIndex.from_bytes(blob)
    except slea.SnapshotError:
        pass


def test_bad_arguments() -> None:
    index, data = build(50, 4)
    before = index.to_bytes()
    bad_calls = [
        (ValueError, lambda: index.add(100, [0.0, 0.0, 0.0, 0.0])),
        (ValueError, lambda: index.add(100, [np.nan, 0.0, 0.0, 1.0])),
        (ValueError, lambda: index.add(100, [np.inf, 0.0, 0.0, 1.0])),
        (ValueError, lambda: index.add(100, [1e300, 0.0, 0.0, 1.0])),
        (ValueError, lambda: index.add(100, [1.0, 2.0])),
        (ValueError, lambda: index.add([100, 101], data[:3])),
        (ValueError, lambda: index.add([100, 100], data[:2])),
        (ValueError, lambda: index.add([100, 1], data[:2])),
        (ValueError, lambda: index.add(-1, data[0])),
        (ValueError, lambda: index.add(2**64, data[0])),
        (ValueError, lambda: index.add(100, data[0], tags=-1)),
        (ValueError, lambda: index.add(100, data[0], tags=2**32)),
        (ValueError, lambda: index.add([100, 101], data[:2], tags=[1, 2, 3])),
        (TypeError, lambda: index.add(1.5, data[0])),
        (TypeError, lambda: index.add("x", data[0])),
        (TypeError, lambda: index.add(100, ["a", "b", "c", "d"])),
        (KeyError, lambda: index.remove(12345)),
        (KeyError, lambda: index.remove([1, 12345])),
        (ValueError, lambda: index.remove([1, 1])),
        (ValueError, lambda: index.search(data[0], k=0)),
        (TypeError, lambda: index.search(data[0], k=1.0)),
        (ValueError, lambda: index.search(data[0], k=3, ef=0)),
        (ValueError, lambda: index.search([1.0, 2.0], k=3)),
        (ValueError, lambda: index.search(np.zeros(4, dtype=np.float32), k=3)),
        (ValueError, lambda: index.search(data[:2], k=3, num_threads=0)),
        (TypeError, lambda: index.search(data[0], k=3, tag_filter="ab")),
        (ValueError, lambda: index.search(data[0], k=3, tag_filter={-1})),
        (ValueError, lambda: index.set_ef(0)),
        (ValueError, lambda: HnswIndex(0)),
        (ValueError, lambda: HnswIndex(4, m=1)),
        (ValueError, lambda: HnswIndex(4, seed=-1)),
        (TypeError, lambda: HnswIndex(4, flat_threshold=True)),
    ]
    for exc, call in bad_calls:
        with pytest.raises(exc):
            call()
    assert index.to_bytes() == before
    # ef below k is raised to k.
    assert index.search(data[0], k=20, ef=1)[0].shape == (20,)
    assert "x" not in index and True not in index and -1 not in index


def test_max_elements() -> None:
    index = HnswIndex(2, max_elements=2)
    index.add([1, 2], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="at most 2"):
        index.add(3, [1, 1])
    index.remove(1)
    index.add(3, [1, 1])
    assert sorted(index.ids().tolist()) == [2, 3]


def test_introspection() -> None:
    index, _ = build(400, 8, m=8)
    assert repr(index).startswith("HnswIndex(dim=8, m=8")
    assert (index.dim, index.m, index.ef_construction, index.ef, index.seed) == (8, 8, 200, 40, 42)
    assert index.flat_threshold == 256 and index.max_elements is None
    stats = index.stats()
    assert stats["live"] == 400 and stats["nodes_per_level"][0] == 400
    assert stats["kernel"] in ("avx2+fma", "portable")
    # Vectors alone take 400 * 8 * 4 bytes; links add at least 4 bytes per layer-0 slot.
    assert index.memory_bytes() > 400 * (8 * 4 + 17 * 4)
    assert index.ids().tolist() == list(range(400))


def test_concurrent_searches_while_adding() -> None:
    index, _data = build(1500, 16, flat_threshold=0)
    queries = unit_rows(30, 16, 21)
    extra = unit_rows(300, 16, 23)
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            for _ in range(20):
                ids, _ = index.search(queries, k=5)
                assert ids.shape == (30, 5)
                assert (ids < 10_000 + 300).all()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(0, 300, 30):
        index.add(np.arange(10_000 + i, 10_000 + i + 30, dtype=np.uint64), extra[i : i + 30])
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 1800


# --- property tests against the plain-Python reference --------------------------------------

DIM = 3
vectors = st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=DIM, max_size=DIM).filter(
    lambda v: any(x != 0 for x in v)
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 30), vectors, st.integers(0, 3)),
        st.tuples(st.just("upsert"), st.integers(0, 30), vectors, st.integers(0, 3)),
        st.tuples(st.just("remove"), st.integers(0, 30)),
        st.tuples(
            st.just("search"),
            vectors,
            st.integers(1, 12),
            st.one_of(st.none(), st.sets(st.integers(0, 3), max_size=3)),
        ),
        st.tuples(st.just("bad"), st.integers(0, 9)),
    ),
    max_size=60,
)


def _bad_call(index: HnswIndex, which: int) -> None:
    calls = [
        lambda: index.add(99, [0.0] * DIM),
        lambda: index.add(99, [float("nan")] * DIM),
        lambda: index.add(99, [1.0] * (DIM + 1)),
        lambda: index.add([98, 98], [[1.0] * DIM, [2.0] * DIM]),
        lambda: index.add(-5, [1.0] * DIM),
        lambda: index.remove(1000),
        lambda: index.search([1.0] * DIM, k=0),
        lambda: index.search([float("inf")] * DIM, k=1),
        lambda: index.search([1.0] * DIM, k=1, ef=-1),
        lambda: index.add(97, [1.0] * DIM, tags=[1, 2]),
    ]
    with pytest.raises((ValueError, TypeError, KeyError)):
        calls[which]()


@given(ops, st.sampled_from([0, 1000]))
def test_operations_match_reference(operations: list[tuple], flat: int) -> None:
    index = HnswIndex(DIM, m=2, ef_construction=8, ef=4, seed=1, flat_threshold=flat)
    model: dict[int, tuple[list[float], int]] = {}
    for op in operations:
        kind = op[0]
        if kind == "add":
            _, i, v, t = op
            if i in model:
                with pytest.raises(ValueError):
                    index.add(i, v, tags=t)
            else:
                index.add(i, v, tags=t)
                model[i] = (v, t)
        elif kind == "upsert":
            _, i, v, t = op
            index.upsert(i, v, tags=t)
            model[i] = (v, t)
        elif kind == "remove":
            _, i = op
            if i in model:
                index.remove(i)
                del model[i]
            else:
                with pytest.raises(KeyError):
                    index.remove(i)
        elif kind == "search":
            _, q, k, allowed = op
            ids, scores = index.search(q, k=k, tag_filter=allowed)
            ref = knn(model, q, k, allowed)
            assert len(ids) == len(ref)
            for i, s in zip(ids.tolist(), scores.tolist(), strict=True):
                assert i in model and (allowed is None or model[i][1] in allowed)
                assert s == pytest.approx(knn({i: model[i]}, q, 1)[0][1], abs=1e-5)
            if flat:
                np.testing.assert_allclose(scores, [s for _, s in ref], atol=1e-5)
        else:
            before = index.to_bytes()
            _bad_call(index, op[1])
            assert index.to_bytes() == before
        assert len(index) == len(model)
        assert sorted(index.ids().tolist()) == sorted(model)
    again = HnswIndex.from_bytes(index.to_bytes())
    assert again.to_bytes() == index.to_bytes()


any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=3),
)


@given(any_value, any_value, any_value, any_value, any_value, any_value, any_value)
def test_constructor_fuzz(dim, m, efc, ef, seed, flat, max_elements) -> None:
    kwargs = {"m": m, "ef_construction": efc, "ef": ef, "seed": seed, "flat_threshold": flat}
    try:
        index = HnswIndex(dim, max_elements=max_elements, **kwargs)
    except (TypeError, ValueError):
        return
    assert index.dim == dim and len(index) == 0
    assert index.memory_bytes() < 300 << 20  # a huge max_elements reserves a bounded amount


@given(any_value, any_value, any_value, any_value)
def test_search_argument_fuzz(k, ef, num_threads, tag_filter) -> None:
    index = _SMALL
    try:
        ids, scores = index.search(
            _SMALL_QUERIES, k=k, ef=ef, num_threads=num_threads, tag_filter=tag_filter
        )
    except (TypeError, ValueError):
        return
    assert ids.shape == scores.shape and ids.shape[0] == len(_SMALL_QUERIES)
    assert ids.shape[1] <= min(k, len(index))


_SMALL, _SMALL_DATA = build(300, 4, flat_threshold=0)
_SMALL_QUERIES = unit_rows(3, 4, 1)


def test_empty_batches() -> None:
    index, data = build(50, 4)
    index.add(np.zeros(0, dtype=np.uint64), np.zeros((0, 4), dtype=np.float32))
    assert len(index) == 50
    ids, scores = index.search(np.zeros((0, 4), dtype=np.float32), k=3)
    assert ids.shape == (0, 3) and scores.shape == (0, 3)
    index.remove([])
    assert len(index) == 50
    ids, _ = index.search(data[0], k=3, tag_filter=set())
    assert ids.shape == (0,)
