"""Latency the HTTP path adds: ``python -m benches serve [--rounds 7] [--batches 1,6]``.

The same tiny model (with the same LoRA adapter), the same prompts, greedy decoding (so both
sides sample the very same tokens and do the same model work): one ``act`` call of the
in-process engine (:class:`~slea.policy.hf.HFPolicy`) against one ``act`` call of the server
engine (:class:`~slea.policy.server.ServerEngine`) talking to ``slea serve`` in another process
on this machine (one request per prompt, batched again by the server). Runs alternate between
the two engines, so load from other processes hits both alike; the table reports the minimum
and the median per call, and the added latency (server - in process). The bare HTTP round trip
(``GET /v1/models`` on a kept-alive connection) is printed too: the floor of what a request costs.

The server's batching window (5 ms, ``slea serve``'s default) is part of what is added: it is
the price of re-forming a batch from separate requests. ``same_tokens`` is the fraction of
responses that came out token-identical on both sides (greedy; a different batch split can move
a near-tie).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benches.common import machine, table, write_json

WORDS = (
    "you are in a kitchen . exits lead north , east and west . there is a coin on the table . "
    "go north go east go west take coin open door look inventory examine table"
).split()


def _texts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(60)) for i in range(n)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(model_dir: Path, port: int) -> subprocess.Popen[str]:
    import httpx

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "slea", "serve", str(model_dir), "--port", str(port),
         "--served-model-name", "tiny", "--threads", "1", "--max-batch", "64"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"slea serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("slea serve did not answer within 180 s")


def run(rounds: int, batches: list[int], max_new_tokens: int) -> dict[str, Any]:
    import torch

    from slea.policy.hf import HFPolicy, LoraSpec
    from slea.policy.server import ServerEngine
    from slea.policy.tiny import TinyModelSpec, build_tiny

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="slea-bench-serve-"))
    spec = TinyModelSpec(vocab_size=512, hidden_size=128, intermediate_size=256, num_layers=2)
    model_dir = build_tiny(work / "tiny", _texts(200) * 5, spec)
    policy = HFPolicy.from_pretrained(
        model_dir, lora=LoraSpec(r=8), mode="generate", max_new_tokens=max_new_tokens
    )
    port = _free_port()
    proc = _start_server(model_dir, port)
    engine = ServerEngine(
        policy, urls=[f"http://127.0.0.1:{port}"], adapter_dir=work / "adapters", concurrency=64
    )
    rows = []
    try:
        engine.sync(policy, 0)  # the server acts with the same (zero-initialised) adapter
        trips = []
        for _ in range(50):  # the bare HTTP round trip: GET /v1/models on a kept-alive connection
            t0 = time.perf_counter()
            engine._client.get(f"http://127.0.0.1:{port}/v1/models").raise_for_status()
            trips.append(time.perf_counter() - t0)
        roundtrip = {"min_ms": 1e3 * min(trips), "median_ms": 1e3 * statistics.median(trips)}
        for batch in batches:
            prompts = [
                policy.encode_prompt([{"role": "user", "content": t}]) for t in _texts(batch)
            ]
            engine.act(prompts, greedy=True)  # warm up both paths
            policy.act(prompts, greedy=True)
            local, server = [], []
            tokens = same = 0
            for _ in range(rounds):
                t0 = time.perf_counter()
                a = policy.act(prompts, greedy=True)
                t1 = time.perf_counter()
                b = engine.act(prompts, greedy=True)
                t2 = time.perf_counter()
                local.append(t1 - t0)
                server.append(t2 - t1)
                same += sum(x.response_ids == y.response_ids for x, y in zip(a, b, strict=True))
                tokens = sum(len(r.response_ids) for r in a)
            rows.append(
                {
                    "prompts": batch,
                    "prompt_tokens": round(statistics.mean(len(p) for p in prompts)),
                    "tokens": tokens,
                    "local_min_ms": 1e3 * min(local),
                    "local_median_ms": 1e3 * statistics.median(local),
                    "server_min_ms": 1e3 * min(server),
                    "server_median_ms": 1e3 * statistics.median(server),
                    "added_min_ms": 1e3 * (min(server) - min(local)),
                    "added_median_ms": 1e3 * (statistics.median(server) - statistics.median(local)),
                    "ratio_median": statistics.median(server) / statistics.median(local),
                    "same_tokens": same / (rounds * batch),
                }
            )
    finally:
        engine.close()
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "rounds": rounds,
        "max_new_tokens": max_new_tokens,
        "batch_wait_ms": 5.0,
        "http_roundtrip": roundtrip,
        "rows": rows,
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benches serve", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", default="1,6", help="prompts per act call, comma-separated")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    result = run(args.rounds, batches, args.max_new_tokens)
    cols = ["prompts", "prompt_tokens", "tokens", "local_min_ms", "local_median_ms",
            "server_min_ms", "server_median_ms", "added_min_ms", "added_median_ms", "ratio_median",
            "same_tokens"]  # fmt: skip
    print(f"machine: {machine()}")
    print(f"command: python -m benches serve {' '.join(argv)}")
    print(table(result["rows"], cols))
    trip = result["http_roundtrip"]
    print(
        f"bare HTTP round trip (GET /v1/models): min {trip['min_ms']:.2f} ms, median {trip['median_ms']:.2f} ms"
    )
    path = write_json("serve", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
