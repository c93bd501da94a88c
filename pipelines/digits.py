"""Digits: an MNIST CNN that reads digits drawn with a mouse.

    python -m pipelines.digits train [--data-dir DIR] [--arch default|baseline] [--epochs N] [--promote always]
    python -m pipelines.digits evaluate [--data-dir DIR] [--model PATH]
    python -m pipelines.digits models | rollback [VERSION]

Data: `mnist.npz` (keras layout) from --data-dir or $DATA_DIR, else the keras download.
Canvas drawings are turned into MNIST-like 28x28 images exactly as MNIST was made:
crop to the ink, fit in 20x20 keeping the aspect ratio (anti-aliased), centre the
centre of mass in 28x28. Several digits side by side are segmented and read as a number.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from pipelines import core

TASK = "digits"
CONFIDENT = 0.6  # below this top probability the page says "not sure"


@dataclass
class Settings:
    arch: str = "default"  # "default" or "baseline" (the seed's design)
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 2e-3
    augment: bool = True
    data_fraction: float = 1.0
    val_split: float = 0.1
    with_feedback: bool = False
    seed: int = 0
    init_from: str = ""  # a .keras model to start from (fine-tuning) instead of random weights

    def __post_init__(self):
        core.check_settings(self)  # page and command line get the same one-line message

    @classmethod
    def baseline(cls) -> Settings:
        return cls(arch="baseline", epochs=10, learning_rate=1e-3, augment=False)


# ---------------------------------------------------------------- data


def load_data(data_dir=None):
    """MNIST as uint8 arrays (x_train, y_train, x_test, y_test); x is (n, 28, 28)."""
    directory = core.data_dir(data_dir)
    if directory is not None and (directory / "mnist.npz").exists():
        # np.load directly: keras' load_data(path=...) re-checks a hash and downloads.
        try:
            with np.load(directory / "mnist.npz") as f:
                return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
        except (OSError, ValueError, KeyError) as exc:
            raise core.DataUnavailable(f"{directory / 'mnist.npz'} is not a readable MNIST file "
                                       f"(keras layout: x_train, y_train, x_test, y_test): {exc}") from exc
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        return x_train, y_train, x_test, y_test
    except Exception as exc:
        where = f"{directory}/mnist.npz" if directory else "$DATA_DIR/mnist.npz (or --data-dir)"
        raise core.DataUnavailable(
            f"MNIST not found: put mnist.npz (keras layout) at {where}, or go online so keras can download it."
        ) from exc


def data_hash(*arrays) -> str:
    return core.sha256_bytes(*(np.ascontiguousarray(a).tobytes() for a in arrays))


def class_distribution(y) -> dict[int, int]:
    values, counts = np.unique(y, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def save_feedback(image: np.ndarray, label: int) -> tuple[Path, bool]:
    """Store one corrected drawing (28x28 uint8 or float) as a PNG named by its label.

    The file is named by a hash of the drawing, so saving the same drawing again (a double
    click) keeps one file: relabelled, the old label's file is replaced. Returns (path, new).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image * 255, 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", image)
    if not ok or image.shape != (28, 28) or not 0 <= int(label) <= 9:
        raise ValueError("feedback needs a 28x28 image and a label 0-9")
    folder = core.feedback_dir() / TASK
    digest = core.sha256_bytes(image.tobytes())[:16]
    path = folder / f"{digest}-{int(label)}.png"
    if path.exists():
        return path, False
    folder.mkdir(parents=True, exist_ok=True)
    for other in folder.glob(f"{digest}-*.png"):
        other.unlink(missing_ok=True)
    tmp = path.with_name("." + path.name)
    tmp.write_bytes(png.tobytes())
    tmp.replace(path)
    return path, True


def load_feedback():
    """All "teach it" drawings as (x uint8 (n, 28, 28), y uint8 (n,))."""
    files = sorted((core.feedback_dir() / TASK).glob("*.png"))
    images = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    pairs = [(im, int(f.stem.rsplit("-", 1)[1])) for im, f in zip(images, files) if im is not None and im.shape == (28, 28)]
    if not pairs:
        return np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.uint8)
    x, y = zip(*pairs)
    return np.stack(x), np.array(y, np.uint8)


# ---------------------------------------------------------------- model


def build_model(settings: Settings):
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1))
    if settings.arch == "baseline":
        # The seed: three 3x3 ReLU convs with BN and dropout, one pooling, dense softmax.
        x = inputs
        for filters in (32, 64, 64):
            x = layers.Conv2D(filters, 3, activation="relu")(x)
            x = layers.BatchNormalization()(x)
            x = layers.Dropout(0.25)(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
    elif settings.arch == "default":
        # Pool after each block: ~4x less compute than the seed, and deeper.
        x = inputs
        for filters, convs in ((32, 2), (64, 2), (128, 1)):
            for _ in range(convs):
                x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
                x = layers.BatchNormalization()(x)
                x = layers.ReLU()(x)
            x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
        x = layers.Dropout(0.4)(x)
    else:
        raise ValueError(f"unknown arch {settings.arch!r}: use 'default' or 'baseline'")
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"digits_{settings.arch}")


