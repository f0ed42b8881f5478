"""The SLEA-RL training loop: ``slea.Trainer(cfg).fit()``.

One iteration, top to bottom (:meth:`Trainer.train_iteration`)::

    specs      = sample_episodes(tasks, B, G, task_rng)                      # B tasks x G episodes
    rollout    = collect(engine, venv, specs, clusterer, library)             # per-step retrieval
    advantages = compute_advantages(rollout.step_batch(key), estimator)      # Rust, O(n)
    update     = update_policy(policy, optimizer, rollout.records, adv)      # PPO-clip + k3 KL
    engine.sync(policy, version)                                             # act with new weights
    evolution  = evolve_library(library, rollout.episodes, distiller)        # strategies/warnings
    record     = iteration_record(...)  -> metrics.jsonl ; checkpoint every N iterations

The Trainer wires the parts; each lives in its own module and works alone: the engine seam in
:mod:`slea.engine`, rollouts in :mod:`slea.rollout`, the update in :mod:`slea.algo.update`,
evolution in :mod:`slea.experience.evolve`, evaluation in :mod:`slea.train.evaluation`, the
records in :mod:`slea.train.metrics`, the run directory in :mod:`slea.rundir`.

Under ``torchrun`` (several processes) rank 0 collects rollouts, evolves the library, logs and
saves; every rank takes its share of the update (DDP, gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slea.algo.advantages import AdvantageConfig, compute_advantages
from slea.algo.update import make_optimizer, recompute_old_logprobs, scheduled_lr, update_policy
from slea.clustering import ObservationClusterer, structural_hash
from slea.engine import ActionRecord, Engine
from slea.envs.tasks import TaskSource
from slea.envs.vector import SleaVectorEnv
from slea.errors import ConfigError, SleaError
from slea.experience.evolve import evolve_library
from slea.experience.library import ExperienceLibrary
from slea.policy.hf import HFPolicy
from slea.rollout import EpisodeSpec, Rollout, collect
from slea.rundir import (
    CONFIG,
    METRICS,
    MODEL_INIT,
    SUMMARY,
    CheckpointManager,
    RunLock,
    atomic_write_text,
    truncate_metrics,
)
from slea.train import distributed, metrics, preflight, setup
from slea.train.config import TrainConfig
from slea.train.evaluation import Evaluator, memory_copies
from slea.train.logging import MetricsLogger, Progress
from slea.trajectory import Episode

TIMING_KEYS = metrics.TIMING_KEYS
EVAL_RETRIEVAL = ("none", "step", "task")
"""What :meth:`Trainer.evaluate` can be told to retrieve: no library, or per step, or per task."""


def rollout_advantages(rollout: Rollout, cfg: AdvantageConfig) -> Any:
    """The advantages of ``rollout`` under ``cfg``: episode groups plus step groups, keyed by
    observation cluster for the slea estimator and by exact state (anchor) for the others."""
    key = "cluster" if cfg.estimator == "slea" else "anchor"
    return compute_advantages(
        rollout.step_batch(key),
        estimator=cfg.estimator,
        gamma=cfg.gamma,
        mode=cfg.mode,
        step_weight=cfg.step_weight,
        invalid_penalty=cfg.invalid_penalty,
    )


def usable_episodes(rollout: Rollout) -> list[Episode]:
    """The episodes the library may learn from: not those cut short by a failure (a dead env
    worker, a generation server that stayed unreachable), whose end says nothing of the policy."""
    return [e for e in rollout.episodes if not e.error]


def sample_episodes(
    tasks: TaskSource,
    tasks_per_iteration: int,
    group_size: int,
    rng: np.random.Generator,
    *,
    split: str = "train",
) -> list[EpisodeSpec]:
    """``tasks_per_iteration`` tasks of ``split`` drawn from ``rng`` (with replacement only when
    there are fewer tasks), each played by ``group_size`` episodes; training tasks are augmented
    by the task source (held-out ones never are)."""
    pool = tasks.tasks(split)
    if not pool:
        raise ValueError(f"split: the task source has no {split!r} tasks")
    picks = rng.choice(len(pool), size=tasks_per_iteration, replace=tasks_per_iteration > len(pool))
    chosen = [pool[int(t)] for t in picks]
    if split == "train":
        chosen = tasks.augment(chosen, rng)
    return [
        EpisodeSpec(group=b, options=task.options, task_id=task.name)
        for b, task in enumerate(chosen)
        for _ in range(group_size)
    ]


class Trainer:
    """Train a policy with SLEA-RL as configured by ``config``.

    Prepares and checks the env's tasks, creates (or, with :meth:`resume`, reopens) the run
    directory, builds or loads the model, and builds the vector env, clusterer, library and
    optimizer. ``tasks`` replaces the env's own tasks without YAML: a
    :class:`~slea.envs.tasks.TaskSource`, or per split (``train``, ``valid``, ``test``) a list of
    :class:`~slea.envs.tasks.Task` or reset-option mappings (plain lists are written into the
    run's config, so :meth:`resume` plays them again; a source object is not: resume it with
    the same source yourself).

    Attributes:
        policy: the trained policy (the update's :class:`~slea.engine.Learner`).
        engine: what acts in rollouts (:class:`~slea.engine.Engine`; in process, ``policy``).
        tasks: the env's task source.
        iteration, env_steps, next_episode_id, elapsed_s: the run's progress.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        tasks: preflight.Tasks | None = None,
        _checkpoint: Path | None = None,
        _writes: bool = True,
    ) -> None:
        self.rank, self.world = distributed.init_distributed()
        setup.check_env_id(config.env.id)
        self.model_dir = setup.model_dir(config)
        # the tasks (``tasks`` replaces the env's own) are built and checked before the run dir
        self.config, self.tasks = preflight.prepare_tasks(config, tasks)
        cfg = self.config
        self.run_dir = Path(cfg.run.dir)
        torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        self.lock: RunLock | None = None
        self.adapter_lock: RunLock | None = None
        # a reader only evaluates: no lock, no KL reference model, no optimizer state; with a
        # server engine its adapters go to a directory of its own, removed at close, so a run
        # that goes on training keeps its adapters and served names
        self.reader = not _writes
        self.own_adapters: Path | None = None
        if self.reader and cfg.engine.kind == "server":
            tag = f"load-{os.getpid()}-{secrets.token_hex(4)}"
            self.own_adapters = setup.adapter_dir(cfg) / tag
        self.config_changes: dict[str, list[Any]] = {}
        created = adapters_created = False
        if not self.reader and self.rank == 0:  # one process trains in a run directory at a time
            created = not self.run_dir.exists()
            self.lock = RunLock.acquire(self.run_dir)
        try:
            adapters = setup.adapter_dir(cfg).resolve()
            if (
                self.lock is not None
                and cfg.engine.kind == "server"
                and not adapters.is_relative_to(self.run_dir.resolve())
            ):  # a server engine prunes what it finds there and names its adapters after the
                # directory: two runs sharing one would delete and replace each other's
                adapters_created = not adapters.exists()
                self.adapter_lock = RunLock.acquire(
                    adapters, f"adapters of {self.run_dir}", "engine.adapter_dir"
                )
            if _checkpoint is None and self.rank == 0:
                setup.prepare_run_dir(self.run_dir, cfg)
            self._build(_checkpoint)
        except BaseException:
            self.close()
            if created:  # a failed start leaves nothing behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
            if adapters_created:
                shutil.rmtree(adapters, ignore_errors=True)
            raise

    def _build(self, checkpoint: Path | None) -> None:
        cfg = self.config
        setup.seed_everything(cfg.train.seed)
        self.iteration = 0
        self.next_episode_id = 0
        self.env_steps = 0
        self.elapsed_s = 0.0
        self.sample_rng = torch.Generator().manual_seed(cfg.train.seed)
        self.task_rng = np.random.default_rng(cfg.train.seed)
        self.logger: MetricsLogger | None = None
        self.library_stats = metrics.LibraryStats()
        self.venv: SleaVectorEnv | None = None
        if self.rank == 0:
            r = cfg.rollout
            self.venv = setup.make_venv(
                cfg, self.tasks, "train", r.tasks_per_iteration * r.group_size
            )
        self.evaluator = Evaluator(cfg, self.tasks, self.venv)
        init = self.model_dir or self.run_dir / MODEL_INIT
        if self.model_dir is None and (init / "config.json").is_file():
            setup.check_model_init(init)  # the run's own initial model, checked before loading
        elif self.model_dir is None:
            if self.rank == 0:  # a tiny model with a tokenizer trained on the training tasks
                from slea.policy.tiny import build_tiny

                assert self.venv is not None
                corpus = setup.tokenizer_corpus(cfg, self.venv, self.tasks.tasks("train"))
                build_tiny(init, corpus, cfg.model.tiny, seed=cfg.train.seed)
                setup.seal_model_init(init)
            distributed.barrier()
        self.policy: HFPolicy = setup.make_policy(cfg, init, checkpoint, reference=not self.reader)
        # rank 0 acts; a server engine probes its URLs and loads the initial adapter here
        self.engine: Engine = (
            setup.make_engine(cfg, self.policy, adapters=self.own_adapters)
            if self.rank == 0
            else self.policy
        )
        self.ddp_model: torch.nn.Module | None = None
        if self.world > 1 and cfg.train.update_policy:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.policy.model)
        self.optimizer = make_optimizer(self.policy.trainable_parameters(), cfg.update)
        self.clusterer = setup.make_clusterer(cfg)
        self.library = setup.make_library(cfg)
        self.distiller = setup.make_distiller(cfg, self.policy)
        self.prompt = setup.prompt_settings(cfg)
        self.canon = setup.canon_spec(cfg.clustering.canon)
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)

    # ================================================================== the loop
    def fit(self) -> dict[str, Any]:
        """Train for ``train.iterations`` (or the time budget); evaluate before and after.

        Returns the summary (also written to ``summary.json``): untrained vs trained success on
        the held-out tasks (sampled and greedy, with episode counts) and on training tasks.
        """
        cfg = self.config
        if self.reader:
            raise SleaError(
                "fit: this Trainer was opened with Trainer.load, for evaluation only; continue "
                "the run with slea.Trainer.resume(run_dir) (`slea train --resume DIR`)"
            )
        if self.rank != 0:
            return self._follow_updates()
        self.logger = MetricsLogger(
            self.run_dir,
            tensorboard=cfg.logging.tensorboard,
            wandb_project=cfg.logging.wandb_project,
            config=cfg.to_dict(),
        )
        progress = Progress(
            cfg.train.iterations, enabled=cfg.logging.progress, start=self.iteration
        )
        try:
            if self.config_changes:  # a resume that applied an edited config.yaml
                self.logger.log(
                    {
                        "kind": "config_change",
                        "iteration": self.iteration,
                        "changed": self.config_changes,
                    }
                )

            def evaluation(final: bool) -> dict[str, Any]:  # the bar says how far it is
                record = self.evaluate_all(
                    final=final, report=lambda text: progress.advance(self.iteration, text)
                )
                progress.advance(self.iteration, progress.info)
                return record

            if self.iteration == 0 and cfg.eval.before:
                self.logger.log(evaluation(final=False))
            last_saved = -1
            while self.iteration < cfg.train.iterations and not self._out_of_budget():
                record = self.train_iteration()
                self.logger.log(record)
                progress.update(
                    self.iteration,
                    steps_per_s=record["steps_per_s"],
                    success=record["rollout"]["success"],
                    library=record["library"]["size"],
                )
                finished = self.iteration >= cfg.train.iterations or self._out_of_budget()
                every = cfg.eval.every
                if every and self.iteration % every == 0 and not finished:
                    self.logger.log(evaluation(final=False))
                if self.iteration % cfg.checkpoint.every == 0:
                    self.save_checkpoint()
                    last_saved = self.iteration
            self.logger.log(evaluation(final=True))
            if last_saved != self.iteration:
                self.save_checkpoint()
        finally:
            progress.close()
            self._stop_followers()
        summary = self.summary()
        atomic_write_text(self.run_dir / SUMMARY, json.dumps(summary, indent=1))
        return summary

    def train_iteration(self) -> dict[str, Any]:
        """One iteration: collect -> advantages -> update -> evolve; returns its metrics record."""
        cfg = self.config
        self.iteration += 1
        k = self.iteration
        marks = {"start": time.perf_counter()}

        # 1. collect: B tasks x G episodes in lock-step, per-step clustering and retrieval
        retrieving = cfg.retrieval.active(k, len(self.library))
        specs = sample_episodes(
            self.tasks, cfg.rollout.tasks_per_iteration, cfg.rollout.group_size, self.task_rng
        )
        assert self.venv is not None
        rollout = self._play(
            self.venv,
            specs,
            clusterer=self.clusterer,
            library=self.library if retrieving else None,
            generator=self.sample_rng,
            seed=cfg.train.seed * 1_000_003 + k,
        )
        self.next_episode_id += len(specs)
        self.env_steps += len(rollout)
        marks["rollout"] = time.perf_counter()

        # 2. advantages: episode + step groups (observation clusters for slea, exact states else)
        advantages = rollout_advantages(rollout, cfg.advantage)
        marks["advantages"] = time.perf_counter()

        # 3. update: PPO-clip + k3 KL to the initial policy; then the engine acts with it
        update: dict[str, float] = {}
        if cfg.train.update_policy:
            update = self._update(rollout.records, advantages.advantage)
            self.engine.sync(self.policy, k)
        marks["update"] = time.perf_counter()

        # 4. evolve the library from the best and worst episodes
        evolution: dict[str, Any] = {}
        if cfg.train.evolve_library:
            report = evolve_library(
                self.library,
                usable_episodes(rollout),
                distiller=self.distiller,
                iteration=k,
                config=cfg.evolution,
            )
            evolution = report.metrics(prefix="")
        marks["evolution"] = time.perf_counter()

        # 5. the metrics record
        timing = metrics.timing(rollout, marks)
        self.elapsed_s += timing["iteration"]
        return metrics.iteration_record(
            iteration=k,
            env_steps=self.env_steps,
            episodes=self.next_episode_id,
            retrieval_active=retrieving,
            rollout=rollout,
            advantages=advantages,
            update=update,
            library=self.library_stats(self.library),
            clusters=len(self.clusterer),
            evolution=evolution,
            timing=timing,
            elapsed_s=self.elapsed_s,
        )

    def play(
        self,
        specs: Sequence[EpisodeSpec] | None = None,
        *,
        split: str = "train",
        seed: int = 0,
        generator: torch.Generator | None = None,
        greedy: bool = False,
        temperature: float | None = None,
        retrieval: str = "none",
    ) -> Rollout:
        """Play one batch with the current policy and keep nothing: no update, no evolution, no
        counter moves, and the clusterer and library it plays with are copies (as in
        :meth:`evaluate`). For looking at rollouts (prompts, actions, old log-probs, episodes),
        benchmarks and tests.

        Args:
            specs: the episodes, at most as many as the split's vector env holds (the training
                env: ``rollout.tasks_per_iteration * rollout.group_size``). Default: a batch as a
                training iteration draws it, from ``split`` (tasks drawn with ``seed``).
            split: whose vector env plays (``train``, ``valid`` or ``test``).
            seed: seeds the env resets and, without ``generator``, the sampling.
            generator: the sampling's random stream (continued, not reset).
            greedy, temperature: as in :func:`slea.rollout.collect`.
            retrieval: ``none`` (the policy alone), or the library retrieved per ``step`` or once
                per ``task`` (whatever ``retrieval.warmup`` says).
        """
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split: must be train, valid or test, got {split!r}")
        if retrieval not in EVAL_RETRIEVAL:
            raise ValueError(
                f"retrieval: must be one of {', '.join(EVAL_RETRIEVAL)}, got {retrieval!r}"
            )
        r = self.config.rollout
        if specs is None:
            specs = sample_episodes(
                self.tasks,
                r.tasks_per_iteration,
                r.group_size,
                np.random.default_rng(seed),
                split=split,
            )
        specs = list(specs)
        if not specs:
            raise ValueError("specs: no episodes to play")
        if split == "train":
            if self.venv is None:
                raise SleaError("play: this process has no training env (only rank 0 plays)")
            venv = self.venv
        else:
            venv = self.evaluator._venv(split, len(specs))
        if len(specs) > venv.num_envs:
            raise ValueError(
                f"specs: {len(specs)} episodes, but the {split} vector env holds {venv.num_envs}; "
                "play them in waves"
            )
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        with memory_copies(self.clusterer, self.library) as (clusterer, library):
            return self._play(
                venv,
                specs,
                clusterer=clusterer,
                library=None if retrieval == "none" else library,
                generator=generator,
                seed=seed,
                greedy=greedy,
                temperature=temperature,
                level=None if retrieval == "none" else retrieval,
            )

    def _play(
        self,
        venv: SleaVectorEnv,
        specs: list[EpisodeSpec],
        *,
        clusterer: ObservationClusterer,
        library: ExperienceLibrary | None,
        generator: torch.Generator,
        seed: int,
        greedy: bool = False,
        temperature: float | None = None,
        level: str | None = None,
    ) -> Rollout:
        """:func:`slea.rollout.collect` with this run's engine, prompts and keys (``level``:
        ``step`` or ``task`` retrieval, default ``retrieval.level``)."""
        canon = self.canon
        return collect(
            self.engine,
            venv,
            specs,
            max_steps=self.config.rollout.max_steps,
            prompt=self.prompt,
            clusterer=clusterer,
            anchor_fn=lambda text: structural_hash(text, canon),
            action_key_fn=structural_hash,
            retrieve=None if library is None else library.retrieve_batch,
            retrieve_once=(level or self.config.retrieval.level) == "task",
            generator=generator,
            greedy=greedy,
            temperature=temperature,
            iteration=self.iteration,
            first_episode_id=self.next_episode_id,
            seed=seed,
        )

    # ================================================================== evaluation
    def evaluate(
        self,
        split: str = "test",
        *,
        greedy: bool = False,
        episodes_per_task: int = 1,
        max_tasks: int = 0,
        retrieval: str | None = None,
        progress: Callable[[int, int], Any] | None = None,
    ) -> dict[str, Any]:
        """Play every task of ``split`` (``train``, ``valid`` or ``test``) ``episodes_per_task`` times.

        Uses the same prompt path as training (retrieval included when active and
        ``retrieval.in_eval``) on copies of the clusterer and library; with ``eval.evolve`` the
        copy evolves during the evaluation and is dropped afterwards. Returns success rate, mean
        return, episode count and retrieval fraction.

        ``retrieval`` overrides the config for this evaluation: ``none`` plays without the
        library (the policy alone), ``step`` or ``task`` with it (where retrieval is active, as
        ``retrieval.in_eval=true``) at that ``retrieval.level``; ``None`` keeps the config.
        ``progress(done, total)`` hears of the episodes played, after each wave.
        """
        if retrieval not in (None, *EVAL_RETRIEVAL):
            raise ValueError(
                f"retrieval: must be one of {', '.join(EVAL_RETRIEVAL)} or None, got {retrieval!r}"
            )
        play = self._play
        if retrieval in ("step", "task"):
            play = functools.partial(self._play, level=retrieval)
        evolve = None
        if self.config.eval.evolve:

            def evolve(library: ExperienceLibrary, rollout: Rollout) -> None:
                evolve_library(
                    library,
                    usable_episodes(rollout),
                    distiller=self.distiller,
                    iteration=self.iteration,
                    config=self.config.evolution,
                )

        return self.evaluator.evaluate(
            play,
            split,
            clusterer=self.clusterer,
            library=self.library,
            iteration=self.iteration,
            greedy=greedy,
            episodes_per_task=episodes_per_task,
            max_tasks=max_tasks,
            evolve=evolve,
            use_library=None if retrieval is None else retrieval != "none",
            progress=progress,
        )

    def evaluate_all(
        self, *, final: bool, report: Callable[[str], Any] | None = None
    ) -> dict[str, Any]:
        """The ``eval`` record: sampled (and greedy) success on each split of ``eval.splits``,
        plus training-task success before training and at the end. ``report`` hears how far
        each pass is (``"eval valid sampled 8/64"``)."""
        ev = self.config.eval

        def told(label: str) -> Callable[[int, int], Any] | None:
            if report is None:
                return None
            return lambda done, total: report(f"eval {label} {done}/{total}")

        out: dict[str, Any] = {
            "kind": "eval",
            "iteration": self.iteration,
            "env_steps": self.env_steps,
        }
        t0 = time.perf_counter()
        for split in ev.splits:  # held-out splits: valid to choose recipes, test to report
            if not self.tasks.tasks(split):
                continue
            out[f"{split}_sampled"] = self.evaluate(
                split,
                episodes_per_task=ev.episodes_per_task,
                max_tasks=ev.max_tasks,
                progress=told(f"{split} sampled"),
            )
            if ev.greedy:
                out[f"{split}_greedy"] = self.evaluate(
                    split, greedy=True, max_tasks=ev.max_tasks, progress=told(f"{split} greedy")
                )
        if (final or self.iteration == 0) and ev.train_tasks:
            out["train_sampled"] = self.evaluate(
                "train",
                episodes_per_task=ev.episodes_per_task,
                max_tasks=ev.train_tasks,
                progress=told("train sampled"),
            )
        out["library"] = self.library_stats(self.library)
        out["eval_s"] = time.perf_counter() - t0
        return out

    def summary(self) -> dict[str, Any]:
        """Untrained (iteration 0) vs trained (last) evaluation, read back from the metrics."""
        return metrics.summary(
            self.run_dir,
            iterations=self.iteration,
            env_steps=self.env_steps,
            elapsed_s=self.elapsed_s,
        )

    # ================================================================== the update
    def _update(self, records: list[ActionRecord], advantages: np.ndarray) -> dict[str, float]:
        # rank 0 owns the run's progress (env steps); followers get the lr with the batch
        lr = scheduled_lr(self.config.update, self._lr_progress())
        gap: dict[str, float] = {}
        # sampled by another engine (a server): the learner recomputes the old log-probs
        if self.engine is not self.policy:
            keep = [i for i, r in enumerate(records) if r.num_units]  # failed acts have none
            records, gap = recompute_old_logprobs(
                self.policy,
                [records[i] for i in keep],
                batch_size=self.config.update.micro_batch_size,
            )
            advantages = advantages[keep]
            if not records:
                return gap
        if self.world > 1:
            distributed.broadcast([self.iteration, records, advantages, lr])
        stats = self._run_update(self.iteration, records, advantages, lr).to_dict()
        stats.update(gap)
        stats["lr"] = lr
        return stats

    def _lr_progress(self) -> float:
        """Where the current iteration sits in the run, in [0, 1], for the learning-rate schedule."""
        # the run ends at whichever budget is spent first, so the schedule follows the one that
        # is further along (a bench with iterations=100000 and max_env_steps=6000 still decays)
        loop = self.config.train
        fractions = []
        if loop.iterations:
            fractions.append((self.iteration - 1) / max(loop.iterations - 1, 1))
        if loop.max_env_steps:
            fractions.append(self.env_steps / loop.max_env_steps)
        return max(fractions, default=0.0)

    def _run_update(
        self, iteration: int, records: list[ActionRecord], advantages: np.ndarray, lr: float
    ) -> Any:
        """The PPO update of ``iteration`` at learning rate ``lr`` (the same call on every rank)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # the mini-batch order: the same on every rank and after a resume
        order = torch.Generator().manual_seed(
            setup.mix(self.config.train.seed, "update", iteration)
        )
        return update_policy(
            self.policy,
            self.optimizer,
            records,
            advantages,
            self.config.update,
            model=self.ddp_model,
            generator=order,
        )

    def _follow_updates(self) -> dict[str, Any]:
        """Ranks > 0: take part in every update that rank 0 broadcasts, until it says stop."""
        while True:
            payload = distributed.broadcast(None)
            if payload is None:
                return {}
            iteration, records, advantages, lr = payload
            self._run_update(iteration, records, advantages, lr)

    def _stop_followers(self) -> None:
        if self.world > 1:
            distributed.broadcast(None, stop=True)

    def _out_of_budget(self) -> bool:
        """The time budget or the env-step budget is spent."""
        loop = self.config.train
        if loop.max_env_steps and self.env_steps >= loop.max_env_steps:
            return True
        return bool(loop.time_budget_s) and self.elapsed_s >= loop.time_budget_s

    # ================================================================== checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/iter_<iteration>`` atomically (rank 0 only) and prune old ones."""
        mgr = CheckpointManager(self.run_dir, self.config.checkpoint.keep_last)
        return mgr.save(self.iteration, self._write_checkpoint, meta={"slea_checkpoint": 1})

    def _write_checkpoint(self, d: Path) -> None:
        self.config.to_yaml(d / CONFIG)  # what resume compares the run's config.yaml with
        self.policy.model.save_pretrained(d / "model")
        torch.save(self.optimizer.state_dict(), d / "optimizer.pt")
        self.library.save(d / "library.snap")
        self.clusterer.save(d / "clusterer.snap")
        (d / "rng.json").write_text(json.dumps(setup.rng_state(self.sample_rng, self.task_rng)))
        state = {
            "iteration": self.iteration,
            "next_episode_id": self.next_episode_id,
            "env_steps": self.env_steps,
            "elapsed_s": self.elapsed_s,
            "retrieval_counters": list(self.library_stats.counters),
        }
        (d / "state.json").write_text(json.dumps(state))

    def _load_checkpoint(self, d: Path) -> None:
        state = json.loads((d / "state.json").read_text())
        self.iteration = int(state["iteration"])
        self.next_episode_id = int(state["next_episode_id"])
        self.env_steps = int(state["env_steps"])
        self.elapsed_s = float(state["elapsed_s"])
        if not self.reader:
            self.optimizer.load_state_dict(torch.load(d / "optimizer.pt", weights_only=True))
        self.library = ExperienceLibrary.load(d / "library.snap")
        self.clusterer = ObservationClusterer.load(d / "clusterer.snap")
        counters = state.get("retrieval_counters", (0, 0))
        self.library_stats = metrics.LibraryStats((int(counters[0]), int(counters[1])))
        setup.set_rng_state(
            json.loads((d / "rng.json").read_text()), self.sample_rng, self.task_rng
        )
        if self.config.train.update_policy:
            self.engine.sync(self.policy, self.iteration)

    @classmethod
    def resume(
        cls, run_dir: str | os.PathLike[str], *, allow_config_change: bool = False
    ) -> Trainer:
        """Reopen a run at its latest checkpoint (verified first; nothing is written on failure).

        Metrics logged after that checkpoint are dropped, so that the resumed run's metrics
        continue exactly where the checkpoint left off. A run killed before its first checkpoint
        restarts from iteration 0 with its saved config. A ``config.yaml`` edited since the
        checkpoint is refused unless ``allow_config_change``; then the changed keys are logged
        as a ``config_change`` record.
        """
        cfg, latest = setup.open_run(run_dir)
        if latest is None:
            return cls(cfg.replace("run.overwrite=true"))
        changes = setup.config_changes(cfg, latest)
        if changes and not allow_config_change:
            listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
            raise ConfigError(
                f"{Path(run_dir) / CONFIG} was edited since the checkpoint {latest.name} ({listed}); "
                "restore it, or resume with --allow-config-change to apply the edit (it is "
                "recorded in metrics.jsonl)"
            )
        trainer = cls(cfg, _checkpoint=latest)
        trainer.config_changes = changes
        if trainer.rank == 0:
            truncate_metrics(Path(cfg.run.dir) / METRICS, trainer.iteration)
        return trainer

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], *, iteration: int | None = None) -> Trainer:
        """Open a run's latest checkpoint (or that of ``iteration``, if it was kept) for
        evaluation (the policy without its KL reference model or optimizer state: it cannot
        train); takes no lock (a run may go on training meanwhile) and writes nothing to the run
        directory, except with a server engine: its adapters go to a directory of their own
        under ``engine.adapter_dir`` (the servers must read them), ``load-<pid>-<random>``,
        removed at :meth:`close`."""
        cfg, latest = setup.open_run(run_dir, iteration)
        if latest is None:
            raise SleaError(
                f"run {str(run_dir)!r} has no checkpoint yet; wait for the first one or resume "
                "training with `slea train --resume DIR`"
            )
        return cls(cfg, _checkpoint=latest, _writes=False)

    # ================================================================== lifetime
    def close(self) -> None:
        """Close the vector envs, the metrics sinks and a server engine's connections."""
        engine = getattr(self, "engine", None)
        if engine is not None and engine is not getattr(self, "policy", None):
            getattr(engine, "close", lambda: None)()
        own = getattr(self, "own_adapters", None)
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)
        evaluator = getattr(self, "evaluator", None)
        if evaluator is not None:
            evaluator.close()
        venv = getattr(self, "venv", None)
        if venv is not None:
            venv.close()
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()
        for lock in (getattr(self, "lock", None), getattr(self, "adapter_lock", None)):
            if lock is not None:
                lock.release()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Trainer(run_dir={str(self.run_dir)!r}, iteration={self.iteration}, policy={self.policy!r})"


__all__ = [
    "EVAL_RETRIEVAL",
    "TIMING_KEYS",
    "Trainer",
    "rollout_advantages",
    "sample_episodes",
    "usable_episodes",
]
