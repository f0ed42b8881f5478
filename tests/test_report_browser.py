"""The run report in a real browser: headless Chromium loads the page, every figure decodes, and
the console stays free of errors.

The browser is driven through the DevTools protocol over ``--remote-debugging-pipe`` (JSON
messages ending in a NUL byte on file descriptors 3 and 4), so no websocket client or browser
driver package is needed. The run is synthetic: a ``metrics.jsonl`` shaped like the trainer's, a
summary and a checkpoint holding a small library, so no training is needed. A screenshot of the
page is written to ``$SLEA_ARTIFACTS_DIR`` (``runs/ci-artifacts`` in CI) when a check fails.

Without Chromium the test skips, unless ``SLEA_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which
installs Debian's ``chromium``): then a missing browser fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib", reason="the report's figures need the [train] extra (matplotlib)")

import slea
from slea.report.html import write_report
from slea.rundir import CheckpointManager

FIGURES = (
    "success.png",
    "return.png",
    "library.png",
    "retrieval.png",
    "clusters.png",
    "timing.png",
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("SLEA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SLEA_REQUIRE_BROWSER=1 but none of {BROWSERS} is on PATH")
    pytest.skip("no chromium or google-chrome on PATH to render the report")


# ---- a tiny DevTools-protocol client over a pipe ---------------------------------------------

# Moves the two pipe ends to fds 3 and 4 (the numbers the protocol fixes), then runs the browser.
_TRAMPOLINE = """
import fcntl, os, sys
r, w = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])  # out of the way
os.dup2(r, 3)
os.dup2(w, 4)
os.execv(sys.argv[3], sys.argv[3:])
"""


class Browser:
    """Headless Chromium driven over ``--remote-debugging-pipe``."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _TRAMPOLINE,
                str(to_chrome_r),
                str(from_chrome_w),
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str = "",
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Send one command and wait for its answer (events meanwhile go to ``self.events``)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, *, timeout: float = 60.0) -> dict[str, Any]:
        for e in self.events:
            if e.get("method") == method:
                return e
        deadline = time.monotonic() + timeout
        while True:
            e = self._read(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the browser")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"the browser exited: {self.stderr_tail()}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight
})))"""


def render(browser_exe: str, page: Path, workdir: Path) -> dict[str, Any]:
    """Load ``page``; return its images, console errors, title and a PNG screenshot (bytes)."""
    b = Browser(browser_exe, workdir / "profile")
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            b.send(f"{domain}.enable", session=session)
        b.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1300, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        b.send("Page.navigate", {"url": page.as_uri()}, session=session)
        b.wait_event("Page.loadEventFired")
        value = b.send(
            "Runtime.evaluate",
            {"expression": IMAGES_JS, "returnByValue": True},
            session=session,
        )["result"]["value"]
        title = b.send(
            "Runtime.evaluate",
            {"expression": "document.title", "returnByValue": True},
            session=session,
        )["result"]["value"]
        shot = b.send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True},
            session=session,
        )["data"]
        errors = console_errors(b.events)
    finally:
        b.close()
    return {
        "images": json.loads(value),
        "errors": errors,
        "title": title,
        "screenshot": base64.b64decode(shot),
    }


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among DevTools ``events``."""
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a)) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            out.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
    return out


# ---- a synthetic run ---------------------------------------------------------------------------


