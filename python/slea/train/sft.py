"""Supervised warm start (SFT) on the envs' walkthroughs, through the same prompt path as RL.

``slea sft`` (:func:`run_sft`) does, in order::

    records = collect_walkthroughs(policy, venv, train tasks)   # replay each walkthrough in the env
    before  = evaluate(sft.eval_split)                          # sampled and greedy
    losses  = train_sft(policy, records, cfg.sft)               # cross-entropy on the action tokens
    after   = evaluate(sft.eval_split)
    save_model(policy, <run>/sft_model)                         # LoRA merged; a model.path

**Same prompts as RL.** A walkthrough (``info["walkthrough"]``: actions that win from the start)
is played through :func:`slea.rollout.collect` itself, by :class:`WalkthroughEngine`, an engine
that answers each step with the walkthrough's next action. So the rollout builds every prompt
(system rules, task, history window, observation, admissible list, token budgets) with the very
code that builds the policy's prompts, encoded by the policy's ``encode_prompt``; the recorded
``prompt_ids`` are token for token those a policy rollout in the same states sees.

**Same action tokens as choice mode.** The target of a decision is the action's tokens followed by
the end-of-action token (``HFPolicy.action_ids``), the sequence choice mode scores. In generate
mode with the ``tag`` parser the target is ``<action>ACTION</action>`` plus the end-of-action
token (what that parser reads); with the line parsers, the action plus the end-of-action token.

**Loss.** Per decision, the mean negative log-prob (temperature 1) of its target tokens, the end-
of-action token included (it carries loss, as it carries score in choice mode); the batch loss is
the mean over its decisions, so each decision weighs the same whatever its length (as choice mode's
length-normalised score). Only the trainable parameters move (the LoRA adapters with
``model.lora_r``, else all weights); AdamW at a constant ``sft.lr``, gradients clipped at
``update.grad_clip``, forward passes of at most ``update.micro_batch_size`` decisions.

Only the **train** split's walkthroughs are used (never valid or test). A task without a
walkthrough, whose walkthrough does not win within ``rollout.max_steps``, or (choice mode) with a
walkthrough action missing from the admissible actions is skipped and counted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from slea.clustering import structural_hash
from slea.engine import ActionRecord, Learner
from slea.envs.tasks import Task
from slea.envs.vector import SleaVectorEnv, unbatch_infos
from slea.errors import ConfigError
from slea.policy.forward import sequence_logprobs
from slea.policy.hf import HFPolicy, parse_tag
from slea.rollout import EpisodeSpec, PromptSettings, Rollout, collect
from slea.rundir import SUMMARY, atomic_write_text, install_dir, staging_dir
from slea.train import setup
from slea.train.config import SftConfig
from slea.train.logging import MetricsLogger, Progress

if TYPE_CHECKING:  # pragma: no cover
    from slea.clustering import CanonSpec
    from slea.train.trainer import Trainer

SFT_MODEL = "sft_model"
"""The run directory's saved model after SFT (a Hugging Face directory with its tokenizer)."""

EXHAUSTED = "walkthrough exhausted"
"""The error of a :class:`WalkthroughEngine` record once its actions are used up."""


def target_ids(policy: HFPolicy, action: str) -> tuple[int, ...]:
    """The token ids a decision trains on: the action's tokens as the policy acts them, followed
    by the end-of-action token (choice mode's scored sequence; see the module docstring)."""
    if policy.mode == "generate" and policy.parser is parse_tag:
        text = f"<action>{action}</action>"
        ids = policy.tokenizer.encode(text, add_special_tokens=False)
        return (*ids, policy.end_of_action_id)
    return policy.action_ids(action)


