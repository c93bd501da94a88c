"""Shared plumbing for every pipeline: paths, atomic files, the model registry.

Paths come from here and nowhere else. Environment variables override them so
tests can point the app at an empty or temporary folder:
    MODELS_DIR, RUNS_DIR, FEEDBACK_DIR, DATA_DIR

The registry keeps the *active* model of each task in `models/<task>.keras` with
its model card `models/<task>.json` (and extra JSON such as a vocabulary).
Replacing a model is atomic (temp file + os.replace) and archives the old one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = ROOT / "assets"


def models_dir() -> Path:
    return Path(os.environ.get("MODELS_DIR", ROOT / "models"))


def runs_dir() -> Path:
    return Path(os.environ.get("RUNS_DIR", ROOT / "runs"))


def feedback_dir() -> Path:
    return Path(os.environ.get("FEEDBACK_DIR", ROOT / "feedback"))


def data_dir(arg: str | Path | None = None) -> Path | None:
    """The data directory: the CLI flag, else $DATA_DIR, else None."""
    value = arg or os.environ.get("DATA_DIR")
    return Path(value).expanduser() if value else None


class ModelUnavailable(RuntimeError):
    """The active model is missing or cannot be read; the message says what to do."""


class DataUnavailable(RuntimeError):
    """Training data is missing; the message says what to put where."""


# ---------------------------------------------------------------- atomic files


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=_json_default))


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _json_default(obj):
    # numpy scalars and arrays show up in metrics; JSON has no idea about them.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_model(model, path: Path) -> None:
    """Save a Keras model so that readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)


def sha256_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---------------------------------------------------------------- registry


def model_path(task: str, directory: Path | None = None) -> Path:
    return (directory or models_dir()) / f"{task}.keras"


def card_path(task: str, directory: Path | None = None) -> Path:
    return (directory or models_dir()) / f"{task}.json"


def load_model(path: Path):
    """Load a .keras file read-only, with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise ModelUnavailable(
            f"No trained model at {path}. Train one on the Training page or with "
            f"`python -m pipelines.{path.stem.split('-')[0]} train --promote always`."
        )
    import keras  # imported late: pages that only show a message stay fast

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad zip or config
        raise ModelUnavailable(
            f"The model file {path} could not be read ({type(exc).__name__}: {exc}). "
            "Retrain it or restore it from models/archive/."
        ) from exc


def active_card(task: str) -> dict | None:
    return read_json(card_path(task))


def model_version(task: str) -> float:
    """Changes whenever the active model is replaced: pages key their cache on it."""
    try:
        return model_path(task).stat().st_mtime
    except OSError:
        return 0.0


def promote(task: str, run_dir: Path) -> Path:
    """Make a finished run's model the active one, archiving the previous model.

    Copies (never moves) so the run folder keeps its own record. The run's
    `model.<x>.json` files (a vocabulary, say) travel as `<task>.<x>.json`. Each file
    is replaced atomically; the card is written last, so a reader that sees the new
    card also sees the new model.
    """
    run_dir = Path(run_dir)
    src = run_dir / "model.keras"
    if not src.exists():
        raise FileNotFoundError(f"{run_dir} has no model.keras to promote")
    extras = [p.name.removeprefix("model.") for p in run_dir.glob("model.*.json")]
    target = models_dir()
    archive = target / "archive" / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    for name in (f"{task}.keras", f"{task}.json", *(f"{task}.{e}" for e in extras)):
        if (target / name).exists():
            archive.mkdir(parents=True, exist_ok=True)
            shutil.copy2(target / name, archive / name)
    for extra in extras:
        atomic_copy(run_dir / f"model.{extra}", target / f"{task}.{extra}")
    atomic_copy(src, model_path(task))
    card = read_json(run_dir / "card.json", {}) or {}
    card["promoted"] = now_iso()
    card["run"] = run_dir.name
    write_json(card_path(task), card)
    return model_path(task)


def fast_predict(model):
    """A traced call of the model: 1-2 ms for one input where model.predict takes ~60 ms."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(x):
        return model(x, training=False)

    return lambda x: run(tf.convert_to_tensor(x)).numpy()


def run_cli(main) -> None:
    """Run a pipeline's command line; missing data or models end with a message, not a traceback."""
    try:
        main()
    except (DataUnavailable, ModelUnavailable) as exc:
        raise SystemExit(f"error: {exc}") from None


def classification_report(y_true, y_pred, n_classes: int, names=None) -> dict:
    """Shared by every classifier: accuracy, per-class P/R/F1, confusion matrix."""
    import numpy as np

    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    tp = np.diag(cm).astype(float)
    precision = tp / np.maximum(cm.sum(0), 1)
    recall = tp / np.maximum(cm.sum(1), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    names = names or [str(i) for i in range(n_classes)]
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "n": int(cm.sum()),
        "per_class": {n: {"precision": float(p), "recall": float(r), "f1": float(f)}
                      for n, p, r, f in zip(names, precision, recall, f1)},
        "macro_f1": float(f1.mean()),
        "confusion_matrix": cm.tolist(),
        "labels": names,
    }


def write_data_view(run_dir: Path, distribution: dict, x=None, y=None, per_class: int = 8) -> None:
    """What the Training page shows about a run's data: class counts and a grid of samples
    (one row per class) as samples.png."""
    write_json(Path(run_dir) / "data.json", {"distribution": {str(k): int(v) for k, v in distribution.items()}})
    if x is None:
        return
    import cv2
    import numpy as np

    rows = []
    for c in sorted(np.unique(y)):
        picks = x[np.flatnonzero(y == c)[:per_class]]
        picks = np.concatenate([picks, np.zeros((per_class - len(picks), *x.shape[1:]), x.dtype)])
        rows.append(np.concatenate(list(picks), axis=1))
    ok, png = cv2.imencode(".png", np.concatenate(rows, axis=0))
    if ok:
        (Path(run_dir) / "samples.png").write_bytes(png.tobytes())
