"""The Keras side of a run, shared by every pipeline: metrics callback, fit, save, compare, promote.

`fit_and_save` is the one training loop of the project: it logs metrics and the
stage to the run folder, keeps the best checkpoint, honours a stop request, re-estimates
batch-norm statistics, evaluates the model, scores it on the task's fixed benchmark,
compares it with the active model on that same benchmark, writes its card and, when
asked, promotes it.

Promotion rules live here so the page and the command line follow the same ones:
`promotion_gate` says whether a run may be promoted and whether a person must
confirm (worse than the active model, near chance, or no common benchmark).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import keras
import numpy as np

from pipelines import core
from pipelines.runs import Run
from pipelines.tracker import fmt, fmt_gap  # noqa: F401 (the page and verdict use them from here)

PROMOTE_CHOICES = ("never", "always", "if-better")
BN_BATCHES = 100  # training batches used to re-estimate batch-norm statistics


@dataclass
class Benchmark:
    """The fixed data every model of a task is scored on; `id` is a hash of that data."""

    id: str  # e.g. "mnist-test:1a2b3c4d5e6f"
    name: str  # in words: "10,000 MNIST test images"
    score_key: str  # "accuracy" or "bits_per_char"
    higher_is_better: bool
    score: Callable[[object, dict | None], float]  # (model, vocabulary or None) -> value
    chance: float | None = None  # what guessing scores (majority class, uniform characters)
    note: str = ""  # how it counts, e.g. characters a model does not know
    same_as_test: bool = False  # the test metrics were measured on exactly this data
    rescore_active: bool = True  # the active model can be scored on it (its data is at hand)


# A figure a better score must not be bought with, by benchmark kind: (in words, dotted key in the test metrics,
# the most it may fall). Mood: a model can gain FER2013 test accuracy by learning FER2013's own noisy labels while it
# reads faces less like the FER+ crowd (10 taggers a face) does: 70.16% against 68.25%, with FER+ 73.4% against 80.9%.
GUARDS = {"fer2013-test": ("FER+ majority accuracy", "ferplus.accuracy", 0.01)}


def benchmark_id(kind: str, *chunks: bytes) -> str:
    return f"{kind}:{core.sha256_bytes(*chunks)[:12]}"


class MetricsLogger(keras.callbacks.Callback):
    """Writes batch rows (every `every_s` seconds) and epoch rows to metrics.jsonl, and the stage."""

    def __init__(self, run: Run, batch_size: int, every_s: float = 0.5):
        super().__init__()
        self.run, self.batch_size, self.every_s = run, batch_size, every_s

    def on_train_begin(self, logs=None):
        self.t0 = self.last = time.time()
        self.run.in_fit = True  # Stop is handled here after the batch, not by the stop watcher
        self.run.set_status("running", epochs=self.params.get("epochs"), steps=self.params.get("steps"))

    def on_train_end(self, logs=None):
        # A Stop this loop took is finished by train() (best checkpoint kept): the stop watcher
        # must not interrupt that wrap-up and record it as a stop outside training.
        self.run.in_fit = self.run.stop_requested()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_t0, self.seen, self.steps_done = epoch, time.time(), 0, 0
        self.run.set_stage(f"training epoch {epoch + 1}/{self.params.get('epochs')}")

    def on_train_batch_end(self, batch, logs=None):
        self.seen, self.steps_done = self.seen + self.batch_size, batch + 1
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
        steps = self.params.get("steps")
        # A Stop ends the epoch after the current batch, and Keras still validates it: the row says how far it got,
        # so that the page does not count a stopped epoch as done (nor draw its point at its end).
        partial = {"partial": True, "steps_done": self.steps_done} if steps and self.steps_done < steps else {}
        if partial:  # the log's reader: Keras's progress line for this epoch shows its full count of steps
            print(f"Stopped: epoch {epoch + 1} ended after step {self.steps_done} of {steps}.", flush=True)
        self.run.append_metric({"kind": "epoch", "epoch": epoch, "time": time.time() - self.t0,
                                "seconds": seconds, "samples_per_s": self.seen / max(seconds, 1e-9),
                                "learning_rate": current_lr(self.model), **partial, **_floats(logs)})


def current_lr(model) -> float | None:
    """The optimizer's learning rate now (a schedule evaluated at the current step)."""
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


