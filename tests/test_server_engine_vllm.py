"""The server engine against a real vLLM server (marker ``vllm``; never run on the CPU machines).

Needs vLLM >= 0.10.2, a CUDA device and ``SLEA_VLLM_MODEL``, a local Hugging Face model
directory (e.g. Qwen2.5-0.5B-Instruct) that vLLM and transformers both load. Each test skips,
saying which of these is missing. It starts::

    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve $SLEA_VLLM_MODEL --served-model-name base \\
        --dtype float32 --enable-lora --max-lora-rank 16 --logprobs-mode processed_logprobs \\
        --port PORT --max-model-len 2048 --gpu-memory-utilization 0.5

and checks the same contract as tests/test_server_engine.py does against `slea serve`: token ids
echoed, one log-prob per token, LoRA adapters loaded and unloaded, and the learner's recomputed
log-probs within a tolerance of vLLM's (different kernels: 1e-2 nats at most per token).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

MODEL = os.environ.get("SLEA_VLLM_MODEL", "")


def _why_not() -> str:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'slea-rl[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device: vLLM needs a GPU"
    if not MODEL or not (Path(MODEL) / "config.json").is_file():
        return "set SLEA_VLLM_MODEL to a local Hugging Face model directory"
    from importlib.metadata import version

    from packaging.version import Version

    if Version(version("vllm")) < Version("0.10.2"):
        return f"vLLM {version('vllm')} is older than 0.10.2 (no return_token_ids)"
    return ""


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory):
    why = _why_not()
    if why:
        pytest.skip(why)
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True")
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", MODEL,
        "--served-model-name", "base", "--dtype", "float32", "--enable-lora",
        "--max-lora-rank", "16", "--logprobs-mode", "processed_logprobs", "--port", str(port),
        "--max-model-len", "2048", "--gpu-memory-utilization", "0.5",
    ]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited ({proc.returncode}); see {log}")
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer in 600 s; see {log}")
            time.sleep(2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_vllm_contract_and_logprob_gap(vllm_url: str, tmp_path: Path) -> None:
    import torch

    from slea.algo.update import recompute_old_logprobs
    from slea.policy.hf import HFPolicy, LoraSpec
    from slea.policy.server import ServerEngine

    policy = HFPolicy.from_pretrained(
        MODEL, lora=LoraSpec(r=8), mode="generate", max_new_tokens=32, device="cuda"
    )
    engine = ServerEngine(policy, urls=[vllm_url], adapter_dir=tmp_path / "adapters", model="base")
    try:
        gen = torch.Generator().manual_seed(0)
        prompts = [
            policy.encode_prompt([{"role": "user", "content": f"Count to {i}."}]) for i in range(8)
        ]
        for version in range(2):
            with torch.no_grad():
                for p in policy.trainable_parameters():
                    p.add_(0.01 * torch.randn(p.shape, generator=gen).to(p.device))
            engine.sync(policy, version)
            records = engine.act(prompts, generator=gen)
            assert all(not r.error and r.num_units >= 1 for r in records)
            _, gap = recompute_old_logprobs(policy, records, batch_size=4)
            print(f"version {version}: vLLM vs learner log-prob gap {gap}")
            assert gap["server_logprob_gap_mean"] < 1e-3 and gap["server_logprob_gap_max"] < 1e-2
    finally:
        engine.close()
