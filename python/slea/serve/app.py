"""The HTTP side of ``slea serve``: a Starlette app with vLLM's request and response shapes.

Routes (the subset of vLLM's OpenAI-compatible API, >= 0.10.2, that slea's server engine uses)::

    GET  /v1/models                 {"object": "list", "data": [{id, root, parent, max_model_len}]}
    POST /v1/completions            prompt: [ids] | [[ids], ...] | text | [text, ...]; model,
                                    max_tokens, temperature (0 = greedy), top_p, seed,
                                    stop_token_ids, ignore_eos, logprobs (0 or null),
                                    return_token_ids, add_special_tokens, skip_special_tokens
    POST /v1/load_lora_adapter      {"lora_name", "lora_path", "load_inplace"?} -> text
    POST /v1/unload_lora_adapter    {"lora_name"} -> text
    GET  /health                    200

A completion choice holds ``text``, ``finish_reason`` (``stop`` | ``length``), ``stop_reason``
(the stop token id, None for eos), ``logprobs`` (``tokens``, ``token_logprobs``,
``top_logprobs`` with the sampled token only, ``text_offset``) and, with ``return_token_ids``,
``token_ids`` and ``prompt_token_ids``. Errors are ``{"error": {"message", "type", "param",
"code"}}`` with status 400 (bad request, prompt too long for the context) or 404 (unknown
model or adapter); a request never takes the server down.

Requests are answered by a batcher: requests that arrive one after the other with pauses of at
most ``batch_wait_s`` (at most ``max_batch`` of them) and share their sampling settings are
sampled in one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from slea.serve.model import ModelServer, Sampling, ServeError

MAX_PROMPTS = 1024
"""Most prompts in one completions request."""


@dataclass
class _Job:
    sampling: Sampling
    prompt: list[int]
    seed: int | None
    future: asyncio.Future[tuple[list[int], list[float]]] = field(repr=False)


class Batcher:
    """Collects concurrent jobs and samples those with equal settings in one batch."""

    def __init__(self, server: ModelServer, *, max_batch: int = 16, batch_wait_s: float = 0.005):
        if max_batch < 1 or batch_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and batch_wait_s >= 0")
        self.server, self.max_batch, self.batch_wait_s = server, max_batch, batch_wait_s
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()

    async def submit(
        self, sampling: Sampling, prompt: list[int], seed: int | None
    ) -> tuple[list[int], list[float]]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(sampling, prompt, seed, future))
        return await future

    async def run(self) -> None:
        """Serve the queue until cancelled: a batch grows while requests keep arriving (no pause
        longer than ``batch_wait_s``, at most ``max_batch`` of them, at most 20 pauses)."""
        while True:
            batch = [await self.queue.get()]
            for _ in range(20 if self.batch_wait_s else 0):
                await asyncio.sleep(self.batch_wait_s)
                if self.queue.empty():
                    break
                while len(batch) < self.max_batch and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                if len(batch) >= self.max_batch:
                    break
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            groups: dict[Sampling, list[_Job]] = {}
            for job in batch:
                groups.setdefault(job.sampling, []).append(job)
            for sampling, jobs in groups.items():
                await self._sample(sampling, jobs)

    async def _sample(self, sampling: Sampling, jobs: list[_Job]) -> None:
        live = [j for j in jobs if not j.future.done()]  # a client that went away is skipped
        if not live:
            return
        try:
            out = await asyncio.to_thread(
                self.server.generate, sampling, [j.prompt for j in live], [j.seed for j in live]
            )
        except Exception as exc:  # one bad batch answers its requests, the server goes on
            for j in live:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        for j, result in zip(live, out, strict=True):
            if not j.future.done():
                j.future.set_result(result)


def _error(status: int, message: str, kind: str = "BadRequestError", param: str = "") -> Any:
    from starlette.responses import JSONResponse

    body = {"message": message, "type": kind, "param": param or None, "code": status}
    return JSONResponse({"error": body}, status_code=status)


async def _json_body(request: Any) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ServeError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ServeError(400, "The request body must be a JSON object.")
    return body


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ServeError(
            400, f"`{key}` must be a number in [{lo}, {hi}], got {value!r}.", param=key
        )
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ServeError(
            400, f"`{key}` must be an integer in [{lo}, {hi}], got {value!r}.", param=key
        )
    return int(value)


def _ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def _prompts(server: ModelServer, body: dict[str, Any]) -> list[list[int]]:
    """The request's prompts as token ids (text is tokenised, special tokens per the request)."""
    prompt = body.get("prompt")
    add_special = body.get("add_special_tokens", True) is not False
    if isinstance(prompt, str):
        prompt = [prompt]
    if _ids(prompt) and prompt:
        return [list(prompt)]
    if isinstance(prompt, list) and prompt and all(_ids(p) for p in prompt):
        out = [list(p) for p in prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        out = [list(server.tokenizer.encode(p, add_special_tokens=add_special)) for p in prompt]
    else:
        raise ServeError(
            400, "`prompt` must be token ids, a list of token-id lists, or text.", param="prompt"
        )
    if len(out) > MAX_PROMPTS:
        raise ServeError(400, f"At most {MAX_PROMPTS} prompts per request.", param="prompt")
    return out


def _sampling(server: ModelServer, body: dict[str, Any]) -> tuple[Sampling, int | None, bool]:
    """The request's sampling settings, seed and whether to return token ids (validated)."""
    for key, allowed in (("n", (None, 1)), ("stream", (None, False)), ("echo", (None, False))):
        if body.get(key) not in allowed:
            raise ServeError(400, f"slea serve supports `{key}` = {allowed[-1]!r} only.", param=key)
    if body.get("logprobs") not in (None, 0):
        raise ServeError(
            400,
            "slea serve returns the sampled token's log-prob only: send logprobs 0.",
            "BadRequestError",
            "logprobs",
        )
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ServeError(400, "`model` must be a string.", param="model")
    stop = body.get("stop_token_ids") or []
    if not _ids(stop):
        raise ServeError(
            400, "`stop_token_ids` must be a list of token ids.", param="stop_token_ids"
        )
    eos = () if body.get("ignore_eos") else server.eos_ids
    max_tokens = _integer(body, "max_tokens", 16, 1, server.max_model_len)
    assert max_tokens is not None
    sampling = Sampling(
        model=server.check_model(model),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 100.0),
        top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
        stop_ids=tuple(sorted(set(stop) | set(eos))),
    )
    seed = _integer(body, "seed", None, -(2**63), 2**63 - 1)
    return sampling, seed, bool(body.get("return_token_ids"))


