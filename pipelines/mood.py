"""Mood: find faces with OpenCV, read their expression with a CNN trained on FER2013, suggest songs.

    python -m pipelines.mood train [--data-dir DIR] [--arch default|baseline] [--epochs N] [--promote always]
                                   [--labels fer2013|ferplus|mixed] [--label-mix 0.5] [--init-from models/mood.keras]
                                   [--labels teacher --teachers A/model.keras,B/model.keras]   (distillation)
    python -m pipelines.mood evaluate [--data-dir DIR]
    python -m pipelines.mood predict PHOTO.jpg
    python -m pipelines.mood adopt OUT/model.keras [--promote if-better]   (trained by pipelines.mood_accel)
    python -m pipelines.mood ensemble runs/mood/A/model.keras runs/mood/B/model.keras [--promote if-better]
    python -m pipelines.mood models | rollback [VERSION]

Data, from --data-dir or $DATA_DIR, in any of the forms people have:
`fer2013.npz` (keys x_train, y_train, x_test, y_test[, test_split]), Kaggle's `fer2013.csv`
(emotion, pixels, Usage), or Kaggle's folders `train/<class>/*.jpg`, `test/<class>/*.jpg`.
Faces are 48x48 grayscale scaled to [0, 1]; the page's face crops get exactly the same treatment.
With `fer2013plus_labels.npz` beside the data (Microsoft's FER+ crowd votes, aligned row by row),
training can use the votes as soft targets (`--labels ferplus`, or `mixed` with the FER2013 label)
and `evaluate` reports the FER+ majority labels too. `--labels teacher` learns instead from trained
models' averaged readings of the training faces (distillation: one network's cost for what several read).
Song suggestions live in pipelines/songs.py.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipelines import core

TASK = "mood"
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SIZE = 48
CONFIDENT = 0.45  # below this the page says the expression is unclear
ARCHS = (*core.ARCHS, "wide")  # what `train` and the Training page offer
LABELS = ("fer2013", "ferplus", "mixed", "teacher")  # training targets: see Settings.labels
MAX_SIDE = 1280  # larger photos are scaled down before detection: same faces, bounded time


@dataclass
class Settings:
    arch: str = "default"  # "default", "wide" (more filters, ~2M weights) or "baseline"
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 2e-3
    augment: bool = True
    class_weighting: bool = True
    label_smoothing: float = 0.1
    # bfloat16 compute where the CPU has it natively (AMX/AVX512-BF16: ~1.5x faster), float32 elsewhere
    mixed_precision: bool = field(default_factory=core.native_bfloat16)
    data_fraction: float = 1.0
    val_split: float = 0.05
    seed: int = 0
    init_from: str = ""  # a .keras model to start from (fine-tuning) instead of random weights
    # Training targets: "fer2013" (the original one-hot labels), "ferplus" (the FER+ crowd-vote
    # distribution) or "mixed" (label_mix * FER2013 one-hot + (1 - label_mix) * FER+ votes).
    # "teacher": label_mix * FER2013 one-hot + (1 - label_mix) * the averaged probabilities of the `teachers`
    # (comma-separated .keras files) on the training faces, face and mirror.
    labels: str = "fer2013"
    label_mix: float = 0.5
    teachers: str = ""
    # Weight averaging (Polyak): validation, the best checkpoint and so the model use an exponential
    # moving average of the weights, this momentum per step (0: off; 0.999 averages ~1,000 steps).
    ema: float = 0.0

    def __post_init__(self):
        core.check_settings(self, label_smoothing=core.number(0, 1, low_open=False, high_open=True),
                            ema=core.number(0, 1, low_open=False, high_open=True),
                            class_weighting=core.flag, mixed_precision=core.flag, arch=core.choice(*ARCHS),
                            labels=core.choice(*LABELS), label_mix=core.number(0, 1, low_open=False))
        if self.labels == "teacher" and not teacher_files(self.teachers):
            raise core.InvalidSettings("labels teacher needs teachers: the trained models to learn from")

    @classmethod
    def baseline(cls) -> Settings:
        return cls(arch="baseline", epochs=30, learning_rate=1e-4, augment=False, class_weighting=False,
                   label_smoothing=0.0, mixed_precision=False)


# ---------------------------------------------------------------- data


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_split: np.ndarray | None = None  # 0 = PublicTest, 1 = PrivateTest, when known
    source: str = ""
    # FER+ crowd votes in CLASSES order (n, 7), aligned row by row, when fer2013plus_labels.npz is there.
    votes_train: np.ndarray | None = None
    votes_test: np.ndarray | None = None
    ferplus_test: np.ndarray | None = None  # FER+ majority label in CLASSES order, -1 where none (the file's rule)


def load_data(data_dir=None) -> Data:
    """FER2013 from a folder holding fer2013.npz, fer2013.csv or train/ and test/ class folders."""
    directory = core.data_dir(data_dir)
    if directory is None:
        raise core.DataUnavailable(_MISSING.format(where="$DATA_DIR (or --data-dir)"))
    if (directory / "fer2013.npz").exists():
        with np.load(directory / "fer2013.npz") as f:
            split = f["test_split"] if "test_split" in f.files else None
            data = Data(f["x_train"], f["y_train"], f["x_test"], f["y_test"], split, "fer2013.npz")
        return _with_votes(data, directory)
    if (directory / "fer2013.csv").exists():
        return _with_votes(_from_csv(directory / "fer2013.csv"), directory)
    if (directory / "train").is_dir() and (directory / "test").is_dir():
        return _from_folders(directory)
    raise core.DataUnavailable(_MISSING.format(where=directory))


_MISSING = ("FER2013 not found in {where}: put fer2013.npz, Kaggle's fer2013.csv, or Kaggle's "
            "train/<class>/*.jpg and test/<class>/*.jpg folders there.")


def _from_csv(path: Path) -> Data:
    import pandas as pd

    df = pd.read_csv(path)
    x = np.stack([np.array(p.split(), np.uint8).reshape(SIZE, SIZE) for p in df["pixels"]])
    y = df["emotion"].to_numpy(np.uint8)
    usage = df["Usage"].to_numpy()
    train, test = usage == "Training", usage != "Training"
    return Data(x[train], y[train], x[test], y[test], (usage[test] == "PrivateTest").astype(np.uint8), "fer2013.csv")


def _from_folders(directory: Path) -> Data:
    parts = []
    for split in ("train", "test"):
        xs, ys, private = [], [], []
        for label, name in enumerate(CLASSES):
            for f in sorted((directory / split / name).glob("*")):
                img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                if img is not None:
                    xs.append(cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
                    ys.append(label)
                    private.append(f.name.startswith("PrivateTest"))
        if not xs:
            raise core.DataUnavailable(f"No images under {directory / split}/<class>/ (classes: {', '.join(CLASSES)}).")
        parts.append((np.stack(xs), np.array(ys, np.uint8), np.array(private, np.uint8)))
    (xtr, ytr, _), (xte, yte, priv) = parts
    return Data(xtr, ytr, xte, yte, priv if priv.any() else None, "folders")


# FER+ vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
# Their positions in CLASSES order (contempt, unknown and not-a-face have no FER2013 class).
FERPLUS_COLUMNS = [4, 5, 6, 1, 3, 2, 0]


def ferplus_votes(votes: np.ndarray) -> np.ndarray:
    """Raw FER+ votes (n, 10) -> counts (n, 7) in CLASSES order, single stray votes removed
    (the FER+ paper's outlier rule: a count of 1 is noise)."""
    v = np.asarray(votes, np.float32)[:, FERPLUS_COLUMNS]
    return np.where(v <= 1, 0, v)


def _with_votes(data: Data, directory: Path) -> Data:
    """Attach the FER+ votes when the file is there and aligned (same row counts)."""
    path = directory / "fer2013plus_labels.npz"
    if path.exists():
        with np.load(path) as f:
            if len(f["votes_train"]) == len(data.x_train) and len(f["votes_test"]) == len(data.x_test):
                data.votes_train = ferplus_votes(f["votes_train"])
                data.votes_test = ferplus_votes(f["votes_test"])
                data.ferplus_test = f["majority7_test"].astype(int)
    return data


def targets(y: np.ndarray, votes: np.ndarray | None, labels: str, mix: float) -> np.ndarray:
    """Soft training targets (n, 7): FER2013 one-hot, FER+ vote distribution, or a blend (with
    "teacher", `votes` are the teachers' probabilities). Rows without usable votes fall back to the
    FER2013 label."""
    onehot = np.eye(len(CLASSES), dtype=np.float32)[np.asarray(y, int)]
    if labels == "fer2013":
        return onehot
    if votes is None:
        raise core.DataUnavailable("FER+ labels asked for, but fer2013plus_labels.npz is not in the data folder.")
    total = votes.sum(1, keepdims=True)
    dist = np.where(total > 0, votes / np.maximum(total, 1), onehot)
    w = 0.0 if labels == "ferplus" else float(mix)
    return (w * onehot + (1 - w) * dist).astype(np.float32)


def teacher_files(teachers: str) -> list[str]:
    return [p.strip() for p in str(teachers).split(",") if p.strip()]


def teacher_probs(teachers: str, faces: np.ndarray) -> np.ndarray:
    """Distillation targets: the trained models' probabilities on the faces (face and mirror), averaged."""
    return np.mean([predict(core.load_model(p), faces, tta="flip") for p in teacher_files(teachers)], axis=0)


def not_a_face_rows(data_dir) -> np.ndarray | None:
    """Training rows FER+ taggers call "not a face" (when fer2013plus_labels.npz is there)."""
    directory = core.data_dir(data_dir)
    path = directory / "fer2013plus_labels.npz" if directory else None
    if path is None or not path.exists():
        return None
    with np.load(path) as f:
        return not_a_face(f["votes_train"])


def not_a_face(raw_votes: np.ndarray) -> np.ndarray:
    """Rows of raw FER+ votes (n, 10) where at least half the taggers say "not a face"."""
    return np.asarray(raw_votes)[:, 9] >= 5


def fit_split(settings: Settings, x: np.ndarray, y: np.ndarray, not_face: np.ndarray | None = None):
    """What every mood training trains on, here or on a lent accelerator: ((x, targets, class weights) to
    fit, (x, targets) to validate), drawn by the seed, without the rows FER+ calls "not a face"; the
    weights are None without class weighting."""
    if not_face is not None and len(not_face) == len(x):
        x, y = x[~not_face], y[~not_face]  # FER+ "not a face" images teach nothing about expressions
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(x))[: max(2, int(len(x) * settings.data_fraction))]
    n_val = max(1, int(len(order) * settings.val_split))
    val, fit = order[:n_val], order[n_val:]
    weights = None
    if settings.class_weighting:
        hard = y[fit].argmax(1)
        cw = class_weights(hard)
        weights = np.array([cw[int(c)] for c in hard], np.float32)
    return (x[fit], y[fit], weights), (x[val], y[val])


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Square-root inverse frequency: lifts rare `disgust` without wrecking the common classes."""
    counts = np.bincount(y, minlength=len(CLASSES)).astype(float)
    w = np.sqrt(counts.mean() / np.maximum(counts, 1))
    return {i: float(v) for i, v in enumerate(w / w.mean())}


# ---------------------------------------------------------------- model


def build_model(settings: Settings):
    """The network; with mixed precision its layers compute in bfloat16 (the policy is
    set only while building, so nothing else in the process is affected)."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if settings.mixed_precision else "float32")
    try:
        return _build(settings)
    finally:
        keras.mixed_precision.set_global_policy(previous)


