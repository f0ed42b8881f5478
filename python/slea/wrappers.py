"""Retrieval from an experience library as a ``gymnasium.Wrapper``, for any text env and trainer.

:class:`ExperienceRetrieval` does, at ``reset`` and after every ``step``, what slea's own rollout
does before each action: the observation is mapped to its observation cluster
(``clusterer.assign``), the library is asked for that cluster's experiences
(``library.retrieve(cluster_id, observation)``: the cluster's pool, else the semantic fallback),
and the experiences that fit ``budget_tokens`` go into ``info``::

    import gymnasium, slea
    from slea.wrappers import ExperienceRetrieval

    env = ExperienceRetrieval(gymnasium.make("slea/Sokoban-v0"), library,
                              slea.ObservationClusterer(), budget_tokens=200,
                              system_message=True)
    obs, info = env.reset(seed=0)
    info["experiences"]     # [{"id": 3, "text": "...", "zone": "strategy", "level": "pattern"}, ...]
    info["system_message"]  # rules + "Tips: ... Avoid: ..." within 200 tokens (system_message=True)
    info["cluster_id"]      # the observation's cluster (int)

The policy, the prompt format and the update stay the caller's: put ``info["system_message"]``
(or your own rendering of ``info["experiences"]``) into the prompt of the next action. After the
episode, ``library.record_outcome(env.episode_experience_ids, success)`` credits what was shown.

Token counting: with ``tokenizer`` (a Hugging Face tokenizer, a ``tokenizers.Tokenizer``, any
object with ``encode(text)``, or a callable ``text -> int``) the block is measured in its tokens;
without one, a text counts ``ceil(len(text) / 4)`` tokens (about four characters per token, the
usual ratio of English text under BPE tokenizers; pass the policy's tokenizer when the budget
must be exact).

The wrapper reads the library (``retrieve`` links fallback hits to the cluster, as in training)
and never evolves it. For a vector env, wrap each sub-env: ``info`` keys are merged per env.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium
from gymnasium import spaces

from slea.experience.embed import check_embeddings
from slea.experience.library import ExperienceLibrary
from slea.experience.prompt import DEFAULT_RULES, render_experiences
from slea.experience.prompt import system_message as render_system_message

#: Text used to check a token counter and the smallest possible block (one one-word tip).
_PROBE = "Tips:\n- Go."


def approx_token_count(text: str) -> int:
    """Approximate token count of ``text``: ``ceil(len(text) / 4)`` (about 4 characters a token)."""
    return math.ceil(len(text) / 4)


def token_counter(tokenizer: Any = None) -> Callable[[str], int]:
    """A ``text -> number of tokens`` function for ``tokenizer``.

    ``None`` gives :func:`approx_token_count`; an object with ``encode`` is asked for the ids of
    the text without special tokens (``encode(text, add_special_tokens=False)``, or
    ``encode(text)`` where that keyword is not accepted; a ``tokenizers.Encoding`` counts its
    ``ids``); any other callable must return the count itself.
    """
    if tokenizer is None:
        return approx_token_count
    encode = getattr(tokenizer, "encode", None)
    if callable(encode):

        def count(text: str) -> int:
            try:
                out = encode(text, add_special_tokens=False)
            except TypeError:
                out = encode(text)
            return len(getattr(out, "ids", out))

        return count
    if callable(tokenizer):
        return lambda text: int(tokenizer(text))
    raise TypeError(
        "tokenizer: expected None, an object with encode(text) (a Hugging Face tokenizer) or a "
        f"callable text -> int, got {type(tokenizer).__name__}"
    )


def _check_counter(count: Callable[[str], int]) -> None:
    try:
        n = count(_PROBE)
    except Exception as exc:
        raise TypeError(f"tokenizer: counting the tokens of a short text failed: {exc}") from exc
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise TypeError(f"tokenizer: a token count must be an int >= 0, got {n!r}")


def _check_env(env: Any) -> None:
    if not isinstance(env, gymnasium.Env):
        raise TypeError(f"env: expected a gymnasium.Env, got {type(env).__name__}")
    space = getattr(env, "observation_space", None)
    if not isinstance(space, spaces.Text):
        raise TypeError(
            "env: ExperienceRetrieval needs a text env (observation_space a gymnasium.spaces.Text, "
            f"observations str); this env's observation space is {space!r}"
        )


def _library_dim(library: ExperienceLibrary) -> int:
    return int(json.loads(library._inner.params_json())["dim"])


def _check_library(library: Any, embedder: Any) -> None:
    if not isinstance(library, ExperienceLibrary):
        raise TypeError(f"library: expected a slea.ExperienceLibrary, got {type(library).__name__}")
    dim = _library_dim(library)
    own = library.embedder
    if own.dim != dim:
        raise ValueError(
            f"library: its index holds {dim}-dimensional vectors but its embedder {own.name!r} "
            f"gives {own.dim}; load it with ExperienceLibrary.load(path, embedder=<the embedder "
            "it was built with>)"
        )
    try:  # a broken embedder fails here, not in the middle of an episode
        check_embeddings(own, ["probe"])
    except ValueError as exc:
        raise ValueError(f"library: its embedder does not work: {exc}") from exc
    if embedder is not None:
        edim = getattr(embedder, "dim", None)
        if edim != dim:
            raise ValueError(
                f"embedder: gives {edim}-dimensional vectors but the library was built with "
                f"{own.name!r} ({dim} dimensions); use one embedder for both"
            )


def _check_budget(budget_tokens: Any, count: Callable[[str], int], library: Any) -> int:
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, numbers.Integral):
        raise TypeError(f"budget_tokens: expected an int, got {type(budget_tokens).__name__}")
    need = count(_PROBE)
    shortest = [
        count(t)
        for t, _ in (render_experiences([e], count, 1 << 30) for e in library.entries())
        if t
    ]
    if shortest:
        need = max(need, min(shortest))
    if budget_tokens < need:
        raise ValueError(
            f"budget_tokens: {budget_tokens} tokens fit no experience (the shortest one needs "
            f"{need}); raise budget_tokens"
        )
    return int(budget_tokens)


def _count_or_none(name: str, v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
        raise ValueError(f"{name}: expected None or an int >= 0, got {v!r}")
    return int(v)


class ExperienceRetrieval(gymnasium.Wrapper[str, Any, str, Any]):
    """Add the library's experiences for each observation to ``info`` (see the module docs).

    Args:
        env: a text env (``observation_space`` a ``gymnasium.spaces.Text``, observations str).
        library: the :class:`slea.ExperienceLibrary` to retrieve from (read, never evolved).
        clusterer: maps an observation to its cluster id: ``assign(text) -> int`` or
            ``assign_batch([text]) -> [int]`` (a :class:`slea.ObservationClusterer`).
        budget_tokens: most tokens of the experience block (the ``Tips:``/``Avoid:`` lines);
            the retrieved experiences, strategies and warnings alternating, are each kept if the
            block still fits. Must fit at least the shortest entry of the library.
        tokenizer: counts tokens (see the module docs); None = ``ceil(len(text) / 4)``.
        system_message: also put ``info["system_message"]``: ``rules`` followed by the block
            (exactly ``rules`` when nothing was retrieved).
        rules: the first paragraph of the system message.
        embedder: optional; the embedder of the caller's own pipeline, checked to give vectors of
            the library's dimension (the library embeds its fallback queries with its own).
        k_strategy, k_warning: how many of each zone to retrieve (default: the library's).

    ``info`` gains ``experiences`` (a list of ``{"id", "text", "zone", "level"}`` dicts, in
    retrieval order), ``cluster_id`` and, when asked, ``system_message``.
    """

    def __init__(
        self,
        env: gymnasium.Env[str, Any],
        library: ExperienceLibrary,
        clusterer: Any,
        *,
        budget_tokens: int = 200,
        tokenizer: Any = None,
        system_message: bool = False,
        rules: str = DEFAULT_RULES,
        embedder: Any = None,
        k_strategy: int | None = None,
        k_warning: int | None = None,
    ) -> None:
        _check_env(env)
        _check_library(library, embedder)
        if callable(getattr(clusterer, "assign", None)):
            self._assign: Callable[[str], int] = lambda text: int(clusterer.assign(text))
        elif callable(getattr(clusterer, "assign_batch", None)):
            self._assign = lambda text: int(clusterer.assign_batch([text])[0])
        else:
            raise TypeError(
                "clusterer: expected an object with assign(text) or assign_batch(texts) "
                f"(a slea.ObservationClusterer), got {type(clusterer).__name__}"
            )
        if not isinstance(system_message, bool):
            raise TypeError(f"system_message: expected a bool, got {type(system_message).__name__}")
        if not isinstance(rules, str):
            raise TypeError(f"rules: expected a str, got {type(rules).__name__}")
        self._count = token_counter(tokenizer)
        _check_counter(self._count)
        self.budget_tokens = _check_budget(budget_tokens, self._count, library)
        super().__init__(env)
        self.library = library
        self.clusterer = clusterer
        self.system_message = system_message
        self.rules = rules
        self._k = (_count_or_none("k_strategy", k_strategy), _count_or_none("k_warning", k_warning))
        self.episode_experience_ids: set[int] = set()
        """Ids of the experiences shown since the last reset (for ``library.record_outcome``)."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Reset the env; ``info`` carries the experiences for the first observation."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode_experience_ids = set()
        return obs, self._augment(obs, info)

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; ``info`` carries the experiences for the new observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._augment(obs, info)

    def retrieve(self, observation: str) -> tuple[int, list[Any], str]:
        """``(cluster id, experiences within the budget, their Tips/Avoid block)`` for a text."""
        if not isinstance(observation, str):
            raise TypeError(
                f"env: observations must be str for ExperienceRetrieval, got "
                f"{type(observation).__name__}"
            )
        cluster_id = self._assign(observation)
        found = self.library.retrieve(cluster_id, observation, *self._k)
        block, ids = render_experiences(found, self._count, self.budget_tokens)
        chosen = set(ids)
        return cluster_id, [e for e in found if e.id in chosen], block

    def _augment(self, obs: str, info: dict[str, Any]) -> dict[str, Any]:
        cluster_id, shown, _ = self.retrieve(obs)
        self.episode_experience_ids.update(e.id for e in shown)
        out = dict(info)
        out["cluster_id"] = cluster_id
        out["experiences"] = [
            {"id": e.id, "text": e.text, "zone": e.zone, "level": e.level} for e in shown
        ]
        if self.system_message:
            out["system_message"] = render_system_message(
                self.rules, shown, self._count, self.budget_tokens
            )[0]
        return out


__all__ = ["ExperienceRetrieval", "approx_token_count", "token_counter"]
