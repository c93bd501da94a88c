"""Shared fixtures: every test gets its own empty runs/, feedback/ and models/ folders,
and small synthetic data; no test needs the real data sets or the network."""

import contextlib
import os
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REAL_MODELS = ROOT / "models"
TINY_TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog. " * 30


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    for name in ("MODELS_DIR", "RUNS_DIR", "FEEDBACK_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # it would send every test's jobs to a Ray cluster
    return tmp_path


@pytest.fixture
def real_models(monkeypatch):
    """Point the app at the committed models."""
    monkeypatch.setenv("MODELS_DIR", str(REAL_MODELS))
    return REAL_MODELS


def render_digit(d: int, size: int = 28, scale: float = 0.9, dx: int = 0, dy: int = 0, thickness: int = 2):
    """A white-on-black digit drawn with OpenCV's font: synthetic MNIST."""
    img = np.zeros((size, size), np.uint8)
    (w, h), _ = cv2.getTextSize(str(d), cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    org = ((size - w) // 2 + dx, (size + h) // 2 + dy)
    cv2.putText(img, str(d), org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    return img


def synthetic_mnist(n_per_class: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for d in range(10):
        for _ in range(n_per_class):
            xs.append(render_digit(d, scale=rng.uniform(0.7, 1.0), dx=int(rng.integers(-2, 3)), dy=int(rng.integers(-2, 3))))
            ys.append(d)
    x, y = np.stack(xs), np.array(ys, np.uint8)
    order = rng.permutation(len(x))
    return x[order], y[order]


def canvas_with(text: str, width: int = 560, height: int = 280, thickness: int = 18):
    """An RGBA canvas image (transparent background, black ink) with `text` drawn on it."""
    rgba = np.zeros((height, width, 4), np.uint8)
    alpha = np.zeros((height, width), np.uint8)
    cv2.putText(alpha, text, (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 5, 255, thickness, cv2.LINE_AA)
    rgba[..., 3] = alpha
    return rgba


def train_tiny(tmp_path_factory, task: str, settings, train, **kwargs):
    """Train a tiny model one epoch into a temp runs/ and promote it into a temp models/.
    Yields (run, card, models dir); the environment is restored afterwards."""
    from pipelines import runs

    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp(task)
    mp.setenv("MODELS_DIR", str(base / "models"))
    mp.setenv("RUNS_DIR", str(base / "runs"))
    run = runs.Run.create(task, settings)
    with runs.running(run):
        card = train(settings, run, promote="always", **kwargs)
    yield run, card, base / "models"
    mp.undo()


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    """A default-arch text model trained one epoch on a tiny text."""
    from pipelines import text

    settings = text.Settings(epochs=1, units=32, embed=8, batch_size=32, dropout=0.1)
    yield from train_tiny(tmp_path_factory, "text", settings, text.train, text=TINY_TEXT)


def face_photo() -> np.ndarray:
    """Grace Hopper's official U.S. Navy portrait (public domain), shipped inside matplotlib."""
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def synthetic_faces(n: int = 140, seed: int = 0):
    """48x48 'faces' whose class is a bright band at a class-specific height."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 7
    x = rng.integers(0, 60, (n, 48, 48)).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, 4 + c * 6:8 + c * 6] = 220
    return x, y.astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_mood_model(tmp_path_factory):
    """A default-arch mood model trained one epoch on synthetic faces."""
    from pipelines import mood

    x, y = synthetic_faces()
    data = mood.Data(x, y, x[:28], y[:28], (np.arange(28) % 2).astype(np.uint8))
    yield from train_tiny(tmp_path_factory, "mood", mood.Settings(epochs=1, batch_size=32), mood.train, data=data)


@pytest.fixture
def mnist_dir(tmp_path):
    """A tiny synthetic MNIST in a data folder, for real training jobs."""
    x, y = synthetic_mnist(30)
    np.savez_compressed(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    return tmp_path


def free_ports(n: int) -> list[int]:
    """n distinct free local ports: every socket stays bound until all are chosen (one at a time,
    the kernel can hand out the same port twice, and Ray refuses a port given to two components)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def wait_for(predicate, timeout=180):
    """The predicate's first truthy value, polled (jobs run in other processes)."""
    end = time.time() + timeout
    while time.time() < end:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def canvas_result(image):
    """What st_canvas returns for an RGBA drawing (None: nothing reported yet), for pages run in AppTest."""
    import cv2

    png = None if image is None else cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA))[1].tobytes()
    return SimpleNamespace(image_bytes=png, json_data={"objects": []})
