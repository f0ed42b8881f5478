"""How a :class:`~slea.train.trainer.Trainer` builds its parts from a :class:`TrainConfig`.

The run directory, vector envs on a task source's splits, the policy (a local model, or a tiny
model built offline with a tokenizer trained on random-walk texts of the training tasks) with its
KL reference, the prompt settings, clusterer, library and distiller, and the RNG state a
checkpoint keeps. Each function is usable on its own (e.g. to build the same policy in a
notebook).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slea.clustering import CanonSpec, ObservationClusterer
from slea.engine import Engine
from slea.envs.tasks import Task, TaskSource
from slea.envs.vector import SleaVectorEnv, make_vec, unbatch_infos
from slea.errors import ConfigError, SleaError
from slea.experience.evolve import Distiller
from slea.experience.evolve import make_distiller as make_evolution_distiller
from slea.experience.library import ExperienceLibrary
from slea.experience.prompt import DEFAULT_RULES, GENERATE_SUFFIX
from slea.policy.hf import HFPolicy, LoraSpec, enable_gradient_checkpointing
from slea.rollout import PromptSettings
from slea.rundir import (
    CONFIG,
    LOCK,
    MANIFEST,
    METRICS,
    CheckpointManager,
    verify_manifest,
    write_manifest,
)
from slea.train.config import TrainConfig

# ---------------------------------------------------------------------------- run directory


def check_env_id(env_id: str) -> None:
    """Raise EnvError naming the fix if ``env_id`` is not a registered gymnasium id (or a
    ``module:EnvId`` whose module registers ``EnvId`` when imported)."""
    from slea.envs.check import resolve_env_id

    resolve_env_id(env_id, key="env.id")


def model_dir(cfg: TrainConfig) -> Path | None:
    """The pretrained model directory of ``model.path`` or ``model.preset`` (checked, so a
    missing one is a ConfigError naming the key and the fix), or None for a tiny model."""
    if cfg.model.preset:
        from slea.models import resolve_preset

        return resolve_preset(cfg.model.preset)
    if cfg.model.path and not (Path(cfg.model.path) / "config.json").is_file():
        raise ConfigError(
            f"model.path: {cfg.model.path!r} is not a model directory (no config.json); give a "
            "local Hugging Face model directory, or leave model.path empty to build a tiny model"
        )
    return Path(cfg.model.path) if cfg.model.path else None


def prepare_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    """Create the run directory and write ``config.yaml``.

    Refuses a directory that already holds files unless ``run.overwrite`` (then the previous
    run's metrics, checkpoints and report are removed). The caller holds the run's lock.
    """
    if run_dir.exists() and any(p.name != LOCK for p in run_dir.iterdir()):
        if not cfg.run.overwrite:
            raise ConfigError(
                f"run.dir: {str(run_dir)!r} already holds a run; resume it with "
                f"`slea train --resume {run_dir}`, choose another run.dir, or set run.overwrite=true"
            )
        for name in (
            METRICS,
            "checkpoints",
            "report",
            "summary.json",
            "tb",
            "eval",
            "model_init",
            "adapters",
            "sft_model",
        ):
            p = run_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(run_dir / CONFIG)


def open_run(
    run_dir: str | os.PathLike[str], iteration: int | None = None
) -> tuple[TrainConfig, Path | None]:
    """The saved config of a run and its latest checkpoint (verified), or None if it has none;
    with ``iteration``, that iteration's checkpoint (an error naming the kept ones if absent)."""
    rd = Path(run_dir)
    if not (rd / CONFIG).is_file():
        raise SleaError(
            f"{str(run_dir)!r} is not a run directory (no config.yaml); start a run with "
            "`slea train --config FILE`"
        )
    cfg = TrainConfig.from_yaml(rd / CONFIG, [f"run.dir={rd}"])
    manager = CheckpointManager(rd, cfg.checkpoint.keep_last)
    if iteration is None:
        chosen = manager.latest()
        if chosen is None:
            return cfg, None
    else:
        kept = dict(manager.list())
        if iteration not in kept:
            names = ", ".join(str(i) for i in kept) or "none"
            raise SleaError(
                f"iteration: run {str(run_dir)!r} has no checkpoint of iteration {iteration} "
                f"(kept: {names})"
            )
        chosen = (iteration, kept[iteration])
    CheckpointManager.verify(chosen[1])
    return cfg, chosen[1]


def config_changes(cfg: TrainConfig, checkpoint: Path) -> dict[str, list[Any]]:
    """Keys whose values in ``cfg`` differ from the config saved with ``checkpoint``, as
    ``{"update.lr": [saved, now]}`` ({} for a checkpoint that saved no config)."""
    saved_file = checkpoint / CONFIG
    if not saved_file.is_file():
        return {}
    saved = TrainConfig.from_yaml(saved_file, [f"run.dir={cfg.run.dir}"])
    a, b = _leaves(saved.to_dict()), _leaves(cfg.to_dict())
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def seal_model_init(path: Path) -> None:
    """Write the checksummed manifest of a run's ``model_init`` (the tiny model, the KL
    reference), so that a damaged file is found before it is loaded."""
    write_manifest(path, {"slea_model_init": 1})


def check_model_init(path: Path) -> None:
    """Verify ``model_init`` against its manifest (a run made before manifests has none: skip)."""
    if (path / MANIFEST).is_file():
        verify_manifest(
            path,
            f"the run's initial model {path}",
            "it is the run's tokenizer and KL reference and cannot be rebuilt exactly; restore it "
            "from a copy or start a new run",
        )


# ---------------------------------------------------------------------------- envs and tasks


def make_venv(cfg: TrainConfig, tasks: TaskSource, split: str, num_envs: int) -> SleaVectorEnv:
    """A slea vector env of ``num_envs`` envs that play the tasks of ``split``."""
    kwargs = dict(cfg.env.kwargs)
    kwargs.setdefault("max_episode_steps", cfg.rollout.max_steps)
    kwargs.update(tasks.env_kwargs(split))
    return make_vec(cfg.env.id, num_envs, mode=cfg.env.vector_mode, **kwargs)


def tokenizer_corpus(cfg: TrainConfig, venv: SleaVectorEnv, tasks: Sequence[Task]) -> list[str]:
    """Texts of random-walk episodes on the training tasks, plus the prompt scaffolding."""
    rng = random.Random(cfg.train.seed)
    scaffold = [
        DEFAULT_RULES,
        GENERATE_SUFFIX,
        cfg.prompt.rules,
        "### System\n### User\n### Assistant\nTask:\nHistory:\nNow:\nActions:",
        'Tips:\n- Worked step: when you saw "x", the right action was "y".\nAvoid:\n- ',
    ]
    texts = scaffold * 50  # frequent enough that every scaffold word becomes one token
    n = cfg.model.tokenizer_corpus_episodes * max(len(tasks), 1)
    specs = (
        [dict(tasks[i % len(tasks)].options) for i in range(n)] if tasks else [{} for _ in range(n)]
    )
    for lo in range(0, len(specs), venv.num_envs):
        wave = specs[lo : lo + venv.num_envs]
        opts = wave + [wave[0]] * (venv.num_envs - len(wave))
        obs, infos = venv.reset(seed=cfg.train.seed + lo, options={"env_options": opts})
        info = unbatch_infos(infos, venv.num_envs)
        texts.extend(str(o) for o in obs)
        texts.extend(str(i.get("task", "")) for i in info)
        for _ in range(cfg.rollout.max_steps):
            acts = []
            for i in info:
                adm = list(i.get("admissible_actions", [])) or ["look"]
                texts.extend(adm)
                acts.append(rng.choice(adm))
            obs, _, _, _, infos = venv.step(acts)
            new = unbatch_infos(infos, venv.num_envs)
            info = [n_ if n_ else o_ for n_, o_ in zip(new, info, strict=True)]
            texts.extend(str(o) for o in obs)
    return texts


# ---------------------------------------------------------------------------- model and memory


def make_policy(
    cfg: TrainConfig, init: Path, checkpoint: Path | None, *, reference: bool = True
) -> HFPolicy:
    """The policy on ``init`` (weights from ``checkpoint`` when resuming), with its KL reference.

    The reference is the initial policy: a frozen copy of ``init`` (with LoRA, the same model with
    its adapters disabled). None is kept when the KL is off, the weights are frozen, or
    ``reference`` is false (a reader that only evaluates).
    """
    import copy

    lora = None
    if cfg.model.lora_r:
        lora = LoraSpec(
            r=cfg.model.lora_r, alpha=cfg.model.lora_alpha, target_modules=cfg.model.lora_targets
        )
    kwargs: dict[str, Any] = dict(
        mode=cfg.policy.mode,
        temperature=cfg.policy.temperature,
        top_p=cfg.policy.top_p,
        max_new_tokens=cfg.policy.max_new_tokens,
        parser=cfg.policy.parser,
        end_of_action=cfg.policy.end_of_action or None,
        score_chunk=cfg.policy.score_chunk,
        action_score=cfg.policy.action_score,
    )
    load: dict[str, Any] = dict(dtype=cfg.model.dtype, device=cfg.model.device)
    if checkpoint is not None and lora is None:
        policy = HFPolicy.from_pretrained(init, **load, **kwargs)
        policy.model.load_state_dict(load_weights(checkpoint / "model", cfg.model.dtype))
    else:
        policy = HFPolicy.from_pretrained(init, lora=lora, **load, **kwargs)
        if checkpoint is not None:
            load_adapter(policy.model, checkpoint / "model")
    if cfg.model.gradient_checkpointing:
        enable_gradient_checkpointing(policy.model)
    if reference and cfg.update.kl_beta > 0 and cfg.train.update_policy and lora is None:
        if checkpoint is None:
            policy.set_reference(copy.deepcopy(policy.model))
        else:
            policy.set_reference(HFPolicy.from_pretrained(init, **load, **kwargs).model)
    return policy


def adapter_dir(cfg: TrainConfig) -> Path:
    """Where a server engine writes the adapters: ``engine.adapter_dir``, else ``RUN/adapters``."""
    e = cfg.engine
    return Path(e.adapter_dir) if e.adapter_dir else Path(cfg.run.dir) / "adapters"


def make_engine(cfg: TrainConfig, policy: HFPolicy, *, adapters: Path | None = None) -> Engine:
    """What acts in rollouts: ``policy`` itself (``engine.kind: local``), or a
    :class:`~slea.policy.server.ServerEngine` on ``engine.url`` (``server``), checked at once:
    the servers answer and serve ``engine.model``, prompt plus response fit their context, and
    the initial LoRA adapter (policy version 0) is loaded. ``adapters`` replaces
    :func:`adapter_dir` (a reader of a run uses a directory of its own)."""
    e = cfg.engine
    if e.kind == "local":
        return policy
    from slea.policy.server import ServerEngine

    engine = ServerEngine(
        policy,
        urls=e.url,
        adapter_dir=adapters or adapter_dir(cfg),
        model=e.model,
        concurrency=e.concurrency,
        timeout_s=e.timeout_s,
        connect_timeout_s=e.connect_timeout_s,
        retries=e.retries,
        backoff_s=e.backoff_s,
        max_lora_rank=e.max_lora_rank,
    )
    try:
        need = cfg.prompt.max_prompt_tokens + cfg.policy.max_new_tokens
        if engine.max_model_len is not None and need > engine.max_model_len:
            raise ConfigError(
                f"prompt.max_prompt_tokens + policy.max_new_tokens = {need} is above the server's "
                f"max_model_len {engine.max_model_len}; lower them or serve a longer context"
            )
        if cfg.model.lora_r:
            engine.sync(policy, 0)
    except BaseException:
        engine.close()
        raise
    return engine


def load_weights(path: Path, dtype: str) -> dict[str, Any]:
    """The state dict of a model saved with ``save_pretrained`` (shards and tied weights handled)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), local_files_only=True
    )
    return dict(model.state_dict())


def load_adapter(model: Any, path: Path) -> None:
    """Load saved LoRA adapter weights into a peft model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))