def tensorboard_callback(run: Run) -> list:
    """Keras' TensorBoard callback writing to <run>/tensorboard (`tensorboard --logdir runs`),
    when the tensorboard package is installed (tf.summary needs it); else nothing."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(run.dir / "tensorboard"), write_graph=True)]


def _floats(logs) -> dict:
    return {k: float(v) for k, v in (logs or {}).items()}


# ---------------------------------------------------------------- batch norm


def batch_norm_layers(model) -> list:
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        found += batch_norm_layers(layer)  # nested models
    return found


def reestimate_batch_norm(model, dataset, max_batches: int = BN_BATCHES) -> int:
    """Set every BatchNormalization layer's moving mean and variance to the average of its
    batch statistics over training batches, with the final weights. Returns the batches used.

    During training the moving averages follow the weights with momentum 0.99: after a
    short run (~40-90 steps) they are still mostly their initial 0/1 and the model
    predicts one class at inference (11% on MNIST) while its batch statistics give ~90%.
    Averaging afresh ("precise BN") makes them right for any run length. Momentum k/(k+1)
    at batch k turns Keras' moving-average update into a plain running mean."""
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for used, batch in enumerate(dataset.take(max_batches), start=1):
            for layer in layers:
                layer.momentum = (used - 1) / used
            model(batch[0] if isinstance(batch, tuple) else batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used


# ---------------------------------------------------------------- the loop


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
    benchmark: Benchmark | None = None,
    inspect: Callable[[object, object], object] | None = None,
    first_callbacks: list | None = None,
) -> dict | None:
    """Train, keep the best checkpoint, evaluate it, write the card; returns the card.

    `evaluate(model)` returns the test metrics, `score_key` names the one that
    decides promotion. `benchmark` is the task's fixed benchmark the card's score is
    measured on (and the comparison with the active model). `extras` are JSON files
    saved beside the model (model.<name>), e.g. a vocabulary. `name` is the registry
    name to promote to (default: the task). `inspect(model, run_dir)` writes what the Training
    page shows of the model's mistakes (pipelines.tracker). Returns None when the run was stopped.
    """
    name = name or run.task
    best = run.dir / "best.keras"
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    callbacks = [
        *(first_callbacks or []),  # before the checkpoint: e.g. swapping in averaged weights at epoch end
        MetricsLogger(run, batch_size),
        keras.callbacks.ModelCheckpoint(best, monitor=monitor, mode="max", save_best_only=True),
        *tensorboard_callback(run),
    ]
    for suffix, obj in (extras or {}).items():
        core.write_json(run.dir / f"model.{suffix}", obj)
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, shuffle=False,
              verbose=1 if sys.stdout.isatty() else 2)
    if run.stop_requested():
        run.set_status("stopped", ended=time.time(), error="stopped by the user; best checkpoint kept in best.keras")
        return None
    model = core.load_model(best) if best.exists() else model
    run.set_stage("re-estimating batch-norm statistics")
    if n := reestimate_batch_norm(model, train_ds):
        print(f"batch-norm statistics re-estimated over {n} training batches", flush=True)
    core.save_model(model, run.dir / "model.keras")
    return finish_run(run, model, asdict(settings), evaluate, score_key, higher_is_better, data_hash, extras, promote,
                      card_extra, name, benchmark, inspect)


