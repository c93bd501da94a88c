"""Shared plumbing for every pipeline: paths, atomic files, the model registry.

Paths come from here and nowhere else. Environment variables override them so
tests can point the app at an empty or temporary folder:
    MODELS_DIR, RUNS_DIR, FEEDBACK_DIR, DATA_DIR

The registry keeps every promoted model of a task as an immutable version
(`models/registry/<task>/v<n>/`: model, card, vocabulary) and the active one as a
pointer swapped in one rename, so promotion and rollback are atomic for the whole set.
Settings validation shared by every pipeline lives here too (check_settings).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
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


# ---------------------------------------------------------------- memory


class Memo:
    """A bounded map shared by the server's sessions (threads) that forgets the least recently used."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value):
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


# ---------------------------------------------------------------- atomic files


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=_json_default))


TEXT_ENCODINGS = ("utf-8-sig", "cp1252")  # UTF-8 (with or without a BOM), then Windows' Western (Latin-1's superset)


def decode_text(data: bytes) -> str | None:
    """A text file's text, in UTF-8 or else Windows-1252 (what Windows editors and spreadsheets save); None when
    it is neither."""
    for encoding in TEXT_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


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
#
#   models/registry/<task>/v<n>/    model.keras, card.json (+ vocab.json, ...): one immutable version
#   models/registry/<task>/active   symlink -> v<n>: the one pointer, replaced with os.replace
#   models/<task>.keras, .json, .<x>.json   fixed links through `active`, for readers of the flat names
#
# A version is staged in a hidden folder and renamed into place whole; the pointer
# swap is one rename. A reader that resolves the pointer once (version_dir) sees one
# whole version, never a model with another model's vocabulary. Rollback is a swap.

ACTIVE, MODEL_FILE, CARD_FILE = "active", "model.keras", "card.json"


class NotWritable(RuntimeError):
    """A folder the app must write to cannot be written; nothing was changed."""


class PromotionError(RuntimeError):
    """A promotion or rollback did not happen; the active model is unchanged (the message says why)."""


def registry_dir(task: str) -> Path:
    return models_dir() / "registry" / task


def _number(version: str) -> int:
    return int(version[1:]) if version[:1] == "v" and version[1:].isdigit() else -1


def active_version(task: str) -> str | None:
    """The active version's name (v3), or None when the task has no registry yet."""
    try:
        version = os.readlink(registry_dir(task) / ACTIVE)
    except OSError:
        return None
    return version if _number(version) >= 0 else None


def version_dir(task: str, version: str | None = None) -> Path | None:
    """The folder of a version (default: the active one), resolved once."""
    version = version or active_version(task)
    path = registry_dir(task) / version if version else None
    return path if path is not None and path.is_dir() else None


def model_path(task: str, directory: Path | None = None) -> Path:
    """The active model file: inside the active version, else the flat `<task>.keras` of older layouts."""
    if directory is None and (folder := version_dir(task)) is not None:
        return folder / MODEL_FILE
    return (directory or models_dir()) / f"{task}.keras"


def extra_path(task: str, extra: str, model_file: Path | None = None) -> Path:
    """A file that belongs to a model (`vocab.json`), next to `model_file` (default: the active model),
    so a reader that resolved the model once reads the same version's vocabulary."""
    model_file = Path(model_file or model_path(task))
    if model_file.name == MODEL_FILE:
        return model_file.with_name(extra)
    return model_file.with_name(f"{task}.{extra}")


def card_path(task: str, directory: Path | None = None) -> Path:
    if directory is None and (folder := version_dir(task)) is not None:
        return folder / CARD_FILE
    return (directory or models_dir()) / f"{task}.json"


def _task_of(path: Path) -> str:
    """The task a model file belongs to (registry/<task>/v3/model.keras or <task>.keras)."""
    name = path.parent.parent.name if path.name == MODEL_FILE else path.stem
    return name.split("-")[0]