class WalkthroughEngine:
    """An :class:`~slea.engine.Engine` that plays a fixed list of actions, one prompt at a time.

    Prompts are encoded and budgets counted by ``policy``; :meth:`act` answers with the next
    action of ``actions`` (its ids from :func:`target_ids`; in choice mode with every admissible
    action's ids as candidates and ``index`` the action's place among them, -1 when absent). Once
    the actions are used up it returns an error record, which ends the episode.
    """

    def __init__(self, policy: HFPolicy, actions: Sequence[str]) -> None:
        self.policy = policy
        self.mode = policy.mode
        self.actions = list(actions)
        self.position = 0

    @property
    def version(self) -> int:
        """The policy's version (the engine plays no weights of its own)."""
        return self.policy.version

    def encode_prompt(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The policy's prompt ids."""
        return self.policy.encode_prompt(messages)

    def count_tokens(self, text: str) -> int:
        """The policy's token count."""
        return self.policy.count_tokens(text)

    def act(
        self,
        prompts: Sequence[Sequence[int]],
        admissible: Sequence[Sequence[str]] | None = None,
        *,
        greedy: bool = False,
        generator: Any = None,
        temperature: float | None = None,
    ) -> list[ActionRecord]:
        """The next action for the one prompt (a walkthrough is one episode); ``greedy``,
        ``generator`` and ``temperature`` do not matter (nothing is sampled)."""
        if len(prompts) != 1:
            raise ValueError(f"a WalkthroughEngine plays one episode, got {len(prompts)} prompts")
        prompt = tuple(prompts[0])
        if self.position >= len(self.actions):
            return [ActionRecord(prompt, (), (), error=EXHAUSTED)]
        action = self.actions[self.position]
        self.position += 1
        candidates: tuple[tuple[int, ...], ...] = ()
        index = -1
        if admissible is not None:
            row = list(admissible[0])
            candidates = tuple(self.policy.action_ids(a) for a in row)
            index = row.index(action) if action in row else -1
        ids = target_ids(self.policy, action)
        return [ActionRecord(prompt, ids, (), candidates=candidates, index=index, text=action)]

    def sync(self, learner: Learner, version: int) -> None:
        """Nothing to load: the engine plays no weights."""


# ---------------------------------------------------------------------------- the data


def walkthroughs(
    venv: SleaVectorEnv, tasks: Sequence[Task], seeds: Sequence[int]
) -> list[list[str] | None]:
    """Each task's ``info["walkthrough"]`` after a reset with its seed (None when it has none);
    the tasks are reset in waves of ``venv.num_envs``."""
    n_env = int(venv.num_envs)
    out: list[list[str] | None] = []
    for lo in range(0, len(tasks), n_env):
        wave = tasks[lo : lo + n_env]
        pad = n_env - len(wave)
        options: dict[str, Any] = {"env_options": [dict(t.options) for t in wave] + [None] * pad}
        if pad:
            options["reset_mask"] = np.arange(n_env) < len(wave)
        _, infos = venv.reset(seed=[*seeds[lo : lo + n_env], *[None] * pad], options=options)
        for info in unbatch_infos(infos, n_env)[: len(wave)]:
            walk = info.get("walkthrough")
            out.append([str(a) for a in walk] if walk else None)
    venv.set_idle(range(n_env))
    return out


def replay(
    policy: HFPolicy,
    venv: SleaVectorEnv,
    task: Task,
    actions: Sequence[str],
    *,
    prompt: PromptSettings,
    max_steps: int,
    clusterer: Any,
    canon: CanonSpec,
    seed: int | None = None,
) -> Rollout:
    """Play ``actions`` on ``task`` through :func:`slea.rollout.collect` (one episode, env 0 of
    ``venv``, no retrieval): its records hold the prompts a policy rollout builds in those
    states and :func:`target_ids` as responses. The episode ends when the env ends it, at
    ``max_steps``, or after the last action (truncated, with the error :data:`EXHAUSTED`)."""
    return collect(
        WalkthroughEngine(policy, actions),
        venv,
        [EpisodeSpec(group=0, options=task.options, task_id=task.name)],
        max_steps=max_steps,
        prompt=prompt,
        clusterer=clusterer,
        anchor_fn=lambda text: structural_hash(text, canon),
        action_key_fn=structural_hash,
        seed=seed,
    )


def collect_walkthroughs(
    policy: HFPolicy,
    venv: SleaVectorEnv,
    tasks: Sequence[Task],
    *,
    prompt: PromptSettings,
    max_steps: int,
    make_clusterer: Callable[[], Any],
    canon: CanonSpec,
    seed: int = 0,
) -> tuple[list[ActionRecord], dict[str, Any]]:
    """Replay every task's walkthrough through :func:`slea.rollout.collect`; return the decisions
    (one record per step: ``prompt_ids``, ``response_ids`` = :func:`target_ids`) and a report:
    ``tasks``, ``used``, ``decisions`` and ``skipped`` (reason -> count).

    Each task is played alone (one episode, env 0 of ``venv``, reset seed from ``seed``), with no
    experience retrieval and a fresh clusterer from ``make_clusterer`` (prompts do not depend
    on cluster ids), as at the start of a run.
    """
    seeds = [setup.mix(seed, "sft", i) & 0x7FFFFFFF for i in range(len(tasks))]
    walks = walkthroughs(venv, tasks, seeds)
    records: list[ActionRecord] = []
    skipped = {"no walkthrough": 0, "walkthrough did not win": 0, "action not admissible": 0}
    for task, walk, s in zip(tasks, walks, seeds, strict=True):
        if not walk:
            skipped["no walkthrough"] += 1
            continue
        rollout = replay(
            policy,
            venv,
            task,
            walk,
            prompt=prompt,
            max_steps=max_steps,
            clusterer=make_clusterer(),
            canon=canon,
            seed=s,
        )
        if not rollout.episodes[0].won:
            skipped["walkthrough did not win"] += 1
        elif policy.mode == "choice" and any(r.index < 0 for r in rollout.records):
            skipped["action not admissible"] += 1
        else:
            records.extend(rollout.records)
    used = len(tasks) - sum(skipped.values())
    report = {"tasks": len(tasks), "used": used, "decisions": len(records), "skipped": skipped}
    return records, report


# ---------------------------------------------------------------------------- the loss


def sft_loss(
    policy: HFPolicy, records: Sequence[ActionRecord], *, model: Any = None
) -> torch.Tensor:
    """Mean over ``records`` of each one's mean negative log-prob of its ``response_ids`` given
    its ``prompt_ids`` (temperature 1): a scalar, with gradients when enabled."""
    logps = sequence_logprobs(
        policy.model if model is None else model,
        [r.prompt_ids for r in records],
        [r.response_ids for r in records],
        policy.pad_id,
    )
    sizes = [len(r.response_ids) for r in records]
    per = torch.stack([piece.mean() for piece in torch.split(logps, sizes)])
    return -per.mean()


def mean_loss(policy: HFPolicy, records: Sequence[ActionRecord], micro_batch_size: int) -> float:
    """:func:`sft_loss` over all ``records`` without gradients (in chunks of ``micro_batch_size``)."""
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(records), micro_batch_size):
            chunk = records[lo : lo + micro_batch_size]
            total += float(sft_loss(policy, chunk)) * len(chunk)
    return total / max(len(records), 1)