def augment_batch(x, seed: int = 0):
    """Small shifts, rotations, zoom and stroke-thickness changes, on a batch in [0, 1]."""
    import keras
    import tensorflow as tf

    global _AUGMENT
    if _AUGMENT is None:
        _AUGMENT = keras.Sequential([
            keras.layers.RandomRotation(0.04, fill_mode="constant", seed=seed),  # +-14 degrees
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
            keras.layers.RandomZoom(0.12, fill_mode="constant", seed=seed),
        ])
    x = _AUGMENT(x, training=True)
    thick = tf.nn.max_pool2d(x, 2, 1, "SAME")
    thin = -tf.nn.max_pool2d(-x, 2, 1, "SAME")
    pick = tf.random.uniform((tf.shape(x)[0], 1, 1, 1))
    return tf.where(pick < 0.2, thick, tf.where(pick > 0.85, thin, x))


_AUGMENT = None


def make_dataset(x, y, batch_size: int, augment: bool, shuffle: bool, seed: int = 0):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda a, b: (tf.cast(a, tf.float32)[..., None] / 255.0, b),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        ds = ds.map(lambda a, b: (augment_batch(a, seed), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------- train / evaluate


def train(settings: Settings, run, data_dir=None, promote: str = "never", data=None):
    """Train on MNIST (or `data` = (x_train, y_train, x_test, y_test)) into the run folder."""
    import keras

    from pipelines.tracker import write_image_mistakes
    from pipelines.training import fit_and_save, warm_start

    x_train, y_train, x_test, y_test = data if data is not None else load_data(data_dir)
    keras.utils.set_random_seed(settings.seed)
    n = max(2, int(len(x_train) * settings.data_fraction))
    x_train, y_train = x_train[:n], y_train[:n]
    n_val = max(1, int(n * settings.val_split))
    x_val, y_val, x_fit, y_fit = x_train[-n_val:], y_train[-n_val:], x_train[:-n_val], y_train[:-n_val]
    if settings.with_feedback:
        fx, fy = load_feedback()
        print(f"including {len(fx)} feedback drawings (x20)", flush=True)
        x_fit, y_fit = np.concatenate([x_fit, *[fx] * 20]), np.concatenate([y_fit, *[fy] * 20])
    core.write_data_view(run.dir, class_distribution(y_fit), x_fit, y_fit)
    model = warm_start(build_model(settings), settings.init_from)
    steps = int(np.ceil(len(x_fit) / settings.batch_size))
    lr = keras.optimizers.schedules.CosineDecay(settings.learning_rate, settings.epochs * steps, alpha=0.02)
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return fit_and_save(
        run, model,
        make_dataset(x_fit, y_fit, settings.batch_size, settings.augment, shuffle=True, seed=settings.seed),
        make_dataset(x_val, y_val, 512, augment=False, shuffle=False),
        settings=settings, epochs=settings.epochs, batch_size=settings.batch_size,
        evaluate=lambda m: evaluate(m, x_test, y_test), score_key="accuracy",
        data_hash=data_hash(x_train, y_train), promote=promote, benchmark=benchmark(x_test, y_test),
        inspect=lambda m, folder: write_image_mistakes(folder, x_test, y_test, predict(m, x_test), list("0123456789")),
    )


def benchmark(x_test, y_test):
    """The fixed benchmark every digits model is compared on: the MNIST test images."""
    from pipelines.training import Benchmark, benchmark_id, majority_share

    return Benchmark(
        id=benchmark_id("mnist-test", np.ascontiguousarray(x_test).tobytes(), np.ascontiguousarray(y_test).tobytes()),
        name=f"{len(x_test):,} MNIST test images", score_key="accuracy", higher_is_better=True,
        score=lambda model, _vocab: evaluate(model, x_test, y_test)["accuracy"],
        chance=majority_share(y_test), same_as_test=True,
    )


def evaluate(model, x, y) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on (x, y)."""
    probs = predict(model, x)
    return core.classification_report(y, probs.argmax(1), 10)


# ---------------------------------------------------------------- predict


def predict(model, images, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (n, 10) for 28x28 images (uint8 0-255 or float 0-1)."""
    x = np.asarray(images, np.float32)
    if x.max(initial=0) > 1.5:
        x = x / 255.0
    x = x.reshape(-1, 28, 28, 1)
    return np.concatenate([model.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) \
        if len(x) else np.zeros((0, 10), np.float32)


def ink(rgba: np.ndarray) -> np.ndarray:
    """Ink in [0, 1] from a canvas image: alpha on a transparent canvas, else darkness
    or brightness against the background colour (read from the border)."""
    rgba = np.asarray(rgba)
    if rgba.ndim == 2:
        return rgba.astype(np.float32) / 255.0
    if rgba.shape[-1] == 4 and rgba[..., 3].min() < 255:
        return rgba[..., 3].astype(np.float32) / 255.0
    gray = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    border = np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    return np.abs(gray - border) / 255.0


def to_mnist(digit: np.ndarray) -> np.ndarray:
    """One digit's ink (cropped or not) to a 28x28 float image, made like MNIST."""
    ys, xs = np.nonzero(digit > 0.05)
    crop = digit[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    total = small.sum()
    cy, cx = (np.array([np.arange(size[1]) @ small.sum(1), np.arange(size[0]) @ small.sum(0)]) / total)
    shift = np.float32([[1, 0, 13.5 - cx], [0, 1, 13.5 - cy]])
    return np.clip(cv2.warpAffine(small, shift, (28, 28), flags=cv2.INTER_LINEAR), 0, 1)


def segment(ink_img: np.ndarray, threshold: float = 0.15) -> list[np.ndarray]:
    """Split a drawing into digits, left to right; each is the full-size ink of one digit.

    Connected strokes are one digit; strokes whose horizontal extents overlap
    (the bar of a 5, a 4 drawn in two strokes) are merged; specks are dropped.
    """
    mask = (ink_img > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = [(stats[i, 0], stats[i, 0] + stats[i, 2], [i]) for i in range(1, n)
             if stats[i, 4] >= max(15, 0.02 * stats[1:, 4].max())]
    boxes.sort()
    groups: list[list] = []
    for x0, x1, ids in boxes:
        if groups:
            g = groups[-1]
            overlap = min(g[1], x1) - max(g[0], x0)
            if overlap > 0.3 * min(g[1] - g[0], x1 - x0):
                g[1], g[2] = max(g[1], x1), g[2] + ids
                continue
        groups.append([x0, x1, ids])
    return [np.where(np.isin(labels, ids), ink_img, 0).astype(np.float32) for _, _, ids in groups]


@dataclass
class Reading:
    """What the page shows: a status, the digits' 28x28 images and probabilities."""

    status: str  # "ok" | "blank" | "full"
    message: str = ""
    images: list = field(default_factory=list)
    probs: np.ndarray | None = None

    @property
    def number(self) -> str:
        return "".join(str(int(p.argmax())) for p in self.probs) if self.probs is not None else ""

    @property
    def confident(self) -> bool:
        return self.probs is not None and bool((self.probs.max(1) >= CONFIDENT).all())


def read_canvas(predict_fn, rgba) -> Reading:
    """Canvas RGBA -> Reading. `predict_fn` maps (n, 28, 28, 1) floats to probabilities."""
    if rgba is None:
        return Reading("blank", "Draw a digit (or several, side by side) on the canvas.")
    img = ink(rgba)
    inked = float((img > 0.15).mean())
    if (img > 0.15).sum() < 30:
        return Reading("blank", "Draw a digit (or several, side by side) on the canvas.")
    if inked > 0.6:
        return Reading("full", "The canvas is mostly ink: clear it and draw a digit with a thinner stroke.")
    images = [to_mnist(d) for d in segment(img)]
    probs = np.asarray(predict_fn(np.stack(images)[..., None].astype(np.float32)))
    return Reading("ok", images=images, probs=probs)


def load(name: str = TASK):
    """(predict_fn, card) of the active model: what the page needs."""
    model = core.load_model(core.model_path(name))
    return core.fast_predict(model), core.active_card(name) or {}


# ---------------------------------------------------------------- command line


def main(argv=None):
    from pipelines import runs

    parser = argparse.ArgumentParser(prog="python -m pipelines.digits", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a model into a run folder")
    e = sub.add_parser("evaluate", help="print test metrics of a model as JSON")
    for p in (t, e):
        p.add_argument("--data-dir", help="folder with mnist.npz (default: $DATA_DIR)")
    e.add_argument("--model", default=None, help="a .keras file (default: the active model)")
    runs.add_train_flags(t)
    t.add_argument("--with-feedback", action="store_true", help="include the page's 'teach it' drawings")
    runs.add_registry_commands(sub)
    args = parser.parse_args(argv)

    if args.cmd in ("models", "rollback"):
        runs.registry_command(TASK, args)
        return
    if args.cmd == "evaluate":
        model = core.load_model(Path(args.model) if args.model else core.model_path(TASK))
        _, _, x_test, y_test = load_data(args.data_dir)
        print(json.dumps(evaluate(model, x_test, y_test), indent=1))
        return
    settings = replace(runs.settings_from_args(Settings, args), with_feedback=args.with_feedback)
    run, card = runs.train_from_args(TASK, settings, args, train, data_dir=args.data_dir)
    if card:
        print(json.dumps({"run": run.id, "test_accuracy": card["test"]["accuracy"]}))


if __name__ == "__main__":
    core.run_cli(main)
