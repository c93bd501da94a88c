"""Train the mood CNN on a lent accelerator, with whatever Keras backend it has (JAX on a GPU machine without TensorFlow).

    python -m pipelines.mood_accel pack FACES.npz [--data-dir DIR]   # here: the training faces, small enough to travel
    KERAS_BACKEND=jax python -m pipelines.mood_accel train FACES.npz OUT/ [--arch wide] [--labels mixed]
        [--label-mix 0.5] [--optimizer adam|sgd] [--learning-rate 2e-3] [--budget-s 360] [--max-epochs 200]
    python -m pipelines.mood adopt OUT/model.keras --promote if-better   # here: evaluated and gated like a run

The network (mood.build_model), targets (mood.targets: FER2013 labels, FER+ votes or a blend), class
weights, "not a face" filter and validation split are those of `python -m pipelines.mood train`, and the
augmentation has the same transforms and ranges; the loop differs: model.fit on batches made on the host
(OpenCV, worker threads), so it runs on any Keras backend and the accelerator only runs the network. Its epochs follow a time budget: the cosine learning
rate is planned over as many epochs as the budget holds, measured after the first (compiled) epochs.

The pack holds the training faces at 6 bits per pixel (restored to the middle of each step, at most 2
grey levels off; lossless, they would not fit what travels to a lent machine), their FER2013 labels and
FER+ votes. No test face is in it: the test set is scored here, on the original 8-bit images, by `adopt`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from pipelines import core, mood

TILE = 32  # faces per mosaic side: one lossless WebP per 32x32 faces compresses better than one per face
BITS = 6


def pack(out: Path, data_dir=None) -> dict:
    """The training faces as 6-bit lossless WebP mosaics + labels + raw FER+ votes, in one .npz (no pickle)."""
    data = mood.load_data(data_dir)
    directory = core.data_dir(data_dir)
    with np.load(directory / "fer2013plus_labels.npz") as f:
        votes = f["votes_train"]
    q = data.x_train >> (8 - BITS)
    blobs = []
    per = TILE * TILE
    for i in range(0, len(q), per):
        chunk = np.zeros((per, mood.SIZE, mood.SIZE), np.uint8)
        chunk[: len(q[i:i + per])] = q[i:i + per]
        mosaic = chunk.reshape(TILE, TILE, mood.SIZE, mood.SIZE).transpose(0, 2, 1, 3).reshape(TILE * mood.SIZE, -1)
        ok, buf = cv2.imencode(".webp", mosaic, [cv2.IMWRITE_WEBP_QUALITY, 101])  # 101: lossless
        blobs.append(buf.ravel())
    np.savez(out, blobs=np.concatenate(blobs), sizes=np.array([len(b) for b in blobs]), n=len(q),
             y_train=data.y_train, votes_train=votes)
    return {"faces": len(q), "bytes": Path(out).stat().st_size}


def unpack(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(faces uint8 (n, 48, 48), FER2013 labels, raw FER+ votes) from a pack."""
    with np.load(path) as f:
        blobs, sizes, n = f["blobs"], f["sizes"], int(f["n"])
        y, votes = f["y_train"], f["votes_train"]
    faces, start = [], 0
    for size in sizes:
        mosaic = cv2.imdecode(blobs[start:start + size], cv2.IMREAD_GRAYSCALE)
        start += size
        faces.append(mosaic.reshape(TILE, mood.SIZE, TILE, mood.SIZE).transpose(0, 2, 1, 3).reshape(-1, mood.SIZE, mood.SIZE))
    step = 1 << (8 - BITS)
    x = np.concatenate(faces)[:n].astype(np.uint16) * step + step // 2  # the middle of each 6-bit step
    return x.astype(np.uint8), y, votes


def split(settings: mood.Settings, x, y, votes):
    """Targets (mood.targets) and mood.fit_split, as `mood train` makes them, with faces in [0, 1]."""
    t = mood.targets(y, mood.ferplus_votes(votes), settings.labels, settings.label_mix)
    (xf, tf, w), (xv, tv) = mood.fit_split(settings, x, t, mood.not_a_face(votes))
    w = np.ones(len(xf), np.float32) if w is None else w
    return (mood.normalize(xf), tf, w), (mood.normalize(xv), tv)