def synthetic_run(run_dir: Path, iterations: int = 8) -> Path:
    """A run directory shaped like the trainer's: config, metrics, summary, one checkpoint."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("run:\n  dir: synthetic\n")
    records: list[dict[str, Any]] = []
    records.append(
        {
            "kind": "eval",
            "iteration": 0,
            "test_sampled": {"success": 0.25, "return": 0.25, "episodes": 4},
            "test_greedy": {"success": 0.0, "return": 0.0, "episodes": 2},
            "train_sampled": {"success": 0.5, "return": 0.5, "episodes": 4},
        }
    )
    for it in range(1, iterations + 1):
        parts = {
            "generation": 0.5,
            "env": 0.1,
            "prompt": 0.05,
            "clustering": 0.01,
            "retrieval": 0.02,
            "advantages": 0.001,
            "update": 0.8,
            "evolution": 0.1,
        }
        records.append(
            {
                "kind": "train",
                "iteration": it,
                "env_steps": 36 * it,
                "clusters": 10 + 3 * it,
                "rollout": {
                    "success": min(1.0, 0.1 * it),
                    "return": 0.1 * it,
                    "retrieval_fraction": 0.5,
                    "steps": 36,
                },
                "library": {
                    "size": 2 * it,
                    "by_zone_level": {"strategy.principle": it, "warning.pattern": it},
                    "hit_rate": 0.75,
                },
                "timing": {
                    **parts,
                    "rollout": 0.7,
                    "iteration": sum(parts.values()) + 0.05,
                    "overhead_fraction": 0.02,
                },
            }
        )
    records.append(
        {
            "kind": "eval",
            "iteration": iterations,
            "test_sampled": {"success": 0.75, "return": 0.75, "episodes": 4},
            "test_greedy": {"success": 1.0, "return": 1.0, "episodes": 2},
            "train_sampled": {"success": 1.0, "return": 1.0, "episodes": 4},
        }
    )
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "iterations": iterations,
        "success": {
            k: {"untrained": records[0][k], "trained": records[-1][k]}
            for k in ("test_sampled", "test_greedy", "train_sampled")
        },
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    lib = slea.ExperienceLibrary()
    lib.admit(
        [
            slea.Candidate(
                "Read the task <first> & pick up the coin.", "strategy", "principle", 1.0
            ),
            slea.Candidate("Do not walk back the way you came.", "warning", "pattern", 0.0),
        ],
        iteration=1,
    )
    CheckpointManager(run_dir).save(iterations, lambda d: lib.save(d / "library.snap"))
    return run_dir


def _check(result: dict[str, Any]) -> list[str]:
    problems = list(result["errors"])
    srcs = sorted(i["src"] for i in result["images"])
    if srcs != sorted(FIGURES):
        problems.append(f"figures on the page {srcs}, expected {sorted(FIGURES)}")
    problems += [
        f"image {i['src']} did not load (naturalWidth {i['width']})"
        for i in result["images"]
        if not (i["complete"] and i["width"] > 0 and i["height"] > 0)
    ]
    if result["title"] != "slea run report":
        problems.append(f"title {result['title']!r}")
    return problems


def _keep_screenshot(result: dict[str, Any], tmp_path: Path, name: str) -> Path:
    shot = tmp_path / f"{name}.png"
    shot.write_bytes(result["screenshot"])
    return shot


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """Every figure is on the page and decoded, the console has no error, the page is not blank."""
    browser = find_browser()
    run = synthetic_run(tmp_path / "run")
    page = write_report(run)
    result = render(browser, page, tmp_path)
    shot = _keep_screenshot(result, tmp_path, "report")
    problems = _check(result)
    from PIL import Image

    with Image.open(shot) as img:
        colours = img.convert("RGB").resize((130, 200)).getcolors(maxcolors=130 * 200)
        height = img.height
    if colours is None or len(colours) <= 50:
        problems.append("the screenshot is nearly blank")
    if problems:
        artifacts = Path(os.environ.get("SLEA_ARTIFACTS_DIR", tmp_path / "artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, artifacts / "report_browser_failure.png")
        shutil.copytree(page.parent, artifacts / "report_browser_failure_page", dirs_exist_ok=True)
    assert not problems, f"{problems}; screenshot: {shot}"
    assert height > 1000  # the whole page, figures and tables, not one viewport of it


def test_the_check_sees_a_missing_figure_and_a_console_error(tmp_path: Path) -> None:
    """The harness can fail: a deleted PNG and a script error are both reported."""
    browser = find_browser()
    run = synthetic_run(tmp_path / "run")
    page = write_report(run)
    (page.parent / "timing.png").unlink()
    html = page.read_text().replace("</body>", "<script>console.error('boom')</script></body>")
    page.write_text(html)
    problems = _check(render(browser, page, tmp_path))
    assert any("timing.png did not load" in p for p in problems), problems
    assert any("console: boom" in p for p in problems), problems
    assert any("timing.png" in p and p.startswith("log") for p in problems), problems
