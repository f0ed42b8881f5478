"""``slea serve``: a minimal OpenAI-compatible generation server over a local Hugging Face model.

It speaks the part of vLLM's API (>= 0.10.2) that :class:`slea.policy.server.ServerEngine`
uses, with the same shapes, so the server engine is tested end to end without a GPU; it is a
test double and a small-model convenience, not a fast server (one process, batches of the
requests that arrive together, no paged attention, no prefix cache).

- :mod:`slea.serve.model`: :class:`ModelServer`, the model, its run-time LoRA adapters and
  batched sampling with :func:`slea.policy.forward.sample_tokens` (HFPolicy's own sampler).
- :mod:`slea.serve.app`: :func:`create_app`, the Starlette app (routes, validation, errors).
- :func:`serve` runs it with uvicorn; :class:`ServerThread` runs it in a thread (tests, benches).

Needs the ``serve`` extra (starlette, uvicorn, httpx). See docs/SERVER.md.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from slea.errors import SleaError, require
from slea.serve.model import ModelServer, Sampling, ServeError


def create_app(server: ModelServer, *, max_batch: int = 16, batch_wait_s: float = 0.005) -> Any:
    """The Starlette app of ``server`` (see :mod:`slea.serve.app`)."""
    require("starlette", "serve", "slea serve")
    from slea.serve.app import create_app as _create

    return _create(server, max_batch=max_batch, batch_wait_s=batch_wait_s)


def serve(
    app: Any, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"
) -> None:
    """Run ``app`` with uvicorn until interrupted (binds ``host``: loopback unless told)."""
    uvicorn: Any = require("uvicorn", "serve", "slea serve")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


class ServerThread:
    """Run ``app`` with uvicorn in a daemon thread on ``host:port`` (0 = a free port).

    ``url`` is the base URL once :meth:`start` returns; :meth:`stop` shuts it down. Usable as a
    context manager.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        uvicorn: Any = require("uvicorn", "serve", "slea serve")
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="slea-serve")
        self.host, self.url = host, ""

    def start(self, timeout_s: float = 30.0) -> ServerThread:
        """Start serving; returns once the socket listens (SleaError after ``timeout_s``)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SleaError(f"slea serve did not start on {self.host} within {timeout_s} s")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ModelServer", "Sampling", "ServeError", "ServerThread", "create_app", "serve"]
