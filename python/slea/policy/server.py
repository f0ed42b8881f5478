"""An engine that acts through a generation server: vLLM's OpenAI-compatible API, token ids in and out.

::

    engine = ServerEngine(policy, urls=["http://127.0.0.1:8000"], adapter_dir=run_dir / "adapters")
    records = engine.act(prompt_ids, generator=g)   # one POST /v1/completions per prompt
    engine.sync(policy, version)                    # save the LoRA adapter, load it, unload the old

The learner (:class:`~slea.policy.hf.HFPolicy`) stays in this process and keeps everything
about text: it renders and encodes the prompts, decodes the sampled ids and parses the action
with its parser. The server sees token ids only.

What goes out, per prompt (``concurrency`` requests in flight, URLs taken round robin)::

    POST /v1/completions {"model": <base or adapter>, "prompt": [ids], "max_tokens", "temperature",
                          "top_p", "seed", "stop_token_ids", "logprobs": 0, "return_token_ids": true,
                          "add_special_tokens": false}

What is checked: one choice with ``prompt_token_ids`` equal to the ids sent (else an
:class:`~slea.errors.EngineError`: the server changed the prompt), ``token_ids`` and one
``token_logprobs`` value per token. The record's log-probs are the server's; the trainer
recomputes them with the learner before the update (:func:`slea.algo.update.recompute_old_logprobs`)
and logs the gap.

Weight sync (:meth:`ServerEngine.sync`): the learner's LoRA adapter is written atomically to
``adapter_dir/v<version>``, checked (rank within ``max_lora_rank``, plain LoRA: no DoRA, no
``modules_to_save``, no bias), loaded under a new name with ``POST /v1/load_lora_adapter`` and
the previous one unloaded with ``POST /v1/unload_lora_adapter``. A URL whose adapter is older
than the policy version is never asked to act.

Faults: a request that fails in transport (refused, reset, cut short, timed out) or with HTTP
429/5xx is retried with exponential backoff on the next URL; after ``retries`` retries its record
carries ``error`` and the rollout ends that episode, truncated and marked. Anything else the
server says (4xx, a body that is not the expected JSON, changed prompt ids, an unknown model, an
adapter refused) is an :class:`~slea.errors.EngineError` naming the server, the request and the fix.

API pinned to vLLM >= 0.10.2 (``return_token_ids`` and the final ``processed_logprobs`` mode
arrived there); ``slea serve`` speaks the same shapes. See docs/SERVER.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slea.engine import ActionRecord, Learner
from slea.errors import ConfigError, EngineError, require
from slea.rundir import install_dir, staging_dir

VLLM_MIN_VERSION = "0.10.2"
"""Oldest vLLM whose completions API returns token ids (``return_token_ids``)."""

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses that mean "try again later" (everything else is an answer)."""

SETUP_HINT = (
    "start it (`slea serve MODEL_DIR --port PORT`, or `vllm serve MODEL --enable-lora "
    "--max-lora-rank R` with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; docs/SERVER.md) or fix engine.url"
)


class _Unavailable(Exception):
    """A request that failed in transport or with a retryable status through all its retries."""


@dataclass(frozen=True)
class _Reply:
    url: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]


