"""Training jobs on a real local Ray cluster, through the app's engine interface (no mocks).

A module-scoped fixture starts `ray start --head --block` (1 CPU, free ports, its own temp
folder) in a subprocess and always shuts it down, even when a test fails. The workers share
this machine's install (RAY_RUNTIME_ENV={}), so nothing is downloaded.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_ports, synthetic_mnist, wait_for

pytest.importorskip("ray.job_submission", reason="Ray is not installed: pip install -r requirements-ray.txt")

from pipelines import core, engines, runs  # noqa: E402

pytestmark = pytest.mark.ray
PORT_FLAGS = ("port", "dashboard-port", "ray-client-server-port", "node-manager-port", "object-manager-port",
              "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
              "runtime-env-agent-port")


@pytest.fixture(scope="module")
def ray_head():
    """The dashboard address of a fresh one-CPU Ray head; it is shut down whatever happens."""
    from ray.job_submission import JobSubmissionClient

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus", "1",
               "--num-gpus", "0", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
               "--temp-dir", temp, "--disable-usage-stats",
               *[arg for flag, port in ports.items() for arg in (f"--{flag}", str(port))]]
    out = open(Path(temp) / "head.log", "w")
    head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                JobSubmissionClient(address)
                if engines.RayEngine(address).nodes():  # the head's node has registered its CPU
                    break
            except Exception:
                if head.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the Ray head did not start:\n" + (Path(temp) / "head.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # --block: the head stops every process it started
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        out.close()
        engines.RayEngine._clients.pop(address, None)


@pytest.fixture
def on_ray(ray_head, monkeypatch, tmp_path):
    """RAY_ADDRESS chooses Ray; workers use this machine's interpreter; a tiny MNIST."""
    monkeypatch.setenv("RAY_ADDRESS", ray_head)
    monkeypatch.setenv("RAY_RUNTIME_ENV", "{}")
    monkeypatch.setenv("JOB_NICE", "10")
    x, y = synthetic_mnist(30)
    np.savez_compressed(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    return tmp_path


def args(data_dir, epochs=1, promote=True):
    return runs.train_args("digits", {"arch": "default", "epochs": epochs, "batch_size": 32, "learning_rate": 1e-3,
                                      "data_fraction": 1.0, "augment": True, "data_dir": str(data_dir),
                                      "auto_promote": promote})




def ray_state(run) -> str:
    return engines.of(run).job_info(engines.record(run)["job_id"], fresh=True)[0]


def test_a_ray_run_trains_promotes_and_holds_the_task_lock(on_ray, ray_head, monkeypatch):
    # As on a real cluster, the project is shipped to the worker (working_dir, no PYTHONPATH);
    # only the packages come from this machine's install instead of pip.
    monkeypatch.setenv("RAY_RUNTIME_ENV", json.dumps({"working_dir": str(core.ROOT), "excludes": engines.EXCLUDES}))
    monkeypatch.setenv("RAY_JOB_PYTHON", sys.executable)
    run = runs.launch("digits", args(on_ray))
    where = engines.where(run)
    assert where["engine"] == "ray" and where["address"] == ray_head and where["job_id"] == f"digits-{run.id}"
    assert where["label"] == f"Ray {ray_head}, job digits-{run.id}"
    # one job per task, whichever engine asks
    for engine in ("ray", "local"):
        with pytest.raises(core.JobRunning, match=f"already running: run {run.id}"):
            runs.launch("digits", args(on_ray), engine=engine)
    wait_for(lambda: run.state not in runs.ACTIVE_STATES)
    assert run.state == "finished", (run.status(), engines.log_tail(run))
    assert wait_for(lambda: ray_state(run) not in ("PENDING", "RUNNING") and ray_state(run)) == "SUCCEEDED"
    assert any(r["kind"] == "epoch" and "val_accuracy" in r for r in run.metrics())
    assert runs.progress(run)[0] == 1.0
    assert (run.dir / "model.keras").exists() and run.card()["test"]["n"] == 50
    # the candidate reached the registry the way a local run's does
    assert run.status()["version"] == "v1" and core.active_card("digits")["run"] == run.id
    assert f'"run": "{run.id}"' in run.log_tail()  # the worker's output is in the run folder


def test_stop_asks_ray_and_the_run_ends_stopped(on_ray):
    run = runs.launch("digits", args(on_ray, epochs=200))
    wait_for(lambda: any(r["kind"] == "batch" for r in run.metrics()))
    status = run.status()  # the live view: metrics as they arrive, stage, ETA
    assert status["state"] == "running" and status["stage"].startswith("training epoch")
    fraction, left = runs.progress(run)
    assert 0 < fraction < 1 and left is not None
    run.request_stop()  # the page's Stop
    wait_for(lambda: run.state not in runs.ACTIVE_STATES, timeout=60)
    assert run.state == "stopped", run.status()
    assert "best checkpoint kept" in run.status()["error"] and (run.dir / "best.keras").exists()  # a clean stop
    assert wait_for(lambda: ray_state(run) not in ("PENDING", "RUNNING") and ray_state(run)) == "STOPPED"
    assert not core.model_path("digits").exists()  # nothing promoted
    assert runs.job_holder("digits") is None


def test_a_job_that_dies_on_its_worker_fails_with_its_last_log_lines(on_ray):
    run = runs.launch("digits", args(on_ray, epochs=200, promote=False))
    wait_for(lambda: any(r["kind"] == "batch" for r in run.metrics()))
    pid = core.read_json(run.dir / "status.json")["pid"]  # the worker is this machine here
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: run.state not in runs.ACTIVE_STATES, timeout=60)
    status = run.status()
    assert status["state"] == "failed", status
    assert f"the Ray job digits-{run.id} failed on its worker" in status["error"]
    assert "last log lines:" in status["error"] and run.log_tail().splitlines()[-1] in status["error"]


def test_a_job_the_cluster_does_not_know_is_failed_not_running_forever(ray_head):
    run = runs.Run.create("digits", {"task": "digits", "args": []})
    core.write_json(run.dir / engines.ENGINE_FILE, {"engine": "ray", "address": ray_head, "job_id": "digits-gone"})
    run.set_status("running", pid=os.getpid())  # a live pid here proves nothing about a Ray job
    assert run.state == "failed" and "does not know job digits-gone" in run.status()["error"]


def test_a_job_waiting_for_a_worker_is_queued_not_stuck_and_can_be_stopped(on_ray, monkeypatch):
    monkeypatch.setenv("RAY_JOB_CPUS", "2")  # more than the head has: Ray keeps it pending
    run = runs.launch("digits", args(on_ray))
    status = run.status()
    assert status["state"] == "queued" and status["stage"] == "waiting for a Ray worker with 2 CPU"
    core.write_json(run.dir / "status.json", {**status, "updated": time.time() - 120})  # waited two minutes
    assert ray_state(run) == "PENDING" and not runs.looks_stuck(run)  # Ray vouches for it: no "Mark as failed"
    run.request_stop()
    wait_for(lambda: run.state not in runs.ACTIVE_STATES, timeout=60)
    assert run.state == "stopped" and "stopped before a Ray worker took it" in run.status()["error"]
