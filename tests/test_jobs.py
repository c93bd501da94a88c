"""Integration: training jobs started the way the Training page starts them."""

import threading
import time

import pytest
from conftest import wait_for

from pipelines import core, engines, runs


def form(mnist_dir, **kw):
    return {"arch": "default", "epochs": 1, "batch_size": 32, "learning_rate": 1e-3, "data_fraction": 1.0,
            "augment": True, "data_dir": str(mnist_dir), **kw}


def test_validate_and_args():
    assert runs.validate("digits", {"epochs": 0, "learning_rate": 5.0}) == [
        "epochs must be a whole number from 1 to 1000 (got 0); learning rate must be above 0 and at most 1 (got 5.0)"]
    assert "cannot be read" in runs.validate("text", {"corpus": "/nope.txt"})[0]
    assert runs.validate("digits", {"epochs": 3, "batch_size": 64}) == []
    args = runs.train_args("digits", {"epochs": 2, "augment": False, "with_feedback": True, "auto_promote": True})
    assert args == ["--arch", "default", "--epochs", "2", "--batch-size", "128", "--learning-rate", "0.002",
                    "--data-fraction", "1.0", "--no-augment", "--with-feedback", "--promote", "if-better"]
    assert "--no-augment" not in runs.train_args("text", {"augment": False})
    # the baseline's own defaults, and a ticked box is what the run uses
    args = runs.train_args("digits", {"arch": "baseline", "augment": True})
    assert args[:10] == ["--arch", "baseline", "--epochs", "10", "--batch-size", "128", "--learning-rate", "0.001",
                         "--data-fraction", "1.0"] and "--augment" in args


def test_a_job_writes_metrics_and_finishes(mnist_dir):
    run = runs.launch("digits", runs.train_args("digits", form(mnist_dir, auto_promote=True)))
    with pytest.raises(core.JobRunning, match=f"already running: run {run.id}"):
        runs.launch("digits", [])
    wait_for(lambda: run.state not in runs.ACTIVE_STATES)
    assert run.state == "finished", run.log_tail()
    rows = run.metrics()
    assert any(r["kind"] == "epoch" and "val_accuracy" in r for r in rows)
    assert runs.progress(run)[0] == 1.0
    assert run.card()["test"]["n"] == 50
    assert run.card()["score"]["benchmark"].startswith("mnist-test:")
    assert core.active_card("digits")["run"] == run.id  # nothing was active: it wins
    assert run.status()["version"] == "v1" and run.card()["comparison"]["verdict"] == "no-active"
    classes = list(core.read_json(run.dir / "data.json")["distribution"])
    assert classes == [*"0123456789", "not a digit"] and (run.dir / "samples.png").exists()  # not "10"
    assert all(r["learning_rate"] > 0 for r in rows if r["kind"] == "epoch")  # per epoch, for the page
    found = core.read_json(run.dir / "mistakes.json")  # written at evaluation: the page only reads it
    assert found["kind"] == "images" and found["n"] == 50
    assert all(i["true"] != i["predicted"] for i in found["items"])
    row = runs.summary(run)
    assert row["status"] == "finished" and row["test"].startswith("accuracy")


def test_a_killed_job_fails_and_leaves_the_active_model_alone(mnist_dir):
    first = runs.launch("digits", runs.train_args("digits", form(mnist_dir, auto_promote=True)))
    wait_for(lambda: first.state == "finished")
    before = core.model_path("digits").read_bytes()
    run = runs.launch("digits", runs.train_args("digits", form(mnist_dir, epochs=200, auto_promote=True)))
    wait_for(lambda: any(r["kind"] == "batch" for r in run.metrics()))
    runs.kill(run)
    wait_for(lambda: run.state == "failed")
    assert "died" in run.status()["error"]
    assert core.model_path("digits").read_bytes() == before
    assert core.active_card("digits")["run"] == first.id
    # The OS releases the dead job's lock once the process is torn down (a moment on a busy machine).
    wait_for(lambda: runs.job_holder("digits") is None, timeout=30)


def test_stop_keeps_the_best_checkpoint_and_promotes_nothing(mnist_dir):
    run = runs.launch("digits", runs.train_args("digits", form(mnist_dir, epochs=200, auto_promote=True)))
    wait_for(lambda: any(r["kind"] == "epoch" for r in run.metrics()))
    run.request_stop()
    wait_for(lambda: run.state not in runs.ACTIVE_STATES, timeout=60)
    assert run.state == "stopped" and (run.dir / "best.keras").exists()
    assert "best checkpoint kept" in run.status()["error"]  # taken by the loop, not the stop watcher
    assert not core.model_path("digits").exists()


def test_a_job_that_has_ended_but_still_lets_go_of_its_lock_does_not_refuse_the_next():
    """The end state is written a moment before the process lets go of the task's lock: a new job
    asked for in that moment (the page shows the run finished) waits for it instead of being refused."""
    ended = runs.Run.create("digits", {})
    ended.set_status("finished")
    held, submitted = threading.Event(), []

    def ending_job():
        with runs.job_lock("digits"):
            runs.record_holder("digits", ended)
            held.set()
            time.sleep(0.5)

    class Recording(engines.Engine):
        def submit(self, run, args):
            submitted.append(run)

    thread = threading.Thread(target=ending_job)
    thread.start()
    held.wait()
    assert runs.job_holder("digits")["run"] == ended.id  # the lock is still held
    run = runs.launch("digits", [], engine=Recording())
    thread.join()
    assert submitted == [run]


def test_a_crash_is_recorded_with_its_message(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip")
    run = runs.launch("digits", ["--data-dir", str(tmp_path), "--epochs", "1"])
    wait_for(lambda: run.state not in runs.ACTIVE_STATES, timeout=120)
    assert run.state == "failed" and "not a readable MNIST file" in run.status()["error"]
