"""The Keras side of a run, shared by every pipeline: metrics callback, fit, save, promote.

`fit_and_save` is the one training loop of the project: it logs metrics to the run
folder, keeps the best checkpoint, honours a stop request after the current batch,
evaluates the best model, writes its card and, when asked, promotes it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import keras

from pipelines import core
from pipelines.runs import Run

PROMOTE_CHOICES = ("never", "always", "if-better")


class MetricsLogger(keras.callbacks.Callback):
    """Writes batch rows (every `every_s` seconds) and epoch rows to metrics.jsonl."""

    def __init__(self, run: Run, batch_size: int, every_s: float = 0.5):
        super().__init__()
        self.run, self.batch_size, self.every_s = run, batch_size, every_s

    def on_train_begin(self, logs=None):
        self.t0 = self.last = time.time()
        self.run.set_status("running", epochs=self.params.get("epochs"), steps=self.params.get("steps"))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_t0, self.seen = epoch, time.time(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += self.batch_size
        now = time.time()
        if now - self.last >= self.every_s:
            self.last = now
            rate = self.seen / max(now - self.epoch_t0, 1e-9)
            self.run.append_metric({"kind": "batch", "epoch": self.epoch, "step": batch + 1,
                                    "time": now - self.t0, "samples_per_s": rate, **_floats(logs)})
        if self.run.stop_requested():
            self.model.stop_training = True  # Keras checks this after every batch

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.time() - self.epoch_t0
        self.run.append_metric({"kind": "epoch", "epoch": epoch, "time": time.time() - self.t0,
                                "seconds": seconds, "samples_per_s": self.seen / max(seconds, 1e-9),
                                **_floats(logs)})


def _floats(logs) -> dict:
    return {k: float(v) for k, v in (logs or {}).items()}


def fit_and_save(
    run: Run,
    model,
    train_ds,
    val_ds,
    *,
    settings,
    epochs: int,
    batch_size: int,
    evaluate: Callable[[object], dict],
    score_key: str,
    higher_is_better: bool = True,
    data_hash: str = "",
    extras: dict[str, object] | None = None,
    promote: str = "never",
    card_extra: dict | None = None,
    name: str | None = None,
) -> dict | None:
    """Train, keep the best checkpoint, evaluate it, write the card; returns the card.

    `evaluate(model)` returns the test metrics, `score_key` names the one that
    decides promotion. `extras` are JSON files saved beside the model
    (model.<name>), e.g. a vocabulary. `name` is the registry name to promote to
    (default: the task). Returns None when the run was stopped.
    """
    best = run.dir / "best.keras"
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    callbacks = [
        MetricsLogger(run, batch_size),
        keras.callbacks.ModelCheckpoint(best, monitor=monitor, mode="max", save_best_only=True),
    ]
    for suffix, obj in (extras or {}).items():
        core.write_json(run.dir / f"model.{suffix}", obj)
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, shuffle=False,
              verbose=1 if sys.stdout.isatty() else 2)
    if run.stop_requested():
        run.set_status("stopped", ended=time.time(), error="stopped by the user; best checkpoint kept in best.keras")
        return None
    model = core.load_model(best) if best.exists() else model
    core.save_model(model, run.dir / "model.keras")
    metrics = evaluate(model)
    card = {
        "task": run.task, "run": run.id, "date": core.now_iso(), "settings": asdict(settings),
        "data_hash": data_hash, "test": metrics,
        "score": {"name": score_key, "value": metrics[score_key], "higher_is_better": higher_is_better},
        "history": [r for r in run.metrics() if r["kind"] == "epoch"], **(card_extra or {}),
    }
    core.write_json(run.dir / "card.json", card)
    run.set_status("finished", ended=time.time(), score=card["score"])
    name = name or run.task
    if promote == "always" or (promote == "if-better" and beats_active(name, card["score"])):
        core.promote(name, run.dir)
        run.set_status("finished", promoted=True)
    return card


def warm_start(model, path: str):
    """Copy the weights of a saved model with the same architecture (fine-tuning)."""
    if path:
        model.set_weights(core.load_model(path).get_weights())
    return model


def beats_active(task: str, score: dict) -> bool:
    active = (core.active_card(task) or {}).get("score")
    if not active or active.get("name") != score["name"]:
        return True
    better = score["value"] > active["value"] if score["higher_is_better"] else score["value"] < active["value"]
    return bool(better)
