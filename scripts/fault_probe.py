#!/usr/bin/env python3
"""Probe the faults a new user hit (the trust issue's list), one row each, and print a table.

    PYTHONPATH=python python scripts/fault_probe.py [--out probe.md]

Every row runs in a fresh subprocess with a time limit (the old code crashed or hung the
interpreter on some of them), and reports what happened: the exit code or signal and the first
line of the error, or the outcome checked. Needs the [train,envs] extras and the TextWorld game
cache (the tiny config generates 3 games on first use). Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "configs" / "textworld_tiny_test.yaml"
PY = sys.executable


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run(args: list[str], timeout: float = 300) -> str:
    """``exit N: first stderr line`` of a command (or ``timed out``/``killed by signal``)."""
    try:
        p = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if p.returncode < 0:
        return f"killed by signal {-p.returncode}"
    if p.returncode == 0:  # what it printed last (a summary line, a checked outcome)
        out = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]
        return f"exit 0: {'; '.join(out[-2:])[:200]}"
    lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip()]
    tb = " (traceback)" if "Traceback" in p.stderr else ""
    last = lines[-1] if tb and lines else (lines[0] if lines else "")
    return f"exit {p.returncode}{tb}: {last[:200]}"


def py(code: str, timeout: float = 120) -> str:
    return run([PY, "-c", textwrap.dedent(code)], timeout)


def slea(*args: str, timeout: float = 600) -> str:
    return run([PY, "-m", "slea", *args], timeout)


def tiny(run_dir: Path, *sets: str) -> list[str]:
    out = ["train", "--config", str(TINY), "--quiet", "--set", f"run.dir={run_dir}"]
    for s in sets:
        out += ["--set", s]
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def probe(tmp: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    add = rows.append
    tw = """
        import gymnasium, slea
        from slea.envs.textworld import make_games
        games = make_games(None, 1, seed=0, kind="coin", level=3)
        env = gymnasium.make("slea/TextWorld-v0", games=[str(g) for g in games])
        env.reset(seed=0)
        obs, r, term, trunc, info = env.step({action!r})
        print("invalid_action =", info["invalid_action"])
        env.step("look")
        print("still playable")
    """
    for action in ("x\x11", "x\x0e", "\x00", "go\ud800"):
        out = py(tw.format(action=action))
        add((f"TextWorld `env.step({action!r})`", out))
    add(
        (
            "generate mode, untrained tiny model (`policy.mode=generate policy.parser=first_line`)",
            slea(*tiny(tmp / "gen", "policy.mode=generate", "policy.parser=first_line")),
        )
    )
    # a second run and a second resume on a directory in use
    first = subprocess.Popen(
        [PY, "-m", "slea", *tiny(tmp / "busy", "train.iterations=6")],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (tmp / "busy" / "config.yaml").is_file() and time.time() < deadline:
        time.sleep(1)
    add(("second `slea train` with `run.overwrite=true` on a run in progress",
         slea(*tiny(tmp / "busy", "run.overwrite=true"))))  # fmt: skip
    add(
        ("`slea train --resume` on a run in progress", slea("train", "--resume", str(tmp / "busy")))
    )
    first.wait(timeout=900)
    add(("... the first run afterwards", f"exit {first.returncode}, summary.json: "
         f"{(tmp / 'busy' / 'summary.json').is_file()}"))  # fmt: skip
    snap = tmp / "busy" / "checkpoints" / "iter_6" / "library.snap"
    before = sha(snap)
    out = slea("library", "export", str(snap), str(snap))
    add(
        ("`slea library export L.snap L.snap`", f"{out}; snapshot unchanged: {sha(snap) == before}")
    )
    add(("Sokoban `width=10000, height=10000`", py("""
        import sys, time, gymnasium, slea
        t = time.perf_counter()
        try:
            gymnasium.make("slea/Sokoban-v0", width=10000, height=10000).reset(seed=0)
        except Exception as e:
            print(type(e).__name__, e, f"({time.perf_counter() - t:.3f} s)", file=sys.stderr)
            raise SystemExit(2)
    """)))  # fmt: skip
    add(("`--set update.lr=inf`", slea(*tiny(tmp / "inf", "update.lr=inf"))))
    edited = tmp / "edited"
    shutil.copytree(tmp / "busy", edited, ignore=shutil.ignore_patterns(".lock"))
    cfg = (edited / "config.yaml").read_text().replace("iterations: 6", "iterations: 7")
    (edited / "config.yaml").write_text(cfg)
    add(("`config.yaml` edited between kill and resume", slea("train", "--resume", str(edited))))
    bad = tmp / "bad"
    shutil.copytree(tmp / "busy", bad, ignore=shutil.ignore_patterns(".lock"))
    (bad / "metrics.jsonl").write_bytes(os.urandom(2000))
    add(("random bytes in `metrics.jsonl`, then `slea report`", slea("report", "--run", str(bad))))
    tok = bad / "model_init" / "tokenizer.json"
    tok.write_bytes(tok.read_bytes()[:-50] + b"damage")
    add(("damaged `model_init/tokenizer.json`, then `slea eval`", slea("eval", "--run", str(bad))))
    (bad / "config.yaml").write_bytes(os.urandom(2000))
    add(("random bytes in `config.yaml`, then `slea train --resume`",
         slea("train", "--resume", str(bad))))  # fmt: skip
    f = tmp / "a-file"
    f.write_text("x")
    add(("`run.dir` pointing at a file", slea(*tiny(f))))
    z8 = tmp / "game.z8"
    z8.write_bytes(os.urandom(4096))
    z8.with_suffix(".json").write_text("{}")
    add(("random-bytes `.z8` with a `{}` sidecar", py(f"""
        import gymnasium, slea
        env = gymnasium.make("slea/TextWorld-v0", games=[{str(z8)!r}])
        env.reset(seed=0)
    """)))  # fmt: skip
    lib = """
        import slea
        lib = slea.ExperienceLibrary(slea.LibraryConfig())
        {body}
    """
    add(("library admit with a lone surrogate", py(lib.format(body=(
        "lib.admit([slea.Candidate(text='go \\ud800', zone='strategy', level='principle', "
        "score=1.0)], iteration=1)")))))  # fmt: skip
    add(("library retrieve with a lone surrogate",
         py(lib.format(body="lib.retrieve(1, 'look \\ud800')"))))  # fmt: skip
    add(("library score 1e308", py(lib.format(body=(
        "lib.admit([slea.Candidate(text='go east', zone='strategy', level='principle', "
        "score=1e308)], iteration=1)")))))  # fmt: skip
    for n in ("-1", "0"):
        add(
            (
                f"`slea eval --episodes {n}`",
                slea("eval", "--run", str(tmp / "busy"), "--episodes", n),
            )
        )
    add(("`slea bench`", slea("bench")))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="slea-probe-") as tmp:
        rows = probe(Path(tmp))
    table = ["| probe | what happens now |", "|---|---|"]
    table += [f"| {a} | {b.replace('|', '/')} |" for a, b in rows]
    text = "\n".join(table)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
