"""HNSW: slea.HnswIndex vs hnswlib on the same data in one run.

``python -m benches hnsw [--quick] [--repeats R] [--query-rounds Q] [--no-minilm]
[--hnswlib-path DIR --hnswlib-build TEXT]``

hnswlib's speed depends on how it was compiled: its ``setup.py`` adds ``-march=native`` unless
``HNSWLIB_NO_NATIVE=1`` is set (then its distance functions use SSE only), while slea picks its
dot-product kernel (AVX2+FMA where the CPU has it) at run time. ``--hnswlib-path DIR`` imports
hnswlib from ``DIR`` (a ``pip install --target DIR`` of a wheel built one way or the other) in
this process and in the build subprocesses; ``--hnswlib-build`` names the build in the output
(e.g. ``native`` or ``HNSWLIB_NO_NATIVE=1``). Run the bench once per build to compare with both.

Datasets: 20k x 384 clustered synthetic unit vectors (200 Gaussian clusters) and MiniLM
embeddings of TextWorld text (``benches/hnsw_text.py``, cached). Both libraries use M=16,
efConstruction=200, cosine, one thread; ef in {16, 40, 80}; k=10.

Measured per library:
- build time: best of ``R`` builds, each in a fresh subprocess, the two libraries alternating;
  the same subprocess reports the resident-memory growth of the build (bytes per vector);
- recall@10 against exact brute force (a hit counts when its true cosine reaches the 10th best,
  so ties do not count against either library);
- single-thread QPS from native code (one batch call that loops over the queries: slea's
  ``search(Q, num_threads=1)``, hnswlib's ``knn_query(Q, num_threads=1)``) and through the Python
  API one query per call; the two libraries alternate and the best of ``Q`` rounds is kept
  (``--query-rounds``, default ``R``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benches.common import OUT_DIR, load_average, machine, table, write_json

K = 10
M = 16
EF_CONSTRUCTION = 200
EFS = (16, 40, 80)
HNSWLIB_PATH = ""
"""Where hnswlib is imported from (``--hnswlib-path``); empty: the environment's own."""


# --- data ------------------------------------------------------------------------------------