def canon_spec(name: str) -> CanonSpec:
    """The canonicalisation rules named by ``clustering.canon``."""
    return CanonSpec.textworld() if name == "textworld" else CanonSpec.default()


def lists_actions(cfg: TrainConfig) -> bool:
    """Whether prompts list the admissible actions: ``prompt.show_admissible`` when set, else
    yes for a pretrained model (``model.path`` or ``model.preset``: a model that can read the
    list; without it a chat model scores actions as free text and never picks ``take coin``,
    docs/TOKENS.md) and no for the tiny model; always in generate mode."""
    if cfg.policy.mode == "generate":
        return True
    if cfg.prompt.show_admissible is not None:
        return bool(cfg.prompt.show_admissible)
    return bool(cfg.model.path or cfg.model.preset)


def prompt_settings(cfg: TrainConfig) -> PromptSettings:
    """The prompt layout of ``cfg`` (generate mode always lists the admissible actions)."""
    rules = cfg.prompt.rules or DEFAULT_RULES
    if cfg.policy.mode == "generate" and cfg.policy.parser == "tag":
        rules = f"{rules} {GENERATE_SUFFIX}"
    return PromptSettings(
        rules=rules,
        history_window=cfg.prompt.history_window,
        history_chars=cfg.prompt.history_chars,
        show_admissible=lists_actions(cfg),
        budget_tokens=cfg.retrieval.budget_tokens,
        max_prompt_tokens=cfg.prompt.max_prompt_tokens,
        history_format=cfg.prompt.history_format,
        example=tuple(cfg.prompt.example),
    )


