"""Unit tests of the shared pieces: model registry, run store, metrics callback."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pipelines import core, runs


def test_missing_model_is_a_clear_error():
    with pytest.raises(core.ModelUnavailable, match="No trained model"):
        core.load_model(core.model_path("digits"))


def test_corrupt_model_is_a_clear_error():
    path = core.model_path("digits")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip file")
    with pytest.raises(core.ModelUnavailable, match="could not be read"):
        core.load_model(path)


def tiny_model():
    import keras

    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))


BENCH = "synthetic:000000000000"


def finished_run(task="digits", score=0.5, benchmark=BENCH, state="finished"):
    run = runs.Run.create(task, {"x": 1})
    core.save_model(tiny_model(), run.dir / "model.keras")
    core.write_json(run.dir / "card.json", {"score": {"name": "accuracy", "value": score, "higher_is_better": True,
                                                      "benchmark": benchmark, "benchmark_name": "test images",
                                                      "chance": 0.1}})
    core.write_json(run.dir / "model.vocab.json", {"a": 0})
    run.set_status(state)
    return run


def test_promote_makes_versions_and_keeps_the_previous_one():
    first, second = finished_run(score=0.5), finished_run(score=0.6)
    assert core.promote("digits", first.dir) == "v1"
    assert core.active_card("digits")["run"] == first.id
    assert (core.models_dir() / "digits.vocab.json").exists()  # the flat names link through the pointer
    before = core.model_version("digits")
    assert core.promote("digits", second.dir) == "v2"
    assert core.active_card("digits")["run"] == second.id and core.model_version("digits") != before
    assert [v["version"] for v in core.list_versions("digits")] == ["v1", "v2"]
    assert core.list_versions("digits")[0]["card"]["run"] == first.id
    assert not list(core.registry_dir("digits").glob(".staging*"))  # no temp files left behind


def test_beats_active_compares_on_the_same_benchmark():
    from pipelines.training import beats_active

    score = {"name": "accuracy", "value": 0.7, "higher_is_better": True, "benchmark": BENCH}
    assert beats_active("digits", score)  # nothing active yet
    core.promote("digits", finished_run(score=0.8).dir)
    assert not beats_active("digits", score)
    assert beats_active("digits", {**score, "value": 0.9})
    assert not beats_active("digits", {**score, "value": 0.9, "benchmark": "other:111111111111"})


def test_run_store_round_trip():
    run = runs.Run.create("text", {"epochs": 3})
    assert run.state == "queued" and run.settings() == {"epochs": 3}
    run.append_metric({"kind": "epoch", "epoch": 0, "loss": np.float32(1.5)})
    (run.dir / "metrics.jsonl").open("a").write('{"kind": "ba')  # a row being written
    assert run.metrics() == [{"kind": "epoch", "epoch": 0, "loss": 1.5}]
    assert runs.list_runs("text")[0].id == run.id
    assert runs.active_run("text").id == run.id
    run.request_stop()
    assert run.stop_requested()


def test_metrics_are_read_on_from_where_they_were_left():
    """A row being written is read once it is whole; only new bytes are parsed; a replaced file is read again."""
    run = runs.Run.create("digits", {})
    path = run.dir / "metrics.jsonl"
    run.append_metric({"kind": "epoch", "epoch": 0})
    with path.open("a") as f:
        f.write('{"kind": "batch", "ep')
    assert run.metrics() == [{"kind": "epoch", "epoch": 0}]
    with path.open("a") as f:
        f.write('och": 1, "step": 2}\n')
    run.append_metric({"kind": "epoch", "epoch": 1})
    assert [r["kind"] for r in run.metrics()] == ["epoch", "batch", "epoch"]
    rows = run.metrics()
    rows.clear()  # a caller's copy: the next read is whole again
    assert len(run.metrics()) == 3
    core.atomic_write_text(path, '{"kind": "epoch", "epoch": 5}\n')  # replaced (a new inode)
    assert run.metrics() == [{"kind": "epoch", "epoch": 5}]
    path.unlink()
    assert run.metrics() == []


def test_running_records_failure_with_the_error():
    run = runs.Run.create("digits", {})
    with pytest.raises(ValueError):
        with runs.running(run):
            raise ValueError("boom")
    status = run.status()
    assert status["state"] == "failed" and "boom" in status["error"]
    assert runs.active_run("digits") is None


def test_a_dead_process_reads_as_failed():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = runs.Run.create("digits", {})
    run.set_status("running", pid=proc.pid)
    assert run.state == "failed" and "died" in run.status()["error"]


def test_metrics_logger_writes_rows_and_honours_stop(capsys):
    import keras

    from pipelines.training import MetricsLogger

    run = runs.Run.create("digits", {})
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    logger = MetricsLogger(run, batch_size=4, every_s=0.0)
    x, y = np.zeros((64, 3), np.float32), np.zeros(64, np.int32)

    class StopAfterThree(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                run.request_stop()

    model.fit(x, y, batch_size=4, epochs=3, callbacks=[StopAfterThree(), logger], verbose=0)
    rows = run.metrics()
    batches = [r for r in rows if r["kind"] == "batch"]
    assert [r["step"] for r in batches] == [1, 2, 3]  # stopped right after the 3rd batch
    assert {"loss", "accuracy", "samples_per_s"} <= batches[0].keys()
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [0]
    # Keras still ends (and validates) the epoch a Stop cut short: 3 of its 16 steps, not a whole epoch
    epoch = next(r for r in rows if r["kind"] == "epoch")
    assert (epoch["partial"], epoch["steps_done"]) == (True, 3)
    assert "Stopped: epoch 1 ended after step 3 of 16." in capsys.readouterr().out  # the job's log says so too
    from pipelines import tracker

    run.set_status("stopped")
    assert runs.progress(run)[0] == 3 / 48 and tracker.row(run)["epochs"] == 0
    assert tracker.curves(run)["epoch_x"] == [3 / 16]  # its validation point where the epoch stopped


def test_atomic_write_leaves_no_temp(tmp_path):
    core.write_json(tmp_path / "a.json", {"t": time.time()})
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_job_that_dies_before_it_starts_reads_as_failed():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = runs.Run.create("digits", {})
    (run.dir / "pid").write_text(str(proc.pid))  # what launch() records
    assert run.state == "failed" and runs.active_run("digits") is None
