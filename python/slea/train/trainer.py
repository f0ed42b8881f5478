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
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from slea.errors import ConfigError, EnvError, SleaError
from slea.experience.prompt import DEFAULT_RULES, GENERATE_SUFFIX
from slea.rollout import EpisodeSpec, PromptSettings, Rollout, collect
from slea.train.checkpoint import CheckpointManager, atomic_write_text
from slea.train.config import TrainConfig
from slea.train.logging import METRICS, MetricsLogger, Progress, truncate_metrics

TEXTWORLD = "slea/TextWorld-v0"
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
        self.rank, self.world = _init_distributed()
        _check_env_id(cfg.env.id)
        torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        if _checkpoint is None and self.rank == 0:
            _prepare_run_dir(self.run_dir, cfg)
        _seed_everything(cfg.train.seed)
        self.iteration = 0
        self.next_episode_id = 0
        self.env_steps = 0
        self.elapsed_s = 0.0
        self.sample_rng = torch.Generator().manual_seed(cfg.train.seed)
        self.task_rng = np.random.default_rng(cfg.train.seed)
        self.games = self._make_games()
        self.venv: Any = None
        self._eval_venvs: dict[str, Any] = {}
        if self.rank == 0:
            self.venv = self._make_venv(
                "train", cfg.rollout.tasks_per_iteration * cfg.rollout.group_size
            )
        self.policy = self._make_policy(_checkpoint)
        self.ddp_model = self._wrap_ddp()
        self.optimizer = self._make_optimizer()
        self.clusterer = self._make_clusterer()
        self.library = self._make_library()
        self.distiller = self._make_distiller()
        self.logger: MetricsLogger | None = None
        self._last_retrieval = (0, 0)
        if _checkpoint is not None:
            self._load_checkpoint(_checkpoint)

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
        gen = torch.Generator().manual_seed(_mix(cfg.train.seed, self.iteration, split, greedy))
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
                    seed=_mix(cfg.train.seed, lo, split) & 0x7FFFFFFF,
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
        (d / "rng.json").write_text(json.dumps(_rng_state(self)))
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
        cfg, latest = _open_run(run_dir)
        if latest is None:
            return cls(cfg.replace("run.overwrite=true"))
        trainer = cls(cfg, _checkpoint=latest)
        if trainer.rank == 0:
            truncate_metrics(Path(cfg.run.dir) / METRICS, trainer.iteration)
        return trainer

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> Trainer:
        """Open a run's latest checkpoint for evaluation; writes nothing to the run directory."""
        cfg, latest = _open_run(run_dir)
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
        _set_rng_state(self, json.loads((d / "rng.json").read_text()))

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
        spec = _canon_spec(cfg.clustering.canon)
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
        return StepBatch(
            rollout.group,
            rollout.episode,
            rollout.step,
            rollout.reward,
            key,
            invalid=rollout.invalid,
            action_key=rollout.action_key,
        )

    def _update(self, records: list[Any], advantages: np.ndarray) -> dict[str, float]:
        from slea.algo.update import update_policy

        if self.world > 1:
            _broadcast([self.iteration, records, advantages])
        stats = update_policy(
            self.policy,
            self.optimizer,
            records,
            advantages,
            self.config.update,
            model=self.ddp_model,
            generator=self._update_rng(self.iteration),
        )
        return stats.to_dict()

    def _update_rng(self, iteration: int) -> Any:
        """Mini-batch order of an iteration's update: the same on every rank and after a resume."""
        import torch

        return torch.Generator().manual_seed(_mix(self.config.train.seed, "update", iteration))

    def _follow_updates(self) -> dict[str, Any]:
        """Ranks > 0: take part in every update that rank 0 broadcasts, until it says stop."""
        from slea.algo.update import update_policy

        while True:
            payload = _broadcast(None)
            if payload is None:
                return {}
            iteration, records, advantages = payload
            update_policy(
                self.policy,
                self.optimizer,
                records,
                advantages,
                self.config.update,
                model=self.ddp_model,
                generator=self._update_rng(iteration),
            )

    def _stop_followers(self) -> None:
        if self.world > 1:
            _broadcast(None, stop=True)

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
        return [
            EpisodeSpec(group=b, options=tasks[int(t)][1], task_id=tasks[int(t)][0])
            for b, t in enumerate(picks)
            for _ in range(r.group_size)
        ]

    def _tasks(self, split: str) -> list[tuple[str, dict[str, Any]]]:
        games = self.games.get(split, [])
        return [(Path(g).stem, {"task_id": i}) for i, g in enumerate(games)]

    def _prompt_settings(self) -> PromptSettings:
        cfg = self.config
        rules = cfg.prompt.rules or DEFAULT_RULES
        if cfg.policy.mode == "generate" and cfg.policy.parser == "tag":
            rules = f"{rules} {GENERATE_SUFFIX}"
        return PromptSettings(
            rules=rules,
            history_window=cfg.prompt.history_window,
            history_chars=cfg.prompt.history_chars,
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

    # ------------------------------------------------------------------ construction helpers
    def _make_games(self) -> dict[str, list[Path]]:
        cfg = self.config
        if cfg.env.id != TEXTWORLD:
            return {}
        from slea.envs.textworld import make_splits

        g = cfg.env.games
        cache = Path(g.cache_dir) if g.cache_dir else None
        try:  # generated once (about 3 s per game per core), then cached
            return make_splits(
                cache, {"train": g.train, "test": g.test}, seed=g.seed, kind=g.kind, level=g.level
            )
        except ValueError as exc:
            raise ConfigError(f"env.games: {exc}") from None

    def _make_venv(self, split: str, num_envs: int) -> Any:
        from slea.envs import make_vec

        cfg = self.config
        kwargs = dict(cfg.env.kwargs)
        kwargs.setdefault("max_episode_steps", cfg.rollout.max_steps)
        if cfg.env.id == TEXTWORLD:
            kwargs["games"] = [str(p) for p in self.games[split]]
        return make_vec(cfg.env.id, num_envs, mode=cfg.env.vector_mode, **kwargs)

    def _eval_venv(self, split: str, episodes: int) -> Any:
        if split == "train" and self.venv is not None:
            return self.venv
        if split not in self._eval_venvs:
            size = min(
                episodes, self.config.rollout.tasks_per_iteration * self.config.rollout.group_size
            )
            self._eval_venvs[split] = self._make_venv(split, size)
        return self._eval_venvs[split]

    def _make_policy(self, checkpoint: Path | None) -> Any:
        import copy

        from slea.policy.hf import HFPolicy, LoraSpec

        cfg = self.config
        init = Path(cfg.model.path) if cfg.model.path else self.run_dir / "model_init"
        if not cfg.model.path and not (init / "config.json").is_file():
            if self.rank == 0:
                self._build_tiny(init)
            _barrier()
        lora = None
        if cfg.model.lora_r:
            lora = LoraSpec(
                r=cfg.model.lora_r,
                alpha=cfg.model.lora_alpha,
                target_modules=cfg.model.lora_targets,
            )
        kwargs: dict[str, Any] = dict(
            mode=cfg.policy.mode,
            temperature=cfg.policy.temperature,
            top_p=cfg.policy.top_p,
            max_new_tokens=cfg.policy.max_new_tokens,
            parser=cfg.policy.parser,
            end_of_action=cfg.policy.end_of_action or None,
            score_chunk=cfg.policy.score_chunk,
        )
        load: dict[str, Any] = dict(dtype=cfg.model.dtype, device=cfg.model.device)
        if checkpoint is not None and lora is None:
            policy = HFPolicy.from_pretrained(init, **load, **kwargs)
            policy.model.load_state_dict(_load_weights(checkpoint / "model", cfg.model.dtype))
        else:
            policy = HFPolicy.from_pretrained(init, lora=lora, **load, **kwargs)
            if checkpoint is not None:
                _load_adapter(policy.model, checkpoint / "model")
        if cfg.update.kl_beta > 0 and cfg.train.update_policy and lora is None:
            if checkpoint is None:
                policy.set_reference(copy.deepcopy(policy.model))
            else:
                policy.set_reference(HFPolicy.from_pretrained(init, **load, **kwargs).model)
        return policy

    def _build_tiny(self, out: Path) -> None:
        from slea.policy.tiny import build_tiny

        texts = self._tokenizer_corpus()
        build_tiny(out, texts, self.config.model.tiny, seed=self.config.train.seed)

    def _tokenizer_corpus(self) -> list[str]:
        """Texts of random-walk episodes on the training tasks, plus the prompt scaffolding."""
        cfg = self.config
        rng = random.Random(cfg.train.seed)
        scaffold = [
            DEFAULT_RULES,
            GENERATE_SUFFIX,
            cfg.prompt.rules,
            "### System\n### User\n### Assistant\nTask:\nHistory:\nNow:\nActions:",
            'Tips:\n- Worked step: when you saw "x", the right action was "y".\nAvoid:\n- ',
        ]
        texts = scaffold * 50  # frequent enough that every scaffold word becomes one token
        tasks = self._tasks("train")
        n = cfg.model.tokenizer_corpus_episodes * max(len(tasks), 1)
        specs = [tasks[i % len(tasks)][1] for i in range(n)] if tasks else [{} for _ in range(n)]
        venv = self.venv
        for lo in range(0, len(specs), venv.num_envs):
            wave = specs[lo : lo + venv.num_envs]
            opts = wave + [wave[0]] * (venv.num_envs - len(wave))
            obs, infos = venv.reset(seed=cfg.train.seed + lo, options={"env_options": opts})
            from slea.rollout import _unbatch

            info = _unbatch(infos, venv.num_envs)
            texts.extend(str(o) for o in obs)
            texts.extend(str(i.get("task", "")) for i in info)
            for _ in range(cfg.rollout.max_steps):
                acts = []
                for i in info:
                    adm = list(i.get("admissible_actions", [])) or ["look"]
                    texts.extend(adm)
                    acts.append(rng.choice(adm))
                obs, _, _, _, infos = venv.step(acts)
                new = _unbatch(infos, venv.num_envs)
                info = [n_ if n_ else o_ for n_, o_ in zip(new, info, strict=True)]
                texts.extend(str(o) for o in obs)
        return texts

    def _wrap_ddp(self) -> Any:
        if self.world == 1 or not self.config.train.update_policy:
            return None
        import torch

        return torch.nn.parallel.DistributedDataParallel(self.policy.model)

    def _make_optimizer(self) -> Any:
        from slea.algo.update import make_optimizer

        return make_optimizer(self.policy.trainable_parameters(), self.config.update)

    def _make_clusterer(self) -> Any:
        from slea.clustering import ObservationClusterer

        c = self.config.clustering
        return ObservationClusterer(
            threshold=c.threshold, canon=_canon_spec(c.canon), max_clusters=c.max_clusters or None
        )

    def _make_library(self) -> Any:
        from slea.experience.library import ExperienceLibrary

        return ExperienceLibrary(self.config.library)

    def _make_distiller(self) -> Any:
        from slea.experience.evolve import make_distiller

        return make_distiller(
            self.config.evolution, model=self.policy.model, tokenizer=self.policy.tokenizer
        )

    def close(self) -> None:
        """Close the vector envs and the metrics sinks."""
        for v in [self.venv, *self._eval_venvs.values()]:
            if v is not None:
                v.close()
        self._eval_venvs.clear()
        if self.logger is not None:
            self.logger.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Trainer(run_dir={str(self.run_dir)!r}, iteration={self.iteration}, policy={self.policy!r})"


# ====================================================================== free helpers


def _open_run(run_dir: str | os.PathLike[str]) -> tuple[TrainConfig, Path | None]:
    """The saved config of a run and its latest checkpoint (verified), or None if it has none."""
    rd = Path(run_dir)
    if not (rd / "config.yaml").is_file():
        raise SleaError(
            f"{str(run_dir)!r} is not a run directory (no config.yaml); start a run with "
            "`slea train --config FILE`"
        )
    cfg = TrainConfig.from_yaml(rd / "config.yaml", [f"run.dir={rd}"])
    latest = CheckpointManager(rd, cfg.checkpoint.keep_last).latest()
    if latest is None:
        return cfg, None
    CheckpointManager.verify(latest[1])
    return cfg, latest[1]


def _canon_spec(name: str) -> Any:
    import slea

    return slea.CanonSpec.textworld() if name == "textworld" else slea.CanonSpec.default()


def _mix(*parts: Any) -> int:
    import hashlib

    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _check_env_id(env_id: str) -> None:
    import gymnasium

    import slea.envs

    slea.envs.register_envs()
    if env_id not in gymnasium.registry:
        known = sorted(k for k in gymnasium.registry if k.startswith("slea/"))
        raise EnvError(
            f"env.id: {env_id!r} is not a registered environment; use one of {known} "
            "(see `slea envs list`) or register yours with gymnasium.register"
        )


def _prepare_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        if not cfg.run.overwrite:
            raise ConfigError(
                f"run.dir: {str(run_dir)!r} already holds a run; resume it with "
                f"`slea train --resume {run_dir}`, choose another run.dir, or set run.overwrite=true"
            )
        for name in (METRICS, "checkpoints", "report", "summary.json", "tb"):
            p = run_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(run_dir / "config.yaml")


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state(t: Trainer) -> dict[str, Any]:
    import torch

    return {
        "python": random.getstate()[1],
        "torch": torch.get_rng_state().tolist(),
        "sample": t.sample_rng.get_state().tolist(),
        "tasks": t.task_rng.bit_generator.state,
    }


def _set_rng_state(t: Trainer, state: dict[str, Any]) -> None:
    import torch

    random.setstate((3, tuple(state["python"]), None))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    t.sample_rng.set_state(torch.tensor(state["sample"], dtype=torch.uint8))
    t.task_rng.bit_generator.state = state["tasks"]


def _load_weights(path: Path, dtype: str) -> dict[str, Any]:
    """The state dict of a model saved with ``save_pretrained`` (shards and tied weights handled)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), local_files_only=True
    )
    return dict(model.state_dict())


def _load_adapter(model: Any, path: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))


def _init_distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _broadcast(payload: Any, *, stop: bool = False) -> Any:
    """Rank 0 sends ``payload`` (None = stop) to the other ranks; they return it."""
    import torch.distributed as dist

    box = [None if stop else payload]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
