"""Run report: ``metrics.jsonl`` + the latest library snapshot -> ``report/index.html`` with PNGs.

Figures (matplotlib, written next to the page): success rate and mean return on training rollouts
and on held-out games; library size per zone and level; retrieval (steps with experiences, cluster
hits vs fallbacks); observation clusters; the timing breakdown per iteration. A table lists the
top experiences with their usage and outcomes. Everything is read from the run directory, so the
report can be rebuilt at any time (``slea report --run DIR``).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slea.errors import SleaError
from slea.rundir import (
    METRICS,
    SUCCESS_KEYS,
    CheckpointManager,
    atomic_write_text,
    read_metrics,
)

TIMING_PARTS = (
    "generation",
    "env",
    "prompt",
    "clustering",
    "retrieval",
    "advantages",
    "update",
    "evolution",
)


def _get(record: dict[str, Any], path: str, default: Any = None) -> Any:
    node: Any = record
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _series(records: Sequence[dict[str, Any]], path: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        v = _get(r, path)
        if isinstance(v, int | float) and not isinstance(v, bool):
            xs.append(int(r.get("iteration", 0)))
            ys.append(float(v))
    return xs, ys


def _smooth(ys: list[float], k: int = 5) -> list[float]:
    out = []
    for i in range(len(ys)):
        window = ys[max(0, i - k + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


def _figure(
    path: Path,
    title: str,
    ylabel: str,
    lines: list[tuple[str, list[int], list[float], str]],
    *,
    ylim: tuple[float, float] | None = None,
) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [ln for ln in lines if ln[1]]
    if not lines:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for label, xs, ys, style in lines:
        ax.plot(xs, ys, style, label=label, markersize=4)
    ax.set_title(title)
    ax.set_xlabel("iteration")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _timing_figure(path: Path, train: Sequence[dict[str, Any]]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not train:
        return False
    xs = [int(r["iteration"]) for r in train]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    bottom = [0.0] * len(xs)
    for part in TIMING_PARTS:
        ys = [float(_get(r, f"timing/{part}", 0.0) or 0.0) for r in train]
        ax.bar(xs, ys, bottom=bottom, label=part, width=1.0)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax.set_title("time per iteration")
    ax.set_xlabel("iteration")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _library_lines(
    train: Sequence[dict[str, Any]],
) -> list[tuple[str, list[int], list[float], str]]:
    keys: set[str] = set()
    for r in train:
        for k, v in (_get(r, "library/by_zone_level") or {}).items():
            if isinstance(v, int | float) and v:
                keys.add(k)
    lines = [(k, *_series(train, f"library/by_zone_level/{k}"), "-") for k in sorted(keys)]
    lines.append(("total", *_series(train, "library/size"), "k-"))
    return lines


def _top_experiences(run_dir: Path, limit: int = 15) -> list[dict[str, Any]]:
    latest = CheckpointManager(run_dir).latest()
    if latest is None or not (latest[1] / "library.snap").exists():
        return []
    try:
        from slea.experience.library import ExperienceLibrary

        lib = ExperienceLibrary.load(latest[1] / "library.snap")
        entries = list(lib.entries())
    except Exception:  # a report never fails because of the library snapshot
        return []
    rows = []
    for e in entries:
        rows.append(
            {
                "id": getattr(e, "id", ""),
                "zone": getattr(e, "zone", ""),
                "level": getattr(e, "level", ""),
                "score": float(getattr(e, "score", 0.0)),
                "uses": int(getattr(e, "retrieved", 0) or 0),
                "successes": int(getattr(e, "successes", 0) or 0),
                "failures": int(getattr(e, "failures", 0) or 0),
                "text": str(getattr(e, "text", "")),
            }
        )
    rows.sort(key=lambda r: (-int(r["uses"]), -float(r["score"])))
    return rows[:limit]


def _summary_table(summary: dict[str, Any]) -> str:
    rows = []
    for key, label in SUCCESS_KEYS.items():
        row = (summary.get("success") or {}).get(key)
        if not row:
            continue
        cells = []
        for which in ("untrained", "trained"):
            r = row.get(which) or {}
            cells.append(
                f"{r.get('success', float('nan')):.2f} ({r.get('episodes', 0)} episodes)"
                if r
                else "-"
            )
        rows.append(f"<tr><td>{label}</td><td>{cells[0]}</td><td>{cells[1]}</td></tr>")
    if not rows:
        return ""
    return (
        "<table><tr><th>success rate</th><th>untrained</th><th>trained</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def write_report(run_dir: str | os.PathLike[str]) -> Path:
    """Build ``<run>/report/index.html`` and its PNG figures; return the page's path."""
    rd = Path(run_dir)
    if not (rd / "config.yaml").is_file() or not (rd / METRICS).is_file():
        raise SleaError(
            f"{str(run_dir)!r} is not a run directory (needs config.yaml and {METRICS}); "
            "train one with `slea train --config FILE`"
        )
    records = read_metrics(rd / METRICS)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    out = rd / "report"
    out.mkdir(parents=True, exist_ok=True)
    figs: list[tuple[str, str]] = []

    def add(name: str, caption: str, ok: bool) -> None:
        if ok:
            figs.append((name, caption))

    tx, ty = _series(train, "rollout/success")
    add(
        "success.png",
        "Success rate: training rollouts (smoothed) and evaluations",
        _figure(
            out / "success.png",
            "success rate",
            "success",
            [
                ("train rollouts (5-iter mean)", tx, _smooth(ty), "-"),
                ("held-out, sampled", *_series(evals, "test_sampled/success"), "o-"),
                ("held-out, greedy", *_series(evals, "test_greedy/success"), "s--"),
                ("validation, sampled", *_series(evals, "valid_sampled/success"), "v-."),
                ("validation, greedy", *_series(evals, "valid_greedy/success"), "d-."),
                ("training games, sampled", *_series(evals, "train_sampled/success"), "^:"),
            ],
            ylim=(-0.02, 1.02),
        ),
    )
    rx, ry = _series(train, "rollout/return")
    add(
        "return.png",
        "Mean episode return",
        _figure(
            out / "return.png",
            "mean return",
            "return",
            [
                ("train rollouts (5-iter mean)", rx, _smooth(ry), "-"),
                ("held-out, sampled", *_series(evals, "test_sampled/return"), "o-"),
                ("held-out, greedy", *_series(evals, "test_greedy/return"), "s--"),
            ],
        ),
    )
    add(
        "library.png",
        "Library size per zone and level",
        _figure(out / "library.png", "experience library", "entries", _library_lines(train)),
    )
    add(
        "retrieval.png",
        "Retrieval: fraction of steps shown experiences; cluster hits vs fallbacks",
        _figure(
            out / "retrieval.png",
            "retrieval",
            "fraction",
            [
                ("steps with experiences", *_series(train, "rollout/retrieval_fraction"), "-"),
                ("cluster hits / (hits + fallbacks)", *_series(train, "library/hit_rate"), "--"),
            ],
            ylim=(-0.02, 1.02),
        ),
    )
    add(
        "clusters.png",
        "Observation clusters",
        _figure(
            out / "clusters.png",
            "clusters",
            "clusters",
            [
                ("clusters", *_series(train, "clusters"), "-"),
            ],
        ),
    )
    add("timing.png", "Time per iteration by phase", _timing_figure(out / "timing.png", train))
    summary = {}
    if (rd / "summary.json").is_file():
        summary = json.loads((rd / "summary.json").read_text())
    page = _page(rd, train, summary, figs, _top_experiences(rd))
    atomic_write_text(out / "index.html", page)
    return out / "index.html"


