"""`slea serve`: vLLM's request/response shapes, sampling identical to HFPolicy, adapters, bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from slea.policy.hf import HFPolicy, LoraSpec  # noqa: E402
from slea.policy.tiny import TinyModelSpec, build_tiny  # noqa: E402
from slea.serve import ModelServer, create_app  # noqa: E402

TEXTS = ["you are in a room. exits lead east and west. <action>go east</action> take coin"] * 40
SPEC = TinyModelSpec(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_layers=1,
    num_heads=2,
    max_positions=64,
)


def write_adapter(model_dir: Path, out: Path, *, r: int = 4, seed: int = 1, **lora) -> HFPolicy:
    """A policy with a non-zero LoRA adapter on ``model_dir``, saved to ``out``."""
    policy = HFPolicy.from_pretrained(model_dir, lora=LoraSpec(r=r, **lora), mode="generate")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    policy.model.save_pretrained(str(out))
    return policy


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("serve") / "tiny", TEXTS, SPEC)


@pytest.fixture(scope="module")
def server(model_dir: Path) -> ModelServer:
    return ModelServer(model_dir, name="tiny", max_loras=2)


@pytest.fixture()
def client(server: ModelServer):
    for name in list(server.adapters):
        server.unload_adapter(name)
    with TestClient(create_app(server, max_batch=1, batch_wait_s=0.0)) as c:
        yield c


def complete(client, **body):
    body.setdefault("model", "tiny")
    return client.post("/v1/completions", json=body)


def test_models_lists_the_base_with_its_context(client) -> None:
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    (card,) = data["data"]
    assert card["id"] == "tiny" and card["max_model_len"] == 64 and card["parent"] is None


def test_completion_has_vllm_shapes_and_token_ids(client, server: ModelServer) -> None:
    prompt = [5, 6, 7, 8, 9]
    r = complete(client, prompt=prompt, max_tokens=6, logprobs=0, return_token_ids=True, seed=3)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "text_completion" and data["model"] == "tiny"
    (choice,) = data["choices"]
    assert choice["prompt_token_ids"] == prompt
    ids = choice["token_ids"]
    assert 1 <= len(ids) <= 6
    lp = choice["logprobs"]
    assert len(lp["token_logprobs"]) == len(lp["tokens"]) == len(lp["top_logprobs"]) == len(ids)
    assert all(v <= 0 for v in lp["token_logprobs"])
    assert choice["finish_reason"] in ("stop", "length")
    if choice["finish_reason"] == "stop":
        assert ids[-1] in server.eos_ids
    assert data["usage"] == {
        "prompt_tokens": 5,
        "total_tokens": 5 + len(ids),
        "completion_tokens": len(ids),
    }
    # without return_token_ids / logprobs the fields stay out, as in vLLM
    plain = complete(client, prompt=prompt, max_tokens=2).json()["choices"][0]
    assert "token_ids" not in plain and plain["logprobs"] is None


def test_sampling_is_hfpolicy_sampling(client, model_dir: Path) -> None:
    """A seeded request gives exactly the tokens and log-probs HFPolicy samples with that seed."""
    policy = HFPolicy.from_pretrained(model_dir, mode="generate", max_new_tokens=8, temperature=0.7)
    prompt = [5, 6, 7, 8, 9, 10]
    local = policy.generate([prompt], generator=torch.Generator().manual_seed(11))[0]
    body = dict(prompt=prompt, max_tokens=8, temperature=0.7, seed=11, logprobs=0)
    body["stop_token_ids"] = policy.stop_ids
    choice = complete(client, return_token_ids=True, **body).json()["choices"][0]
    assert tuple(choice["token_ids"]) == local.response_ids
    assert choice["logprobs"]["token_logprobs"] == pytest.approx(local.logprobs, abs=1e-6)


def test_stop_token_ids_end_the_response_with_a_stop_reason(client) -> None:
    first = complete(client, prompt=[5, 6, 7], max_tokens=5, temperature=0, return_token_ids=True)
    ids = first.json()["choices"][0]["token_ids"]
    stop = ids[0]
    r = complete(
        client,
        prompt=[5, 6, 7],
        max_tokens=5,
        temperature=0,
        stop_token_ids=[stop],
        return_token_ids=True,
    )
    choice = r.json()["choices"][0]
    assert choice["token_ids"] == [stop]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == stop


def test_a_batch_of_prompts_gives_one_choice_each(client) -> None:
    prompts = [[5, 6], [7, 8, 9], [10]]
    data = complete(client, prompt=prompts, max_tokens=3, return_token_ids=True).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert [c["prompt_token_ids"] for c in data["choices"]] == prompts


def test_prompt_over_the_context_is_a_400_and_the_server_goes_on(client) -> None:
    r = complete(client, prompt=list(range(5, 65)), max_tokens=8)
    assert r.status_code == 400
    err = r.json()["error"]
    assert "maximum context length is 64" in err["message"] and err["code"] == 400
    assert complete(client, prompt=[5, 6], max_tokens=2).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "nope", "prompt": [5]}, 404, "does not exist"),
        ({"prompt": [5], "n": 2}, 400, "`n`"),
        ({"prompt": [5], "stream": True}, 400, "`stream`"),
        ({"prompt": [5], "logprobs": 5}, 400, "logprobs 0"),
        ({"prompt": [5], "temperature": -1}, 400, "`temperature`"),
        ({"prompt": [5], "max_tokens": 0}, 400, "`max_tokens`"),
        ({"prompt": [5, 99999]}, 400, "out of vocabulary"),
        ({"prompt": []}, 400, "`prompt`"),
        ({"prompt": [5], "stop_token_ids": ["x"]}, 400, "stop_token_ids"),
    ],
)
def test_bad_requests_get_a_clear_error(client, body, status, words) -> None:
    body.setdefault("model", "tiny")
    r = client.post("/v1/completions", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_text_prompts_and_bad_json(client) -> None:
    assert complete(client, prompt="you are in a room", max_tokens=2).status_code == 200
    r = client.post(
        "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


def test_lora_adapters_load_serve_and_unload(client, model_dir: Path, tmp_path: Path) -> None:
    policy = write_adapter(model_dir, tmp_path / "a1")
    r = client.post(
        "/v1/load_lora_adapter", json={"lora_name": "a1", "lora_path": str(tmp_path / "a1")}
    )
    assert r.status_code == 200 and r.text == "Success: LoRA adapter 'a1' added successfully."
    cards = {c["id"]: c for c in client.get("/v1/models").json()["data"]}
    assert cards["a1"]["parent"] == "tiny" and cards["a1"]["root"] == str(tmp_path / "a1")
    # the adapter acts: its log-probs are those of the policy that saved it
    prompt = [5, 6, 7, 8]
    choice = complete(
        client, model="a1", prompt=prompt, max_tokens=6, logprobs=0, return_token_ids=True, seed=2
    ).json()["choices"][0]
    with torch.no_grad():
        mine = policy.unit_logprobs([_record(prompt, choice["token_ids"])]).tolist()
    assert choice["logprobs"]["token_logprobs"] == pytest.approx(mine, abs=1e-4)
    base = complete(client, prompt=prompt, max_tokens=6, seed=2, return_token_ids=True).json()
    again = client.post(
        "/v1/load_lora_adapter", json={"lora_name": "a1", "lora_path": str(tmp_path / "a1")}
    )
    assert again.status_code == 400 and "already been loaded" in again.json()["error"]["message"]
    r = client.post("/v1/unload_lora_adapter", json={"lora_name": "a1"})
    assert r.status_code == 200 and "removed successfully" in r.text
    assert complete(client, model="a1", prompt=prompt).status_code == 404
    assert client.post("/v1/unload_lora_adapter", json={"lora_name": "a1"}).status_code == 404
    # the base model answers as before the adapter came and went
    assert (
        complete(client, prompt=prompt, max_tokens=6, seed=2, return_token_ids=True).json()[
            "choices"
        ][0]["token_ids"]
        == base["choices"][0]["token_ids"]
    )


def _record(prompt, ids):
    from slea.engine import ActionRecord

    return ActionRecord(tuple(prompt), tuple(ids), tuple(0.0 for _ in ids))


@pytest.mark.parametrize(
    ("lora", "status", "words"),
    [
        ({"r": 32}, 400, "greater than max_lora_rank"),
        ({"use_dora": True}, 400, "use_dora"),
        ({"modules_to_save": ["lm_head"]}, 400, "modules_to_save"),
        (None, 404, "No adapter found"),
    ],
)
def test_adapters_vllm_would_refuse_are_refused(
    client, model_dir, tmp_path, lora, status, words
) -> None:
    path = tmp_path / "bad"
    if lora is not None:
        write_adapter(model_dir, path)
        cfg = json.loads((path / "adapter_config.json").read_text())
        cfg.update(lora)
        (path / "adapter_config.json").write_text(json.dumps(cfg))
    r = client.post("/v1/load_lora_adapter", json={"lora_name": "bad", "lora_path": str(path)})
    assert r.status_code == status and words in r.json()["error"]["message"]
    assert [c["id"] for c in client.get("/v1/models").json()["data"]] == ["tiny"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["tiny", "nope", None, 3]),
        "prompt": st.lists(st.integers(-3, 400), max_size=70)
        | st.lists(st.lists(st.integers(0, 299), max_size=3), max_size=3)
        | _json,
        "max_tokens": st.integers(-2, 80) | _json,
        "temperature": st.floats(-1, 3) | _json,
        "top_p": st.floats(-1, 2) | _json,
        "seed": st.integers(-(2**64), 2**64) | _json,
        "stop_token_ids": st.lists(st.integers(-2, 400), max_size=3) | _json,
        "logprobs": st.sampled_from([None, 0, 1, -1, "x"]),
        "n": st.sampled_from([None, 1, 2]),
        "return_token_ids": _json,
        "ignore_eos": _json,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_bodies | _json)
def test_any_request_gets_an_answer_never_a_crash(client, body) -> None:
    data = json.dumps(body).encode()  # NaN and Infinity included, as Python clients send them
    r = client.post("/v1/completions", content=data, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400, 404), r.text
    if r.status_code != 200:
        assert r.json()["error"]["message"]
    else:
        assert all(c["text"] is not None for c in r.json()["choices"])


# ---------------------------------------------------------------------------- the command line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _slea(*args: str, **kw):
    return subprocess.run(
        [sys.executable, "-m", "slea", *args], capture_output=True, text=True, **kw
    )


def test_slea_serve_starts_answers_and_stops(model_dir: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slea",
            "serve",
            str(model_dir),
            "--port",
            str(port),
            "--served-model-name",
            "tiny",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, data = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                data = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert data is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert data["data"][0]["id"] == "tiny"
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/completions",
            json={"model": "tiny", "prompt": [5, 6], "max_tokens": 2, "return_token_ids": True},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["choices"][0]["prompt_token_ids"] == [5, 6]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_slea_serve_bad_input_is_one_line_and_exit_2(model_dir: Path, tmp_path: Path) -> None:
    bad = _slea("serve", str(tmp_path / "missing"), "--port", str(_free_port()), timeout=120)
    assert bad.returncode == 2 and "not a model directory" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = _slea("serve", str(model_dir), "--port", str(taken.getsockname()[1]), timeout=120)
    assert busy.returncode == 2 and "cannot listen" in busy.stderr
    lora = _slea(
        "serve", str(model_dir), "--port", str(_free_port()), "--lora-modules", "oops", timeout=120
    )
    assert lora.returncode == 2 and "NAME=PATH" in lora.stderr
    port = _slea("serve", str(model_dir), "--port", "0", timeout=120)
    assert port.returncode == 2 and "--port: must be in [1, 65535]" in port.stderr
