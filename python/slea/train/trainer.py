"""The SLEA-RL training loop: ``slea.Trainer(cfg).fit()``.

One iteration, top to bottom (:meth:`Trainer.train_iteration`)::

    specs    = B tasks x G episodes
    rollout  = collect(policy, venv, specs, clusterer, library retrieval)   # per-step retrieval
    adv      = compute_advantages(StepBatch(rollout), estimator)            # Rust, O(n)
    stats    = update_policy(policy, optimizer, rollout.records, adv)       # PPO-clip + k3 KL
    report   = evolve_library(library, rollout.episodes, distiller)         # strategies/warnings
    metrics  -> metrics.jsonl ; checkpoint every N iterations

The Trainer only wires the pieces; each lives in its own module and can be used alone. Run
directory layout: ``config.yaml``, ``metrics.jsonl``, ``model_init/`` (tiny model and tokenizer,
the KL reference), ``checkpoints/iter_N/``, ``report/``, ``summary.json``.

Under ``torchrun`` (several processes) rank 0 collects rollouts, evolves the library, logs and
saves; every rank takes its share of the update (DDP, gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from slea.errors import SleaError
from slea.experience.prompt import DEFAULT_RULES, GENERATE_SUFFIX
from slea.rollout import EpisodeSpec, PromptSettings, Rollout, collect
from slea.train import setup
from slea.train.checkpoint import CheckpointManager, atomic_write_text
from slea.train.config import TrainConfig
from slea.train.logging import METRICS, MetricsLogger, Progress, truncate_metrics

TIMING_KEYS = (
    "rollout",
    "generation",
    "env",
    "clustering",
    "retrieval",
    "prompt",
    "advantages",
    "update",
    "evolution",
    "iteration",
)


class Trainer:
    """Train a policy with SLEA-RL as configured by ``config``.

    Creates (or, with :meth:`resume`, reopens) the run directory, builds or loads the model,
    generates the games, and prepares the vector env, clusterer, library and optimizer.
    """

    def __init__(self, config: TrainConfig, *, _checkpoint: Path | None = None) -> None:
        import torch

        self.config = cfg = config
        self.run_dir = Path(cfg.run.dir)
        self.rank, self.world = setup.init_distributed()
        setup.check_env_id(cfg.env.id)
        setup.check_model_path(cfg)
        torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        created = False
        if _checkpoint is None and self.rank == 0:
            created = setup.prepare_run_dir(self.run_dir, cfg)
        try:
            self._build(_checkpoint)
        except BaseException:
            if created:  # a failed start leaves nothing behind
                self.close()
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _build(self, checkpoint: Path | None) -> None:
        import torch

        cfg = self.config
        setup.seed_everything(cfg.train.seed)
        self.iteration = 0
        self.next_episode_id = 0
        self.env_steps = 0
        self.elapsed_s = 0.0
        self.sample_rng = torch.Generator().manual_seed(cfg.train.seed)
        self.task_rng = np.random.default_rng(cfg.train.seed)
        self.logger: MetricsLogger | None = None
        self._last_retrieval = (0, 0)
        self._eval_venvs: dict[str, Any] = {}
        self.venv: Any = None
        self.games = setup.make_games(cfg)
        if self.rank == 0:
            r = cfg.rollout
            self.venv = setup.make_venv(
                cfg, self.games, "train", r.tasks_per_iteration * r.group_size
            )
        init = Path(cfg.model.path) if cfg.model.path else self.run_dir / "model_init"
        if not cfg.model.path and not (init / "config.json").is_file():
            if self.rank == 0:  # a tiny model with a tokenizer trained on the training games
                from slea.policy.tiny import build_tiny

                corpus = setup.tokenizer_corpus(cfg, self.venv, self._tasks("train"))
                build_tiny(init, corpus, cfg.model.tiny, seed=cfg.train.seed)
            setup.barrier()
        self.policy = setup.make_policy(cfg, init, checkpoint)
        self.ddp_model = None
        if self.world > 1 and cfg.train.update_policy:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.policy.model)
        from slea.algo.update import make_optimizer

        self.optimizer = make_optimizer(self.policy.trainable_parameters(), cfg.update)
        self.clusterer = setup.make_clusterer(cfg)
        self.library = setup.make_library(cfg)
        self.distiller = setup.make_distiller(cfg, self.policy)
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)

    # ================================================================== the loop
    def fit(self) -> dict[str, Any]:
        """Train for ``train.iterations`` (or the time budget); evaluate before and after.

        Returns the summary (also written to ``summary.json``): untrained vs trained success on
        the held-out games (sampled and greedy, with episode counts) and on training games.
        """
        cfg = self.config
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
            if self.iteration == 0:
                self._log_eval(self.evaluate_all(final=False))
            last_saved = -1
            while self.iteration < cfg.train.iterations and not self._out_of_time():
                record = self.train_iteration()
                self.logger.log(record)
                progress.update(
                    self.iteration,
                    steps_per_s=record["steps_per_s"],
                    success=record["rollout"]["success"],
                    library=record["library"]["size"],
                )
                finished = self.iteration >= cfg.train.iterations or self._out_of_time()
                every = cfg.eval.every
                if every and self.iteration % every == 0 and not finished:
                    self._log_eval(self.evaluate_all(final=False))
                if self.iteration % cfg.checkpoint.every == 0:
                    self.save_checkpoint()
                    last_saved = self.iteration
            final = self.evaluate_all(final=True)
            self._log_eval(final)
            if last_saved != self.iteration:
                self.save_checkpoint()
        finally:
            progress.close()
            self._stop_followers()
        summary = self.summary()
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=1))
        return summary

    def train_iteration(self) -> dict[str, Any]:
        """One iteration: rollout -> advantages -> update -> evolution; returns its metrics."""
        from slea.algo.advantages import compute_advantages

        cfg = self.config
        self.iteration += 1
        k = self.iteration
        start = time.perf_counter()

        # 1. rollout: B tasks x G episodes in lock-step, per-step clustering and retrieval
        retrieving = self._retrieval_active()
        specs = self._sample_specs()
        rollout = self._collect(
            specs,
            self.venv,
            self.clusterer,
            self.library if retrieving else None,
            generator=self.sample_rng,
            seed=cfg.train.seed * 1_000_003 + k,
        )
        self.next_episode_id += len(specs)
        self.env_steps += len(rollout)
        t_rollout = time.perf_counter()

        # 2. advantages (Rust kernels)
        adv = compute_advantages(
            self._step_batch(rollout),
            estimator=cfg.advantage.estimator,
            gamma=cfg.advantage.gamma,
            mode=cfg.advantage.mode,
            step_weight=cfg.advantage.step_weight,
            invalid_penalty=cfg.advantage.invalid_penalty,
        )
        t_adv = time.perf_counter()

        # 3. policy update: PPO-clip + k3 KL to the initial policy, micro-batched AdamW
        update: dict[str, float] = {}
        if cfg.train.update_policy:
            update = self._update(rollout.records, adv.advantage)
        t_update = time.perf_counter()

        # 4. library evolution from the best and worst episodes
        evolution = self._evolve(rollout) if cfg.train.evolve_library else {}
        t_evolve = time.perf_counter()

        timing = {
            key: rollout.timing.get(key, 0.0)
            for key in ("generation", "env", "clustering", "retrieval", "prompt")
        }
        timing.update(
            rollout=t_rollout - start,
            advantages=t_adv - t_rollout,
            update=t_update - t_adv,
            evolution=t_evolve - t_update,
            iteration=t_evolve - start,
        )
        timing["overhead_fraction"] = (
            timing["clustering"] + timing["retrieval"] + timing["advantages"]
        ) / max(timing["iteration"], 1e-9)
        self.elapsed_s += timing["iteration"]
        return {
            "kind": "train",
            "iteration": k,
            "env_steps": self.env_steps,
            "episodes": self.next_episode_id,
            "retrieval_active": retrieving,
            "rollout": rollout.stats(),
            "advantage": {
                "mean": float(np.mean(adv.advantage)) if len(rollout) else 0.0,
                "abs_mean": float(np.mean(np.abs(adv.advantage))) if len(rollout) else 0.0,
                "nonzero_fraction": float(np.mean(adv.advantage != 0)) if len(rollout) else 0.0,
            },
            "update": update,
            "library": self._library_stats(),
            "clusters": len(self.clusterer),
            "evolution": evolution,
            "timing": timing,
            "steps_per_s": len(rollout) / max(timing["iteration"], 1e-9),
            "elapsed_s": self.elapsed_s,
        }

    # ================================================================== evaluation
    def evaluate(
        self,
        split: str = "test",
        *,
        greedy: bool = False,
        episodes_per_task: int = 1,
        max_tasks: int = 0,
    ) -> dict[str, Any]:
        """Play every task of ``split`` (``train`` or ``test``) ``episodes_per_task`` times.

        Uses the same prompt path as training (retrieval included when active and
        ``retrieval.in_eval``), on copies of the clusterer and library unless ``eval.evolve``.
        Returns success rate, mean return, episode count and retrieval fraction.
        """
        import torch

        cfg = self.config
        tasks = self._tasks(split)
        if max_tasks:
            tasks = tasks[:max_tasks]
        if not tasks:
            return {"split": split, "greedy": greedy, "episodes": 0, "success": 0.0, "return": 0.0}
        specs = [
            EpisodeSpec(group=g, options=opts, task_id=name)
            for g, (name, opts) in enumerate(tasks)
            for _ in range(episodes_per_task)
        ]
        venv = self._eval_venv(split, len(specs))
        gen = torch.Generator().manual_seed(
            setup.mix(cfg.train.seed, self.iteration, split, greedy)
        )
        use_library = cfg.retrieval.in_eval and self._retrieval_active(eval_mode=True)
        episodes, rows, retrieved = [], 0, 0
        with self._memory_for_eval() as (clusterer, library):
            for lo in range(0, len(specs), venv.num_envs):
                wave = specs[lo : lo + venv.num_envs]
                ro = self._collect(
                    wave,
                    venv,
                    clusterer,
                    library if use_library else None,
                    generator=gen,
                    greedy=greedy,
                    seed=setup.mix(cfg.train.seed, lo, split) & 0x7FFFFFFF,
                )
                episodes.extend(ro.episodes)
                rows += len(ro)
                retrieved += sum(1 for r in ro.retrieved if r)
                if cfg.eval.evolve:
                    self._evolve(ro)
        return {
            "split": split,
            "greedy": greedy,
            "episodes": len(episodes),
            "success": float(np.mean([e.won for e in episodes])),
            "return": float(np.mean([e.total_reward for e in episodes])),
            "episode_length": float(np.mean([len(e) for e in episodes])),
            "retrieval_fraction": retrieved / max(rows, 1),
        }

    def evaluate_all(self, *, final: bool) -> dict[str, Any]:
        """Held-out sampled (and greedy) success, plus training-game success at the end."""
        ev = self.config.eval
        out: dict[str, Any] = {
            "kind": "eval",
            "iteration": self.iteration,
            "env_steps": self.env_steps,
        }
        t0 = time.perf_counter()
        if self._tasks("test"):
            out["test_sampled"] = self.evaluate(
                "test", episodes_per_task=ev.episodes_per_task, max_tasks=ev.max_tasks
            )
            if ev.greedy:
                out["test_greedy"] = self.evaluate("test", greedy=True, max_tasks=ev.max_tasks)
        if (final or self.iteration == 0) and ev.train_tasks:
            out["train_sampled"] = self.evaluate(
                "train", episodes_per_task=ev.episodes_per_task, max_tasks=ev.train_tasks
            )
        out["library"] = self._library_stats()
        out["eval_s"] = time.perf_counter() - t0
        return out

    def summary(self) -> dict[str, Any]:
        """Untrained (iteration 0) vs trained (last) evaluation, read back from the metrics."""
        from slea.train.logging import read_metrics

        evals = [r for r in read_metrics(self.run_dir / METRICS) if r.get("kind") == "eval"]
        first = evals[0] if evals else {}
        last = evals[-1] if evals else {}
        rows = {}
        for key in ("test_sampled", "test_greedy", "train_sampled"):
            if key in first or key in last:
                rows[key] = {"untrained": first.get(key), "trained": last.get(key)}
        return {
            "run_dir": str(self.run_dir),
            "iterations": self.iteration,
            "env_steps": self.env_steps,
            "train_time_s": self.elapsed_s,
            "success": rows,
            "report": str(self.run_dir / "report" / "index.html"),
        }

    # ================================================================== checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/iter_<iteration>`` atomically (rank 0 only) and prune old ones."""
        cfg = self.config
        mgr = CheckpointManager(self.run_dir, cfg.checkpoint.keep_last)
        return mgr.save(self.iteration, self._write_checkpoint, meta={"slea_checkpoint": 1})

    def _write_checkpoint(self, d: Path) -> None:
        import torch

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
            "retrieval_counters": list(self._last_retrieval),
        }
        (d / "state.json").write_text(json.dumps(state))

    @classmethod
    def resume(cls, run_dir: str | os.PathLike[str]) -> Trainer:
        """Reopen a run at its latest checkpoint (verified first; nothing is written on failure).

        Metrics logged after that checkpoint are dropped, so that the resumed run's metrics
        continue exactly where the checkpoint left off. A run killed before its first checkpoint
        restarts from iteration 0 with its saved config.
        """
        cfg, latest = setup.open_run(run_dir)
        if latest is None:
            return cls(cfg.replace("run.overwrite=true"))
        trainer = cls(cfg, _checkpoint=latest)
        if trainer.rank == 0:
            truncate_metrics(Path(cfg.run.dir) / METRICS, trainer.iteration)
        return trainer

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> Trainer:
        """Open a run's latest checkpoint for evaluation; writes nothing to the run directory."""
        cfg, latest = setup.open_run(run_dir)
        if latest is None:
            raise SleaError(
                f"run {str(run_dir)!r} has no checkpoint yet; wait for the first one or resume "
                "training with `slea train --resume DIR`"
            )
        return cls(cfg, _checkpoint=latest)

    def _load_checkpoint(self, d: Path) -> None:
        import torch

        state = json.loads((d / "state.json").read_text())
        self.iteration = int(state["iteration"])
        self.next_episode_id = int(state["next_episode_id"])
        self.env_steps = int(state["env_steps"])
        self.elapsed_s = float(state["elapsed_s"])
        self.optimizer.load_state_dict(torch.load(d / "optimizer.pt", weights_only=True))
        from slea.clustering import ObservationClusterer
        from slea.experience.library import ExperienceLibrary

        self.library = ExperienceLibrary.load(d / "library.snap")
        self.clusterer = ObservationClusterer.load(d / "clusterer.snap")
        self._last_retrieval = tuple(state.get("retrieval_counters", (0, 0)))  # type: ignore[assignment]
        setup.set_rng_state(
            json.loads((d / "rng.json").read_text()), self.sample_rng, self.task_rng
        )

    # ================================================================== building blocks
    def _collect(
        self,
        specs: list[EpisodeSpec],
        venv: Any,
        clusterer: Any,
        library: Any,
        *,
        generator: Any,
        seed: int,
        greedy: bool = False,
    ) -> Rollout:
        import slea

        cfg = self.config
        spec = setup.canon_spec(cfg.clustering.canon)
        retrieve = None
        if library is not None:

            def retrieve(cluster_ids: Any, texts: Any) -> list[list[Any]]:
                rows = list(library.retrieve_batch(list(cluster_ids), list(texts)))
                if cfg.retrieval.demonstrations:
                    return rows
                return [[_without_demonstration(e) for e in row] for row in rows]

        return collect(
            self.policy,
            venv,
            specs,
            max_steps=cfg.rollout.max_steps,
            prompt=self._prompt_settings(),
            clusterer=clusterer,
            anchor_fn=lambda text: slea.structural_hash(text, spec),
            action_key_fn=lambda text: slea.structural_hash(text),
            retrieve=retrieve,
            generator=generator,
            greedy=greedy,
            iteration=self.iteration,
            first_episode_id=self.next_episode_id,
            seed=seed,
            consistency_k=cfg.retrieval.consistency_k,
        )

    def _step_batch(self, rollout: Rollout) -> Any:
        from slea.algo.advantages import StepBatch

        key = rollout.cluster if self.config.advantage.estimator == "slea" else rollout.anchor
        reward = rollout.reward
        penalty = self.config.advantage.revisit_penalty
        if penalty:
            from slea.algo.advantages import revisits

            reward = reward - np.float32(penalty) * revisits(rollout.episode, rollout.cluster)
        return StepBatch(
            rollout.group,
            rollout.episode,
            rollout.step,
            reward,
            key,
            invalid=rollout.invalid,
            action_key=rollout.action_key,
        )

    def _update(self, records: list[Any], advantages: np.ndarray) -> dict[str, float]:
        from slea.algo.update import scheduled_lr

        # rank 0 owns the run's progress (env steps); followers get the lr with the batch
        lr = scheduled_lr(self.config.update, self._lr_progress())
        if self.world > 1:
            setup.broadcast([self.iteration, records, advantages, lr])
        stats = self._run_update(self.iteration, records, advantages, lr).to_dict()
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
        self, iteration: int, records: list[Any], advantages: np.ndarray, lr: float
    ) -> Any:
        """The PPO update of ``iteration`` at learning rate ``lr`` (the same call on every rank)."""
        from slea.algo.update import update_policy

        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return update_policy(
            self.policy,
            self.optimizer,
            records,
            advantages,
            self.config.update,
            model=self.ddp_model,
            generator=self._update_rng(iteration),
        )

    def _update_rng(self, iteration: int) -> Any:
        """Mini-batch order of an iteration's update: the same on every rank and after a resume."""
        import torch

        return torch.Generator().manual_seed(setup.mix(self.config.train.seed, "update", iteration))

    def _follow_updates(self) -> dict[str, Any]:
        """Ranks > 0: take part in every update that rank 0 broadcasts, until it says stop."""
        while True:
            payload = setup.broadcast(None)
            if payload is None:
                return {}
            iteration, records, advantages, lr = payload
            self._run_update(iteration, records, advantages, lr)

    def _stop_followers(self) -> None:
        if self.world > 1:
            setup.broadcast(None, stop=True)

    def _evolve(self, rollout: Rollout) -> dict[str, Any]:
        from slea.experience.evolve import evolve_library

        # credits the entries each episode retrieved with its outcome, distils, admits, links
        report = evolve_library(
            self.library,
            rollout.episodes,
            distiller=self.distiller,
            iteration=self.iteration,
            config=self.config.evolution,
        )
        return report.metrics(prefix="")

    def _retrieval_active(self, eval_mode: bool = False) -> bool:
        r = self.config.retrieval
        past_warmup = self.iteration > r.warmup if not eval_mode else self.iteration >= r.warmup
        return r.enabled and past_warmup and len(self.library) > r.min_library

    def _sample_specs(self) -> list[EpisodeSpec]:
        r = self.config.rollout
        tasks = self._tasks("train")
        picks = self.task_rng.choice(
            len(tasks), size=r.tasks_per_iteration, replace=r.tasks_per_iteration > len(tasks)
        )
        chosen = [tasks[int(t)] for t in picks]
        if self.config.env.games.compass_augment and self.config.env.id == setup.TEXTWORLD:
            # one symmetry per group: the G rollouts of a task play the same variant
            turns = self.task_rng.integers(8, size=len(chosen))
            chosen = [
                (f"{name}@compass{int(k)}", {**opts, "compass": int(k)})
                for (name, opts), k in zip(chosen, turns, strict=True)
            ]
        return [
            EpisodeSpec(group=b, options=opts, task_id=name)
            for b, (name, opts) in enumerate(chosen)
            for _ in range(r.group_size)
        ]

    def _tasks(self, split: str) -> list[tuple[str, dict[str, Any]]]:
        return setup.tasks_of(self.games, split)

    def _prompt_settings(self) -> PromptSettings:
        cfg = self.config
        rules = cfg.prompt.rules or DEFAULT_RULES
        if cfg.policy.mode == "generate" and cfg.policy.parser == "tag":
            rules = f"{rules} {GENERATE_SUFFIX}"
        return PromptSettings(
            rules=rules,
            history_window=cfg.prompt.history_window,
            history_chars=cfg.prompt.history_chars,
            mark_tried=cfg.prompt.mark_tried,
            show_admissible=cfg.prompt.show_admissible or cfg.policy.mode == "generate",
            budget_tokens=cfg.retrieval.budget_tokens,
            max_prompt_tokens=cfg.prompt.max_prompt_tokens,
        )

    def _library_stats(self) -> dict[str, Any]:
        """Library size per zone/level and retrieval counters (cumulative and since last call)."""
        raw = self.library.stats()
        ret = raw.get("retrieval", {})
        hits, fallbacks = int(ret.get("hits", 0)), int(ret.get("fallbacks", 0))
        last_hits, last_fb = self._last_retrieval
        self._last_retrieval = (hits, fallbacks)
        d_hits, d_fb = hits - last_hits, fallbacks - last_fb
        return {
            "size": len(self.library),
            "by_zone_level": {
                f"{zone}.{level}": int(n)
                for zone, levels in raw.get("sizes", {}).items()
                for level, n in levels.items()
            },
            "linked_clusters": int(raw.get("clusters", 0)),
            "links": int(raw.get("links", 0)),
            "hits": d_hits,
            "fallbacks": d_fb,
            "hit_rate": d_hits / (d_hits + d_fb) if d_hits + d_fb else 0.0,
            "hit_rate_total": float(ret.get("hit_rate", 0.0)),
            "evicted": int(raw.get("evicted", 0)),
        }

    def _out_of_time(self) -> bool:
        """The time budget or the env-step budget is spent."""
        loop = self.config.train
        if loop.max_env_steps and self.env_steps >= loop.max_env_steps:
            return True
        return bool(loop.time_budget_s) and self.elapsed_s >= loop.time_budget_s

    def _log_eval(self, record: dict[str, Any]) -> None:
        if self.logger is not None:
            self.logger.log(record)

    @contextmanager
    def _memory_for_eval(self) -> Iterator[tuple[Any, Any]]:
        """Evaluation works on copies of the clusterer and library (unless eval.evolve)."""
        if self.config.eval.evolve:
            yield self.clusterer, self.library
            return
        from slea.clustering import ObservationClusterer
        from slea.experience.library import ExperienceLibrary

        tmp = Path(tempfile.mkdtemp(prefix="slea-eval-"))
        try:
            self.clusterer.save(tmp / "c.snap")
            self.library.save(tmp / "l.snap")
            yield ObservationClusterer.load(tmp / "c.snap"), ExperienceLibrary.load(tmp / "l.snap")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _eval_venv(self, split: str, episodes: int) -> Any:
        if split == "train" and self.venv is not None:
            return self.venv
        if split not in self._eval_venvs:
            r = self.config.rollout
            size = min(episodes, r.tasks_per_iteration * r.group_size)
            self._eval_venvs[split] = setup.make_venv(self.config, self.games, split, size)
        return self._eval_venvs[split]

    def close(self) -> None:
        """Close the vector envs and the metrics sinks."""
        for v in [getattr(self, "venv", None), *getattr(self, "_eval_venvs", {}).values()]:
            if v is not None:
                v.close()
        self._eval_venvs.clear()
        if getattr(self, "logger", None) is not None:
            self.logger.close()  # type: ignore[union-attr]

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Trainer(run_dir={str(self.run_dir)!r}, iteration={self.iteration}, policy={self.policy!r})"


__all__ = ["TIMING_KEYS", "Trainer"]


def _without_demonstration(entry: Any) -> Any:
    """An entry as the prompt sees it, minus its worked step (``retrieval.demonstrations: false``)."""
    import types

    return types.SimpleNamespace(
        id=entry.id,
        text=entry.text,
        zone=entry.zone,
        level=entry.level,
        observation=None,
        action=None,
    )
