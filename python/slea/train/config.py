"""Training configuration: small frozen dataclasses split by concern, loaded from YAML.

A YAML file mirrors the nesting (``update.lr``, ``rollout.group_size``, ...)::

    cfg = TrainConfig.from_yaml("examples/configs/textworld_cpu.yaml", ["update.lr=3e-4"])
    cfg.update.lr                      # 0.0003
    cfg.to_yaml(run_dir / "config.yaml")

Every key has a default and a one-line meaning (the docstring under the field). Unknown keys,
wrong types and bad values raise :class:`slea.ConfigError` naming the key, the valid keys and the
fix. Importing this module imports no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from slea.errors import ConfigError
from slea.experience.evolve import EvolutionConfig
from slea.experience.library import LibraryConfig
from slea.policy.tiny import TinyModelSpec


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


@dataclass(frozen=True)
class RunConfig:
    """Where the run lives."""

    dir: str = "runs/textworld"
    """Run directory (config.yaml, metrics.jsonl, checkpoints/, report/, model_init/)."""
    overwrite: bool = False
    """Replace an existing run directory instead of refusing to start."""


@dataclass(frozen=True)
class LoopConfig:
    """The outer training loop."""

    iterations: int = 100
    """Training iterations (one rollout batch + one update + one evolution step each)."""
    seed: int = 0
    """Seed of every random choice (task sampling, action sampling, model init)."""
    time_budget_s: float = 0.0
    """Stop after this many seconds of training (0 = no limit); evaluation is not counted."""
    max_env_steps: int = 0
    """Stop once this many env steps were collected (0 = no limit): equal budgets for comparisons."""
    update_policy: bool = True
    """False keeps the weights frozen and evolves only the library (training-free mode)."""
    evolve_library: bool = True
    """False skips library evolution (plain GRPO/GiGPO baselines, with retrieval.enabled=false)."""
    deterministic: bool = True
    """Use torch deterministic algorithms (bitwise-reproducible resume on CPU)."""
    threads: int = 1
    """torch intra-op threads (on CPU: 1 when the env dominates, the core count when the update does)."""

    def __post_init__(self) -> None:
        _check(self.iterations >= 0, "train.iterations", f"must be >= 0, got {self.iterations}")
        _check(self.time_budget_s >= 0, "train.time_budget_s", "must be >= 0")
        _check(self.max_env_steps >= 0, "train.max_env_steps", "must be >= 0")
        _check(self.threads >= 1, "train.threads", f"must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class ModelConfig:
    """Which causal LM to train."""

    path: str = ""
    """Local Hugging Face model directory; empty builds a tiny random model (see ``tiny``)."""
    tiny: TinyModelSpec = field(default_factory=TinyModelSpec)
    """Shape of the tiny model built when ``path`` is empty (its tokenizer is trained on env texts)."""
    tokenizer_corpus_episodes: int = 4
    """Tiny model: random-walk episodes per training game whose texts train the tokenizer."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16 or float16."""
    device: str = "cpu"
    """torch device, e.g. cpu or cuda."""
    lora_r: int = 0
    """LoRA rank (0 = train all weights)."""
    lora_alpha: int = 16
    """LoRA alpha."""
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Linear layers that get LoRA adapters."""

    def __post_init__(self) -> None:
        _check(
            self.dtype in ("float32", "bfloat16", "float16"),
            "model.dtype",
            f"must be float32, bfloat16 or float16, got {self.dtype!r}",
        )
        _check(self.lora_r >= 0, "model.lora_r", "must be >= 0")
        _check(
            self.tokenizer_corpus_episodes >= 1, "model.tokenizer_corpus_episodes", "must be >= 1"
        )


@dataclass(frozen=True)
class PolicyConfig:
    """How the model acts (see slea.policy.hf)."""

    mode: str = "choice"
    """choice: score the admissible actions; generate: sample text and parse an action."""
    temperature: float = 1.0
    """Sampling temperature (over action scores in choice mode, over tokens in generate mode)."""
    top_p: float = 1.0
    """Nucleus sampling in generate mode (1.0 = off)."""
    max_new_tokens: int = 32
    """Generate mode: longest response in tokens."""
    parser: str = "tag"
    """Generate mode: tag (<action>...</action>), last_line or first_line."""
    end_of_action: str = ""
    """Token ending each action (empty = the tokenizer's eos token)."""
    score_chunk: int = 64
    """Choice mode: prompts scored per forward pass."""

    def __post_init__(self) -> None:
        _check(
            self.mode in ("choice", "generate"),
            "policy.mode",
            f"must be choice or generate, got {self.mode!r}",
        )
        _check(self.temperature > 0, "policy.temperature", f"must be > 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, "policy.top_p", f"must be in (0, 1], got {self.top_p}")
        _check(self.max_new_tokens >= 1, "policy.max_new_tokens", "must be >= 1")
        _check(
            self.parser in ("tag", "last_line", "first_line"),
            "policy.parser",
            f"must be tag, last_line or first_line, got {self.parser!r}",
        )
        _check(self.score_chunk >= 1, "policy.score_chunk", "must be >= 1")


@dataclass(frozen=True)
class GamesConfig:
    """Generated TextWorld games (used when env.id is slea/TextWorld-v0)."""

    kind: str = "coin"
    """Game family: coin (coin collector) or treasure (treasure hunter)."""
    level: int = 3
    """Difficulty level (walkthrough length for coin/treasure)."""
    train: int = 48
    """Number of training games."""
    test: int = 16
    """Number of held-out test games (disjoint seeds)."""
    seed: int = 0
    """Seed of the first training game; test games use seeds after the training ones."""
    cache_dir: str = ""
    """Where generated games are cached (empty = <run dir>/../.games, shared between runs)."""
    compass_augment: bool = False
    """Play each training task under a random one of the 8 compass symmetries (rotations and
    reflections of north/east/south/west in every text; the map is the same). Breaks the tie
    between a training game and fixed direction words that a small model otherwise memorises;
    evaluation plays the games as they are. TextWorld only (a ConfigError for other envs)."""

    def __post_init__(self) -> None:
        _check(self.train >= 1, "env.games.train", f"must be >= 1, got {self.train}")
        _check(self.test >= 0, "env.games.test", f"must be >= 0, got {self.test}")
        _check(self.level >= 1, "env.games.level", f"must be >= 1, got {self.level}")


@dataclass(frozen=True)
class EnvConfig:
    """The environment."""

    id: str = "slea/TextWorld-v0"
    """A registered gymnasium id (see `slea envs list`)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for gymnasium.make."""
    games: GamesConfig = field(default_factory=GamesConfig)
    """Generated games for TextWorld."""
    vector_mode: str = "sync"
    """sync: envs step in this process; async: one process per env."""

    def __post_init__(self) -> None:
        _check(bool(self.id), "env.id", "must name a registered gymnasium environment")
        _check(self.vector_mode in ("sync", "async"), "env.vector_mode", "must be sync or async")


@dataclass(frozen=True)
class RolloutConfig:
    """Multi-turn rollouts: B tasks x G episodes in lock-step."""

    tasks_per_iteration: int = 6
    """B: distinct tasks (games) per iteration."""
    group_size: int = 6
    """G: episodes per task (the group of the advantage estimators)."""
    max_steps: int = 12
    """Step limit per episode."""

    def __post_init__(self) -> None:
        _check(self.tasks_per_iteration >= 1, "rollout.tasks_per_iteration", "must be >= 1")
        _check(self.group_size >= 1, "rollout.group_size", "must be >= 1")
        _check(self.max_steps >= 1, "rollout.max_steps", "must be >= 1")


@dataclass(frozen=True)
class PromptConfig:
    """What the policy sees (slea.experience.prompt)."""

    rules: str = ""
    """Env rules at the top of the system message (empty = the env's default rules)."""
    history_window: int = 3
    """Recent (action, observation) pairs shown in the user message."""
    history_chars: int = 120
    """Each past observation in the history is cut to this many characters."""
    show_admissible: bool = False
    """List the admissible actions in the user message (generate mode always lists them)."""
    mark_tried: bool = False
    """Mark listed actions this episode already took from the same observation cluster with
    ``(tried)``: a within-episode, cluster-keyed memory against loops (needs show_admissible).
    The tiny random-initialised demo model does not learn to use it (benches/RESULTS.md)."""
    max_prompt_tokens: int = 768
    """Longest prompt; the oldest history is dropped first to fit."""

    def __post_init__(self) -> None:
        _check(self.history_window >= 0, "prompt.history_window", "must be >= 0")
        _check(self.history_chars >= 0, "prompt.history_chars", "must be >= 0")
        _check(self.max_prompt_tokens >= 16, "prompt.max_prompt_tokens", "must be >= 16")
        _check(
            self.show_admissible or not self.mark_tried,
            "prompt.mark_tried",
            "needs prompt.show_admissible: true (the marks go on the listed actions)",
        )


@dataclass(frozen=True)
class RetrievalConfig:
    """Per-step experience retrieval (how many per zone: library.k_strategy, library.k_warning)."""

    enabled: bool = True
    """False: never retrieve (plain GRPO/GiGPO prompts); the library still evolves if evolution is on."""
    warmup: int = 5
    """W: iterations before retrieval starts."""
    min_library: int = 10
    """C_min: retrieval starts once the library holds more entries than this."""
    budget_tokens: int = 200
    """Token budget of the experiences in the system message (policy tokenizer)."""
    in_eval: bool = True
    """Use the library during evaluation too (as the paper does)."""
    demonstrations: bool = True
    """Show example entries that carry an (observation, action) pair as a worked step."""
    consistency_k: int = 0
    """Self-consistency cascade: sample k actions without experiences and skip retrieval where
    they agree (0 = off; sampled rollouts only; saved prompt tokens in rollout.cascade_*)."""

    def __post_init__(self) -> None:
        _check(self.consistency_k >= 0, "retrieval.consistency_k", "must be >= 0")
        _check(self.warmup >= 0, "retrieval.warmup", "must be >= 0")
        _check(self.min_library >= 0, "retrieval.min_library", "must be >= 0")
        _check(self.budget_tokens >= 0, "retrieval.budget_tokens", "must be >= 0")


@dataclass(frozen=True)
class ClusteringConfig:
    """Observation clustering (slea.ObservationClusterer)."""

    threshold: float = 0.85
    """Similarity at or above which an observation joins an existing cluster."""
    canon: str = "textworld"
    """Canonicalisation rules: default or textworld."""
    max_clusters: int = 0
    """Cap on clusters (0 = unbounded)."""

    def __post_init__(self) -> None:
        _check(
            0 < self.threshold <= 1,
            "clustering.threshold",
            f"must be in (0, 1], got {self.threshold}",
        )
        _check(
            self.canon in ("default", "textworld"),
            "clustering.canon",
            "must be default or textworld",
        )
        _check(self.max_clusters >= 0, "clustering.max_clusters", "must be >= 0")


@dataclass(frozen=True)
class AdvantageConfig:
    """Advantage estimator (Rust kernels, slea.compute_advantages)."""

    estimator: str = "slea"
    """grpo, gigpo, slea or salt."""
    gamma: float = 0.95
    """Discount of the step returns."""
    mode: str = "mean_norm"
    """mean_norm (subtract the group mean) or mean_std_norm (also divide by the std)."""
    step_weight: float = 1.0
    """w in A = A_episode + w * A_step."""
    invalid_penalty: float = 0.1
    """Subtracted from the return of a step whose action was invalid."""
    revisit_penalty: float = 0.0
    """Subtracted from the reward of a step whose action led back to an observation cluster
    the episode had already seen (a loop); 0 = off."""

    def __post_init__(self) -> None:
        _check(
            self.estimator in ("grpo", "gigpo", "slea", "salt"),
            "advantage.estimator",
            f"must be grpo, gigpo, slea or salt, got {self.estimator!r}",
        )
        _check(0 <= self.gamma <= 1, "advantage.gamma", f"must be in [0, 1], got {self.gamma}")
        _check(
            self.mode in ("mean_norm", "mean_std_norm"),
            "advantage.mode",
            "must be mean_norm or mean_std_norm",
        )
        _check(self.invalid_penalty >= 0, "advantage.invalid_penalty", "must be >= 0")
        _check(self.revisit_penalty >= 0, "advantage.revisit_penalty", "must be >= 0")


LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class UpdateConfig:
    """PPO-clip + KL update (slea.algo.update)."""

    lr: float = 1e-3
    """AdamW learning rate (the peak, with a schedule)."""
    lr_schedule: str = "constant"
    """constant, linear or cosine: decay from ``lr`` at the first iteration to
    ``lr * lr_final_ratio`` at the end of the run: progress is the iteration's fraction of
    ``train.iterations`` or the env steps' fraction of ``train.max_env_steps``, whichever is
    further along (the run stops at whichever budget is spent first)."""
    lr_final_ratio: float = 0.1
    """Learning rate at the end of a linear or cosine schedule, as a fraction of ``lr``."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.999
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    clip_eps: float = 0.2
    """PPO clip range epsilon."""
    kl_beta: float = 0.01
    """Weight of the k3 KL to the frozen initial policy (0 = no reference model)."""
    epochs: int = 1
    """Passes over each rollout batch."""
    minibatches: int = 1
    """Optimizer steps per pass (the batch is split into this many mini-batches)."""
    micro_batch_size: int = 64
    """Steps per forward/backward (gradients are accumulated over micro-batches)."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, "update.lr", f"must be > 0, got {self.lr}")
        _check(
            self.lr_schedule in LR_SCHEDULES,
            "update.lr_schedule",
            f"must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}",
        )
        _check(0 <= self.lr_final_ratio <= 1, "update.lr_final_ratio", "must be in [0, 1]")
        _check(self.weight_decay >= 0, "update.weight_decay", "must be >= 0")
        _check(
            0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "update.beta1", "betas must be in [0, 1)"
        )
        _check(self.grad_clip >= 0, "update.grad_clip", "must be >= 0")
        _check(0 < self.clip_eps < 1, "update.clip_eps", f"must be in (0, 1), got {self.clip_eps}")
        _check(self.kl_beta >= 0, "update.kl_beta", "must be >= 0")
        _check(self.epochs >= 1, "update.epochs", "must be >= 1")
        _check(self.minibatches >= 1, "update.minibatches", "must be >= 1")
        _check(self.micro_batch_size >= 1, "update.micro_batch_size", "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation."""

    every: int = 0
    """Evaluate every N iterations during training (0 = only before and after)."""
    episodes_per_task: int = 4
    """Sampled episodes per test game."""
    greedy: bool = True
    """Also run one greedy episode per test game."""
    max_tasks: int = 0
    """Evaluate on at most this many test games (0 = all)."""
    train_tasks: int = 16
    """Also evaluate (sampled) on this many training games at the end (0 = skip)."""
    evolve: bool = False
    """Let the library evolve during evaluation episodes (test-time evolution)."""

    def __post_init__(self) -> None:
        _check(self.every >= 0, "eval.every", "must be >= 0")
        _check(self.episodes_per_task >= 1, "eval.episodes_per_task", "must be >= 1")
        _check(self.max_tasks >= 0 and self.train_tasks >= 0, "eval.max_tasks", "must be >= 0")


@dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoints under <run>/checkpoints/iter_N."""

    every: int = 10
    """Save every N iterations (the last iteration is always saved)."""
    keep_last: int = 3
    """Keep this many most recent checkpoints."""

    def __post_init__(self) -> None:
        _check(self.every >= 1, "checkpoint.every", "must be >= 1")
        _check(self.keep_last >= 1, "checkpoint.keep_last", "must be >= 1")


@dataclass(frozen=True)
class LoggingConfig:
    """Where metrics go (metrics.jsonl always)."""

    progress: bool = True
    """Show a rich progress bar."""
    tensorboard: bool = True
    """Also write TensorBoard events when tensorboard is installed."""
    wandb_project: str = ""
    """Also log to this Weights & Biases project (needs wandb)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; see the section classes for each key."""

    run: RunConfig = field(default_factory=RunConfig)
    """Run directory."""
    train: LoopConfig = field(default_factory=LoopConfig)
    """Outer loop: iterations, seed, budget."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The causal LM."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """How it acts."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The environment and its games."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Batch shape of the rollouts."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """Prompt layout."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    """Experience retrieval."""
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    """Observation clusters."""
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    """Advantage estimator."""
    update: UpdateConfig = field(default_factory=UpdateConfig)
    """Policy update."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Logging."""
    library: LibraryConfig = field(default_factory=LibraryConfig)
    """Experience library: capacities, rate limits, novelty, retrieval k (slea.LibraryConfig)."""
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    """Library evolution: eta, top/bottom K, distiller (slea.experience.evolve)."""

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
        """Build from nested mappings, after applying ``a.b=value`` overrides (values are YAML)."""
        raw = _deep_copy(data)
        for item in overrides:
            _apply_override(raw, item)
        return _build(cls, raw, "")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainConfig:
        """Load a YAML file (missing sections and keys take their defaults), then apply overrides."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; pass --config FILE.yaml")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
        return cls.from_dict(data, overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), suitable for YAML or JSON."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        """Write the resolved config atomically."""
        import yaml

        from slea.train.checkpoint import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    def replace(self, *overrides: str) -> TrainConfig:
        """A copy with ``a.b=value`` overrides applied (validated like a loaded file)."""
        return TrainConfig.from_dict(self.to_dict(), overrides)


# ---------------------------------------------------------------------- generic machinery

T = TypeVar("T")


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _apply_override(raw: dict[str, Any], item: str) -> None:
    import yaml

    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"override {item!r} must look like section.key=value (e.g. update.lr=3e-4)"
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = parsed


def valid_keys(cls: type) -> list[str]:
    """Field names of a config dataclass."""
    return [f.name for f in dataclasses.fields(cls)]


def _build(cls: type[T], raw: Any, prefix: str) -> T:
    where = prefix.rstrip(".") or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = valid_keys(cls)
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{prefix}{key}: unknown key{hint}; valid keys in {where}: {', '.join(names)}"
            )
    kwargs = {
        name: _coerce(hints[name], raw[name], f"{prefix}{name}") for name in names if name in raw
    }
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and not str(exc).startswith(where):  # a foreign config class: add our key path
            raise ConfigError(f"{where}: {exc}") from None
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arg in args:  # a value that already has one of the types keeps it (str | float: 0.5)
            if isinstance(arg, type) and isinstance(value, arg) and not isinstance(value, bool):
                return value
        errors = []
        for arg in sorted(args, key=lambda a: a is str):  # str accepts anything: try it last
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {value!r}")
    if tp is Any:
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (elem, *_rest) = typing.get_args(tp) or (Any,)
        return tuple(_coerce(elem, v, key) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


__all__ = [
    "AdvantageConfig",
    "CheckpointConfig",
    "ClusteringConfig",
    "EnvConfig",
    "EvalConfig",
    "GamesConfig",
    "LoggingConfig",
    "LoopConfig",
    "ModelConfig",
    "PolicyConfig",
    "PromptConfig",
    "RetrievalConfig",
    "RolloutConfig",
    "RunConfig",
    "TrainConfig",
    "UpdateConfig",
    "valid_keys",
]