def _timing_table(train: Sequence[dict[str, Any]]) -> str:
    if not train:
        return ""
    n = len(train)
    total = sum(float(_get(r, "timing/iteration", 0.0) or 0.0) for r in train) or 1e-9
    rows = []
    for part in (*TIMING_PARTS, "iteration"):
        s = sum(float(_get(r, f"timing/{part}", 0.0) or 0.0) for r in train)
        rows.append(
            f"<tr><td>{part}</td><td>{s / n * 1000:.1f}</td><td>{100 * s / total:.2f} %</td></tr>"
        )
    return (
        "<table><tr><th>phase</th><th>ms / iteration</th><th>share</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _page(
    rd: Path,
    train: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    figs: list[tuple[str, str]],
    top: list[dict[str, Any]],
) -> str:
    esc = html.escape
    last = train[-1] if train else {}
    facts = [
        ("run", str(rd)),
        ("iterations", str(last.get("iteration", 0))),
        ("env steps", str(last.get("env_steps", 0))),
        ("library entries", str(_get(last, "library/size", 0))),
        ("clusters", str(last.get("clusters", 0))),
    ]
    fact_rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in facts)
    fig_html = "".join(
        f'<figure><img src="{esc(name)}" alt="{esc(cap)}"><figcaption>{esc(cap)}</figcaption></figure>'
        for name, cap in figs
    )
    top_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(r[k]))}</td>" for k in ("zone", "level", "uses", "successes", "failures")
        )
        + f"<td>{r['score']:.2f}</td><td class='text'>{esc(r['text'][:300])}</td></tr>"
        for r in top
    )
    top_html = (
        "<table><tr><th>zone</th><th>level</th><th>uses</th><th>successes</th><th>failures</th>"
        f"<th>score</th><th>text</th></tr>{top_rows}</table>"
        if top
        else "<p>(library is empty)</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>slea run report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 14px; }}
th {{ background: #f2f2f2; }}
td.text {{ max-width: 700px; }}
.figs {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 13px; color: #555; }}
</style></head><body>
<h1>slea run report</h1>
<table>{fact_rows}</table>
<h2>Untrained vs trained</h2>
{_summary_table(summary) or "<p>(no evaluation yet)</p>"}
<h2>Curves</h2>
<div class="figs">{fig_html}</div>
<h2>Timing breakdown (mean per iteration)</h2>
{_timing_table(train)}
<h2>Top experiences</h2>
{top_html}
</body></html>
"""


__all__ = ["write_report"]
