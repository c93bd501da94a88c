"""Real-browser helpers: a Streamlit server on a free port and Debian's Chromium via Playwright."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict):
    """Yields the app's URL; the server process is `streamlit_server.proc` (for its memory)."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    streamlit_server.proc = proc
    try:
        for _ in range(120):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            time.sleep(0.25)
        else:
            raise RuntimeError("streamlit did not become healthy:\n" + proc.stdout.read1().decode())
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextlib.contextmanager
def chromium(video: Path | None = None):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium is missing: `make test` installs it (apt-get install chromium).")
    args = CHROMIUM_ARGS + ([f"--use-file-for-fake-video-capture={video}"] if video else [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.grant_permissions(["camera"])
        try:
            yield context.new_page()
        finally:
            browser.close()


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