def finish_run(run: Run, model, settings: dict, evaluate: Callable[[object], dict], score_key: str,
               higher_is_better: bool = True, data_hash: str = "", extras: dict[str, object] | None = None,
               promote: str = "never", card_extra: dict | None = None, name: str | None = None,
               benchmark: Benchmark | None = None, inspect: Callable[[object, object], object] | None = None) -> dict:
    """Evaluate a run's saved model, score it on the benchmark, write its card, compare it with the
    active model and promote it as asked: the end of every training, and of a model composed from
    trained ones (an ensemble), so both pass the same gate."""
    name = name or run.task
    for suffix, obj in (extras or {}).items():
        core.write_json(run.dir / f"model.{suffix}", obj)
    run.set_stage("evaluating")
    metrics = evaluate(model)
    if inspect is not None:
        run.set_stage("collecting the model's mistakes")
        try:
            inspect(model, run.dir)
        except Exception as exc:  # a picture of the mistakes never costs a finished model
            print(f"mistakes not written ({type(exc).__name__}: {exc})", flush=True)
    vocab = (extras or {}).get("vocab.json")
    score = {"name": score_key, "value": metrics[score_key], "higher_is_better": higher_is_better}
    if benchmark is not None:
        value = metrics[score_key] if benchmark.same_as_test else benchmark.score(model, vocab)
        score = {"name": benchmark.score_key, "value": float(value), "higher_is_better": benchmark.higher_is_better,
                 "benchmark": benchmark.id, "benchmark_name": benchmark.name, "chance": benchmark.chance,
                 "note": benchmark.note}
    card = {
        "task": run.task, "name": name, "run": run.id, "date": core.now_iso(), "settings": settings,
        "data_hash": data_hash, "test": metrics, "score": score,
        "history": [r for r in run.metrics() if r["kind"] == "epoch"], **(card_extra or {}),
    }
    core.write_json(run.dir / "card.json", card)
    run.set_stage("comparing with the active model")
    card["comparison"] = compare(name, score, model, vocab, benchmark, test=metrics)
    core.write_json(run.dir / "card.json", card)
    print(card["comparison"]["message"], flush=True)
    _maybe_promote(run, name, card, promote)
    return card


def _maybe_promote(run: Run, name: str, card: dict, promote: str) -> None:
    """--promote always (an explicit choice) or if-better (strictly better on the same benchmark)."""
    verdict = card["comparison"]["verdict"]
    done = {"stage": "", "score": card["score"], "comparison": card["comparison"]}
    if promote == "never" or (promote == "if-better" and verdict not in ("better", "no-active")):
        if promote == "if-better":
            print(f"not promoted: the active {name} model stays ({verdict}).", flush=True)
        run.set_status("finished", ended=time.time(), promoted=False, **done)
        return
    if run.stop_requested():
        run.set_status("stopped", ended=time.time(), error="stopped by the user before promotion; nothing promoted")
        return
    run.set_stage("promoting")
    try:
        version = core.promote(name, run.dir)
    except (core.PromotionError, core.NotWritable) as exc:
        print(f"not promoted: {exc}", flush=True)
        run.set_status("finished", ended=time.time(), promoted=False, promote_error=str(exc), **done)
        return
    print(f"promoted as {name} {version}", flush=True)
    run.set_status("finished", ended=time.time(), promoted=True, version=version, **done)


def warm_start(model, path: str):
    """Copy the weights of a saved model with the same architecture (fine-tuning)."""
    if path:
        try:
            model.set_weights(core.load_model(path).get_weights())
        except ValueError as exc:  # another architecture (units, layers, an ensemble): say so in words
            raise core.InvalidSettings(f"{path} is not a model of this architecture and size, so it cannot be "
                                       "fine-tuned here: start from random weights or from a model trained "
                                       "with these settings") from exc
    return model


# ---------------------------------------------------------------- like-for-like comparison