def augment_faces(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mood.augmentation's transforms done on the host with OpenCV: mirror, rotation +-11 degrees, shift +-8%,
    zoom +-10% (reflected borders), contrast +-30%, on faces (n, 48, 48, 1) in [0, 1].

    Keras' augmentation layers inside a jitted JAX step cost more than the network on an accelerator (on the
    H100: ~0.67 s per step whatever the batch; keras-team/keras#23229 and #23245 report the same); on the host
    they cost ~10 us per face, off the accelerator's path."""
    n, c = len(x), (mood.SIZE - 1) / 2
    angle = rng.uniform(-0.03, 0.03, n) * 360  # RandomRotation(0.03): a fraction of a full turn
    zoom = 1 + rng.uniform(-0.1, 0.1, n)
    shift = rng.uniform(-0.08, 0.08, (n, 2)) * mood.SIZE
    flip = rng.random(n) < 0.5
    contrast = 1 + rng.uniform(-0.3, 0.3, n)
    out = np.empty_like(x)
    for i in range(n):
        m = cv2.getRotationMatrix2D((c, c), angle[i], zoom[i])
        m[:, 2] += shift[i]
        face = cv2.warpAffine(x[i, ..., 0], m, (mood.SIZE, mood.SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
        face = face[:, ::-1] if flip[i] else face
        mean = face.mean()
        out[i, ..., 0] = (face - mean) * contrast[i] + mean
    return np.clip(out, 0.0, 1.0)


def batches(keras, x, t, w, batch_size: int, seed: int, augment: bool = True):
    """Shuffled, augmented training batches made on the host by worker threads (OpenCV releases the GIL)."""

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=4, use_multiprocessing=False)
            self.epoch, self.order = 0, np.random.default_rng(seed).permutation(len(x))

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i):
            rows = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            rng = np.random.default_rng((seed, self.epoch, i))  # the same faces whatever thread makes the batch
            return augment_faces(x[rows], rng) if augment else x[rows], t[rows], w[rows]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng((seed, self.epoch)).permutation(len(x))

    return Batches()


def cosine_lr(base: float, epoch: int, total: int, warmup: int = 2) -> float:
    """Linear warm-up, then cosine to 1% of `base` at the last planned epoch."""
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    progress = min(1.0, (epoch - warmup) / max(1, total - warmup))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def budget_callback(keras, base_lr: float, budget_s: float, max_epochs: int, net, out: Path, log):
    """Plans the epochs from the measured epoch time, sets each epoch's learning rate, keeps the weights
    with the best validation accuracy (saved as they come, so a late failure loses nothing)."""

    class Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.total, self.best = time.time(), max_epochs, -1.0

        def on_epoch_begin(self, epoch, logs=None):
            self.e0 = time.time()
            self.model.optimizer.learning_rate.assign(cosine_lr(base_lr, epoch, self.total))

        def on_train_batch_end(self, batch, logs=None):
            if self.total == max_epochs and batch in (0, 10, 30):  # before planning: compile time, then step time
                print(json.dumps({"batch": batch, "elapsed_s": round(time.time() - self.t0, 2)}), flush=True)

        def on_epoch_end(self, epoch, logs=None):
            now = time.time()
            if epoch >= 1 and self.total == max_epochs:  # epoch 0 includes compiling: plan from the second
                left = budget_s - (now - self.t0)
                self.total = min(max_epochs, epoch + 1 + max(0, int(left // max(now - self.e0, 1e-3))))
            row = {"kind": "epoch", "epoch": epoch, "seconds": now - self.e0, "time": now - self.t0,
                   "learning_rate": cosine_lr(base_lr, epoch, self.total), "planned_epochs": self.total,
                   **{k: float(v) for k, v in (logs or {}).items()}}
            if row.get("val_accuracy", -1) > self.best:
                self.best = row["val_accuracy"]
                net.save(out / "model.keras")
            log(row)
            if epoch + 1 >= self.total:
                self.model.stop_training = True

    return Budget()


def train(settings: mood.Settings, pack_path: Path, out: Path, optimizer: str = "adam", weight_decay: float = 0.0,
          budget_s: float = 360.0, max_epochs: int = 200) -> dict:
    import keras

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(settings.seed)
    (x, t, w), (xv, tv) = split(settings, *unpack(pack_path))
    net = mood.build_model(settings)
    if optimizer == "sgd":
        opt = keras.optimizers.SGD(settings.learning_rate, momentum=0.9, nesterov=True, weight_decay=weight_decay or None)
    elif weight_decay:
        opt = keras.optimizers.AdamW(settings.learning_rate, weight_decay=weight_decay)
    else:
        opt = keras.optimizers.Adam(settings.learning_rate)
    net.compile(opt, keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing),
                    metrics=["accuracy"])
    info = {"settings": asdict(settings), "history": [],
            "trained_with": {"script": "pipelines.mood_accel", "backend": keras.backend.backend(),
                             "device": _device(), "optimizer": optimizer, "weight_decay": weight_decay,
                             "budget_s": budget_s, "faces": f"{BITS}-bit pack, {len(x) + len(xv)} training faces"}}
    t0 = time.time()

    def log(row):  # trained.json is rewritten every epoch: what a cut-off run did is kept with its model
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        info["history"].append(row)
        info["settings"]["epochs"] = len(info["history"])
        info["trained_with"].update(seconds=round(time.time() - t0, 1), best_val_accuracy=budget.best)
        core.write_json(out / "trained.json", info)

    budget = budget_callback(keras, settings.learning_rate, budget_s, max_epochs, net, out, log)
    net.fit(batches(keras, x, t, w, settings.batch_size, settings.seed, settings.augment), epochs=max_epochs,
            validation_data=(xv, tv), callbacks=[budget], verbose=0)
    return info


def _device() -> str:
    try:
        import jax

        return str(jax.devices()[0].device_kind)
    except Exception:  # another backend: the model is what matters, the card says the backend
        return "unknown"


SETTING_FLAGS = (("arch", str), ("labels", str), ("label_mix", float), ("learning_rate", float), ("batch_size", int),
                 ("label_smoothing", float), ("seed", int), ("data_fraction", float))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pipelines.mood_accel", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="the training faces in one small file")
    p.add_argument("out")
    p.add_argument("--data-dir")
    t = sub.add_parser("train", help="train on a pack with any Keras backend")
    t.add_argument("pack")
    t.add_argument("out")
    for flag, kind in SETTING_FLAGS:
        t.add_argument("--" + flag.replace("_", "-"), type=kind)
    t.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--budget-s", type=float, default=360.0)
    t.add_argument("--max-epochs", type=int, default=200)
    args = parser.parse_args(argv)
    if args.cmd == "pack":
        print(json.dumps(pack(Path(args.out), args.data_dir)))
        return
    overrides = {k: getattr(args, k) for k, _ in SETTING_FLAGS if getattr(args, k) is not None}
    settings = mood.Settings(**{"arch": "wide", "batch_size": 128, **overrides})
    info = train(settings, Path(args.pack), Path(args.out), args.optimizer, args.weight_decay, args.budget_s,
                 args.max_epochs)
    print(json.dumps(info["trained_with"]))


if __name__ == "__main__":
    core.run_cli(main)
