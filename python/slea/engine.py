"""The engine seam: what rollouts and the update need of a policy, whatever runs it.

Two roles, two small protocols:

:class:`Engine` (used by :mod:`slea.rollout`)
    Turns chat messages into prompt token ids, acts on a batch of prompts (``choice`` mode picks
    one of the admissible actions, ``generate`` mode samples text and parses an action) and
    returns one token-exact :class:`ActionRecord` per prompt. After each policy update the
    trainer calls :meth:`Engine.sync` with the learner and the new policy version; the engine
    acts with those weights from then on and reports the version it acts with.

:class:`Learner` (used by :mod:`slea.algo.update`)
    The trainable side: recomputes the log-probs of given records (with gradients) and under
    the frozen reference policy (for the KL term), and lists its trainable parameters.

The in-process Hugging Face policy (:class:`slea.policy.hf.HFPolicy`) is both at once: its
``sync`` only records the version, because it acts with the very weights the update changes. An
engine that generates elsewhere (a generation server) keeps the same ``act`` contract and loads
the learner's weights or adapter in ``sync``; the trainer does not change.

Records are token-exact: the update scores exactly the ``prompt_ids`` and ``response_ids`` that
were acted on and never re-tokenises text. The old log-probs in a record are those the engine
reported; in process the update's ratio uses them as the behaviour policy's. With an engine that
acts elsewhere (another numerical path), the trainer recomputes them with the learner before the
update and keeps the engine's for the diagnostics (``slea.algo.update.recompute_old_logprobs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch

MODES = ("choice", "generate")
"""How an engine acts: pick among the admissible actions, or generate text."""


@dataclass(frozen=True)
class ActionRecord:
    """What the policy did at one decision step, token-exact.

    Attributes:
        prompt_ids: token ids of the rendered prompt.
        response_ids: choice mode: the chosen action's ids (with the end-of-action token);
            generate mode: the sampled tokens (with the stop token when one was sampled).
        logprobs: the old log-probs (the PPO "units"): choice mode has one, ``log pi(action)``;
            generate mode has one per response token.
        candidates: choice mode: every admissible action's ids (with the end-of-action token).
        index: choice mode: index of the chosen action in ``candidates``; -1 in generate mode.
        text: the action text sent to the environment ("" when invalid in generate mode).
        raw_text: generate mode: the decoded response before parsing.
        valid: False when the parser could not find an action in the response.
        error: why the engine could not act at all (e.g. a generation server stayed unreachable
            through its retries); empty when it acted. Such a record has no response and no
            log-probs, and the rollout ends its episode there, truncated and marked.
    """

    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    candidates: tuple[tuple[int, ...], ...] = ()
    index: int = -1
    text: str = ""
    raw_text: str = ""
    valid: bool = True
    error: str = ""

    @property
    def num_units(self) -> int:
        """Number of loss units (log-probs) this record contributes to the update."""
        return len(self.logprobs)


@runtime_checkable
class Learner(Protocol):
    """The trainable policy the update works on."""

    model: torch.nn.Module
    """The module whose parameters are trained (wrap it in DDP to train on several ranks)."""

    def unit_logprobs(self, records: Sequence[ActionRecord], *, model: Any = None) -> torch.Tensor:
        """Log-probs of the records' units, flat ``[sum num_units]``, with gradients if enabled;
        ``model`` overrides the module that scores them (a DDP wrapper of :attr:`model`)."""
        ...

    def reference_logprobs(self, records: Sequence[ActionRecord]) -> torch.Tensor:
        """The same log-probs under the frozen reference policy (no gradients)."""
        ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the optimizer updates."""
        ...


@runtime_checkable
class Engine(Protocol):
    """What a rollout needs of a policy: prompts to ids, and a batch of prompts to actions."""

    mode: str
    """``choice`` or ``generate``."""

    @property
    def version(self) -> int:
        """The policy version the engine acts with (the number of updates it has taken)."""
        ...

    def encode_prompt(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a chat prompt (``[{"role", "content"}, ...]``) up to the assistant turn."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` (no special tokens): the unit of prompt budgets."""
        ...

    def act(
        self,
        prompts: Sequence[Sequence[int]],
        admissible: Sequence[Sequence[str]] | None = None,
        *,
        greedy: bool = False,
        generator: Any = None,
        temperature: float | None = None,
    ) -> list[ActionRecord]:
        """One token-exact record per prompt; choice mode needs each prompt's admissible
        actions. ``generator`` is the engine's random source (a ``torch.Generator`` in process);
        ``temperature`` replaces the engine's own sampling temperature for this call (evaluation
        at ``eval.temperature``; the records' log-probs are then those of that temperature)."""
        ...

    def sync(self, learner: Learner, version: int) -> None:
        """Act with ``learner``'s current weights from now on, as policy ``version``."""
        ...


__all__ = ["MODES", "ActionRecord", "Engine", "Learner"]