def compare(name: str, score: dict, model=None, vocab=None, benchmark: Benchmark | None = None,
            test: dict | None = None) -> dict:
    """The candidate's score against the active model's on the same benchmark (and, from both cards'
    test metrics, the benchmark's guard figure: `GUARDS`; `test` is the candidate's).

    Same benchmark id on both cards: the cards' numbers. Otherwise the active model is
    scored on the candidate's benchmark when its data is at hand (`benchmark.rescore_active`);
    else there is no common benchmark and promotion needs an explicit choice.
    """
    folder = core.version_dir(name)
    active_file = folder / core.MODEL_FILE if folder else core.model_path(name)
    base = {"active_version": core.active_version(name), "active_key": core.model_version(name),
            "score_name": score["name"], "higher_is_better": score["higher_is_better"],
            "benchmark": score.get("benchmark"), "benchmark_name": score.get("benchmark_name", ""),
            "candidate": score["value"], "chance": score.get("chance"), "note": score.get("note", "")}
    if not active_file.exists():
        return {**base, "verdict": "no-active", "active": None,
                "message": f"No active {name} model yet: this one would be the first."}
    active_card = core.read_json(folder / core.CARD_FILE if folder else core.card_path(name), {}) or {}
    active = active_card.get("score") or {}
    if score.get("benchmark") and active.get("benchmark") == score["benchmark"] and active.get("name") == score["name"]:
        base["guard"] = guard(score["benchmark"], test, active_card.get("test"))
        return verdict({**base, "active": active["value"], "how": "both cards, same benchmark"})
    if benchmark is None or model is None or not benchmark.rescore_active:
        return {**base, "verdict": "no-common-benchmark", "active": active.get("value"),
                "message": f"No common benchmark: the active {name} model was scored on "
                           f"{active.get('benchmark_name') or active.get('benchmark') or 'unrecorded data'}, "
                           f"this one on {score.get('benchmark_name') or 'other data'}. "
                           "Promoting it is your explicit choice."}
    try:
        active_model = core.load_model(active_file)
        active_vocab = core.read_json(core.extra_path(name, "vocab.json", active_file))
        value = float(benchmark.score(active_model, active_vocab))
    except core.ModelUnavailable as exc:
        return {**base, "verdict": "no-common-benchmark", "active": None,
                "message": f"The active {name} model could not be scored ({exc}). Promoting is your explicit choice."}
    return verdict({**base, "active": value, "how": "active model scored on this run's benchmark"})


def near_chance(value: float, chance: float | None, higher_is_better: bool) -> bool:
    """Within 10% of guessing (accuracy) or above 90% of a uniform guess's bits."""
    if chance is None:
        return False
    return value <= chance + 0.1 * (1 - chance) if higher_is_better else value >= 0.9 * chance


def verdict(c: dict) -> dict:
    """better | worse | equal, with the sentence a person reads."""
    sign = 1 if c["higher_is_better"] else -1
    gap = (c["candidate"] - c["active"]) * sign
    c["verdict"] = "better" if gap > 1e-9 else "worse" if gap < -1e-9 else "equal"
    c["gap"] = gap
    c["near_chance"] = near_chance(c["candidate"], c.get("chance"), c["higher_is_better"])
    where = c.get("benchmark_name") or c.get("benchmark")
    active = f"active {c['active_version'] or 'model'}"
    words = {"better": f"better by {fmt_gap(gap, c['score_name'])}", "equal": "as good",
             "worse": f"worse by {fmt_gap(gap, c['score_name'])}"}[c["verdict"]]
    unit = " accuracy" if c["score_name"] == "accuracy" else ""
    c["message"] = (f"This run {fmt(c['candidate'], c['score_name'])} vs {active} {fmt(c['active'], c['score_name'])}"
                    f"{unit} on {where}: {words}.")
    if c["near_chance"]:
        c["message"] += f" Near chance (guessing scores {fmt(c['chance'], c['score_name'])})."
    if c.get("note"):
        c["message"] += f" ({c['note'][0].upper()}{c['note'][1:]}.)"
    return guarded(c)