def clustered(
    n: int, dim: int, clusters: int, queries: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``clusters`` Gaussian centres; queries from the same mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        x = centres[rng.integers(0, clusters, count)]
        x = x + rng.standard_normal((count, dim)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(queries)


def minilm(queries: int) -> tuple[np.ndarray, np.ndarray] | None:
    """MiniLM sentence embeddings split into base and held-out queries (seeded)."""
    from benches.hnsw_text import load_or_build

    got = load_or_build()
    if got is None:
        return None
    vectors = got[0]
    order = np.random.default_rng(1).permutation(len(vectors))
    q = min(queries, len(vectors) // 10)
    return vectors[order[q:]], vectors[order[:q]]


def kth_scores(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact k-th best cosine of each query (brute force)."""
    out = np.empty(len(queries), dtype=np.float32)
    for s in range(0, len(queries), 256):
        sims = queries[s : s + 256] @ base.T
        out[s : s + 256] = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
    return out


def recall(base: np.ndarray, queries: np.ndarray, kth: np.ndarray, ids: np.ndarray) -> float:
    """Fraction of returned hits whose true cosine reaches the exact k-th best."""
    ids = ids.astype(np.int64)
    true = np.einsum("qd,qkd->qk", queries, base[ids])
    return float(np.mean(true >= kth[:, None] - 1e-6))


# --- one library -----------------------------------------------------------------------------


class Slea:
    name = "slea"

    def __init__(self, dim: int) -> None:
        import slea

        self.index = slea.HnswIndex(dim, m=M, ef_construction=EF_CONSTRUCTION, flat_threshold=0)

    def add(self, x: np.ndarray) -> None:
        self.index.add(np.arange(len(x), dtype=np.uint64), x)

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)

    def batch(self, q: np.ndarray) -> np.ndarray:
        return self.index.search(q, K, num_threads=1)[0]

    def one(self, q: np.ndarray) -> Any:
        return self.index.search(q, K)

    def memory(self, n: int) -> float:
        return self.index.memory_bytes() / n


class Hnswlib:
    name = "hnswlib"

    def __init__(self, dim: int, n: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="cosine", dim=dim)
        self.index.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=42)
        self.index.set_num_threads(1)

    def add(self, x: np.ndarray) -> None:
        self.index.add_items(x, np.arange(len(x)), num_threads=1)

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)

    def batch(self, q: np.ndarray) -> np.ndarray:
        return self.index.knn_query(q, K, num_threads=1)[0]

    def one(self, q: np.ndarray) -> Any:
        return self.index.knn_query(q, K)


def make(lib: str, dim: int, n: int) -> Slea | Hnswlib:
    return Slea(dim) if lib == "slea" else Hnswlib(dim, n)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(lib: str, data: Path) -> dict[str, float]:
    """Build one index in this fresh process: build seconds and resident growth."""
    x = np.load(data)
    index = make(lib, x.shape[1], len(x))
    before = rss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    index.add(x)
    build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {
        "build_s": build_s,
        "build_cpu_s": build_cpu_s,
        "rss_per_vector": (rss_bytes() - before) / len(x),
    }


def build_in_subprocess(lib: str, data: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benches.hnsw", "--worker", lib, "--data", str(data)]
    env = dict(os.environ)
    if HNSWLIB_PATH:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (HNSWLIB_PATH, env.get("PYTHONPATH", "")) if p
        )
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- one dataset -----------------------------------------------------------------------------


def timed(fn: Any) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run_dataset(
    name: str, base: np.ndarray, queries: np.ndarray, repeats: int, query_rounds: int
) -> list[dict[str, Any]]:
    n, dim = base.shape
    print(f"\n[{name}] {n} x {dim}, {len(queries)} queries", flush=True)
    data = OUT_DIR / f"hnsw_{name}_base.npy"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.save(data, base)
    builds: dict[str, list[dict[str, float]]] = {"slea": [], "hnswlib": []}
    for r in range(repeats):
        for lib in ("slea", "hnswlib") if r % 2 == 0 else ("hnswlib", "slea"):
            builds[lib].append(build_in_subprocess(lib, data))
            print(f"  build {lib}: {builds[lib][-1]['build_s']:.2f} s", flush=True)
    libs = {lib: make(lib, dim, n) for lib in ("slea", "hnswlib")}
    for lib in libs.values():
        lib.add(base)
    kth = kth_scores(base, queries, K)
    rows = []
    for ef in EFS:
        best: dict[tuple[str, str], float] = {}
        rec: dict[str, float] = {}
        for r in range(query_rounds):
            order = ("slea", "hnswlib") if r % 2 == 0 else ("hnswlib", "slea")
            for lib_name in order:
                lib = libs[lib_name]
                lib.set_ef(ef)
                ids = lib.batch(queries)
                rec[lib_name] = recall(base, queries, kth, ids)
                t_batch = timed(lambda lib=lib: lib.batch(queries))
                t_one = timed(lambda lib=lib: [lib.one(q) for q in queries])
                for key, (wall, cpu) in (("native", t_batch), ("python", t_one)):
                    for clock, t in (("", wall), ("_cpu", cpu)):
                        qps = len(queries) / max(t, 1e-9)
                        slot = (lib_name, key + clock)
                        best[slot] = max(best.get(slot, 0.0), qps)
        row: dict[str, Any] = {"dataset": name, "ef": ef}
        for lib_name in ("slea", "hnswlib"):
            row[f"recall_{lib_name}"] = rec[lib_name]
            row[f"qps_native_{lib_name}"] = best[(lib_name, "native")]
            row[f"qps_python_{lib_name}"] = best[(lib_name, "python")]
        row["recall_diff"] = rec["slea"] - rec["hnswlib"]
        row["qps_native_ratio"] = best[("slea", "native")] / best[("hnswlib", "native")]
        row["qps_python_ratio"] = best[("slea", "python")] / best[("hnswlib", "python")]
        for key in ("native", "python"):
            row[f"qps_{key}_ratio_cpu"] = (
                best[("slea", key + "_cpu")] / best[("hnswlib", key + "_cpu")]
            )
        rows.append(row)
        print(
            f"  ef={ef}: recall {rec['slea']:.4f} vs {rec['hnswlib']:.4f}, "
            f"native QPS x{row['qps_native_ratio']:.2f}, python QPS x{row['qps_python_ratio']:.2f}",
            flush=True,
        )
    build_s = {lib: min(b["build_s"] for b in builds[lib]) for lib in builds}
    build_cpu = {lib: min(b["build_cpu_s"] for b in builds[lib]) for lib in builds}
    rss = {lib: min(b["rss_per_vector"] for b in builds[lib]) for lib in builds}
    for row in rows:
        row["build_s_slea"], row["build_s_hnswlib"] = build_s["slea"], build_s["hnswlib"]
        row["build_ratio"] = build_s["slea"] / build_s["hnswlib"]
        row["build_ratio_cpu"] = build_cpu["slea"] / build_cpu["hnswlib"]
        row["rss_per_vector_slea"], row["rss_per_vector_hnswlib"] = rss["slea"], rss["hnswlib"]
        row["memory_bytes_per_vector_slea"] = libs["slea"].memory(n)  # type: ignore[union-attr]
        row["n"], row["dim"], row["queries"] = n, dim, len(queries)
    data.unlink(missing_ok=True)
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches hnsw", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2k vectors, 200 queries, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="builds per library")
    parser.add_argument(
        "--query-rounds", type=int, default=0, help="query rounds per library and ef (0: --repeats)"
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument(
        "--hnswlib-path", default="", metavar="DIR", help="import hnswlib from DIR (first)"
    )
    parser.add_argument(
        "--hnswlib-build",
        default="unnamed",
        metavar="TEXT",
        help="how that hnswlib was built, for the output (e.g. native, HNSWLIB_NO_NATIVE=1)",
    )
    parser.add_argument("--worker", choices=("slea", "hnswlib"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.data)))
        return 0
    global HNSWLIB_PATH
    if args.hnswlib_path:
        HNSWLIB_PATH = str(Path(args.hnswlib_path).resolve())
        sys.path.insert(0, HNSWLIB_PATH)
    try:
        import hnswlib
    except ImportError:
        print("hnswlib is not installed (pip install hnswlib): nothing to compare against")
        return 1
    import slea

    hnswlib_file = str(hnswlib.__file__)
    load_start = load_average()
    print(f"hnswlib from {hnswlib_file} (build: {args.hnswlib_build}); load average {load_start}")
    n, queries, repeats = (2000, 200, 1) if args.quick else (20_000, args.queries, args.repeats)
    query_rounds = 1 if args.quick else (args.query_rounds or repeats)
    rows = run_dataset("clustered", *clustered(n, 384, 200, queries), repeats, query_rounds)
    if not args.no_minilm and not args.quick:
        real = minilm(queries)
        if real is not None:
            rows += run_dataset("minilm", *real, repeats, query_rounds)
    columns = [
        "dataset",
        "ef",
        "recall_slea",
        "recall_hnswlib",
        "qps_native_slea",
        "qps_native_hnswlib",
        "qps_native_ratio",
        "qps_python_slea",
        "qps_python_hnswlib",
        "qps_python_ratio",
        "qps_native_ratio_cpu",
        "qps_python_ratio_cpu",
    ]
    print("\n" + table(rows, columns))
    builds = {r["dataset"]: r for r in rows}
    print(
        "\n"
        + table(
            list(builds.values()),
            [
                "dataset",
                "n",
                "build_s_slea",
                "build_s_hnswlib",
                "build_ratio",
                "build_ratio_cpu",
                "memory_bytes_per_vector_slea",
                "rss_per_vector_slea",
                "rss_per_vector_hnswlib",
            ],
        )
    )
    kernel = slea.HnswIndex(4).stats()["kernel"]
    name = "hnsw_quick" if args.quick else "hnsw"
    if args.hnswlib_build != "unnamed":
        name += "_" + re.sub(r"[^A-Za-z0-9]+", "_", args.hnswlib_build).strip("_")
    path = write_json(
        name,
        {
            "command": "python -m benches hnsw " + " ".join(argv),
            "rows": rows,
            "hnswlib_file": hnswlib_file,
            "hnswlib_build": args.hnswlib_build,
            "load_average_at_start": load_start,
            "repeats": repeats,
            "query_rounds": query_rounds,
            "kernel": kernel,
            "m": M,
            "ef_construction": EF_CONSTRUCTION,
            "k": K,
        },
    )
    print(
        f"\nmachine: {machine()}; slea kernel: {kernel}; hnswlib build: {args.hnswlib_build}; "
        f"load average at the end {load_average()}; results: {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
