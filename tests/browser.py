"""Real-browser helpers: a Streamlit server started as `make run` starts it, Debian's Chromium via
Playwright, pages at phone and desktop sizes that record console errors and failed requests, and
screenshots (tests/screenshots/, git-ignored) for a person to look at."""

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import free_ports

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "tests" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
NAV = ["Home", "Digits", "Text", "Mood", "Training"]


@contextlib.contextmanager
def streamlit_server(env: dict, log: Path | None = None, launcher: tuple = ("streamlit",)):
    """Yields the app's URL. Started like `make run` (settings from .streamlit/config.toml);
    the process is `streamlit_server.proc` (for its memory and CPU). `launcher`: the module run with
    `python -m` and its first arguments (bench.load times each script run with bench.serve_timed)."""
    (port,) = free_ports(1)
    cmd = [sys.executable, "-m", *launcher, "run", "app.py", "--server.address", "127.0.0.1",
           "--server.port", str(port)]
    log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"streamlit-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    streamlit_server.proc = proc
    try:
        for _ in range(240):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.25)
        else:
            raise RuntimeError("streamlit did not become healthy:\n" + log.read_text(errors="replace"))
        if proc.poll() is not None:
            raise RuntimeError("streamlit exited:\n" + log.read_text(errors="replace"))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class Tab:
    """A page of its own browser context, with what went wrong in it recorded."""

    def __init__(self, context):
        self.context = context
        self.page = context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}"))

    def _failed(self, request) -> None:
        # Cancelled by the browser itself: an image the page no longer shows (the person changed pages, or a rerun
        # replaced it), or a script still loading when the person reloads. Nobody sees an error; what cannot be had
        # fails otherwise (a 404, or a refused or reset connection: recorded).
        if request.failure == "net::ERR_ABORTED":
            return
        self.problems.append(f"failed: {request.url} {request.failure}")

    def shot(self, name: str) -> Path:
        """The whole page: Streamlit scrolls inside its main area, so the window is made as tall as the
        page for the picture, then put back."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        size = self.page.viewport_size
        height = self.page.evaluate("""() => { const m = document.querySelector('[data-testid=stMain]');
                                              return m ? m.scrollHeight : document.body.scrollHeight; }""")
        self.page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(height, 5000))})
        self.page.wait_for_timeout(300)
        self.page.screenshot(path=str(path))
        self.page.set_viewport_size(size)
        return path

    def sideways_scroll(self) -> int:
        """How far the page can scroll sideways (0 when nothing sticks out)."""
        return self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


@contextlib.contextmanager
def chromium(video: Path | None = None):
    """Yields `open_tab(viewport) -> Tab`, each tab in a fresh context (a new visitor)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium is missing: `make test` installs it (apt-get install chromium).")
    args = CHROMIUM_ARGS + ([f"--use-file-for-fake-video-capture={video}"] if video else [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)

        def open_tab(viewport=DESKTOP, color_scheme="light") -> Tab:
            is_phone = viewport["width"] < 600
            context = browser.new_context(viewport=viewport, is_mobile=is_phone, has_touch=is_phone,
                                          device_scale_factor=1, color_scheme=color_scheme)
            context.grant_permissions(["camera"])
            return Tab(context)

        try:
            yield open_tab
        finally:
            browser.close()


def songs_table(page):
    """The Mood page's table of songs (a markdown table: song, genre, listen)."""
    return page.get_by_test_id("stMarkdown").locator("table").filter(has_text="listen")


def wait_for_app(page, timeout: float = 60_000) -> None:
    """Until the page's script has run: the app's navigation is there and nothing is running."""
    page.get_by_test_id("stSidebarNav").wait_for(state="attached", timeout=timeout)
    page.wait_for_function("""() => !document.querySelector('[data-testid=stStatusWidget]')""", timeout=timeout)


def open_expander(page, label: str, timeout: float = 30_000) -> None:
    """Open an expander as a person does, and wait until it has finished opening. It grows for about half a
    second, and while it grows Chromium's scroll anchoring can move what is inside it: a press on a button there
    came up 34 px away, on the block around it, and the browser sent no click (seen about 1 time in 6)."""
    page.get_by_text(label, exact=True).click()
    details = page.locator("details").filter(has=page.get_by_text(label, exact=True)).first
    last = None
    for _ in range(int(timeout / 150)):
        height = details.evaluate("(d) => d.open ? Math.round(d.getBoundingClientRect().height) : null")
        if height and height == last:
            return
        last = height
        page.wait_for_timeout(150)
    raise AssertionError(f"the expander {label!r} did not finish opening")


def write_y4m(rgb, path: Path, width: int = 640, height: int = 480, frames: int = 10) -> Path:
    """A Y4M (yuv420p) video of a still image, for Chromium's fake webcam."""
    import cv2
    import numpy as np

    h, w = rgb.shape[:2]
    scale = min(width / w, height / h)
    small = cv2.resize(rgb, (int(w * scale), int(h * scale)))
    frame = np.zeros((height, width, 3), np.uint8)
    y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    frame[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + yuv)
    return path