def guarded(c: dict) -> dict:
    """A better (or as good) score that costs the guard figure more than its tolerance is judged worse:
    the if-better gate keeps the active model, and the page asks before promoting it."""
    g = c.get("guard")
    if c["verdict"] == "worse" or not g:
        return c
    fall = g["active"] - g["value"]
    if fall <= g["tolerance"] + 1e-9:
        return c
    c["verdict"], c["guard_failed"] = "worse", True
    c["message"] += (f" But its {g['name']} falls from {fmt(g['active'], 'accuracy')} to {fmt(g['value'], 'accuracy')}, "
                     f"more than the {fmt_gap(g['tolerance'], 'accuracy')} allowed: judged worse.")
    return c


def guard(benchmark: str, test: dict | None, active_test: dict | None) -> dict | None:
    """The benchmark's guard figure for the candidate and the active model, where both cards have it."""
    spec = GUARDS.get(benchmark.split(":")[0])
    if not spec:
        return None
    label, key, tolerance = spec
    value, active = dotted(test or {}, key), dotted(active_test or {}, key)
    if value is None or active is None:
        return None
    return {"name": label, "key": key, "value": float(value), "active": float(active), "tolerance": tolerance}


def dotted(metrics: dict, key: str):
    """metrics["ferplus"]["accuracy"] for "ferplus.accuracy"; None where a part is missing."""
    for part in key.split("."):
        if not isinstance(metrics, dict) or part not in metrics:
            return None
        metrics = metrics[part]
    return metrics


# ---------------------------------------------------------------- the promotion gate


@dataclass
class Gate:
    allowed: bool  # a finished run with a model
    needs_confirmation: bool  # worse, near chance or no common benchmark: a second, informed click
    message: str  # the comparison in words
    comparison: dict


def current_comparison(name: str, run: Run) -> dict:
    """The run's comparison with the model active *now*: fresh from the cards when both were
    scored on the same benchmark, the job's own when the active model has not changed since."""
    card = run.card() or {}
    score = card.get("score") or {}
    if not score:
        return {"verdict": "no-common-benchmark", "message": "This run has no score."}
    fresh = compare(name, score, test=card.get("test"))
    if fresh["verdict"] != "no-common-benchmark":
        return fresh
    stored = card.get("comparison") or {}
    if stored.get("active_key") == core.model_version(name) and stored.get("verdict"):
        return stored
    if stored.get("verdict") not in (None, "no-common-benchmark", "no-active"):
        fresh["message"] += (f" (This run was compared with {stored.get('active_version') or 'an earlier model'}, "
                             "which is no longer the active one.)")
    return fresh


def promotion_gate(name: str, run: Run) -> Gate:
    state = run.state
    if state != "finished" or not (run.dir / "model.keras").exists():
        why = run.status().get("error") or state
        return Gate(False, False, f"A {state} run cannot be promoted ({why}).", {})
    c = current_comparison(name, run)
    needs = c.get("verdict") in ("worse", "no-common-benchmark") or bool(c.get("near_chance"))
    return Gate(True, needs, c["message"], c)


def promote_run(name: str, run: Run, confirmed: bool = False) -> str:
    """Promote a run through the gate; a worse, near-chance or incomparable model needs `confirmed`."""
    gate = promotion_gate(name, run)
    if not gate.allowed:
        raise core.PromotionError(gate.message)
    if gate.needs_confirmation and not confirmed:
        raise core.PromotionError(f"Not promoted without confirmation: {gate.message}")
    version = core.promote(name, run.dir)
    run.set_status("finished", promoted=True, version=version)
    return version


def beats_active(task: str, score: dict) -> bool:
    """Strictly better than the active model on the same benchmark (or nothing is active)."""
    return compare(task, score)["verdict"] in ("better", "no-active")


def log2_chance(n_symbols: int) -> float:
    return math.log2(max(n_symbols, 2))


def majority_share(y) -> float:
    """Accuracy of always answering the most common class."""
    counts = np.bincount(np.asarray(y, int))
    return float(counts.max() / max(counts.sum(), 1))
