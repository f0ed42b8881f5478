"""TrainConfig: YAML loading, overrides, validation messages, round trip, one docstring per field."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools

import pytest

from slea.errors import ConfigError
from slea.train import config as config_mod
from slea.train.config import TrainConfig


def test_defaults_follow_the_paper_and_issue() -> None:
    cfg = TrainConfig()
    assert (cfg.advantage.estimator, cfg.advantage.mode, cfg.advantage.gamma) == (
        "slea",
        "mean_norm",
        0.95,
    )
    assert (cfg.advantage.step_weight, cfg.advantage.invalid_penalty) == (1.0, 0.1)
    assert (cfg.update.clip_eps, cfg.update.kl_beta) == (0.2, 0.01)
    assert (cfg.retrieval.warmup, cfg.retrieval.min_library, cfg.retrieval.budget_tokens) == (
        5,
        10,
        200,
    )
    assert (cfg.library.k_strategy, cfg.library.k_warning) == (2, 1)
    assert (cfg.library.strategy_capacity, cfg.library.warning_capacity) == (100, 50)
    assert cfg.clustering.threshold == 0.85


def test_yaml_round_trip_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "train:\n  iterations: 7\nupdate:\n  lr: 0.01\nmodel:\n  tiny:\n    num_layers: 3\n"
    )
    cfg = TrainConfig.from_yaml(
        path,
        [
            "update.lr=3e-4",
            "train.update_policy=false",
            "model.lora_targets=[q_proj, v_proj]",
            "env.kwargs={max_steps: 5}",
            "run.dir=runs/x",
            "library.ema_alpha=0.5",
        ],
    )
    assert cfg.train.iterations == 7 and cfg.model.tiny.num_layers == 3
    assert cfg.update.lr == 3e-4 and cfg.train.update_policy is False
    assert cfg.model.lora_targets == ("q_proj", "v_proj")
    assert cfg.env.kwargs == {"max_steps": 5}
    assert cfg.library.ema_alpha == 0.5
    out = tmp_path / "resolved.yaml"
    cfg.to_yaml(out)
    assert TrainConfig.from_yaml(out) == cfg
    assert cfg.replace("rollout.group_size=3").rollout.group_size == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.update.lr = 1.0  # type: ignore[misc]


def test_removed_keys_at_their_old_defaults_still_load() -> None:
    """A run saved before the keys went (its config.yaml lists every key) still loads."""
    cfg = TrainConfig.from_dict(
        {
            "advantage": {"revisit_penalty": 0.0},
            "prompt": {"mark_tried": False},
            "retrieval": {"demonstrations": True, "consistency_k": 0},
        }
    )
    assert "mark_tried" not in cfg.to_dict()["prompt"]
    with pytest.raises(ConfigError, match=r"prompt\.mark_tried: this key was removed"):
        TrainConfig.from_dict({"prompt": {"mark_tried": True}})


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (
            "update.lrr=1",
            r"update\.lrr: unknown key \(did you mean 'lr'\?\); valid keys in update: lr, lr_schedule, lr_final_ratio, weight_decay",
        ),
        (
            "updte.lr=1",
            r"updte: unknown key \(did you mean 'update'\?\); valid keys in config: run, train",
        ),
        ("update.lr=abc", r"update\.lr: expected a number"),
        ("update.clip_eps=1.5", r"update\.clip_eps: must be in \(0, 1\)"),
        ("train.iterations=2.5", r"train\.iterations: expected an integer"),
        ("train.update_policy=maybe", r"train\.update_policy: expected true or false"),
        ("advantage.estimator=ppo", r"advantage\.estimator: must be grpo, gigpo, slea or salt"),
        ("policy.mode=beam", r"policy\.mode"),
        ("model.tiny.hidden_size=30", r"model\.tiny: .*multiple of num_heads"),
        ("model.dtype=int8", r"model\.dtype"),
        ("library.k_strategy=-1", r"library: LibraryConfig\.k_strategy must be an int"),
        ("update=3", r"update: expected a mapping"),
        ("advantage.revisit_penalty=0.2", r"advantage\.revisit_penalty: this key was removed"),
        ("prompt.mark_tried=true", r"prompt\.mark_tried: this key was removed"),
        ("retrieval.demonstrations=false", r"retrieval\.demonstrations: this key was removed"),
        ("retrieval.consistency_k=2", r"retrieval\.consistency_k: this key was removed"),
        ("update.lr=.inf", r"update\.lr: must be a finite number"),
        ("update.lr=inf", r"update\.lr: must be a finite number"),
        ("advantage.gamma=.nan", r"advantage\.gamma: must be a finite number"),
        ("library.novelty_threshold=.inf", r"library\.novelty_threshold: must be a finite"),
        ("nonsense", r"must look like section\.key=value"),
        ("update.lr.x=1", r"update\.lr: expected a number"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig.from_dict({}, [override])


def test_bad_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist; pass --config"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        TrainConfig.from_yaml(bad)


def _config_classes() -> list[type]:
    return [
        obj
        for _, obj in inspect.getmembers(config_mod, inspect.isclass)
        if dataclasses.is_dataclass(obj) and obj.__module__ == config_mod.__name__
    ]


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_field_has_a_docstring(cls: type) -> None:
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    documented = set()
    for stmt, nxt in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            documented.add(stmt.target.id)  # type: ignore[union-attr]
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in documented]
    assert not missing, f"{cls.__name__}: fields without a docstring: {missing}"
    assert cls.__doc__


def test_actions_are_listed_for_pretrained_models_unless_set() -> None:
    from slea.train.setup import lists_actions, prompt_settings

    base = TrainConfig()
    assert base.prompt.show_admissible is None
    assert not lists_actions(base)  # the tiny model: its demo prompts stay as they were
    pretrained = base.replace("model.path=/models/some-chat-model")
    assert lists_actions(pretrained) and prompt_settings(pretrained).show_admissible
    assert lists_actions(base.replace("model.preset=smollm2-135m-instruct"))
    assert not lists_actions(pretrained.replace("prompt.show_admissible=false"))
    assert lists_actions(base.replace("prompt.show_admissible=true"))
    assert lists_actions(base.replace("policy.mode=generate", "prompt.show_admissible=false"))
    with pytest.raises(ConfigError, match=r"prompt\.history_format"):
        base.replace("prompt.history_format=xml")
    with pytest.raises(ConfigError, match=r"policy\.action_score"):
        base.replace("policy.action_score=max")


def test_retrieval_level_is_step_or_task() -> None:
    base = TrainConfig()
    assert base.retrieval.level == "step"
    assert base.replace("retrieval.level=task").retrieval.level == "task"
    with pytest.raises(ConfigError, match=r"retrieval\.level.*'step' or 'task'"):
        base.replace("retrieval.level=episode")
