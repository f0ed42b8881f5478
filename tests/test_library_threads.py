"""Concurrency: four threads retrieving while one admits, removes and credits outcomes."""

from __future__ import annotations

import random
import threading

import slea
from slea.experience.library import LEVELS

ROUNDS = 60


def config() -> slea.LibraryConfig:
    return slea.LibraryConfig(
        strategy_capacity=20, warning_capacity=10, cluster_pool_size=4, max_clusters=64
    )


def writer_ops(seed: int) -> list[tuple]:
    rng = random.Random(seed)
    ops: list[tuple] = []
    for it in range(1, ROUNDS + 1):
        cands = [
            slea.Candidate(
                f"step {it} advice {j} about {rng.choice(['doors', 'keys', 'food', 'chests'])} "
                f"{rng.randrange(10**6)}",
                rng.choice(["strategy", "warning"]),
                rng.choice(LEVELS),
                round(rng.random(), 2),
                cluster_ids=(rng.randrange(40),),
            )
            for j in range(6)
        ]
        ops.append(("admit", cands, it))
        if it % 5 == 0:
            ops.append(("outcome", rng.random() < 0.5))
        if it % 7 == 0:
            ops.append(("remove_oldest",))
    return ops


def apply(lib: slea.ExperienceLibrary, op: tuple) -> None:
    if op[0] == "admit":
        lib.admit(op[1], op[2])
    elif op[0] == "outcome":
        lib.record_outcome([e.id for e in lib.entries()[:3]], op[1])
    else:
        lib.remove(lib.entries()[0].id)


def check_result(res: list[slea.Experience], ks: int, kw: int) -> None:
    zones = [e.zone for e in res]
    assert zones == sorted(zones), "strategies before warnings"
    strat = [e for e in res if e.zone == "strategy"]
    warn = [e for e in res if e.zone == "warning"]
    assert len(strat) <= ks and len(warn) <= kw
    assert len({e.id for e in res}) == len(res), "no entry twice"
    for e in res:
        assert e.text and e.level in LEVELS


def test_four_readers_one_writer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lib = slea.ExperienceLibrary(config(), embedder=slea.HashingEmbedder(64))
    ops = writer_ops(0)
    errors: list[BaseException] = []
    done = threading.Event()
    counts = [0] * 4

    def reader(k: int) -> None:
        rng = random.Random(100 + k)
        try:
            while not done.is_set():
                cids = [rng.randrange(48) for _ in range(8)]
                texts = [f"advice about {rng.choice(['doors', 'keys', 'food'])}" for _ in cids]
                for res in lib.retrieve_batch(cids, texts):
                    check_result(res, 2, 1)
                check_result(lib.retrieve(rng.randrange(48), texts[0]), 2, 1)
                _ = lib.stats(), len(lib), lib.version
                counts[k] += 1
        except BaseException as exc:
            errors.append(exc)

    def writer() -> None:
        try:
            for op in ops:
                apply(lib, op)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert all(c > 0 for c in counts), counts

    # The entries depend only on the writer's operations: replaying them alone gives the same.
    replay = slea.ExperienceLibrary(config(), embedder=slea.HashingEmbedder(64))
    for op in ops:
        apply(replay, op)
    key = [(e.id, e.text, e.score, e.successes, e.failures) for e in lib.entries()]
    assert key == [(e.id, e.text, e.score, e.successes, e.failures) for e in replay.entries()]
    # Pools are consistent: every linked id exists, in its zone, within bounds.
    for c in range(48):
        strat, warn = lib.pool(c)
        assert len(strat) <= 4 and len(warn) <= 4
        assert all(lib.get(i).zone == "strategy" for i in strat)
        assert all(lib.get(i).zone == "warning" for i in warn)
    lib.save(tmp_path / "lib.snap")
    assert slea.ExperienceLibrary.load(tmp_path / "lib.snap").entries() == lib.entries()
    print(f"reader loops: {counts}; writer ops: {len(ops)}")