def train_sft(
    policy: HFPolicy,
    records: Sequence[ActionRecord],
    cfg: SftConfig,
    *,
    micro_batch_size: int = 64,
    grad_clip: float = 1.0,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``policy`` on ``records`` for ``cfg.epochs`` epochs of shuffled batches of
    ``cfg.batch_size`` decisions; return each epoch's mean training loss (decision-weighted).

    ``on_step(steps_done, batch_loss)`` is called after every optimizer step.
    """
    if not records:
        raise ValueError("records: no decisions to train on")
    params = policy.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    order = torch.Generator().manual_seed(setup.mix(cfg.seed, "sft-order"))
    losses, steps = [], 0
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(records), generator=order).tolist()
        total = 0.0
        for lo in range(0, len(perm), cfg.batch_size):
            batch = [records[i] for i in perm[lo : lo + cfg.batch_size]]
            optimizer.zero_grad(set_to_none=True)
            batch_loss = 0.0
            for mlo in range(0, len(batch), micro_batch_size):
                micro = batch[mlo : mlo + micro_batch_size]
                loss = sft_loss(policy, micro) * (len(micro) / len(batch))
                loss.backward()
                batch_loss += float(loss.detach())
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            steps += 1
            total += batch_loss * len(batch)
            if on_step is not None:
                on_step(steps, batch_loss)
        losses.append(total / len(records))
    optimizer.zero_grad(set_to_none=True)
    return losses


# ---------------------------------------------------------------------------- saving


def save_model(policy: HFPolicy, out: Path) -> Path:
    """Write the policy's weights (LoRA adapters merged into the base) and tokenizer to ``out``
    atomically: a Hugging Face directory for ``model.path``. A LoRA policy is merged in place
    (its adapters are gone afterwards)."""
    model = policy.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
        policy.model = model
    staged = staging_dir(out)
    try:
        model.save_pretrained(staged)
        policy.tokenizer.save_pretrained(staged)
        return install_dir(staged, out)
    except BaseException:
        import shutil

        shutil.rmtree(staged, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- the command


def _evaluate(trainer: Trainer, split: str) -> dict[str, Any]:
    ev = trainer.config.eval
    out = {
        "sampled": trainer.evaluate(
            split, episodes_per_task=ev.episodes_per_task, max_tasks=ev.max_tasks
        )
    }
    if ev.greedy:
        out["greedy"] = trainer.evaluate(split, greedy=True, max_tasks=ev.max_tasks)
    return out


def run_sft(trainer: Trainer) -> dict[str, Any]:
    """SFT the trainer's policy on the training tasks' walkthroughs, evaluating ``sft.eval_split``
    before and after; log ``sft`` and ``eval`` records to ``metrics.jsonl``, save the model to
    ``<run>/sft_model`` and the summary to ``summary.json``; return the summary.

    Raises ConfigError naming the env when no training task has a usable walkthrough.
    """
    cfg = trainer.config
    s = cfg.sft
    t0 = time.perf_counter()
    train = trainer.tasks.tasks("train")
    if s.max_tasks:
        train = train[: s.max_tasks]
    played = trainer.tasks.augment(train, np.random.default_rng(setup.mix(s.seed, "sft-augment")))
    assert trainer.venv is not None
    records, data = collect_walkthroughs(
        trainer.policy,
        trainer.venv,
        played,
        prompt=trainer.prompt,
        max_steps=cfg.rollout.max_steps,
        make_clusterer=lambda: setup.make_clusterer(cfg),
        canon=trainer.canon,
        seed=s.seed,
    )
    if not records:
        raise ConfigError(
            f"env.id: no training task of {cfg.env.id} has a usable walkthrough "
            f"(info['walkthrough']) to train on: {data['tasks']} tasks, skipped {data['skipped']}; "
            "SFT needs an env whose tasks have walkthroughs (TextWorld, ALFWorld, Sokoban)"
        )
    collect_s = time.perf_counter() - t0
    split = s.eval_split
    has_eval = bool(trainer.tasks.tasks(split))
    summary: dict[str, Any] = {"run_dir": str(trainer.run_dir), "data": data, "split": split}
    with MetricsLogger(trainer.run_dir, tensorboard=cfg.logging.tensorboard) as logger:
        logger.log({"kind": "sft_data", "iteration": 0, **data, "collect_s": collect_s})
        t = time.perf_counter()
        if has_eval:
            summary["before"] = _evaluate(trainer, split)
            logger.log(
                {"kind": "eval", "iteration": 0, "phase": "before_sft", split: summary["before"]}
            )
        eval_s = time.perf_counter() - t
        n_steps = s.epochs * math.ceil(len(records) / s.batch_size)
        progress = Progress(n_steps, enabled=cfg.logging.progress, label="sft")
        t = time.perf_counter()
        try:
            losses = train_sft(
                trainer.policy,
                records,
                s,
                micro_batch_size=cfg.update.micro_batch_size,
                grad_clip=cfg.update.grad_clip,
                on_step=lambda k, loss: progress.advance(k, f"loss {loss:.4f}"),
            )
        finally:
            progress.close()
        train_s = time.perf_counter() - t
        for epoch, loss in enumerate(losses, 1):
            logger.log({"kind": "sft", "iteration": 0, "epoch": epoch, "loss": loss})
        t = time.perf_counter()
        if has_eval:
            summary["after"] = _evaluate(trainer, split)
            logger.log(
                {"kind": "eval", "iteration": 0, "phase": "after_sft", split: summary["after"]}
            )
        eval_s += time.perf_counter() - t
    summary["model"] = str(save_model(trainer.policy, trainer.run_dir / SFT_MODEL))
    summary["loss"] = losses
    summary["seconds"] = {
        "collect": collect_s,
        "train": train_s,
        "eval": eval_s,
        "total": time.perf_counter() - t0,
    }
    atomic_write_text(trainer.run_dir / SUMMARY, json.dumps(summary, indent=1))
    return summary


__all__ = [
    "EXHAUSTED",
    "SFT_MODEL",
    "WalkthroughEngine",
    "collect_walkthroughs",
    "mean_loss",
    "replay",
    "run_sft",
    "save_model",
    "sft_loss",
    "target_ids",
    "train_sft",
    "walkthroughs",
]