def load_model(path: Path):
    """Load a .keras file read-only, with a clear error when it is missing or corrupt."""
    path = Path(path)
    task = _task_of(path)
    if not path.exists():
        raise ModelUnavailable(
            f"No trained model at {path}. Train one on the Training page or with "
            f"`python -m pipelines.{task} train --promote always`."
        )
    import keras  # imported late: pages that only show a message stay fast

    try:
        return in_float32(keras.models.load_model(path, compile=False, safe_mode=True))
    except Exception as exc:  # keras raises many types for a bad zip or config
        raise ModelUnavailable(
            f"The model file {path} could not be read ({type(exc).__name__}: {str(exc).strip().rstrip('.')}). "
            f"Roll back to an earlier version on the Training page (or `python -m pipelines.{task} rollback`), "
            "or retrain it."
        ) from exc


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Mixed-precision training
    is ~1.5x faster there and ~3x slower elsewhere (measured: a wide mood step of 64 faces 1.63 s
    in bfloat16 against 0.52 s in float32 on a Xeon without them)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def with_dtype(config, name: str):
    """A model's config with every layer's dtype policy set to `name` (a new dict; the input is kept)."""
    config = json.loads(json.dumps(config))

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                node["config"]["name"] = name
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return config


def in_float32(model):
    """The same network and weights, computing in float32. A model trained with mixed precision
    (bfloat16 compute, float32 weights) is read in float32 everywhere: CPUs without native bfloat16
    (no AVX512-BF16 or AMX) emulate it, measured 3x slower per face (mood: 85 vs 31 ms for 10 views),
    and the readings are the same (FER2013 test 68.24% in float32, 68.25% in bfloat16). A model stored
    in float16 (a mood ensemble, half the file) is read back in float32 the same way."""
    import numpy as np

    config = model.get_config()
    text = json.dumps(config)
    if '"mixed_' not in text and '"float16"' not in text:
        return model
    copy = type(model).from_config(with_dtype(config, "float32"))
    copy.set_weights([np.asarray(w, np.float32) for w in model.get_weights()])
    return copy


def check_active(task: str) -> str | None:
    """Why the active model file cannot be used (missing or not a .keras archive), or None.
    Cheap (no Keras): the Training page shows it next to the rollback buttons."""
    import zipfile

    path = model_path(task)
    if not path.exists():
        return None if active_version(task) is None else f"The active {task} model file {path} is missing."
    if not zipfile.is_zipfile(path):
        return f"The active {task} model file {path} is corrupt (not a .keras archive): roll back to an earlier version."
    return None


def active_card(task: str) -> dict | None:
    return read_json(card_path(task))


def _pointer_ns(task: str) -> int:
    try:
        return (registry_dir(task) / ACTIVE).lstat().st_mtime_ns
    except OSError:
        return 0


def model_version(task: str) -> float:
    """Changes whenever the active model changes (promotion and rollback): pages key their cache on it."""
    if stamp := _pointer_ns(task):
        return stamp / 1e9
    try:
        return model_path(task).stat().st_mtime
    except OSError:
        return 0.0


def active_models(prefix: str = "") -> list[str]:
    """Names with an active model, e.g. active_models("text") == ["text", "text-sherlock"]."""
    names = {p.parent.name for p in (models_dir() / "registry").glob(f"{prefix}*/{ACTIVE}") if p.is_symlink()}
    names |= {p.stem for p in models_dir().glob(f"{prefix}*.keras") if p.is_file() and not p.is_symlink()}
    return sorted(n for n in names if n == prefix or not prefix or n.startswith(f"{prefix}-"))


def list_versions(task: str) -> list[dict]:
    """Every version of a task, oldest first: {version, active, card, dir}."""
    active = active_version(task)
    folders = [p for p in registry_dir(task).glob("v*") if p.is_dir() and _number(p.name) >= 0]
    return [{"version": p.name, "active": p.name == active, "card": read_json(p / CARD_FILE, {}) or {}, "dir": p}
            for p in sorted(folders, key=lambda p: _number(p.name))]


def history(task: str) -> list[dict]:
    """Promotions and rollbacks, oldest first."""
    try:
        lines = (registry_dir(task) / "history.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


@contextmanager
def _registry_lock(task: str):
    """One writer per task registry at a time (page, job and command line alike)."""
    from filelock import FileLock, Timeout

    folder = registry_dir(task)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / ".lock", timeout=60)
        lock.acquire()
    except Timeout:
        raise PromotionError(f"another promotion of {task} is still going on; try again") from None
    except OSError as exc:
        raise NotWritable(f"The models folder {models_dir()} is not writable ({exc.strerror or exc}); "
                          f"the active {task} model is unchanged.") from exc
    try:
        yield folder
    finally:
        lock.release()