WIDTHS = {  # (filters, convs, dropout) per block
    "default": ((32, 1, 0.1), (64, 2, 0.15), (128, 2, 0.2), (256, 2, 0.25)),
    "wide": ((48, 2, 0.1), (96, 2, 0.15), (192, 2, 0.2), (288, 2, 0.25)),
}


def _build(settings: Settings):
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 1))
    x = inputs
    if settings.arch == "baseline":
        # The seed's small CNN (the popular Emotion-detection design).
        x = layers.Conv2D(32, 3, activation="relu")(x)
        x = layers.Conv2D(64, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
        x = layers.Conv2D(128, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Conv2D(128, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(1024, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    elif settings.arch in WIDTHS:
        # VGG-style blocks with batch norm, global pooling: few parameters, little overfitting.
        # "default": one conv at full 48x48 resolution, where convs cost the most (sized for 2 CPU cores);
        # "wide": two convs per block and ~1.6x the filters, ~2M weights (an 8 MB file), twice the time per epoch on 2 cores.
        for filters, convs, drop in WIDTHS[settings.arch]:
            for _ in range(convs):
                x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
                x = layers.BatchNormalization()(x)
                x = layers.ReLU()(x)
            x = layers.MaxPooling2D()(x)
            x = layers.Dropout(drop)(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(256, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Dropout(0.4)(x)
    else:
        raise ValueError(f"unknown arch {settings.arch!r}: use 'default', 'wide' or 'baseline'")
    outputs = layers.Dense(len(CLASSES), activation="softmax", dtype="float32")(x)  # softmax in float32
    return keras.Model(inputs, outputs, name=f"mood_{settings.arch}")


_AUGMENT = None


def augmentation(seed: int = 0):
    """Flip, small rotation, shift, zoom and contrast of faces in [0, 1] (active only in training)."""
    import keras

    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.03, fill_mode="reflect", seed=seed),  # +-11 degrees
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed),
        keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
        keras.layers.RandomContrast(0.3, seed=seed),
    ], name="augmentation")


def augment_batch(x, seed: int = 0):
    """`augmentation` applied to a batch, clipped back to [0, 1]."""
    import keras

    global _AUGMENT
    if _AUGMENT is None:
        _AUGMENT = augmentation(seed)
    return keras.ops.clip(_AUGMENT(x, training=True), 0.0, 1.0)


def make_dataset(x, y, batch_size: int, augment: bool, shuffle: bool, weights=None, seed: int = 0):
    import tensorflow as tf

    n_classes = len(CLASSES)
    tensors = (x, y) if weights is None else (x, y, weights)
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def prep(a, b, *w):
        # One-hot (or already soft) targets so label smoothing can apply.
        target = tf.cast(b, tf.float32) if len(b.shape) == 2 else tf.one_hot(tf.cast(b, tf.int32), n_classes)
        return (tf.cast(a, tf.float32)[..., None] / 255.0, target, *w)

    ds = ds.batch(batch_size).map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        ds = ds.map(lambda a, *rest: (augment_batch(a, seed), *rest), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------- train / evaluate


def train(settings: Settings, run, data_dir=None, promote: str = "never", data: Data | None = None):
    import keras

    from pipelines.training import fit_and_save, warm_start

    data = data if data is not None else load_data(data_dir)
    keras.utils.set_random_seed(settings.seed)
    soft = teacher_probs(settings.teachers, data.x_train) if settings.labels == "teacher" else data.votes_train
    y = targets(data.y_train, soft, settings.labels, settings.label_mix)
    (x_fit, y_fit, weights), (x_val, y_val) = fit_split(settings, data.x_train, y, not_a_face_rows(data_dir))
    hard = y_fit.argmax(1)
    core.write_data_view(run.dir, dict(zip(CLASSES, np.bincount(hard, minlength=len(CLASSES)))), x_fit, hard)
    model = warm_start(build_model(settings), settings.init_from)
    steps = int(np.ceil(len(x_fit) / settings.batch_size))
    lr = keras.optimizers.schedules.CosineDecay(settings.learning_rate, settings.epochs * steps, alpha=0.01)
    model.compile(keras.optimizers.Adam(lr, use_ema=settings.ema > 0, ema_momentum=settings.ema or 0.99),
                  keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing),
                  metrics=["accuracy"])
    return fit_and_save(
        run, model,
        make_dataset(x_fit, y_fit, settings.batch_size, settings.augment, True, weights, settings.seed),
        make_dataset(x_val, y_val, 512, False, False),
        first_callbacks=[keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if settings.ema else None,
        settings=settings, epochs=settings.epochs, batch_size=settings.batch_size, promote=promote, **judged_on(data),
    )


def judged_on(data: Data) -> dict:
    """How every mood model is judged, after a training here or when adopted: its test metrics, the
    training data's hash, the fixed benchmark and the mistakes the Training page shows."""
    from pipelines.tracker import write_image_mistakes

    return {"evaluate": lambda m: evaluate(m, data), "score_key": "accuracy",
            "data_hash": core.sha256_bytes(data.x_train.tobytes(), data.y_train.tobytes()),
            "benchmark": benchmark(data),
            "inspect": lambda m, folder: write_image_mistakes(folder, data.x_test, data.y_test,
                                                              predict(m, data.x_test), list(CLASSES))}


def reads_faces(model, name: str):
    """The model, if it takes 48x48x1 faces and gives one probability per mood; a settings error otherwise."""
    if tuple(model.input_shape[1:]) != (SIZE, SIZE, 1) or model.output_shape[-1] != len(CLASSES):
        raise core.InvalidSettings(f"{name} is not a mood model: it takes {model.input_shape[1:]} and gives "
                                   f"{model.output_shape[-1]} classes, not 48x48x1 faces and {len(CLASSES)} moods")
    return model


def adopt(model_file, data_dir=None, promote: str = "never", data: Data | None = None) -> Path:
    """A run for a mood model trained elsewhere (pipelines.mood_accel on a lent GPU): its file, with the
    settings and epochs written beside it (trained.json), evaluated on the original test
    images, scored on the benchmark and gated here, by the same code as a training on this machine."""
    from pipelines import runs
    from pipelines.training import finish_run

    path = Path(model_file)
    trained = core.read_json(path.with_name("trained.json"), {}) or {}
    known = {k: v for k, v in trained.get("settings", {}).items() if k in Settings.__dataclass_fields__}
    Settings(**known)  # the same validation as a training's settings
    model = reads_faces(core.load_model(path), str(path))
    data = data if data is not None else load_data(data_dir)
    run = runs.Run.create(TASK, {**known, "trained_with": trained.get("trained_with", {}), "adopted_from": str(path)})
    with runs.running(run):  # the run store says how it ended, instead of a run left "queued" for ever
        for row in trained.get("history", []):
            run.append_metric(row)
        core.save_model(model, run.dir / "model.keras")
        finish_run(run, model, run.settings(), promote=promote, **judged_on(data))
    return run.dir


def ensemble(models: list, storage: str = "float16"):
    """One model whose probabilities are the average of trained mood models': each network copied whole
    as a member (renamed), its weights kept in `storage`. float16 halves the file (two `wide` networks:
    8 MB instead of 16); `core.load_model` reads every model back in float32, so the arithmetic is not."""
    import keras
    from keras import layers

    if len(models) < 2:
        raise core.InvalidSettings("an ensemble needs at least two networks")
    inputs = keras.Input((SIZE, SIZE, 1))
    outputs = []
    for i, model in enumerate(models):
        reads_faces(model, f"model {i + 1}")
        member = type(model).from_config(core.with_dtype(model.get_config(), storage) | {"name": f"member_{i}"})
        member.set_weights(model.get_weights())
        outputs.append(layers.Activation("linear", dtype="float32", name=f"out_{i}")(member(inputs)))
    return keras.Model(inputs, layers.Average(name="average")(outputs), name="mood_ensemble")


def compose(model_paths: list, data_dir=None, promote: str = "never", data: Data | None = None) -> Path:
    """A run folder holding the ensemble of trained mood models (run folders' or registry versions'
    model.keras), evaluated, scored and gated like a trained run."""
    from pipelines import runs
    from pipelines.training import finish_run

    paths = [Path(p) for p in model_paths]
    model = ensemble([core.load_model(p) for p in paths])
    trained = [(core.read_json(p.with_name(core.CARD_FILE), {}) or {}).get("settings", {}) for p in paths]
    settings = {"arch": "ensemble", "composed_from": [str(p) for p in paths], "storage": "float16",
                "members": [{k: v for k, v in t.items() if k in Settings.__dataclass_fields__} for t in trained]}
    data = data if data is not None else load_data(data_dir)
    run = runs.Run.create(TASK, settings)
    with runs.running(run):  # the run store says how it ended, instead of a run left "queued" for ever
        core.save_model(model, run.dir / "model.keras")
        # Judged as read back (float16 weights, in float32): the model the page would serve.
        finish_run(run, core.load_model(run.dir / "model.keras"), settings, promote=promote, **judged_on(data))
    return run.dir


def benchmark(data: Data):
    """The fixed benchmark every mood model is compared on: the FER2013 test images (the gate also keeps
    their FER+ majority accuracy from falling by more than 1 point: `training.GUARDS`)."""
    from pipelines.training import Benchmark, benchmark_id, majority_share

    return Benchmark(
        id=benchmark_id("fer2013-test", np.ascontiguousarray(data.x_test).tobytes(),
                        np.ascontiguousarray(data.y_test).tobytes()),
        name=f"{len(data.x_test):,} FER2013 test images", score_key="accuracy", higher_is_better=True,
        score=lambda model, _vocab: evaluate(model, data)["accuracy"],
        chance=majority_share(data.y_test), same_as_test=True,
    )


def evaluate(model, data: Data) -> dict:
    """Accuracy, per-class F1 and confusion matrix on the test images (averaged over the TTA views),
    with the Public and Private halves reported separately when known."""
    probs = predict(model, data.x_test)
    pred = probs.argmax(1)
    report = core.classification_report(data.y_test, pred, len(CLASSES), CLASSES)
    if data.test_split is not None:
        for value, name in ((0, "public_test"), (1, "private_test")):
            mask = data.test_split == value
            report[f"{name}_accuracy"] = float((pred[mask] == data.y_test[mask]).mean())
    if data.ferplus_test is not None:
        report["ferplus"] = ferplus_report(pred, data.ferplus_test)
    return report


def ferplus_report(pred: np.ndarray, major: np.ndarray) -> dict:
    """Accuracy and per-class P/R/F1 against the FER+ majority labels (rows that have one)."""
    keep = major >= 0
    return core.classification_report(major[keep], pred[keep], len(CLASSES), CLASSES)


# ---------------------------------------------------------------- predict


def normalize(faces) -> np.ndarray:
    """uint8 (n, 48, 48) faces -> float (n, 48, 48, 1) in [0, 1], as in training."""
    return (np.asarray(faces, np.float32) / 255.0).reshape(-1, SIZE, SIZE, 1)


VIEWS = ("flip", "crops")  # test-time augmentation: face + mirror, or also four corner crops of each
# Measured on the 7,178 test faces (FER+ model, bench/quality.py): the crops add +0.8 points on
# FER2013 and +0.7 on FER+ majority labels over the mirror alone, for 10 model inputs per face instead of 2.
TTA = "crops"


def views(x: np.ndarray, kind: str = "flip") -> list[np.ndarray]:
    """The views averaged at test time: the face and its mirror; with "crops" also the four
    44x44 corner crops of both, scaled back to 48x48 (small shifts and zoom, as in training)."""
    base = [x, x[:, :, ::-1]]
    if kind == "flip":
        return base
    out = list(base)
    c = SIZE - 4
    for v in base:
        for dy, dx in ((0, 0), (0, 4), (4, 0), (4, 4)):
            crop = v[:, dy:dy + c, dx:dx + c, 0]
            out.append(np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for f in crop])[..., None])
    return out


def predict(model, faces, batch_size: int = 512, tta: str = TTA) -> np.ndarray:
    """Probabilities (n, 7), averaged over the views of each face (`tta`: see `views`)."""
    x = normalize(faces)
    out = []
    for i in range(0, len(x), batch_size):
        vs = views(x[i:i + batch_size], tta)
        out.append(model.predict_on_batch(np.concatenate(vs)).reshape(len(vs), -1, len(CLASSES)).mean(0))
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)))


