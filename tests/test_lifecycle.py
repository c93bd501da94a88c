"""The lifecycle rules on small synthetic data: validation, one job per task, stages and Stop,
batch-norm statistics after short runs, like-for-like promotion across corpora."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_TEXT, synthetic_mnist, wait_for

from pipelines import core, digits, mood, runs, text, training


def cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("task,flags,field", [
    ("digits", ["--epochs", "0"], "epochs"),
    ("digits", ["--batch-size", "0"], "batch size"),
    ("digits", ["--learning-rate", "0"], "learning rate"),
    ("digits", ["--data-fraction", "0"], "data fraction"),
    ("digits", ["--data-fraction", "2"], "data fraction"),
    ("mood", ["--epochs", "-3"], "epochs"),
    ("text", ["--dropout", "1.5"], "dropout"),
    ("text", ["--units", "0"], "units"),
    ("text", ["--window", "1"], "window"),
    ("text", ["--step", "0"], "step"),
])
def test_every_invalid_setting_is_refused_in_one_line_with_exit_code_2(task, flags, field):
    done = cli(f"pipelines.{task}", "train", *flags)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field} must be"), done.stderr
    assert runs.list_runs(task) == []  # nothing started


def test_the_dataclasses_validate_and_the_page_gets_the_same_message():
    with pytest.raises(core.InvalidSettings, match=r"^epochs must be a whole number from 1 to 1000 \(got 0\)$"):
        digits.Settings(epochs=0)
    with pytest.raises(core.InvalidSettings, match="label smoothing"):
        mood.Settings(label_smoothing=1.0)
    with pytest.raises(core.InvalidSettings, match="window"):
        text.Settings(window=1)
    assert runs.validate("digits", {"epochs": 0}) == ["epochs must be a whole number from 1 to 1000 (got 0)"]
    assert runs.defaults("digits", "baseline")["learning_rate"] == 1e-3
    assert runs.defaults("mood")["batch_size"] == 64 and runs.defaults("text")["learning_rate"] == 3e-3


def test_a_corpus_that_cannot_teach_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 100)
    (tmp_path / "short.txt").write_text("a few words")
    for name, words in (("empty", "is empty"), ("binary", "not plain text"), ("short", "too short")):
        with pytest.raises(core.DataUnavailable, match=words):
            runs.check_corpus(tmp_path / f"{name}.txt")
        assert words in runs.validate("text", {"corpus": str(tmp_path / f"{name}.txt")})[0]
    done = cli("pipelines.text", "train", "--corpus", str(tmp_path / "binary.txt"))
    assert done.returncode == 1 and done.stderr.strip() == (
        "error: Corpus file binary.txt is not plain text (binary data); pick a .txt file saved as UTF-8.")


def test_a_latin_1_corpus_is_read_as_text(tmp_path):
    """Saved by a Windows editor: it was refused as "binary data" with many accents, read with "\ufffd"s with few."""
    from pipelines import text

    prose = "Déjà vu: l'été, à Noël, la forêt était très belle. " * 60
    for name, body in (("many", prose), ("few", prose.replace("é", "e").replace("à", "a") + "Noël")):
        path = tmp_path / f"{name}.txt"
        path.write_bytes(body.encode("cp1252"))
        runs.check_corpus(path)  # accepted
        assert text.load_corpus(str(path)) == body and "\ufffd" not in text.load_corpus(str(path))
    assert core.decode_text("Noël".encode("utf-8-sig")) == "Noël"
    assert core.decode_text(b"\x81\x8d\x00") is None  # not text in either


def test_errors_for_people_are_not_glued_to_their_type():
    assert runs.error_text(core.DataUnavailable("MNIST not found: put it there.")) == "MNIST not found: put it there."
    assert runs.error_text(ValueError("boom")) == "ValueError: boom"


def test_an_unwritable_runs_folder_is_a_message(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = cli("pipelines.digits", "train", "--epochs", "1", env={"RUNS_DIR": str(blocker / "runs")})
    assert done.returncode == 1 and "not writable" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------- one job per task




def test_a_second_train_command_is_refused_naming_the_running_job(mnist_dir):
    first = subprocess.Popen([sys.executable, "-m", "pipelines.digits", "train", "--epochs", "200",
                              "--batch-size", "32", "--data-dir", str(mnist_dir)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        holder = wait_for(lambda: runs.job_holder("digits"))
        second = cli("pipelines.digits", "train", "--epochs", "1", "--data-dir", str(mnist_dir))
        assert second.returncode == 1
        assert second.stderr.strip().startswith(f"error: A digits training job is already running: run {holder['run']}")
        assert f"pid {first.pid}" in second.stderr
        assert [r.id for r in runs.list_runs("digits")] == [holder["run"]]  # the second made no run
    finally:
        first.kill()
        first.wait()
    assert wait_for(lambda: runs.job_holder("digits") is None)


def test_a_reused_pid_is_not_mistaken_for_the_job():
    run = runs.Run.create("digits", {})
    me = os.getpid()
    run.set_status("running", pid=me, pid_start=runs.process_start(me))
    assert run.state == "running"
    run.set_status("running", pid=me, pid_start=runs.process_start(me) - 1)  # another process, same pid
    assert run.state == "failed" and "died" in run.status()["error"]
    run.set_status("running", pid=me, pid_start=runs.process_start(me), updated=time.time() - 3600)
    status = run.status() | {"updated": time.time() - 3600}
    core.write_json(run.dir / "status.json", status)
    assert runs.looks_stuck(run)  # running on disk, but nothing holds the job lock
    run.set_status("running", pid=None, pid_start=None)
    runs.abandon(run)
    assert run.state == "failed" and "marked as failed" in run.status()["error"]


def test_jobs_run_at_lower_priority():
    code = "import os; from pipelines import runs; before = os.nice(0); runs.lower_priority(); print(os.nice(0) - before)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "JOB_NICE": "7", "JOB_THREADS": "1"}, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "7", done.stderr


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no Linux autogroup here")
def test_a_job_in_its_own_session_lowers_its_whole_group():
    """With autogroup, a nice level counts only inside a session: the page's jobs (a session of their own) set
    their group's nice level too, or they get as much CPU as the whole server."""
    code = ("from pathlib import Path; from pipelines import runs; runs.lower_priority(); "
            "print(Path('/proc/self/autogroup').read_text().split()[-1])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "JOB_NICE": "7", "JOB_THREADS": "1"}, start_new_session=True)
    assert done.stdout.strip().splitlines()[-1] == "7", done.stderr


# ---------------------------------------------------------------- stages and Stop


def test_stop_is_honoured_while_evaluating(tmp_path):
    class Args:
        run_dir, promote = None, "never"

    def train_fn(settings, run, promote):
        run.set_stage("evaluating")
        run.request_stop()
        for _ in range(600):  # a long evaluation, batch after batch (the Stop lands within a poll, 0.3 s)
            time.sleep(0.1)
        return {"never": "reached"}

    # As a job started in the background by a script (`nohup ... &`, or a server started so) is: with
    # SIGINT ignored, which Python keeps, so the stop watcher's interrupt would do nothing.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt):
            runs.train_from_args("digits", digits.Settings(epochs=1), Args(), train_fn)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # put back as it was
    finally:
        signal.signal(signal.SIGINT, previous)
    run = runs.list_runs("digits")[0]
    assert run.state == "stopped" and "while evaluating" in run.status()["error"]
    assert runs.job_holder("digits") is None


def test_the_metrics_logger_shows_the_epoch_stage():
    import keras

    run = runs.Run.create("digits", {})
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    stages = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stages.append(run.status().get("stage"))

    model.fit(np.zeros((8, 3)), np.zeros(8), batch_size=8, epochs=2, verbose=0,
              callbacks=[training.MetricsLogger(run, 8), Spy()])
    assert stages == ["training epoch 1/2", "training epoch 2/2"]


# ---------------------------------------------------------------- batch norm after short runs


def offset_blobs(n=512, seed=0):
    """Two classes far from the origin: the moving statistics' initial 0/1 are badly wrong."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 8)).astype(np.float32) * 3 + 20
    x[:, 0] += np.where(y == 1, 6, -6)
    return x, y


def bn_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    return model


def test_batch_norm_statistics_are_right_after_a_short_run():
    import tensorflow as tf

    x, y = offset_blobs()
    model = bn_model()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model.fit(ds, epochs=1, verbose=0)  # 16 steps: the moving averages are still near 0 and 1

    def accuracy(training):
        return float((np.asarray(model(x, training=training)).argmax(1) == y).mean())

    with_batch_stats = accuracy(True)
    assert with_batch_stats > 0.9
    assert training.reestimate_batch_norm(model, ds) == 16
    assert accuracy(False) == pytest.approx(with_batch_stats, abs=0.02)
    bn = training.batch_norm_layers(model)[0]
    dense_out = np.asarray(model.layers[1](x))
    np.testing.assert_allclose(np.asarray(bn.moving_mean), dense_out.mean(0), rtol=0.05, atol=0.05)
    assert bn.momentum == 0.99  # restored for any later training


def test_a_short_digits_run_is_not_stuck_at_chance(mnist_dir):
    run = runs.Run.create("digits", {})
    settings = digits.Settings(epochs=1, batch_size=32, augment=False)
    x, y = synthetic_mnist(30)
    with runs.running(run):
        card = digits.train(settings, run, data=(x, y, x[:100], y[:100]))
    model = core.load_model(run.dir / "model.keras")
    bn = training.batch_norm_layers(model)[0]
    assert float(np.abs(np.asarray(bn.moving_variance) - 1).max()) > 0.05  # no longer the initial 1s
    assert card["test"]["accuracy"] > 0.5 and card["score"]["chance"] < 0.2


# ---------------------------------------------------------------- like for like across corpora


def test_a_text_model_from_another_corpus_does_not_replace_the_active_one(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "nietzsche.txt").write_text(TINY_TEXT)  # the "shipped" corpus
    (tmp_path / "ab.txt").write_text("ab " * 2000)
    settings = text.Settings(epochs=1, units=16, embed=8, batch_size=64, dropout=0.0)
    first = runs.Run.create("text", settings)
    with runs.running(first):
        text.train(settings, first, data_dir=tmp_path, promote="always")
    active = hashlib.sha256(core.model_path("text").read_bytes()).hexdigest()
    second = runs.Run.create("text", settings)
    with runs.running(second):
        card = text.train(settings, second, corpus=tmp_path / "ab.txt", data_dir=tmp_path, promote="if-better")
    # on its own held-out text it looks better than the active model on its own...
    assert card["test"]["bits_per_char"] < first.card()["score"]["value"]
    assert card["score"]["benchmark"] == first.card()["score"]["benchmark"]  # ...but it is scored on the active's
    assert card["score"]["value"] > 20 and card["comparison"]["verdict"] == "worse"
    assert "not know" in card["score"]["note"]
    assert hashlib.sha256(core.model_path("text").read_bytes()).hexdigest() == active
    assert core.active_card("text")["run"] == first.id and not second.status()["promoted"]
    gate = training.promotion_gate("text", second)
    assert gate.needs_confirmation and "worse by" in gate.message


def test_a_failed_promotion_leaves_the_run_finished_and_says_why(monkeypatch):
    from test_core import finished_run

    run = finished_run(score=0.9)
    card = run.card() | {"comparison": {"verdict": "no-active"}}

    def no_space(name, run_dir):
        raise core.PromotionError("Could not write the new digits version (No space left on device); "
                                  "nothing was promoted and the active model is unchanged.")

    monkeypatch.setattr(core, "promote", no_space)
    training._maybe_promote(run, "digits", card, "always")
    status = run.status()
    assert status["state"] == "finished" and not status["promoted"] and "No space" in status["promote_error"]
