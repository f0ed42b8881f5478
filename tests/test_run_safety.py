"""A run directory is safe: one process trains in it at a time, an edited config is not applied
silently on resume, damaged files are found before use, and every CLI command answers bad files
with one line and exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")

from test_trainer import TINY, _env, tiny_config, tiny_overrides
from test_trainer import trained as trained  # the module-scoped tiny run

from slea.errors import ConfigError, SleaError, SnapshotError
from slea.rundir import LOCK, RunLock, read_metrics


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slea", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], pattern: str) -> None:
    import re

    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.search(pattern, lines[0]), lines[0]


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(LOCK))
    return to


# ---------------------------------------------------------------------------- the lock


def test_a_second_run_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    from slea.train.trainer import Trainer

    run = tmp_path / "run"
    with Trainer(tiny_config(run, "run.overwrite=true")):
        before = sorted(p.name for p in run.iterdir())
        with pytest.raises(SleaError, match=r"run\.dir: .* is in use by pid \d+ on .*training"):
            Trainer(tiny_config(run, "run.overwrite=true"))
        with pytest.raises(SleaError, match="is in use by pid"):
            Trainer.resume(run)
        assert sorted(p.name for p in run.iterdir()) == before  # nothing was deleted
        assert (run / "model_init" / "config.json").is_file()
    with Trainer(tiny_config(run, "run.overwrite=true")):  # released on close
        pass


def test_a_lock_dies_with_its_holder(tmp_path: Path) -> None:
    code = (
        "import sys, time; from slea.rundir import RunLock; "
        f"lock = RunLock.acquire({str(tmp_path)!r}); print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SleaError, match=f"in use by pid {holder.pid} "):
            RunLock.acquire(tmp_path)
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the lock file stays behind
        holder.wait()
    assert (tmp_path / LOCK).is_file()
    lock = RunLock.acquire(tmp_path)  # the stale lock file does not block
    assert lock.held
    lock.release()
    assert not lock.held


def test_a_lock_left_held_at_exit_is_released_quietly(tmp_path: Path) -> None:
    # a lock still held at interpreter exit (an un-closed Trainer in a module global, held in a
    # reference cycle) is released by the garbage collector when imports no longer work
    code = (
        "from slea.rundir import RunLock\n"
        "class Holder: pass\n"
        "h = Holder(); h.me = h; "
        f"h.lock = RunLock.acquire({str(tmp_path)!r}); print('held', flush=True)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "held"
    assert "Error" not in proc.stderr and "ignored" not in proc.stderr, proc.stderr
    RunLock.acquire(tmp_path).release()


def test_run_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    sets = [arg for o in tiny_overrides(f) for arg in ("--set", o)]
    proc = _cli("train", "--config", str(TINY), *sets)
    _one_line_error(proc, r"^error: run\.dir: .*not-a-dir' is a file, not a directory")
    assert f.read_text() == "x"


# ---------------------------------------------------------------------------- resume


def test_an_edited_config_is_refused_on_resume_unless_allowed(
    trained: Path, tmp_path: Path
) -> None:
    from slea.train.trainer import Trainer

    run = _copy(trained, tmp_path / "run")
    cfg = (run / "config.yaml").read_text()
    assert "iterations: 4" in cfg
    (run / "config.yaml").write_text(cfg.replace("iterations: 4", "iterations: 5"))
    with pytest.raises(
        ConfigError,
        match=r"was edited since the checkpoint iter_4 \(train\.iterations: 4 -> 5\); .*--allow-config-change",
    ):
        Trainer.resume(run)
    proc = _cli("train", "--resume", str(run))
    _one_line_error(proc, r"train\.iterations: 4 -> 5")
    proc = _cli("train", "--resume", str(run), "--allow-config-change", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_metrics(run / "metrics.jsonl")
    change = [r for r in records if r["kind"] == "config_change"]
    assert change == [
        {"kind": "config_change", "iteration": 4, "changed": {"train.iterations": [4, 5]}}
    ]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5]
    proc = _cli("train", "--config", str(TINY), "--allow-config-change")
    _one_line_error(proc, "--allow-config-change only goes with --resume")


def test_damaged_model_init_is_found_before_loading(trained: Path, tmp_path: Path) -> None:
    from slea.train.trainer import Trainer

    run = _copy(trained, tmp_path / "run")
    manifest = json.loads((run / "model_init" / "manifest.json").read_text())
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= set(manifest["files"])
    tok = run / "model_init" / "tokenizer.json"
    tok.write_bytes(tok.read_bytes()[:-40] + b"garbage")
    with pytest.raises(SnapshotError, match=r"model_init: file tokenizer\.json is corrupted"):
        Trainer.resume(run)
    _one_line_error(_cli("eval", "--run", str(run)), r"tokenizer\.json is corrupted")


# ---------------------------------------------------------------------------- bad files, CLI


def test_bad_files_give_one_line_and_exit_code_2(trained: Path, tmp_path: Path) -> None:
    run = _copy(trained, tmp_path / "run")
    (run / "metrics.jsonl").write_bytes(
        (run / "metrics.jsonl").read_bytes() + b"\xff\xfe random \x00 bytes\n[1, 2]\n"
    )
    proc = _cli("report", "--run", str(run))  # damaged lines are skipped, the rest is reported
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(read_metrics(run / "metrics.jsonl")) == len(read_metrics(trained / "metrics.jsonl"))
    (run / "config.yaml").write_bytes(bytes(range(256)) * 4)
    _one_line_error(_cli("train", "--resume", str(run)), r"config file .* is not UTF-8 text")
    _one_line_error(_cli("eval", "--run", str(run)), r"config file .* is not UTF-8 text")
    (run / "config.yaml").write_text("train: [unclosed\n")
    _one_line_error(_cli("eval", "--run", str(run)), r"config file .* is not valid YAML")
    for bad in ("-1", "0", "two"):
        _one_line_error(_cli("eval", "--run", str(trained), "--episodes", bad), "--episodes")
    _one_line_error(_cli("eval", "--run", str(tmp_path / "missing")), "is not a run directory")


def test_a_config_number_must_be_finite() -> None:
    for value in ("inf", "-inf", ".nan", "1e400"):
        with pytest.raises(ConfigError, match=r"update\.lr: must be a finite number"):
            tiny_config(Path("unused"), f"update.lr={value}")