def predict_fn(model, tta: str = TTA):
    """A fast view-averaged predictor for the page (no model.predict)."""
    fast = core.fast_predict(model)

    def run(faces):
        vs = views(normalize(faces), tta)
        return fast(np.concatenate(vs)).reshape(len(vs), -1, len(CLASSES)).mean(0)

    return run


_CASCADE = None


def detector():
    global _CASCADE
    if _CASCADE is None:
        _CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    return _CASCADE


def decode_image(data: bytes, max_pixels: int = 40_000_000) -> np.ndarray:
    """Photo bytes -> RGB array; a clear ValueError for a corrupt or absurdly large file."""
    array = np.frombuffer(data, np.uint8)
    if len(array) == 0:
        raise ValueError("the file is empty.")
    # A JPEG (a phone's photo) is read upright, as its EXIF orientation says; other files as they are, with
    # their see-through parts (IMREAD_UNCHANGED keeps alpha and ignores EXIF: a phone photo came out sideways,
    # its face not found).
    jpeg = data[:2] == b"\xff\xd8"
    image = cv2.imdecode(array, REDUCED[jpeg_scale(data)] if jpeg else cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("the file is damaged or is not a photo (JPEG, PNG, WebP, BMP and GIF files work).")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ValueError(f"it is too large ({image.shape[1]}x{image.shape[0]} pixels; "
                         f"up to {max_pixels // 1_000_000} million work).")
    if image.dtype != np.uint8:  # 16-bit PNG
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:  # see-through parts on white, as a viewer shows them (they were black)
        alpha = image[..., 3:] / 255.0
        image = (image[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}


def jpeg_scale(data: bytes) -> int:
    """How much smaller to read a JPEG: a phone's 48-200 MP photo at 1/2 to 1/8 of its size, at least twice
    MAX_SIDE (faces are found at MAX_SIDE), which JPEG decodes cheaply; it was refused as too large. The size
    comes from the file's header (Pillow reads only that: a decode at 1/8 to learn it cost 42 ms for 12 MP)."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            side = max(header.size)
    except Image.DecompressionBombError:  # over ~180 MP
        return 8
    except (OSError, ValueError):
        return 1  # the full read says it is damaged
    return max((f for f in REDUCED if side / f >= 2 * MAX_SIDE), default=1)


def find_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in the photo's pixels, numbered as people read: row by row, left to right."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    scale = min(1.0, MAX_SIDE / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    boxes = detector().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
    boxes = drop_nested([tuple(int(round(v / scale)) for v in b) for b in boxes])
    return reading_order(boxes)


def reading_order(boxes: list) -> list:
    """Row by row, each left to right: a face is in a row when its centre is within half a face's height of the
    row's first face's centre (a group photo in rows went down the columns: 1, 3, 5 on top and 2, 4, 6 below)."""
    rows: list[list] = []
    for b in sorted(boxes, key=lambda b: b[1] + b[3] / 2):
        first = rows[-1][0] if rows else None
        if first and abs((b[1] + b[3] / 2) - (first[1] + first[3] / 2)) <= max(first[3], b[3]) / 2:
            rows[-1].append(b)
        else:
            rows.append([b])
    return [b for row in rows for b in sorted(row, key=lambda b: b[0])]


def drop_nested(boxes: list, inside: float = 0.5) -> list:
    """The boxes without those lying mostly (`inside` of their area) within a larger one: the cascade finds a
    second "face" on a cheek or an eye of a real one."""
    kept = []
    for b in sorted(boxes, key=lambda b: -b[2] * b[3]):
        if all(_overlap(b, k) <= inside * b[2] * b[3] for k in kept):
            kept.append(b)
    return kept


def _overlap(a, b) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def crop_face(gray: np.ndarray, box, margin: float = 0.1) -> np.ndarray:
    """A square crop around the face with a margin, grayscale 48x48 uint8 (FER2013 framing)."""
    x, y, w, h = box
    m = int(round(margin * max(w, h)))
    x0, y0, x1, y1 = x - m, y - m, x + w + m, y + h + m
    pad = max(0, -x0, -y0, x1 - gray.shape[1], y1 - gray.shape[0])
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else gray
    crop = padded[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    return cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


@dataclass
class Face:
    box: tuple
    crop: np.ndarray
    probs: np.ndarray

    @property
    def mood(self) -> str:
        return CLASSES[int(self.probs.argmax())]

    @property
    def confident(self) -> bool:
        return float(self.probs.max()) >= CONFIDENT


@dataclass
class Reading:
    image: np.ndarray  # the photo with boxes and labels drawn
    faces: list[Face] = field(default_factory=list)


def read_photo(predict_fn, rgb: np.ndarray) -> Reading:
    """Every face in the photo with its mood; the photo annotated with boxes and labels."""
    boxes = find_faces(rgb)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    crops = [crop_face(gray, b) for b in boxes]
    probs = predict_fn(np.stack(crops)) if crops else []
    faces = [Face(b, c, p) for b, c, p in zip(boxes, crops, probs)]
    return Reading(annotate(rgb, faces), faces)


def shown_width(height: int, width: int, max_height: int = 900, min_width: int = 200, upscale_to: int = 320) -> int:
    """The width in CSS pixels to show a photo at (the column caps it too). A small photo is shown larger,
    up to 4x, not blown up to the column (a 1x1 photo filled it); a tall photo is held to a screen's
    height unless that makes it narrower than `min_width` (a 400x6000 photo ran 5,000 px down a phone)."""
    shown = min(4 * width, max(width, upscale_to))
    shown = min(shown, max(width * max_height / height, min_width))
    return max(1, round(shown))


def for_screen(rgb: np.ndarray) -> np.ndarray:
    """The photo resized to `shown_width`, for the page to show at its own size (capped by the column): a
    phone's 4000x3000 photo is not sent to the browser whole, and a small photo is enlarged, pixels kept sharp."""
    h, w = rgb.shape[:2]
    width = shown_width(h, w)
    if width == w:
        return rgb
    size = (width, max(1, round(h * width / w)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if width < w else cv2.INTER_NEAREST)


FONT = cv2.FONT_HERSHEY_SIMPLEX  # the faces' tags


def annotate(rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
    """The photo with each face boxed and labelled on a filled tag, sized to the photo (readable
    on a phone screen as on a large photo)."""
    out = rgb.copy()
    # Sized to the photo's width: the page shows it at the column's width (a tall photo sized by its height had
    # tags taller than its faces, cut off at its right edge).
    thick = max(2, out.shape[1] // 250)
    scale = max(0.5, out.shape[1] / 900)
    colour, ink = (255, 190, 0), (20, 20, 20)
    for i, f in enumerate(faces, 1):
        x, y, w, h = f.box
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thick)
        crowded = len(faces) > 1
        label, size = tag_text(i, f, w if crowded else out.shape[1] - 4 * thick, scale, thick, crowded)
        (tw, th), base = cv2.getTextSize(label, FONT, size, thick)
        pad = max(3, th // 3)
        left, top = tag_place(f.box, (tw + 2 * pad, th + base + 2 * pad), out.shape)
        cv2.rectangle(out, (left, top), (left + tw + 2 * pad, top + th + base + 2 * pad), colour, cv2.FILLED)
        cv2.putText(out, label, (left + pad, top + pad + th), FONT, size, ink, thick, cv2.LINE_AA)
    return out


def tag_text(number: int, face, room: int, scale: float, thick: int, crowded: bool) -> tuple[str, float]:
    """A face's tag and its font size: the whole reading, smaller where it is wider than `room` (the face's
    width among several faces, down to 0.6 of the size, else the face's number alone; the photo's width for one)."""
    label = f"{number}: {face.mood} {face.probs.max():.0%}"
    width = cv2.getTextSize(label, FONT, scale, thick)[0][0]
    if width <= room:
        return label, scale
    size = scale * max(0.6 if crowded else 0.2, room / width)
    if not crowded or cv2.getTextSize(label, FONT, size, thick)[0][0] <= room:
        return label, size
    return str(number), scale


def tag_place(box, tag: tuple, shape: tuple) -> tuple[int, int]:
    """Where a face's tag (width, height) goes: above the box, else below it, else inside its top edge; always
    within the photo (below a face at the bottom of the photo it was cut off)."""
    x, y, w, h = box
    tw, th = tag
    top = y - th if y - th >= 0 else y + h if y + h + th <= shape[0] else y
    left = min(max(0, x), max(0, shape[1] - tw))
    return left, max(0, min(top, shape[0] - th))


def load(name: str = TASK):
    """(predict_fn, card) of the active model: what the page needs."""
    model = core.load_model(core.model_path(name))
    return predict_fn(model), core.active_card(name) or {}


# ---------------------------------------------------------------- command line


def main(argv=None):
    from pipelines import runs

    parser = argparse.ArgumentParser(prog="python -m pipelines.mood", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a model into a run folder")
    e = sub.add_parser("evaluate", help="print test metrics of the active model as JSON")
    p = sub.add_parser("predict", help="moods of the faces in a photo")
    p.add_argument("photo")
    a = sub.add_parser("adopt", help="a run for a model trained elsewhere (python -m pipelines.mood_accel)")
    a.add_argument("model", help="its model.keras (with trained.json beside it)")
    a.add_argument("--data-dir", help="folder with FER2013 (default: $DATA_DIR)")
    a.add_argument("--promote", choices=("never", "always", "if-better"), default="never")
    n = sub.add_parser("ensemble", help="a run averaging trained models' probabilities (weights stored in float16)")
    n.add_argument("models", nargs="+", help="model.keras files (run folders or registry versions)")
    n.add_argument("--data-dir", help="folder with FER2013 (default: $DATA_DIR)")
    n.add_argument("--promote", choices=("never", "always", "if-better"), default="never")
    for q in (t, e):
        q.add_argument("--data-dir", help="folder with FER2013 (default: $DATA_DIR)")
    runs.add_train_flags(t, archs=ARCHS)
    t.add_argument("--labels", choices=LABELS, help="training targets (default fer2013)")
    t.add_argument("--label-mix", type=float, help="weight of the FER2013 one-hot in --labels mixed or teacher "
                   "(default 0.5)")
    t.add_argument("--teachers", help="with --labels teacher: the models to learn from, comma-separated .keras files")
    t.add_argument("--ema", type=float, help="weight averaging: momentum per step, e.g. 0.999 (default 0: off)")
    runs.add_registry_commands(sub)
    args = parser.parse_args(argv)

    if args.cmd in ("models", "rollback"):
        runs.registry_command(TASK, args)
        return
    if args.cmd in ("adopt", "ensemble"):
        run_dir = (adopt(args.model, args.data_dir, args.promote) if args.cmd == "adopt"
                   else compose(args.models, args.data_dir, args.promote))
        card = core.read_json(run_dir / core.CARD_FILE, {}) or {}
        print(json.dumps({"run": run_dir.name, "test_accuracy": card.get("test", {}).get("accuracy")}))
        return
    if args.cmd == "predict":
        try:
            rgb = decode_image(Path(args.photo).read_bytes())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"Could not read {args.photo}: {exc}") from None
        fn, _ = load()
        reading = read_photo(fn, rgb)
        print(json.dumps([{"box": f.box, "mood": f.mood, "probs": dict(zip(CLASSES, f.probs.round(3).tolist()))}
                          for f in reading.faces], indent=1))
        return
    if args.cmd == "evaluate":
        model = core.load_model(core.model_path(TASK))
        print(json.dumps(evaluate(model, load_data(args.data_dir)), indent=1))
        return
    settings = runs.settings_from_args(Settings, args)
    given = {k: getattr(args, k) for k in ("labels", "label_mix", "teachers", "ema") if getattr(args, k, None) is not None}
    settings = replace(settings, **given)  # validated as every setting
    run, card = runs.train_from_args(TASK, settings, args, train, data_dir=args.data_dir)
    if card:
        print(json.dumps({"run": run.id, "test_accuracy": card["test"]["accuracy"]}))


if __name__ == "__main__":
    core.run_cli(main)