def _choice(
    server: ModelServer,
    index: int,
    prompt: list[int],
    ids: list[int],
    lps: list[float],
    sampling: Sampling,
    body: dict[str, Any],
    token_ids: bool,
) -> dict[str, Any]:
    skip = body.get("skip_special_tokens", True) is not False
    stopped = bool(ids) and ids[-1] in sampling.stop_ids
    choice: dict[str, Any] = {
        "index": index,
        "text": server.decode(ids, skip),
        "logprobs": None,
        "finish_reason": "stop" if stopped else "length",
        "stop_reason": ids[-1] if stopped and ids[-1] not in server.eos_ids else None,
    }
    if body.get("logprobs") is not None:
        tokens = [server.decode([t], False) for t in ids]
        values = [lp if math.isfinite(lp) else -9999.0 for lp in lps]  # as vLLM clamps
        offsets, at = [], 0
        for t in tokens:
            offsets.append(at)
            at += len(t)
        choice["logprobs"] = {
            "text_offset": offsets,
            "token_logprobs": values,
            "tokens": tokens,
            "top_logprobs": [{t: v} for t, v in zip(tokens, values, strict=True)],
        }
    if token_ids:
        choice["token_ids"], choice["prompt_token_ids"] = ids, prompt
    return choice


def create_app(server: ModelServer, *, max_batch: int = 16, batch_wait_s: float = 0.005) -> Any:
    """The Starlette app serving ``server`` (run it with uvicorn, or :func:`slea.serve.serve`)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    batcher = Batcher(server, max_batch=max_batch, batch_wait_s=batch_wait_s)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": server.models()})

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def completions(request: Request) -> Response:
        body = await _json_body(request)
        sampling, seed, token_ids = _sampling(server, body)
        prompts = _prompts(server, body)
        for p in prompts:
            server.check_prompt(p, sampling.max_tokens)
        results = await asyncio.gather(*(batcher.submit(sampling, p, seed) for p in prompts))
        choices = [
            _choice(server, i, p, ids, lps, sampling, body, token_ids)
            for i, (p, (ids, lps)) in enumerate(zip(prompts, results, strict=True))
        ]
        used = sum(len(ids) for ids, _ in results)
        given = sum(len(p) for p in prompts)
        return JSONResponse(
            {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": sampling.model,
                "choices": choices,
                "usage": {
                    "prompt_tokens": given,
                    "total_tokens": given + used,
                    "completion_tokens": used,
                },
            }
        )

    async def load(request: Request) -> Response:
        body = await _json_body(request)
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not isinstance(path, str):
            raise ServeError(400, "Both 'lora_name' and 'lora_path' must be provided.")
        await asyncio.to_thread(
            server.load_adapter, name, path, inplace=bool(body.get("load_inplace"))
        )
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(request: Request) -> Response:
        body = await _json_body(request)
        name = body.get("lora_name")
        if not isinstance(name, str):
            raise ServeError(400, "'lora_name' needs to be provided to unload a LoRA adapter.")
        await asyncio.to_thread(server.unload_adapter, name)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    async def on_serve_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServeError)
        return _error(exc.status, exc.message, exc.kind, exc.param)

    async def on_error(request: Request, exc: Exception) -> Response:
        return _error(500, f"{type(exc).__name__}: {exc}", "InternalServerError")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/load_lora_adapter", load, methods=["POST"]),
            Route("/v1/unload_lora_adapter", unload, methods=["POST"]),
        ],
        exception_handlers={ServeError: on_serve_error, Exception: on_error},
        lifespan=lifespan,
    )


__all__ = ["MAX_PROMPTS", "Batcher", "create_app"]
