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
import math
import os
import types
import typing
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from slea.algo.advantages import AdvantageConfig
from slea.algo.update import UpdateConfig
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
    preset: str = ""
    """A pretrained model by name, from the model cache (``slea models list``; fetch it once with
    ``slea models fetch NAME``), e.g. smollm2-135m-instruct. Not together with ``path``."""
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
    gradient_checkpointing: bool = False
    """Recompute decoder-layer activations in the update's backward pass instead of keeping them
    (less memory, about a third more update time); rollouts are unaffected."""

    def __post_init__(self) -> None:
        _check(
            self.dtype in ("float32", "bfloat16", "float16"),
            "model.dtype",
            f"must be float32, bfloat16 or float16, got {self.dtype!r}",
        )
        _check(
            not (self.path and self.preset),
            "model.preset",
            f"give model.path or model.preset, not both (path {self.path!r}, preset {self.preset!r})",
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
    action_score: str = "mean"
    """Choice mode: an action's score is the mean (mean) or the sum (sum) of its token log-probs."""

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
        _check(
            self.action_score in ("mean", "sum"),
            "policy.action_score",
            f"must be mean or sum, got {self.action_score!r}",
        )


ENGINE_KINDS = ("local", "server")


@dataclass(frozen=True)
class EngineConfig:
    """What acts in rollouts (slea.engine): the in-process model, or a generation server that
    speaks vLLM's OpenAI-compatible API (vLLM >= 0.10.2, SGLang, ``slea serve``); docs/SERVER.md."""

    kind: str = "local"
    """local: the trained model acts in this process; server: a generation server acts
    (generate mode only, LoRA only: the trainer loads each new adapter into it)."""
    url: tuple[str, ...] = ()
    """Server base URL(s), e.g. http://127.0.0.1:8000; with several, requests go round robin."""
    model: str = ""
    """Name of the served base model (empty = the first model the server lists)."""
    concurrency: int = 16
    """Requests in flight at once (one request per prompt)."""
    timeout_s: float = 120.0
    """Seconds to wait for one response."""
    connect_timeout_s: float = 5.0
    """Seconds to wait for a connection."""
    retries: int = 3
    """Retries of a request that failed in transport or with HTTP 5xx/429, with backoff."""
    backoff_s: float = 0.5
    """First retry delay in seconds; it doubles on every retry."""
    max_lora_rank: int = 16
    """Largest LoRA rank the server takes (vLLM's --max-lora-rank); checked before loading."""
    adapter_dir: str = ""
    """Where adapters are written for the server to read (empty = <run.dir>/adapters); a server
    on another machine needs this on a file system both see, under the same path. One training
    run at a time uses a directory (a lock, like the run directory's)."""

    def __post_init__(self) -> None:
        _check(
            self.kind in ENGINE_KINDS,
            "engine.kind",
            f"must be one of {', '.join(ENGINE_KINDS)}, got {self.kind!r}",
        )
        _check(
            self.kind != "server" or bool(self.url),
            "engine.url",
            "a server engine needs the server's URL, e.g. engine.url=http://127.0.0.1:8000",
        )
        for url in self.url:
            parts = urllib.parse.urlsplit(url)
            _check(
                parts.scheme in ("http", "https") and bool(parts.netloc),
                "engine.url",
                f"{url!r} is not an http(s) URL; give e.g. http://127.0.0.1:8000",
            )
        _check(self.concurrency >= 1, "engine.concurrency", "must be >= 1")
        _check(self.timeout_s > 0, "engine.timeout_s", "must be > 0")
        _check(self.connect_timeout_s > 0, "engine.connect_timeout_s", "must be > 0")
        _check(self.retries >= 0, "engine.retries", "must be >= 0")
        _check(self.backoff_s >= 0, "engine.backoff_s", "must be >= 0")
        _check(self.max_lora_rank >= 1, "engine.max_lora_rank", "must be >= 1")


@dataclass(frozen=True)
class GamesConfig:
    """Generated tasks: TextWorld games (env.id slea/TextWorld-v0) and Sokoban levels
    (slea/Sokoban-v0: the counts and the seed; kind and level are TextWorld's)."""

    kind: str = "coin"
    """Game family: coin (coin collector) or treasure (treasure hunter)."""
    level: int = 3
    """Difficulty level (walkthrough length for coin/treasure)."""
    train: int = 48
    """Number of training games."""
    test: int = 16
    """Number of held-out test games (disjoint seeds)."""
    valid: int = 0
    """Number of validation games (disjoint seeds; 0 = none). Adding them changes no other
    split's games: each game's seed depends on its split's name."""
    seed: int = 0
    """Seed of the game set: each game's seed is a hash of (kind, level, seed, split, index)
    (slea.envs.textworld.game_seed), so the splits draw their games independently."""
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
        _check(self.valid >= 0, "env.games.valid", f"must be >= 0, got {self.valid}")
        _check(self.level >= 1, "env.games.level", f"must be >= 1, got {self.level}")


@dataclass(frozen=True)
class EnvConfig:
    """The environment."""

    id: str = "slea/TextWorld-v0"
    """A registered gymnasium id (see `slea envs list`), or `module:EnvId` (the module is
    imported first, as gymnasium.make does, so that it can register EnvId)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for gymnasium.make (e.g. Sokoban's width, height, num_boxes;
    ScienceWorld's simplifications)."""
    games: GamesConfig = field(default_factory=GamesConfig)
    """Generated tasks: TextWorld games, Sokoban levels."""
    data_root: str = ""
    """ALFWorld data root (holding json_2.1.1/{train,valid_seen,valid_unseen}); empty =
    $ALFWORLD_DATA, else ~/.cache/alfworld. Splits: train, valid = valid_seen, test = valid_unseen."""
    task_types: tuple[str, ...] = ()
    """Play only these task types (empty = all): ALFWorld's pick, look, clean, heat, cool,
    pick2; ScienceWorld's task names (e.g. boil; empty = all 30); the types of env.tasks."""
    max_tasks_per_type: int = 0
    """At most this many tasks of each type per split, the first in the source's order (0 = all)."""
    tasks: dict[str, Any] = field(default_factory=dict)
    """Explicit tasks of any env, per split (train, valid, test): a list of reset options
    (e.g. [{task_id: 0}, {task_id: 1}]; an entry {name, options, type} names a task and gives
    its type) or the path of a JSONL file with one such entry per line. Replaces the env's own
    task list."""
    vector_mode: str = "sync"
    """sync: envs step in this process; async: one process per env."""

    def __post_init__(self) -> None:
        _check(bool(self.id), "env.id", "must name a registered gymnasium environment")
        _check(self.vector_mode in ("sync", "async"), "env.vector_mode", "must be sync or async")
        _check(self.max_tasks_per_type >= 0, "env.max_tasks_per_type", "must be >= 0 (0 = all)")


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
    show_admissible: bool | None = None
    """List the admissible actions in the user message; empty (null) = automatic: listed for a
    pretrained model (model.path or model.preset), not for the tiny model. Generate mode always
    lists them."""
    max_prompt_tokens: int = 768
    """Longest prompt; the oldest history is dropped first to fit."""
    history_format: str = "lines"
    """Past turns: lines (in the user message) or chat (as assistant/user turns; chat models)."""
    example: tuple[str, ...] = ()
    """A worked exchange shown after the system message: user and assistant texts in pairs
    (e.g. an observation with its actions, then the bare action); teaches a small chat model the
    answer format in generate mode. Empty = none."""

    def __post_init__(self) -> None:
        _check(self.history_window >= 0, "prompt.history_window", "must be >= 0")
        _check(self.history_chars >= 0, "prompt.history_chars", "must be >= 0")
        _check(self.max_prompt_tokens >= 16, "prompt.max_prompt_tokens", "must be >= 16")
        _check(
            self.history_format in ("lines", "chat"),
            "prompt.history_format",
            f"must be lines or chat, got {self.history_format!r}",
        )
        _check(
            len(self.example) % 2 == 0 and all(isinstance(t, str) for t in self.example),
            "prompt.example",
            "must be user and assistant texts in pairs (an even number of strings)",
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
    level: str = "step"
    """``step``: retrieve at every step from that step's observation cluster (SLEA-RL);
    ``task``: retrieve once per episode from its first observation and show the same experiences
    at every step (the paper's task-level ablation)."""

    def __post_init__(self) -> None:
        _check(
            self.level in ("step", "task"),
            "retrieval.level",
            f"must be 'step' or 'task', got {self.level!r}",
        )
        _check(self.warmup >= 0, "retrieval.warmup", "must be >= 0")
        _check(self.min_library >= 0, "retrieval.min_library", "must be >= 0")
        _check(self.budget_tokens >= 0, "retrieval.budget_tokens", "must be >= 0")

    def active(self, iteration: int, library_size: int, *, evaluating: bool = False) -> bool:
        """Whether prompts carry experiences: retrieval is enabled, the warm-up is over and the
        library holds more than ``min_library`` entries. Training iteration ``k`` retrieves
        from ``k > warmup``; an evaluation after ``k`` iterations from ``k >= warmup``."""
        past_warmup = iteration >= self.warmup if evaluating else iteration > self.warmup
        return self.enabled and past_warmup and library_size > self.min_library


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
class EvalConfig:
    """Held-out evaluation."""

    every: int = 0
    """Evaluate every N iterations during training (0 = only before and after)."""
    before: bool = True
    """Evaluate the initial policy before the first iteration (false skips it, e.g. for a baseline
    whose initial policy another run with the same seed and eval settings already evaluated; the
    summary's ``untrained`` is then empty)."""
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
    splits: tuple[str, ...] = ("test",)
    """Held-out splits played at every evaluation (valid and/or test); metrics keys are
    ``<split>_sampled`` and ``<split>_greedy``. Choose recipes on valid; play test once at the
    end of a chosen recipe."""
    temperature: float = 0.0
    """Sampling temperature of the sampled evaluation episodes (0 = ``policy.temperature``);
    greedy episodes take the most likely action either way."""

    def __post_init__(self) -> None:
        _check(self.every >= 0, "eval.every", "must be >= 0")
        _check(self.episodes_per_task >= 1, "eval.episodes_per_task", "must be >= 1")
        _check(self.max_tasks >= 0 and self.train_tasks >= 0, "eval.max_tasks", "must be >= 0")
        _check(
            all(s in ("valid", "test") for s in self.splits)
            and len(set(self.splits)) == len(self.splits),
            "eval.splits",
            f"must be distinct names out of valid and test, got {list(self.splits)}",
        )
        _check(
            self.temperature >= 0,
            "eval.temperature",
            f"must be >= 0 (0 = policy.temperature), got {self.temperature}",
        )


SFT_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SftConfig:
    """Supervised warm start on the envs' walkthroughs (``slea sft``, slea.train.sft)."""

    epochs: int = 2
    """Passes over the walkthrough decisions."""
    lr: float = 1e-4
    """AdamW learning rate (constant)."""
    batch_size: int = 8
    """Decisions (prompt, action) per optimizer step."""
    max_tasks: int = 0
    """Replay the walkthroughs of at most this many training tasks, the first ones (0 = all)."""
    seed: int = 0
    """Seed of the decision order and of the training tasks' augmentation."""
    eval_split: str = "valid"
    """Split evaluated before and after (sampled and greedy, as eval.*); skipped when empty."""

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "sft.epochs", f"must be >= 1, got {self.epochs}")
        _check(
            math.isfinite(self.lr) and self.lr > 0,
            "sft.lr",
            f"must be a finite number > 0, got {self.lr}",
        )
        _check(self.batch_size >= 1, "sft.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.max_tasks >= 0, "sft.max_tasks", "must be >= 0 (0 = all)")
        _check(
            self.eval_split in SFT_SPLITS,
            "sft.eval_split",
            f"must be one of {', '.join(SFT_SPLITS)}, got {self.eval_split!r}",
        )


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
    engine: EngineConfig = field(default_factory=EngineConfig)
    """What acts in rollouts: in process, or a generation server."""
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
    sft: SftConfig = field(default_factory=SftConfig)
    """Supervised warm start on walkthroughs (``slea sft``)."""

    def __post_init__(self) -> None:
        if self.engine.kind == "server":
            _check(
                self.policy.mode == "generate",
                "engine.kind",
                "a server engine acts in generate mode only (choice mode would score every "
                "admissible action with prompt_logprobs, which skip the server's prefix cache); "
                "set policy.mode=generate or engine.kind=local",
            )
            _check(
                self.model.lora_r > 0 or not self.train.update_policy,
                "model.lora_r",
                "a server engine takes the trained weights as a LoRA adapter; set model.lora_r "
                "(e.g. 8), or engine.kind=local to train all weights",
            )
            _check(
                self.model.lora_r <= self.engine.max_lora_rank,
                "model.lora_r",
                f"{self.model.lora_r} is above engine.max_lora_rank={self.engine.max_lora_rank}; "
                "lower model.lora_r, or start the server with a larger --max-lora-rank and set "
                "engine.max_lora_rank to it",
            )

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
            data = yaml.safe_load(p.read_bytes().decode("utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (damaged?)") from None
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
        return cls.from_dict(data, overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), suitable for YAML or JSON."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        """Write the resolved config atomically."""
        import yaml

        from slea.rundir import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    def replace(self, *overrides: str) -> TrainConfig:
        """A copy with ``a.b=value`` overrides applied (validated like a loaded file)."""
        return TrainConfig.from_dict(self.to_dict(), overrides)


# ---------------------------------------------------------------------- removed keys

REMOVED_KEYS: dict[str, tuple[Any, str]] = {
    "advantage.revisit_penalty": (
        0.0,
        "the loop penalty did not hold its gains (benches/RESULTS.md, 'revisit penalty'); "
        "nothing replaces it, delete the key",
    ),
    "prompt.mark_tried": (
        False,
        "the tiny model did not learn to use the '(tried)' marks (benches/RESULTS.md); nothing "
        "replaces it, delete the key",
    ),
    "retrieval.demonstrations": (
        True,
        "example entries are always shown as worked steps; delete the key",
    ),
    "retrieval.consistency_k": (
        0,
        "the self-consistency cascade was never shown to save anything (benches/RESULTS.md); "
        "nothing replaces it, delete the key",
    ),
}
"""Keys that earlier versions accepted: ``key -> (its old default, why it went and what replaces
it)``. A config that sets one to anything but its old default gets a :class:`ConfigError` saying
so; the old default itself (as every earlier run's saved ``config.yaml`` holds it) is dropped, so
those runs still resume and evaluate."""


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
        removed = REMOVED_KEYS.get(f"{prefix}{key}")
        if removed is not None:
            if raw[key] == removed[0] and type(raw[key]) is type(removed[0]):
                continue  # the old default: what an earlier run's config.yaml says
            raise ConfigError(f"{prefix}{key}: this key was removed: {removed[1]}")
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
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


__all__ = [
    "REMOVED_KEYS",
    "AdvantageConfig",
    "CheckpointConfig",
    "ClusteringConfig",
    "EngineConfig",
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
    "SftConfig",
    "TrainConfig",
    "UpdateConfig",
    "valid_keys",
]
