"""``slea serve MODEL``: a minimal OpenAI-compatible generation server (vLLM's API shapes).

``MODEL`` is a local Hugging Face model directory, or a run directory: then the run's model
(``model.path``, ``model.preset`` or the tiny ``model_init``) is served and its latest checkpoint
with it (a LoRA checkpoint as the adapter ``checkpoint-iter<N>``, full weights in place of the
base weights). Binds 127.0.0.1 unless ``--host`` says otherwise. See docs/SERVER.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a local Hugging Face model directory, or a run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--served-model-name", default="", help="name of the base model (default MODEL)")
    p.add_argument("--tokenizer", default="", help="tokenizer directory (default the model's)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--max-model-len", type=int, default=0, help="context length (default the model's)"
    )
    p.add_argument(
        "--max-lora-rank", type=int, default=16, help="largest adapter rank (default 16)"
    )
    p.add_argument(
        "--max-loras", type=int, default=4, help="most adapters loaded at once (default 4)"
    )
    p.add_argument(
        "--lora-modules",
        nargs="*",
        default=[],
        metavar="NAME=PATH",
        help="adapters to load at start",
    )
    p.add_argument("--max-batch", type=int, default=16, help="most requests sampled together")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")


def _resolve(model: str) -> tuple[Path, Path | None, Path | None]:
    """``(model dir, tokenizer dir, LoRA checkpoint)`` of a model directory or a run directory."""
    from slea.errors import ConfigError

    p = Path(model)
    if (p / "config.json").is_file() or not (p / "config.yaml").is_file():
        return p, None, None
    from slea.rundir import CheckpointManager
    from slea.train.config import TrainConfig
    from slea.train.setup import model_dir

    cfg = TrainConfig.from_yaml(p / "config.yaml", [f"run.dir={p}"])
    base = model_dir(cfg) or p / "model_init"
    if not (base / "config.json").is_file():
        raise ConfigError(f"run {model!r} has no model yet ({base} is missing); train it first")
    latest = CheckpointManager(p, cfg.checkpoint.keep_last).latest()
    if latest is None:
        return base, None, None
    CheckpointManager.verify(latest[1])
    saved = latest[1] / "model"
    if (saved / "adapter_config.json").is_file():
        return base, None, saved
    return saved, base, None


def _check_port(host: str, port: int) -> None:
    """ConfigError when ``host:port`` cannot be bound (taken, or not an address of this host)."""
    import socket

    from slea.errors import ConfigError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise ConfigError(
            f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
            "another port or address"
        ) from None


def run(args: argparse.Namespace) -> int:
    from slea.errors import ConfigError
    from slea.serve import ModelServer, create_app, serve

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port: must be in [1, 65535], got {args.port}")
    if args.max_batch < 1:
        raise ConfigError(f"--max-batch: must be >= 1, got {args.max_batch}")
    adapters = []
    for item in args.lora_modules:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--lora-modules: {item!r} must look like NAME=PATH")
        adapters.append((name, path))
    _check_port(args.host, args.port)
    model, tokenizer, checkpoint = _resolve(args.model)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    server = ModelServer(
        model,
        name=args.served_model_name or args.model,
        tokenizer_dir=args.tokenizer or tokenizer,
        dtype=args.dtype,
        device=args.device,
        max_model_len=args.max_model_len,
        max_lora_rank=args.max_lora_rank,
        max_loras=args.max_loras,
    )
    if checkpoint is not None:
        adapters.append((f"checkpoint-{checkpoint.parent.name.replace('_', '')}", str(checkpoint)))
    from slea.serve.model import ServeError

    for name, path in adapters:
        try:
            server.load_adapter(name, path)
        except ServeError as exc:
            raise ConfigError(f"--lora-modules: {name}={path}: {exc.message}") from None
    names = [server.name, *server.adapters]
    print(
        f"slea serve: {names} on http://{args.host}:{args.port} (max_model_len "
        f"{server.max_model_len})",
        file=sys.stderr,
        flush=True,
    )
    serve(create_app(server, max_batch=args.max_batch), host=args.host, port=args.port)
    return 0