def _stage(task: str, files: dict[str, Path], card: dict) -> str:
    """Copy a whole set of files into a new version folder: all of it appears at once, or nothing."""
    folder = registry_dir(task)
    version = f"v{max([_number(p.name) for p in folder.glob('v*')] + [0]) + 1}"
    staging = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        staging.chmod(0o755)  # mkdtemp makes it private; a version is for every reader
        for name, src in files.items():
            shutil.copyfile(src, staging / name)
        write_json(staging / CARD_FILE, {**card, "version": version})
        os.rename(staging, folder / version)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise PromotionError(f"Could not write the new {task} version into {folder} "
                                 f"({exc.strerror or exc}); nothing was promoted and the active model "
                                 "is unchanged.") from exc
        raise
    return version


def _swap(task: str, version: str, action: str, **note) -> None:
    """Point `active` at `version` with one rename, then make sure the flat names link through it."""
    folder = registry_dir(task)
    previous = active_version(task)
    tmp = folder / f".active.tmp{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(version, tmp)
        # The pointer's time is the model's version for the pages' caches: strictly increasing,
        # even for two swaps within one clock tick.
        stamp = max(time.time_ns(), _pointer_ns(task) + 1_000)
        os.utime(tmp, ns=(stamp, stamp), follow_symlinks=False)
        os.replace(tmp, folder / ACTIVE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PromotionError(f"Could not switch the active {task} model to {version} ({exc.strerror or exc}); "
                             "it is unchanged.") from exc
    _link_flat_names(task)
    row = {"time": now_iso(), "action": action, "version": version, "previous": previous, **note}
    with contextlib.suppress(OSError), open(folder / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _link_flat_names(task: str) -> None:
    """models/<task>.keras -> registry/<task>/active/model.keras, and so on: fixed links, never swapped."""
    for item in version_dir(task).iterdir():
        flat = models_dir() / (f"{task}.keras" if item.name == MODEL_FILE else
                               f"{task}.json" if item.name == CARD_FILE else f"{task}.{item.name}")
        target = f"registry/{task}/{ACTIVE}/{item.name}"
        with contextlib.suppress(OSError):
            if flat.is_symlink() and os.readlink(flat) == target:
                continue
            tmp = flat.with_name(f".{flat.name}.tmp{os.getpid()}")
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, flat)


def _import_flat(task: str) -> None:
    """Models from before the registry (flat files in models/) become its first version."""
    flat = models_dir() / f"{task}.keras"
    if active_version(task) is not None or not flat.is_file() or flat.is_symlink():
        return
    files = {MODEL_FILE: flat}
    files |= {p.name.removeprefix(f"{task}."): p for p in models_dir().glob(f"{task}.*.json") if not p.is_symlink()}
    card = read_json(models_dir() / f"{task}.json", {}) or {}
    _swap(task, _stage(task, files, card), "import", note="the model found in models/ before the registry")


def adopt(task: str) -> str | None:
    """Register the flat files of an older layout as a version (no-op when already registered)."""
    with _registry_lock(task):
        _import_flat(task)
    return active_version(task)


def promote(task: str, run_dir: Path) -> str:
    """Make a finished run's model a new version and the active one; returns the version (v4).

    Copies (never moves) so the run folder keeps its own record. The run's
    `model.<x>.json` files (a vocabulary, say) travel as `<x>` in the version.
    """
    run_dir = Path(run_dir)
    src = run_dir / "model.keras"
    if not src.exists():
        raise PromotionError(f"{run_dir} has no model.keras to promote")
    files = {MODEL_FILE: src} | {p.name.removeprefix("model."): p for p in run_dir.glob("model.*.json")}
    card = read_json(run_dir / "card.json", {}) or {}
    card.update(promoted=now_iso(), run=run_dir.name)
    with _registry_lock(task):
        _import_flat(task)
        version = _stage(task, files, card)
        _swap(task, version, "promote", run=run_dir.name)
    return version


def rollback(task: str, version: str | None = None) -> str:
    """Make an earlier version active again (default: the one before the active one); returns it."""
    with _registry_lock(task):
        _import_flat(task)
        names = [v["version"] for v in list_versions(task)]
        current = active_version(task)
        if version is None:
            earlier = [v for v in names if current and _number(v) < _number(current)]
            if not earlier:
                raise PromotionError(f"{task} has no version before {current or 'the active one'}; "
                                     f"versions: {', '.join(names) or 'none'}")
            version = earlier[-1]
        if version not in names or not (registry_dir(task) / version / MODEL_FILE).exists():
            raise PromotionError(f"{task} has no version {version!r}; versions: {', '.join(names) or 'none'}")
        if version != current:
            _swap(task, version, "rollback")
    return version


def check_writable(folder: Path, what: str) -> None:
    """Fail early, in words, when a folder the job must write to is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise NotWritable(f"The {what} folder {folder} is not writable ({exc.strerror or exc}).") from exc


# ---------------------------------------------------------------- settings


class InvalidSettings(ValueError):
    """A setting out of range; the one-line message names every bad field."""


def whole(low: int, high: int):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            return f"must be a whole number from {low} to {high} (got {v!r})"
    return check


def number(low: float, high: float, low_open: bool = True, high_open: bool = False):
    def check(v):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (low < v if low_open else low <= v) and (v < high if high_open else v <= high)
        if not ok:
            return (f"must be {'above' if low_open else 'at least'} {low:g} and "
                    f"{'below' if high_open else 'at most'} {high:g} (got {v!r})")
    return check


def choice(*options):
    def check(v):
        if v not in options:
            return f"must be {' or '.join(map(str, options))} (got {v!r})"
    return check


ARCHS = ("default", "baseline")  # what a pipeline can train (an ensemble is composed, not trained)


def architecture(v):
    if v not in ARCHS:
        return f"unknown arch {v!r}: use default or baseline"


def flag(v):
    if not isinstance(v, bool):
        return f"must be true or false (got {v!r})"


SETTING_RULES = {
    "arch": architecture, "epochs": whole(1, 1000), "batch_size": whole(2, 4096),
    "learning_rate": number(0, 1), "data_fraction": number(0, 1), "val_split": number(0, 0.5, high_open=True),
    "seed": whole(0, 2**31 - 1), "augment": flag, "with_feedback": flag,
}


def check_settings(settings, **rules) -> None:
    """The one validation behind page and command line: raise InvalidSettings naming every bad field."""
    errors = []
    for key, rule in {**SETTING_RULES, **rules}.items():
        if hasattr(settings, key) and (problem := rule(getattr(settings, key))):
            errors.append(problem if problem.startswith("unknown") else f"{key.replace('_', ' ')} {problem}")
    if errors:
        raise InvalidSettings("; ".join(errors))


def fast_predict(model):
    """A traced call of the model: 1-2 ms for one input where model.predict takes ~60 ms."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(x):
        return model(x, training=False)

    return lambda x: run(tf.convert_to_tensor(x)).numpy()


def run_cli(main) -> None:
    """Run a pipeline's command line; what a person can act on ends with one line, not a traceback.
    Bad settings exit with 2 (like argparse), other errors with 1."""
    import sys

    try:
        main()
    except InvalidSettings as exc:
        _fail_page_run(exc)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (DataUnavailable, ModelUnavailable, NotWritable, PromotionError, JobRunning) as exc:
        _fail_page_run(exc)
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:  # Ctrl+C, or Stop outside the training loop: the run folder says so
        raise SystemExit("stopped: the active model was not touched") from None


def _fail_page_run(exc: Exception) -> None:
    """A job the page started (--run-dir) that fails before its run began: say why in its folder."""
    import sys

    from pipelines import runs

    if "--run-dir" in sys.argv[:-1]:
        run = runs.Run(Path(sys.argv[sys.argv.index("--run-dir") + 1]))
        if run.state in runs.ACTIVE_STATES:
            with contextlib.suppress(OSError):
                run.set_status("failed", error=str(exc), ended=time.time())


class JobRunning(RuntimeError):
    """Another training job of the same task holds the lock; the message names it."""


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