def _message(resp: Any) -> str:
    """The error message of a response body (vLLM's ``{"error": {...}}`` or older flat shape)."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:300]
        if "message" in data:
            return str(data["message"])[:300]
    return str(data)[:300]


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value
    )


def _seeds(generator: Any, n: int) -> list[int | None]:
    """One request seed per prompt, drawn from ``generator`` (torch or numpy), or none."""
    if generator is None:
        return [None] * n
    if hasattr(generator, "integers"):  # numpy.random.Generator
        return [int(x) for x in generator.integers(0, 2**31 - 1, size=n)]
    import torch

    if isinstance(generator, torch.Generator):
        return [int(x) for x in torch.randint(0, 2**31 - 1, (n,), generator=generator)]
    raise TypeError(
        f"generator: give a torch.Generator, a numpy Generator or None, got {generator!r}"
    )


def save_adapter(model: Any, dest: Path) -> Path:
    """Write ``model``'s LoRA adapter (peft ``save_pretrained``) to ``dest`` atomically.

    The files go to a temporary sibling directory and are fsynced; the directory is then
    renamed into place (an existing ``dest`` is replaced), so a reader never sees half an adapter.
    """
    dest = Path(dest)
    tmp = staging_dir(dest)
    try:
        model.save_pretrained(str(tmp))
        install_dir(tmp, dest, replace=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def check_adapter(path: Path, max_lora_rank: int) -> dict[str, Any]:
    """Read ``path/adapter_config.json`` and refuse what a vLLM server cannot load: a rank above
    ``max_lora_rank``, DoRA, ``modules_to_save``, bias terms, or anything but LoRA. Returns it."""
    cfg_path = Path(path) / "adapter_config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"adapter {str(cfg_path)!r} cannot be read ({exc}); save it again"
        ) from exc
    if not isinstance(cfg, dict):
        raise EngineError(f"adapter {str(cfg_path)!r} is not a JSON object; save it again")
    problems = []
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        problems.append(f"peft_type {cfg.get('peft_type')!r} (only LORA is served)")
    rank = cfg.get("r")
    if not isinstance(rank, int) or rank > max_lora_rank:
        problems.append(
            f"rank {rank} above engine.max_lora_rank={max_lora_rank} (lower model.lora_r, or raise "
            "the server's --max-lora-rank and engine.max_lora_rank)"
        )
    if cfg.get("use_dora"):
        problems.append("DoRA (use_dora) is not served; train plain LoRA")
    if cfg.get("modules_to_save"):
        problems.append(
            f"modules_to_save {cfg['modules_to_save']} (fully trained modules) cannot be hot-loaded"
        )
    if cfg.get("bias", "none") != "none":
        problems.append(f"bias={cfg['bias']!r}; train with bias='none'")
    if problems:
        raise ConfigError(
            f"model.lora_r: adapter {str(path)!r} cannot go to the server: " + "; ".join(problems)
        )
    return cfg


class ServerEngine:
    """The :class:`~slea.engine.Engine` of a generation server (generate mode only).

    Args:
        learner: the policy being trained (an :class:`~slea.policy.hf.HFPolicy` in generate
            mode): its tokenizer, prompt format, parser, stop tokens and sampling settings are
            used, and its LoRA adapter is what :meth:`sync` sends.
        urls: server base URLs (``http://host:port``); requests go round robin.
        adapter_dir: where adapters are written (the servers must be able to read it).
        model: served base model name; empty = the first base model the server lists.
        concurrency: requests in flight at once.
        timeout_s: seconds to wait for one response; connect_timeout_s: for a connection.
        retries: retries of a request that fails in transport or with HTTP 408/429/5xx.
        backoff_s: first retry delay (doubles each retry).
        max_lora_rank: largest adapter rank the servers take (vLLM's ``--max-lora-rank``).
        transport: an ``httpx`` transport (tests use one to talk to an app in process).

    Raises :class:`~slea.errors.EngineError` when a server cannot be reached at construction
    and :class:`~slea.errors.ConfigError` when ``model`` is not served.
    """

    def __init__(
        self,
        learner: Any,
        *,
        urls: Sequence[str],
        adapter_dir: str | os.PathLike[str],
        model: str = "",
        concurrency: int = 16,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_lora_rank: int = 16,
        transport: Any = None,
    ) -> None:
        httpx: Any = require("httpx", "serve", "the server engine")
        if getattr(learner, "mode", None) != "generate":
            raise ConfigError(
                "engine.kind: a server engine acts in generate mode only; set policy.mode=generate"
            )
        if isinstance(urls, str) or not urls:
            raise ConfigError(
                "engine.url: give one or more server URLs, e.g. http://127.0.0.1:8000"
            )
        if concurrency < 1 or retries < 0 or backoff_s < 0 or timeout_s <= 0 or max_lora_rank < 1:
            raise ConfigError(
                "engine: concurrency and max_lora_rank must be >= 1, retries and backoff_s >= 0, "
                "timeout_s > 0"
            )
        self.mode = "generate"
        self.learner = learner
        self.urls = [u.rstrip("/") for u in urls]
        self.adapter_dir = Path(adapter_dir).resolve()
        self.retries, self.backoff_s, self.max_lora_rank = (
            int(retries),
            float(backoff_s),
            max_lora_rank,
        )
        self._httpx = httpx
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="slea-engine")
        self._turn = itertools.count()
        self._lock = threading.RLock()
        self._version = 0
        self._adapter_version: int | None = None  # the version of the last adapter sync() saved
        self._loaded: dict[str, int | None] = dict.fromkeys(self.urls)  # adapter version per URL
        self._loads = dict.fromkeys(self.urls, 0)  # successful loads per URL
        self._tag = hashlib.sha256(str(self.adapter_dir).encode()).hexdigest()[:8]
        try:
            self.model, self.max_model_len = self._probe(model)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- the Engine protocol
    @property
    def version(self) -> int:
        """The policy version this engine acts with (set by :meth:`sync`)."""
        return self._version

    def encode_prompt(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The learner's prompt ids (the server never sees text)."""
        return list(self.learner.encode_prompt(messages))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the learner's tokenizer."""
        return int(self.learner.count_tokens(text))

    def act(
        self,
        prompts: Sequence[Sequence[int]],
        admissible: Sequence[Sequence[str]] | None = None,
        *,
        greedy: bool = False,
        generator: Any = None,
        temperature: float | None = None,
    ) -> list[ActionRecord]:
        """One record per prompt: a server-sampled response parsed into an action (``admissible``
        is ignored: generate mode). Seeds are drawn from ``generator``; ``greedy`` sends
        temperature 0, ``temperature`` replaces the learner's for this call. A prompt the servers could not answer through the retries gets a record
        with ``error`` set; any other failure raises :class:`~slea.errors.EngineError`."""
        if not prompts:
            return []
        seeds = _seeds(generator, len(prompts))
        urls = self._ready_urls()
        if not urls:
            why = (
                f"no server holds the adapter of policy version {self._version} "
                f"(loading it failed on {', '.join(self.urls)}); refusing to act with older weights"
            )
            return [self._failed(p, why) for p in prompts]
        futures = [
            self._pool.submit(self._complete, [int(t) for t in p], seed, greedy, urls, temperature)
            for p, seed in zip(prompts, seeds, strict=True)
        ]
        wait(futures)
        records: list[ActionRecord] = []
        for p, f in zip(prompts, futures, strict=True):
            exc = f.exception()
            if isinstance(exc, _Unavailable):
                records.append(self._failed(p, str(exc)))
            elif exc is not None:
                raise exc
            else:
                records.append(self._record(p, f.result()))
        return records

    def sync(self, learner: Learner, version: int) -> None:
        """Save ``learner``'s LoRA adapter as ``adapter_dir/v<version>``, check it, load it into
        every server under a new name and unload the previous one.

        A server that cannot be reached now keeps the older adapter and is not asked to act
        until a later :meth:`act` loads the new one; a server that refuses the adapter is an
        :class:`~slea.errors.EngineError`.
        """
        if version < self._version:
            raise ValueError(f"version: {version} is older than the current {self._version}")
        model = getattr(learner, "model", None)
        if model is None or not hasattr(model, "peft_config"):
            raise ConfigError(
                "model.lora_r: a server engine takes the trained weights as a LoRA adapter and "
                "this learner has none; set model.lora_r (e.g. 8), or engine.kind=local"
            )
        with self._lock:
            path = save_adapter(model, self.adapter_dir / f"v{version}")
            check_adapter(path, self.max_lora_rank)
            self._version = self._adapter_version = int(version)
            for url in self.urls:
                self._load(url)
            self._prune()

    # ---------------------------------------------------------------- requests
    def _served_name(self) -> str:
        if self._adapter_version is None:
            return self.model
        return self._adapter_name(self._adapter_version)

    def _adapter_name(self, version: int) -> str:
        return f"slea-{self._tag}-v{version}"

    def _post(self, path: str, body: Mapping[str, Any], urls: Sequence[str]) -> tuple[str, Any]:
        """POST ``body`` with retries and backoff, moving to the next URL on each retry; returns
        the URL and a response whose status is not retryable, or raises :class:`_Unavailable`."""
        last = ""
        for attempt in range(self.retries + 1):
            url = urls[next(self._turn) % len(urls)]
            try:
                resp = self._client.post(url + path, json=dict(body))
            except self._httpx.TransportError as exc:
                last = f"{url}{path}: {type(exc).__name__}: {exc}"
            else:
                if resp.status_code not in RETRY_STATUS:
                    return url, resp
                last = f"{url}{path}: HTTP {resp.status_code}: {_message(resp)}"
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise _Unavailable(f"no answer after {self.retries + 1} tries; last: {last}")

    def _complete(
        self,
        prompt: list[int],
        seed: int | None,
        greedy: bool,
        urls: list[str],
        temperature: float | None = None,
    ) -> _Reply:
        """One completion request for ``prompt`` (reloading a lost adapter once)."""
        L = self.learner
        reloaded = False
        while True:
            loads = dict(self._loads)
            name = self._served_name()
            body: dict[str, Any] = {
                "model": name,
                "prompt": prompt,
                "max_tokens": L.max_new_tokens,
                "temperature": 0.0 if greedy else (temperature or L.temperature),
                "top_p": 1.0 if greedy else L.top_p,
                "stop_token_ids": list(L.stop_ids),
                "logprobs": 0,
                "return_token_ids": True,
                "add_special_tokens": False,
                "skip_special_tokens": True,
                "n": 1,
            }
            if seed is not None:
                body["seed"] = seed
            url, resp = self._post("/v1/completions", body, urls)
            lost = resp.status_code == 404 and self._adapter_version is not None
            if lost and not reloaded:  # a restarted server forgot the adapter: load it again
                with self._lock:
                    if self._loads[url] != loads[url]:  # another request just did
                        continue
                    reloaded = True
                    self._loaded[url] = None
                    if self._load(url):
                        continue
            return self._parse(url, resp, prompt, name)

    def _parse(self, url: str, resp: Any, prompt: list[int], name: str) -> _Reply:
        where = f"POST {url}/v1/completions (model {name!r}, prompt of {len(prompt)} tokens)"
        if resp.status_code == 404:
            raise EngineError(
                f"{where}: HTTP 404: {_message(resp)}; set engine.model to a model the server "
                f"lists (GET {url}/v1/models), or check that it still holds slea's adapters"
            )
        if resp.status_code != 200:
            fix = (
                f"check that prompt.max_prompt_tokens + policy.max_new_tokens fits the server's "
                f"max_model_len ({self.max_model_len})"
                if resp.status_code == 400
                else "check the server's log"
            )
            raise EngineError(f"{where}: HTTP {resp.status_code}: {_message(resp)}; {fix}")
        try:
            data = resp.json()
        except ValueError:
            raise EngineError(
                f"{where}: the answer is not JSON ({resp.text[:120]!r}); is engine.url an "
                "OpenAI-compatible completions server?"
            ) from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
            raise EngineError(f"{where}: expected one choice in 'choices', got {str(data)[:200]}")
        choice = choices[0]
        ids, echoed = choice.get("token_ids"), choice.get("prompt_token_ids")
        if ids is None or echoed is None:
            raise EngineError(
                f"{where}: the answer has no token ids (token_ids, prompt_token_ids); the server "
                f"must honour return_token_ids: use vLLM >= {VLLM_MIN_VERSION} or `slea serve`"
            )
        if not _int_list(ids) or not _int_list(echoed):
            raise EngineError(f"{where}: token_ids / prompt_token_ids are not lists of token ids")
        if echoed != prompt:
            at = next(
                (i for i, (a, b) in enumerate(zip(echoed, prompt, strict=False)) if a != b), None
            )
            at = min(len(echoed), len(prompt)) if at is None else at
            raise EngineError(
                f"{where}: the server changed the prompt (it echoed {len(echoed)} ids, {len(prompt)} "
                f"were sent; first difference at position {at}); make sure it takes token ids as "
                "they are (add_special_tokens false, no truncate_prompt_tokens) and serves the "
                "same model and tokenizer as model.path"
            )
        lps = (choice.get("logprobs") or {}).get("token_logprobs")
        if (
            not isinstance(lps, list)
            or len(lps) != len(ids)
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in lps)
        ):
            raise EngineError(
                f"{where}: expected one log-prob per token in logprobs.token_logprobs "
                f"({len(ids)} tokens), got {str(lps)[:120]}"
            )
        if len(ids) > self.learner.max_new_tokens:
            raise EngineError(
                f"{where}: {len(ids)} tokens came back for max_tokens={self.learner.max_new_tokens}"
            )
        return _Reply(url, tuple(ids), tuple(float(x) for x in lps))

    def _record(self, prompt: Sequence[int], reply: _Reply) -> ActionRecord:
        raw = self.learner.tokenizer.decode(list(reply.token_ids), skip_special_tokens=True)
        action = self.learner.parser(raw)
        return ActionRecord(
            prompt_ids=tuple(int(t) for t in prompt),
            response_ids=reply.token_ids,
            logprobs=reply.logprobs,
            text=action or "",
            raw_text=raw,
            valid=action is not None,
        )

    @staticmethod
    def _failed(prompt: Sequence[int], why: str) -> ActionRecord:
        return ActionRecord(
            prompt_ids=tuple(int(t) for t in prompt),
            response_ids=(),
            logprobs=(),
            valid=False,
            error=f"generation server: {why}",
        )

    # ---------------------------------------------------------------- models and adapters
    def _probe(self, model: str) -> tuple[str, int | None]:
        """Check every server answers ``GET /v1/models`` and serves ``model``; returns the model
        name and the smallest ``max_model_len`` they report (None when none does)."""
        chosen, lengths = model, []
        for url in self.urls:
            resp, error = None, None
            for attempt in range(self.retries + 1):
                try:
                    resp = self._client.get(url + "/v1/models")
                    break
                except self._httpx.TransportError as exc:
                    error = exc
                    if attempt < self.retries:
                        time.sleep(self.backoff_s * 2**attempt)
            if resp is None:
                raise EngineError(
                    f"engine.url: cannot reach the generation server at {url} (GET /v1/models: "
                    f"{type(error).__name__}: {error}); {SETUP_HINT}"
                )
            cards: Any = None
            try:
                cards = resp.json().get("data") if resp.status_code == 200 else None
                names = [str(c["id"]) for c in cards or ()]
            except (ValueError, KeyError, TypeError, AttributeError):
                cards, names = None, []
            if not cards:
                raise EngineError(
                    f"GET {url}/v1/models: HTTP {resp.status_code}, no model list "
                    f"({resp.text[:120]!r}); is engine.url an OpenAI-compatible server?"
                )
            bases = [c for c in cards if not c.get("parent")]
            chosen = chosen or str((bases or cards)[0]["id"])
            card = next((c for c in cards if c["id"] == chosen), None)
            if card is None:
                raise ConfigError(
                    f"engine.model: {chosen!r} is not served by {url} (it serves {names}); set "
                    "engine.model to one of them"
                )
            if isinstance(card.get("max_model_len"), int):
                lengths.append(int(card["max_model_len"]))
        return chosen, min(lengths) if lengths else None

    def _ready_urls(self) -> list[str]:
        """The URLs whose adapter is the current version (loading it where it is missing)."""
        if self._adapter_version is None:
            return list(self.urls)
        with self._lock:
            return [u for u in self.urls if self._loaded[u] == self._version or self._load(u)]

    def _load(self, url: str) -> bool:
        """Load the current adapter into ``url`` and unload its previous one; False when the
        server cannot be reached (it stays behind), EngineError when it refuses."""
        version = self._adapter_version
        assert version is not None
        name, path = self._adapter_name(version), self.adapter_dir / f"v{version}"
        body = {"lora_name": name, "lora_path": str(path)}
        for again in (False, True):
            try:
                _, resp = self._post("/v1/load_lora_adapter", body, [url])
            except _Unavailable as exc:
                warnings.warn(f"{url}: adapter {name} not loaded yet: {exc}", stacklevel=2)
                return False
            text = _message(resp)
            if resp.status_code == 400 and "already" in text and not again:
                self._unload(url, name)  # a resumed run's leftover of the same name
                continue
            if resp.status_code != 200:
                raise EngineError(
                    f"POST {url}/v1/load_lora_adapter ({name}, {path}): HTTP {resp.status_code}: "
                    f"{text}; the server must run with LoRA enabled and runtime loading allowed "
                    "(vLLM: --enable-lora --max-lora-rank >= model.lora_r and "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) and read adapter_dir at the same path"
                )
            break
        previous, self._loaded[url] = self._loaded[url], version
        self._loads[url] += 1
        if previous is not None and previous != version:
            self._unload(url, self._adapter_name(previous))
        return True

    def _unload(self, url: str, name: str) -> None:
        """Unload ``name`` from ``url``, best effort (a server that forgot it is fine)."""
        try:
            self._post("/v1/unload_lora_adapter", {"lora_name": name}, [url])
        except _Unavailable as exc:
            warnings.warn(f"{url}: adapter {name} not unloaded: {exc}", stacklevel=2)

    def _prune(self) -> None:
        """Delete our adapter directories (``v<int>``) that neither the policy nor a server holds."""
        keep = {self._version, *(v for v in self._loaded.values() if v is not None)}
        for d in self.adapter_dir.glob("v*"):
            if d.is_dir() and d.name[1:].isdigit() and int(d.name[1:]) not in keep:
                shutil.rmtree(d, ignore_errors=True)

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Stop the request threads and close the connections (adapters stay loaded)."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return (
            f"ServerEngine(urls={self.urls}, model={self.model!r}, version={self._version}, "
            f"adapter={self._served_name()!r})"
        )


__all__ = ["RETRY_STATUS", "VLLM_MIN_VERSION", "ServerEngine", "check_adapter", "save_adapter"]
