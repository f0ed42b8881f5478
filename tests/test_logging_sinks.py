"""MetricsLogger's optional sinks, read back: TensorBoard event files and an offline W&B run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from slea.rundir import read_metrics
from slea.train.logging import MetricsLogger, flatten

RECORDS = [
    {"kind": "eval", "iteration": 0, "test_sampled": {"success": 0.25, "episodes": 4}},
    {
        "kind": "train",
        "iteration": 1,
        "rollout": {"success": 0.5, "return": 0.5},
        "library": {"size": 3},
        "update": {"lr": 1e-3, "skipped": False, "loss": float("nan")},
        "note": "text is not a scalar",
    },
    {"kind": "train", "iteration": 2, "rollout": {"success": 0.75, "return": 1.0}},
]


def test_flatten_keeps_numpy_scalars() -> None:
    """numpy scalars are numbers too (np.float32 and np.int64 are not float / int subclasses)."""
    flat = flatten({"a": np.float32(0.5), "b": {"c": np.int64(3)}, "d": np.bool_(True)})
    assert flat == {"a": 0.5, "b/c": 3.0, "d": 1.0}
    assert flatten({"x": np.float64("inf"), "y": "s", "z": [1]}) == {}


def _scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_read_back(tmp_path: Path) -> None:
    pytest.importorskip(
        "torch", reason="TensorBoard logging writes through torch.utils.tensorboard"
    )
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    with MetricsLogger(tmp_path, tensorboard=True) as log:
        for r in RECORDS:
            log.log(r)
    scalars = _scalars(tmp_path / "tb")
    assert scalars["train/rollout/success"] == [(1, 0.5), (2, 0.75)]
    assert scalars["train/rollout/return"] == [(1, 0.5), (2, 1.0)]
    assert scalars["train/library/size"] == [(1, 3.0)]
    assert scalars["train/update/skipped"] == [(1, 0.0)]
    assert scalars["eval/test_sampled/success"] == [(0, 0.25)]
    assert "train/update/loss" not in scalars  # NaN is left out, like every non-finite value
    assert not any("note" in tag for tag in scalars)
    assert read_metrics(tmp_path / "metrics.jsonl")[1]["note"] == "text is not a scalar"


def test_tensorboard_events_are_on_disk_before_close(tmp_path: Path) -> None:
    """A killed run keeps its TensorBoard curves up to the last record, like metrics.jsonl."""
    pytest.importorskip(
        "torch", reason="TensorBoard logging writes through torch.utils.tensorboard"
    )
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    log = MetricsLogger(tmp_path, tensorboard=True)
    try:
        log.log(RECORDS[1])
        assert _scalars(tmp_path / "tb")["train/rollout/success"] == [(1, 0.5)]
    finally:
        log.close()


def _wandb_history(run_file: Path) -> list[dict[str, object]]:
    """The history rows of an offline run file: a LevelDB-style log (32 KiB blocks, 7-byte record
    headers: crc, length, type) after a 7-byte ``:W&B`` header, each record a protobuf Record."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B"
    pos, block, buf, rows = 7, 32768, b"", []
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        pos += 7
        if kind == 0 and n == 0:  # zero padding to the end of the block
            pos += left - 7
            continue
        buf += raw[pos : pos + n]
        pos += n
        if kind in (1, 4):  # a full record, or the last piece of one
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            buf = b""
            if rec.WhichOneof("record_type") == "history":
                rows.append(
                    {
                        (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                        for i in rec.history.item
                    }
                )
    return rows


def test_wandb_offline_run_holds_the_metrics(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (W&B logging is optional)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with MetricsLogger(
        tmp_path, tensorboard=False, wandb_project="slea-test", config={"seed": 3}
    ) as log:
        for r in RECORDS:
            log.log(r)
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    run_file = next(runs[0].glob("run-*.wandb"))  # what `wandb sync` would upload
    deadline = time.monotonic() + 60  # wandb's service writes the file just after finish()
    while len(rows := _wandb_history(run_file)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    got = [{k: v for k, v in row.items() if not k.startswith("_") or k == "_step"} for row in rows]
    assert got == [
        {
            "_step": 0,
            "eval/iteration": 0,
            "eval/test_sampled/success": 0.25,
            "eval/test_sampled/episodes": 4,
        },
        {
            "_step": 1,
            "train/iteration": 1,
            "train/rollout/success": 0.5,
            "train/rollout/return": 0.5,
            "train/library/size": 3,
            "train/update/lr": 1e-3,
            "train/update/skipped": 0,
        },
        {
            "_step": 2,
            "train/iteration": 2,
            "train/rollout/success": 0.75,
            "train/rollout/return": 1.0,
        },
    ]
