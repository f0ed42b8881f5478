"""Before a run starts: the tasks, their checks, and the plan of ``slea train --dry-run``.

:func:`prepare_tasks` turns a config (and optional task lists or a task source from Python) into
the run's :class:`~slea.envs.tasks.TaskSource`, and checks what can be checked without a model:
an env slea does not ship follows the env contract (:func:`slea.envs.check_contract`), and task
lists given by the user reset without complaint. Every failure is a ConfigError or EnvError
naming the key, raised before any run directory exists.

:func:`dry_run` resolves a config the same way and returns the plan (tasks per split and type,
episodes and steps per iteration, token budgets, an estimate of the update's GPU memory) without
loading weights or writing a run directory; :func:`format_plan` prints it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slea.envs.check import check_contract, check_task_options
from slea.envs.registry import ENVS
from slea.envs.tasks import (
    SPLITS,
    ALFWorldTasks,
    ListedTasks,
    ScienceWorldTasks,
    SokobanTasks,
    Task,
    TaskSource,
    TextWorldTasks,
    task_source,
    typed,
)
from slea.errors import ConfigError, EnvError
from slea.train.config import TrainConfig

_BUILT_IN = (TextWorldTasks, ALFWorldTasks, ScienceWorldTasks, SokobanTasks)

Tasks = TaskSource | Mapping[str, Sequence[Task | Mapping[str, Any]]]
"""What ``slea.Trainer(config, tasks=...)`` takes: a task source, or task lists per split."""


def prepare_tasks(
    config: TrainConfig, tasks: Tasks | None = None
) -> tuple[TrainConfig, TaskSource]:
    """The config of the run and its task source, checked.

    ``tasks`` (from Python) replaces the env's own tasks: a :class:`TaskSource`, or per split
    (``train``, ``valid``, ``test``) a list of :class:`Task` or reset-option mappings. Lists
    that are plain data are written into the config (``env.tasks``), so that the run's
    ``config.yaml`` holds them and a resumed run plays the same tasks.
    """
    if tasks is None:
        source = task_source(config.env)
    elif isinstance(tasks, Mapping):
        plain = _plain_tasks(tasks)
        if plain is not None:
            config = dataclasses.replace(config, env=dataclasses.replace(config.env, tasks=plain))
            source = task_source(config.env)
        else:
            listed = ListedTasks(tasks, key="tasks")
            env = config.env
            source = typed(listed, env.task_types, env.max_tasks_per_type, key="tasks.train")
    elif isinstance(tasks, TaskSource):
        source = typed(tasks, (), 0, key="tasks")
    else:
        raise TypeError(
            "tasks must be a TaskSource or a mapping of split -> list of tasks (reset options), "
            f"got {type(tasks).__name__}"
        )
    check_tasks(config, source, key="tasks" if tasks is not None else "env.tasks")
    return config, source


def _plain_tasks(tasks: Mapping[str, Any]) -> dict[str, Any] | None:
    """``tasks`` as config data (``{name, options, type}`` entries), or None when the options
    are not plain JSON data (such a list is used as it is and not recorded)."""
    out: dict[str, Any] = {}
    for split, entries in tasks.items():
        if isinstance(entries, str) or not isinstance(entries, Sequence):
            out[split] = str(entries) if isinstance(entries, str | Path) else entries
            continue
        out[split] = [
            {"name": e.name, "options": dict(e.options), "type": e.type}
            if isinstance(e, Task)
            else e
            for e in entries
        ]
    try:
        plain: dict[str, Any] = json.loads(json.dumps(out, allow_nan=False))
    except (TypeError, ValueError):
        return None
    return plain if plain == out else None  # tuples or non-str keys would not survive YAML


def _built_in(source: Any) -> bool:
    inner = getattr(source, "inner", source)
    return isinstance(inner, _BUILT_IN)


def check_tasks(cfg: TrainConfig, source: TaskSource, *, key: str = "env.tasks") -> None:
    """An env slea does not ship is checked against the contract on its first training task;
    tasks that did not come from a built-in source reset without complaint (a few of each
    split: see :func:`slea.envs.check.check_task_options`). EnvError naming the key when not."""
    import gymnasium

    env_id = cfg.env.id
    custom = env_id.rpartition(":")[2] not in ENVS
    if not custom and _built_in(source):
        return

    def make(split: str) -> Any:
        kwargs = dict(cfg.env.kwargs)
        kwargs.setdefault("max_episode_steps", cfg.rollout.max_steps)
        kwargs.update(source.env_kwargs(split))
        try:
            return gymnasium.make(env_id, **kwargs)
        except Exception as exc:
            raise EnvError(
                f"env.id: gymnasium.make({env_id!r}, **{sorted(kwargs)}) failed "
                f"({type(exc).__name__}: {exc}); check env.id and env.kwargs"
            ) from None

    if not _built_in(source):  # first the options, so that a rejected one is named as such
        for split in SPLITS:
            tasks = source.tasks(split)
            if tasks:
                check_task_options(functools.partial(make, split), tasks, key=f"{key}.{split}")
    if custom:
        env = make("train")
        try:
            first = source.tasks("train")[0]
            check_contract(
                env, first.options, require_actions=cfg.policy.mode == "choice", raises=True
            )
        finally:
            env.close()


# ---------------------------------------------------------------------------- the plan


BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: What a CPU run's process holds beyond the update's estimate (Python, torch, the tokenizer, the
#: envs, rollouts): peak RSS minus the estimate was 0.93 GiB for the tiny test config (estimate
#: 172 MiB, peak 1.10 GiB) and 1.14 GiB for SmolLM2 recipe B (estimate 4.6 GiB, peak 5.7 GiB).
CPU_PROCESS_BYTES = 2**30
_LORA_SHAPES = {  # module -> (input width, output width) in terms of the model's sizes
    "q_proj": ("h", "q"),
    "k_proj": ("h", "kv"),
    "v_proj": ("h", "kv"),
    "o_proj": ("q", "h"),
    "gate_proj": ("h", "i"),
    "up_proj": ("h", "i"),
    "down_proj": ("i", "h"),
}


def model_shape(cfg: TrainConfig, model_dir: Path | None) -> dict[str, Any]:
    """The sizes of the model (``config.json`` of ``model_dir``, or the tiny model's spec)."""
    if model_dir is None:
        t = cfg.model.tiny
        return {
            "model_type": t.arch,
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_layers,
            "num_attention_heads": t.num_heads,
            "num_key_value_heads": t.num_heads,
            "tie_word_embeddings": True,
        }
    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.path: cannot read {path} ({exc})") from None
    return dict(data.get("text_config", data)) if isinstance(data, dict) else {}


def count_parameters(
    shape: Mapping[str, Any], *, lora_r: int = 0, lora_targets: Sequence[str] = ()
) -> dict[str, int]:
    """Parameters of a decoder-only transformer (Llama / Qwen2 layout) from its config:
    ``{"total": ..., "trainable": ...}`` (trainable = the LoRA adapters when ``lora_r``)."""
    try:
        v, h = int(shape["vocab_size"]), int(shape["hidden_size"])
        i, n_layers = int(shape["intermediate_size"]), int(shape["num_hidden_layers"])
        heads = int(shape["num_attention_heads"])
        kv_heads = int(shape.get("num_key_value_heads") or heads)
        head_dim = int(shape.get("head_dim") or h // heads)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"model.path: config.json lacks the sizes needed to count parameters ({exc}); the "
            "estimate knows Llama/Qwen2-style models"
        ) from None
    q, kv = heads * head_dim, kv_heads * head_dim
    bias = q + 2 * kv if shape.get("model_type") == "qwen2" or shape.get("attention_bias") else 0
    layer = h * q + 2 * h * kv + q * h + bias + 3 * h * i + 2 * h
    embed = v * h * (1 if shape.get("tie_word_embeddings", False) else 2)
    total = embed + n_layers * layer + h
    widths = {"h": h, "q": q, "kv": kv, "i": i}
    lora = sum(
        lora_r * (widths[a] + widths[b])
        for name, (a, b) in _LORA_SHAPES.items()
        if name in lora_targets
    )
    return {"total": total, "trainable": n_layers * lora if lora_r else total}


def update_memory(cfg: TrainConfig, shape: Mapping[str, Any]) -> dict[str, float]:
    """A rough estimate (bytes) of the GPU memory the update needs on one device (one DDP
    replica): weights, gradients and AdamW's two states of the trainable parameters (LoRA
    adapters are kept in float32), the frozen reference model when the KL is on without LoRA,
    and the activations of one micro-batch of the longest sequences: every layer's (or, with
    ``model.gradient_checkpointing``, every layer's input plus one layer's recomputed
    activations), plus the logits of every position and float32 log-softmax of the responses."""
    m = cfg.model
    b = BYTES[m.dtype]
    n = count_parameters(shape, lora_r=m.lora_r, lora_targets=m.lora_targets)
    tb = 4 if m.lora_r else b
    updating = cfg.train.update_policy
    seq = cfg.prompt.max_prompt_tokens + cfg.policy.max_new_tokens
    tokens = cfg.update.micro_batch_size * seq
    h, i, layers = (
        int(shape[k]) for k in ("hidden_size", "intermediate_size", "num_hidden_layers")
    )
    v = int(shape["vocab_size"])
    response_rows = cfg.update.micro_batch_size * cfg.policy.max_new_tokens
    out = {
        "weights": float(n["total"] * b),
        "gradients": float(n["trainable"] * tb) if updating else 0.0,
        "adamw": float(2 * n["trainable"] * tb) if updating else 0.0,
        "reference": float(n["total"] * b)
        if updating and cfg.update.kl_beta > 0 and not m.lora_r
        else 0.0,
        "activations": float(
            tokens
            * (layers * h + 8 * h + 3 * i if m.gradient_checkpointing else layers * (8 * h + 3 * i))
            * b
            + tokens * v * b
            + response_rows * v * 8
        )
        if updating
        else 0.0,
    }
    out["total"] = sum(out.values())
    return out


def dry_run(cfg: TrainConfig) -> dict[str, Any]:
    """Resolve ``cfg`` as a run would (env id, model directory or preset, tasks, library) and
    return the plan; loads no weights and writes no run directory."""
    from slea.experience.library import ExperienceLibrary
    from slea.train import setup

    setup.check_env_id(cfg.env.id)
    model_dir = setup.model_dir(cfg)
    cfg, source = prepare_tasks(cfg)
    ExperienceLibrary(cfg.library)  # the library's settings are checked by building one
    shape = model_shape(cfg, model_dir)
    params = count_parameters(shape, lora_r=cfg.model.lora_r, lora_targets=cfg.model.lora_targets)
    r = cfg.rollout
    return {
        "env": cfg.env.id,
        "source": type(getattr(source, "inner", source)).__name__,
        "tasks": {
            split: dict(sorted(Counter(t.type for t in source.tasks(split)).items()))
            for split in SPLITS
        },
        "episodes_per_iteration": r.tasks_per_iteration * r.group_size,
        "max_steps_per_iteration": r.tasks_per_iteration * r.group_size * r.max_steps,
        "iterations": cfg.train.iterations,
        "prompt_tokens": cfg.prompt.max_prompt_tokens,
        "response_tokens": cfg.policy.max_new_tokens,
        "mode": cfg.policy.mode,
        "model": str(model_dir) if model_dir else "tiny (built from model.tiny)",
        "parameters": params,
        "dtype": cfg.model.dtype,
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "memory": (memory := update_memory(cfg, shape)),
        "cpu_ram": memory["total"] + CPU_PROCESS_BYTES,
        "library": {
            "strategy_capacity": cfg.library.strategy_capacity,
            "warning_capacity": cfg.library.warning_capacity,
        },
        "run_dir": cfg.run.dir,
        "run_dir_exists": Path(cfg.run.dir).exists(),
    }


def format_plan(plan: Mapping[str, Any]) -> str:
    """The plan as printed by ``slea train --dry-run``."""

    def gb(x: float) -> str:
        return f"{x / 2**30:.1f} GiB" if x >= 2**30 else f"{x / 2**20:.0f} MiB"

    def count(n: int) -> str:
        return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"

    def split_line(types: Mapping[str, int]) -> str:
        total = sum(types.values())
        named = ", ".join(f"{k} {n}" for k, n in types.items() if k)
        return f"{total}" + (f" ({named})" if named else "")

    p, mem = plan["parameters"], plan["memory"]
    lines = [
        "dry run: the config resolves; no weights were loaded and nothing was written",
        f"env        {plan['env']} ({plan['source']})",
        "tasks      " + " | ".join(f"{s} {split_line(t)}" for s, t in plan["tasks"].items()),
        f"iteration  {plan['episodes_per_iteration']} episodes, at most "
        f"{plan['max_steps_per_iteration']} env steps; {plan['iterations']} iterations",
        f"tokens     prompt <= {plan['prompt_tokens']}, response <= {plan['response_tokens']} "
        f"(policy.mode {plan['mode']})",
        f"model      {plan['model']}: {count(p['total'])} parameters, "
        f"{count(p['trainable'])} trainable, {plan['dtype']}",
        f"library    capacity per level: strategies {plan['library']['strategy_capacity']}, "
        f"warnings {plan['library']['warning_capacity']}",
        "memory     update on one GPU (an estimate"
        + (", gradient checkpointing" if plan.get("gradient_checkpointing") else "")
        + "): "
        + " + ".join(f"{k} {gb(v)}" for k, v in mem.items() if k != "total" and v)
        + f" = {gb(mem['total'])}",
        f"           on CPU, the whole process: about {gb(plan['cpu_ram'])} of RAM per run "
        "(the update plus about 1 GiB)",
        f"run dir    {plan['run_dir']}"
        + (" (exists: set run.overwrite=true or resume it)" if plan["run_dir_exists"] else ""),
    ]
    return "\n".join(lines)


__all__ = [
    "Tasks",
    "check_tasks",
    "count_parameters",
    "dry_run",
    "format_plan",
    "model_shape",
    "prepare_tasks",
    "update_memory",
]
