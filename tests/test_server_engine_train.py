"""Training against `slea serve`: the tiny config in generate mode with engine.kind=server.

The trainer builds its tiny model under a run's ``model_init``; the server must serve that very
model, so the module first constructs a local Trainer (which builds ``model_init``), starts
`slea serve` on it in a thread, then trains with ``model.path`` pointing there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")

from conftest_envs import games_cache  # noqa: E402
from peft import get_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from slea.errors import EngineError, SleaError  # noqa: E402
from slea.rundir import read_metrics  # noqa: E402
from slea.serve import ModelServer, ServerThread, create_app  # noqa: E402
from slea.train.config import TrainConfig  # noqa: E402
from slea.train.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "configs" / "textworld_tiny_test.yaml"
SERVER = ROOT / "examples" / "configs" / "textworld_tiny_server.yaml"


@pytest.fixture(scope="module")
def model_init(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("init") / "run"
    cfg = TrainConfig.from_yaml(TINY, [f"run.dir={run}", f"env.games.cache_dir={games_cache()}"])
    Trainer(cfg).close()  # builds run/model_init (tokenizer trained on the games, tiny model)
    return run / "model_init"


def server_config(run_dir: Path, url: str, model_dir: Path, *extra: str) -> TrainConfig:
    return TrainConfig.from_yaml(
        SERVER,
        [
            f"run.dir={run_dir}",
            f"env.games.cache_dir={games_cache()}",
            f"engine.url={url}",
            f"model.path={model_dir}",
            "engine.backoff_s=0.01",
            *extra,
        ],
    )


def test_two_iterations_against_slea_serve(model_init: Path, tmp_path: Path) -> None:
    server = ModelServer(model_init, name="tiny")
    with ServerThread(create_app(server)) as thread:
        cfg = server_config(tmp_path / "run", thread.url, model_init)
        with Trainer(cfg) as trainer:
            start = [p.detach().clone() for p in trainer.policy.trainable_parameters()]
            summary = trainer.fit()
            name = trainer.engine._served_name()  # type: ignore[attr-defined]
            changed = [
                not torch.equal(a, b)
                for a, b in zip(start, trainer.policy.trainable_parameters(), strict=True)
            ]
            learned = get_peft_model_state_dict(trainer.policy.model)
        assert list(server.adapters) == [name] and name.endswith("-v2")
    assert any(changed)  # (an untrained tiny model's advantages are ~0: only lora_B moves)
    run = tmp_path / "run"
    # the server was handed exactly the learner's final adapter
    sent = load_file(str(run / "adapters" / "v2" / "adapter_model.safetensors"))
    assert sent.keys() == learned.keys()
    assert all(torch.equal(sent[k], learned[k]) for k in sent)
    assert summary["iterations"] == 2 and (run / "summary.json").is_file()
    assert sorted(p.name for p in (run / "adapters").iterdir()) == ["v2"]
    train = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert len(train) == 2
    for rec in train:
        # the learner's recomputed old log-probs and the server's agree (float32, CPU)
        assert rec["update"]["server_logprob_gap_max"] < 1e-4, rec["update"]
        assert rec["rollout"]["failed_episodes"] == 0 and rec["rollout"]["steps"] > 0
    adapter = json.loads((run / "adapters" / "v2" / "adapter_config.json").read_text())
    assert adapter["r"] == 8
    # `slea serve RUN_DIR` serves the run's model with its latest (LoRA) checkpoint as an adapter
    from slea.cli.serve import _resolve

    base, tokenizer, checkpoint = _resolve(str(run))
    assert base == model_init and tokenizer is None
    assert checkpoint == run / "checkpoints" / "iter_2" / "model"


def test_a_server_failing_mid_iteration_truncates_episodes_and_the_run_goes_on(
    model_init: Path, tmp_path: Path
) -> None:
    """From the 7th request for the version-1 adapter on, every completion gets HTTP 503: the
    second iteration's episodes act once, then end truncated and marked; the library learns
    nothing from them; the run finishes."""
    server = ModelServer(model_init, name="tiny")
    app = create_app(server)
    seen: dict[str, int] = {}

    async def flaky(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/completions":
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            model = json.loads(body)["model"]
            seen[model] = seen.get(model, 0) + 1
            if model.endswith("-v1") and seen[model] > 6:
                await JSONResponse({"error": {"message": "down"}}, 503)(scope, receive, send)
                return
            sent = False

            async def replay():
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)
            return
        await app(scope, receive, send)

    with ServerThread(flaky) as thread:
        cfg = server_config(tmp_path / "run", thread.url, model_init, "engine.retries=1")
        with Trainer(cfg) as trainer:
            trainer.fit()
    first, second = [
        r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"
    ]
    assert first["rollout"]["failed_episodes"] == 0
    assert second["rollout"]["failed_episodes"] == 6
    assert second["rollout"]["steps"] == 6  # one step each before the server went down
    assert second["evolution"]["episodes"] == 0  # nothing from them reached the library
    assert first["evolution"]["episodes"] == 6
    assert (tmp_path / "run" / "summary.json").is_file()


def test_an_unreachable_server_stops_the_start_and_leaves_no_run_dir(
    model_init: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cfg = server_config(run, "http://127.0.0.1:9", model_init, "engine.retries=0")
    with pytest.raises(
        EngineError, match=r"cannot reach the generation server at http://127\.0\.0\.1:9"
    ):
        Trainer(cfg)
    assert not run.exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_reader_beside_a_training_run_leaves_its_adapters_alone(
    model_init: Path, tmp_path: Path
) -> None:
    """``Trainer.load`` with a server engine (evaluating a run that may go on training) writes
    its adapters to a directory of its own, under its own served names, and removes it at close:
    the run's adapters stay byte for byte (a reader used to re-write ``v<k>`` and prune the newer
    adapter of a run that went on training)."""
    server = ModelServer(model_init, name="tiny")
    with ServerThread(create_app(server)) as thread:
        run = tmp_path / "run"
        with Trainer(server_config(run, thread.url, model_init)) as trainer:
            trainer.fit()
            training_name = trainer.engine._served_name()  # type: ignore[attr-defined]
        adapters = run / "adapters"
        shutil.copytree(adapters / "v2", adapters / "v3")  # the run went on meanwhile

        def files() -> dict[Path, tuple[bytes, int]]:
            return {
                p.relative_to(adapters): (p.read_bytes(), p.stat().st_mtime_ns)
                for p in adapters.rglob("*")
                if p.is_file()
            }

        before = files()
        with Trainer.load(run) as reader:
            own = reader.own_adapters
            assert own is not None and own.parent == adapters and (own / "v2").is_dir()
            assert reader.evaluate("test")["episodes"] > 0
            assert reader.engine._served_name() != training_name  # type: ignore[attr-defined]
        assert not own.exists()
        assert files() == before


def test_two_runs_cannot_share_an_adapter_dir(model_init: Path, tmp_path: Path) -> None:
    """A server engine prunes the adapter directories it finds in ``engine.adapter_dir`` and
    names its served adapters after that directory: a second run given the same one is refused
    (naming the key and the run that holds it) and leaves nothing behind; after the first run
    closes it starts. A reader of the first run needs no lock."""
    server = ModelServer(model_init, name="tiny")
    shared = tmp_path / "shared_adapters"
    with ServerThread(create_app(server)) as thread:
        first = server_config(
            tmp_path / "a", thread.url, model_init, f"engine.adapter_dir={shared}"
        )
        second = server_config(
            tmp_path / "b", thread.url, model_init, f"engine.adapter_dir={shared}"
        )
        with Trainer(first) as trainer:
            assert (shared / "v0").is_dir()
            with pytest.raises(
                SleaError, match=r"engine\.adapter_dir: .* is in use by .*adapters of"
            ):
                Trainer(second)
            assert not (tmp_path / "b").exists()
            assert (shared / "v0").is_dir()  # the refused run pruned nothing
            trainer.fit()
        with Trainer.load(tmp_path / "a") as reader:
            assert reader.own_adapters is not None and reader.own_adapters.parent == shared
        with Trainer(second) as trainer:
            assert (shared / "v0").is_dir()