def make_clusterer(cfg: TrainConfig) -> ObservationClusterer:
    """An empty observation clusterer as configured."""
    c = cfg.clustering
    return ObservationClusterer(
        threshold=c.threshold, canon=canon_spec(c.canon), max_clusters=c.max_clusters or None
    )


def make_library(cfg: TrainConfig) -> ExperienceLibrary:
    """An empty experience library as configured."""
    return ExperienceLibrary(cfg.library)


def make_distiller(cfg: TrainConfig, policy: HFPolicy) -> Distiller:
    """The evolution distiller (an LLM distiller on the policy's weights, or the rules)."""
    return make_evolution_distiller(cfg.evolution, model=policy.model, tokenizer=policy.tokenizer)


# ---------------------------------------------------------------------------- RNG state


def mix(*parts: Any) -> int:
    """A 63-bit seed derived from ``parts`` (stable across runs and processes)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's global RNGs."""
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state(sample_rng: torch.Generator, task_rng: np.random.Generator) -> dict[str, Any]:
    """Every RNG state a checkpoint needs, as JSON-able values."""
    return {
        "python": random.getstate()[1],
        "torch": torch.get_rng_state().tolist(),
        "sample": sample_rng.get_state().tolist(),
        "tasks": task_rng.bit_generator.state,
    }


def set_rng_state(
    state: dict[str, Any], sample_rng: torch.Generator, task_rng: np.random.Generator
) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate((3, tuple(state["python"]), None))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    sample_rng.set_state(torch.tensor(state["sample"], dtype=torch.uint8))
    task_rng.bit_generator.state = state["tasks"]
